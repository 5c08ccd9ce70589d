"""Decoder-only language-model students: what they are (info), and later their data, distillation, pruning,
quantization and export with a KV cache."""
