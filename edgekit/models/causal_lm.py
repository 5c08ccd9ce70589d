"""What a causal language model is, read in seconds from its config and weight headers (no weights loaded,
no graph traced): tracing a language model for its channel groups took minutes and answered nothing.

A transformers folder (config.json naming a *ForCausalLM architecture, or a known decoder model_type) or a
GGUF file (llama.cpp's format, read with the `gguf` package).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from edgekit.errors import InputError

# Text decoders the ONNX Runtime GenAI model builder exports with a KV cache (its builder.py dispatch).
BUILDER_ARCHITECTURES = frozenset({
    "LlamaForCausalLM", "MistralForCausalLM", "Qwen2ForCausalLM", "Qwen3ForCausalLM", "PhiForCausalLM",
    "Phi3ForCausalLM", "GemmaForCausalLM", "Gemma2ForCausalLM", "Gemma3ForCausalLM", "GraniteForCausalLM",
    "OlmoForCausalLM", "NemotronForCausalLM", "SmolLM3ForCausalLM", "InternLM2ForCausalLM", "Ernie4_5ForCausalLM",
})
DECODER_TYPES = frozenset({"llama", "mistral", "qwen2", "qwen3", "phi", "phi3", "gemma", "gemma2", "gemma3_text",
                           "granite", "olmo", "nemotron", "smollm3", "gpt2", "gpt_neox", "opt", "falcon"})
TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "vocab.json")


def is_causal_lm(spec: str | Path) -> bool:
    """A GGUF file, or a folder whose config.json is a decoder-only language model's."""
    path = Path(spec)
    if path.suffix == ".gguf" and path.is_file():
        return True
    config = _config(path)
    if config is None:
        return False
    architectures = config.get("architectures") or []
    return any(a.endswith("ForCausalLM") for a in architectures) or config.get("model_type") in DECODER_TYPES


def causal_lm_info(spec: str | Path) -> dict[str, Any]:
    """Parameters, layers, heads and KV groups, vocabulary, context, and whether the exporter takes it."""
    path = Path(spec)
    info = _gguf_info(path) if path.suffix == ".gguf" else _folder_info(path)
    arch = info["architecture"]
    info["exporter"] = ("onnxruntime-genai model builder (KV cache)" if arch in BUILDER_ARCHITECTURES
                        else f"not exported: the ONNX Runtime GenAI builder does not take {arch}")
    return {"model": str(spec), "format": "causal-lm", **info}


def _config(path: Path) -> dict | None:
    file = path / "config.json"
    if not file.is_file():
        return None
    try:
        return json.loads(file.read_text())
    except (OSError, ValueError):
        return None


def _folder_info(path: Path) -> dict[str, Any]:
    config = _config(path)
    if config is None:
        raise InputError(f"{path} has no readable config.json; give a transformers model folder or a .gguf file")
    text = config.get("text_config") or config  # multimodal wrappers keep the decoder's fields apart
    heads = text.get("num_attention_heads")
    hidden = text.get("hidden_size") or text.get("n_embd")
    params, dtype = _weight_headers(path)
    return {"architecture": (config.get("architectures") or [config.get("model_type", "?")])[0],
            "params": params, "dtype": dtype or config.get("torch_dtype") or config.get("dtype"),
            "layers": text.get("num_hidden_layers") or text.get("n_layer"), "hidden_size": hidden,
            "intermediate_size": text.get("intermediate_size"), "heads": heads,
            "kv_heads": text.get("num_key_value_heads") or heads,
            "head_dim": text.get("head_dim") or (hidden // heads if hidden and heads else None),
            "vocab": text.get("vocab_size"),
            "context": text.get("max_position_embeddings") or text.get("n_positions"),
            "tied_embeddings": bool(config.get("tie_word_embeddings", text.get("tie_word_embeddings", False))),
            "tokenizer": any((path / f).is_file() for f in TOKENIZER_FILES)}


def _weight_headers(path: Path) -> tuple[int | None, str | None]:
    """Parameter count and dtype from the safetensors headers alone (the tensors are not read)."""
    from safetensors import safe_open

    files = sorted(path.glob("*.safetensors"))
    if not files:
        return None, None
    total, dtypes = 0, set()
    for file in files:
        with safe_open(str(file), framework="np") as handle:
            for name in handle.keys():
                view = handle.get_slice(name)
                total += math.prod(view.get_shape())
                dtypes.add(view.get_dtype())
    return total, "/".join(sorted(dtypes)).lower()


def _gguf_info(path: Path) -> dict[str, Any]:
    try:
        from gguf import GGUFReader
    except ImportError as exc:
        raise InputError("reading a .gguf file needs the gguf package: pip install 'edgekit[llm]'") from exc
    try:
        reader = GGUFReader(str(path))
    except Exception as exc:  # a truncated or foreign file: the reader raises several types
        raise InputError(f"{path} is not a readable GGUF file ({' '.join(str(exc).split())[:120]})") from exc
    fields = {name: _field_value(field) for name, field in reader.fields.items()}
    arch = fields.get("general.architecture", "?")
    heads = fields.get(f"{arch}.attention.head_count")
    hidden = fields.get(f"{arch}.embedding_length")
    tokens = reader.fields.get("tokenizer.ggml.tokens")
    names = {t.name for t in reader.tensors}
    return {"architecture": GGUF_ARCHITECTURES.get(arch, arch), "params": int(sum(int(t.n_elements) for t in reader.tensors)),
            "dtype": "/".join(sorted({t.tensor_type.name.lower() for t in reader.tensors})),
            "layers": fields.get(f"{arch}.block_count"), "hidden_size": hidden,
            "intermediate_size": fields.get(f"{arch}.feed_forward_length"), "heads": heads,
            "kv_heads": fields.get(f"{arch}.attention.head_count_kv") or heads,
            "head_dim": hidden // heads if hidden and heads else None,
            "vocab": len(tokens.data) if tokens is not None else None,
            "context": fields.get(f"{arch}.context_length"), "tied_embeddings": "output.weight" not in names,
            "tokenizer": tokens is not None}


GGUF_ARCHITECTURES = {"llama": "LlamaForCausalLM", "qwen2": "Qwen2ForCausalLM", "qwen3": "Qwen3ForCausalLM",
                      "phi3": "Phi3ForCausalLM", "gemma": "GemmaForCausalLM", "gemma2": "Gemma2ForCausalLM",
                      "mistral": "MistralForCausalLM"}


def _field_value(field):
    """A scalar or string GGUF metadata value (arrays are left as their field)."""
    if len(field.types) != 1 or not field.data:
        return None
    value = field.parts[field.data[0]]
    if field.types[0].name == "STRING":
        return bytes(value).decode("utf-8", errors="replace")
    return value.tolist()[0] if hasattr(value, "tolist") and len(value) == 1 else None
