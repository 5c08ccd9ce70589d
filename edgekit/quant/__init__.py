"""Fake quantization for QAD: STE, observers, BN folding, prepare/convert."""
