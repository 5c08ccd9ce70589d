"""A causal LM as a GGUF file (llama.cpp's format) with edgekit's own weight blocks: Q4_0 or Q8_0 decoder linears,
the embedding and the output head in Q8_0, norms in float.

Both formats are blocks of 32 along the input with one float16 scale and a symmetric grid: Q4_0 holds
(q - 8) * d with q in 0..15, Q8_0 holds int8 * d. edgekit's blocks (blockwise.py) are on the same grids, so
its integers (GPTQ's included) are written as they are; only the scale is rounded to float16. The package
`gguf` writes the container; the block bytes are laid out here (its quantizer would round the float weights
again, and GPTQ's integers would be lost).

Tensor names and the rotary row order follow llama.cpp's converter: a Llama model's query and key rows are
interleaved per head, which readers undo.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from edgekit.errors import InputError
from edgekit.llm.blockwise import BLOCK, EMBED, HEAD, BlockWeight, head_weight, round_to_nearest

ARCHITECTURES = {"LlamaForCausalLM": "llama", "MistralForCausalLM": "llama", "Qwen2ForCausalLM": "qwen2"}
PARTS = {"self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k", "self_attn.v_proj": "attn_v",
         "self_attn.o_proj": "attn_output", "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up",
         "mlp.down_proj": "ffn_down", "input_layernorm": "attn_norm", "post_attention_layernorm": "ffn_norm"}


def gguf_kind(bits: int) -> str:
    """The GGUF block type that holds `bits`-bit decoder linears."""
    return {4: "Q4_0", 8: "Q8_0"}[bits]


def _tensor_name(name: str) -> str | None:
    if name == "model.embed_tokens.weight":
        return "token_embd.weight"
    if name == "model.norm.weight":
        return "output_norm.weight"
    if name == HEAD:
        return "output.weight"
    parts = name.split(".")
    if parts[:2] == ["model", "layers"] and ".".join(parts[3:-1]) in PARTS:
        return f"blk.{parts[2]}.{PARTS['.'.join(parts[3:-1])]}.{parts[-1]}"
    return None


def block_bytes(weight: BlockWeight) -> np.ndarray:
    """[out, blocks * bytes per block] of Q4_0 (bits 4) or Q8_0 (bits 8) blocks holding `weight`'s integers."""
    import gguf

    if weight.block != BLOCK:
        raise ValueError(f"GGUF's Q4_0 and Q8_0 blocks are {BLOCK} weights, not {weight.block}")
    out, inputs = weight.q.shape
    levels = weight.q.reshape(out, -1, BLOCK).astype(np.int16) - weight.zeros[..., None]
    scales = weight.scales.astype(np.float16).view(np.uint8).reshape(out, -1, 2)
    if weight.bits == 8:
        body = levels.astype(np.int8).view(np.uint8)
        kind = gguf.GGMLQuantizationType.Q8_0
    else:
        q = (levels + 8).astype(np.uint8)
        body = q[..., :BLOCK // 2] | (q[..., BLOCK // 2:] << 4)
        kind = gguf.GGMLQuantizationType.Q4_0
    blocks = np.concatenate([scales, body], axis=-1)
    assert blocks.shape[-1] == gguf.GGML_QUANT_SIZES[kind][1]
    return blocks.reshape(out, -1)


def _rotary_rows(rows: np.ndarray, heads: int) -> np.ndarray:
    """llama.cpp's query/key row order: within each head, the two rotary halves interleaved."""
    return rows.reshape(heads, 2, rows.shape[0] // heads // 2, *rows.shape[1:]).swapaxes(1, 2).reshape(rows.shape)


def _permuted(weight: BlockWeight, heads: int) -> BlockWeight:
    return BlockWeight(_rotary_rows(weight.q, heads), _rotary_rows(weight.scales, heads),
                       _rotary_rows(weight.zeros, heads), weight.bits)


def write_gguf(model_dir: str | Path, out: str | Path, quantized: dict[str, BlockWeight],
               floats: dict[str, np.ndarray] | None = None) -> Path:
    """`out`.gguf from the model folder, its named weights in their blocks (bits 4 -> Q4_0, 8 -> Q8_0), the
    embedding and head in Q8_0 (rounded to nearest where not given), everything else float32 (`floats` in
    place of the folder's where given: tensors rescaled by smoothing)."""
    import gguf

    from edgekit.llm.blockwise import load_state

    model_dir, out = Path(model_dir), Path(out)
    config = json.loads((model_dir / "config.json").read_text())
    arch = ARCHITECTURES.get((config.get("architectures") or ["?"])[0])
    if arch is None:
        raise InputError(f"{model_dir}: GGUF is written for {', '.join(ARCHITECTURES)} models here; "
                         f"not {(config.get('architectures') or ['?'])[0]}")
    state = {**load_state(model_dir), **(floats or {})}
    heads, kv_heads = config["num_attention_heads"], config.get("num_key_value_heads", config["num_attention_heads"])
    tmp = out.with_name(f".{out.name}.writing")
    writer = gguf.GGUFWriter(str(tmp), arch)
    _metadata(writer, config, model_dir)
    bits = {w.bits for n, w in quantized.items() if n not in (HEAD, EMBED)}
    writer.add_file_type(gguf.LlamaFileType.MOSTLY_Q4_0 if bits == {4} else gguf.LlamaFileType.MOSTLY_Q8_0)
    wanted = dict(quantized)
    wanted.setdefault(EMBED, round_to_nearest(state[EMBED], 8))
    if HEAD in state or EMBED in quantized:  # a head of its own, or untied from the embedding by edgekit
        wanted[HEAD] = _head_at_8_bits(state, wanted.get(HEAD))
    else:
        wanted.pop(HEAD, None)  # tied: llama.cpp reads the head from the embedding
    for name in sorted(set(state) | set(wanted)):
        target = _tensor_name(name)
        if target is None:
            continue
        if name in wanted:
            weight = wanted[name]
            if arch == "llama" and name.endswith(("q_proj.weight", "k_proj.weight")):
                weight = _permuted(weight, heads if "q_proj" in name else kv_heads)
            kind = gguf.GGMLQuantizationType.Q8_0 if weight.bits == 8 else gguf.GGMLQuantizationType.Q4_0
            writer.add_tensor(target, block_bytes(weight), raw_dtype=kind)
        else:
            value = state[name].astype(np.float32)
            if arch == "llama" and name.endswith(("q_proj.bias", "k_proj.bias")):
                value = _rotary_rows(value, heads if "q_proj" in name else kv_heads)
            writer.add_tensor(target, value)
    try:
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
    finally:
        writer.close()
    tmp.rename(out)
    return out


def _head_at_8_bits(state: dict, given: BlockWeight | None) -> BlockWeight:
    """The head as Q8_0: `given` where it is 8-bit blocks of 32, else rounded afresh (Q8_0's blocks are 32)."""
    if given is not None and given.bits == 8 and given.block == BLOCK:
        return given
    return round_to_nearest(head_weight(state).astype(np.float32), 8)


def _metadata(writer, config: dict, model_dir: Path) -> None:
    heads = config["num_attention_heads"]
    head_dim = config.get("head_dim") or config["hidden_size"] // heads
    writer.add_name(model_dir.name)
    writer.add_context_length(config.get("max_position_embeddings", 2048))
    writer.add_embedding_length(config["hidden_size"])
    writer.add_block_count(config["num_hidden_layers"])
    writer.add_feed_forward_length(config["intermediate_size"])
    writer.add_head_count(heads)
    writer.add_head_count_kv(config.get("num_key_value_heads", heads))
    writer.add_rope_dimension_count(head_dim)
    writer.add_rope_freq_base(float(config.get("rope_theta", 10000.0)))
    writer.add_layer_norm_rms_eps(float(config.get("rms_norm_eps", 1e-6)))
    writer.add_vocab_size(config["vocab_size"])
    _tokenizer(writer, model_dir, config["vocab_size"])


def _tokenizer(writer, model_dir: Path, vocab_size: int) -> None:
    """A byte-level BPE tokenizer (tokenizer.json) as llama.cpp's "gpt2" model: tokens by id, merges, types."""
    file = model_dir / "tokenizer.json"
    spec = json.loads(file.read_text()) if file.is_file() else {}
    model = spec.get("model", {})
    if model.get("type") != "BPE":
        raise InputError(f"{model_dir}: GGUF is written for byte-level BPE tokenizers (tokenizer.json) here; "
                         "this model's tokenizer is not one")
    tokens = {i: t for t, i in model["vocab"].items()}
    special = set()
    for added in spec.get("added_tokens", []):
        tokens[added["id"]] = added["content"]
        if added.get("special"):
            special.add(added["id"])
    listed = [tokens.get(i, f"[PAD{i}]") for i in range(vocab_size)]
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("default")
    writer.add_token_list(listed)
    writer.add_token_types([3 if i in special else 1 if i in tokens else 5 for i in range(vocab_size)])
    writer.add_token_merges([m if isinstance(m, str) else " ".join(m) for m in model.get("merges", [])])
    settings = json.loads((model_dir / "tokenizer_config.json").read_text()) if (
        model_dir / "tokenizer_config.json").is_file() else {}
    ids = {t: i for i, t in tokens.items()}
    for key, add in (("bos_token", writer.add_bos_token_id), ("eos_token", writer.add_eos_token_id),
                     ("unk_token", writer.add_unk_token_id), ("pad_token", writer.add_pad_token_id)):
        token = settings.get(key)
        token = token.get("content") if isinstance(token, dict) else token
        if token in ids:
            add(ids[token])
    if settings.get("chat_template"):
        writer.add_chat_template(settings["chat_template"])
