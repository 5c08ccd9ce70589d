"""An orthogonal change of basis before 8-bit blocks: on the CPU, MatMulNBits rounds each of its inputs' blocks of
32 to int8 on a scale set by the block's largest value, and a language model's residual stream carries a few
channels far larger than the rest at some tokens, which smoothing (a per-channel factor fixed for all tokens)
cannot follow. A Hadamard transform within each block of 32 (random signs first) spreads such a value over the
32 that share its scale, so the block's other values are rounded on a finer step.

The transform is folded into the weights, so the graph is the same graph and the FP model computes the same
function: the RMSNorm gains move into the layers that read the normalized stream (a norm without gain commutes
with an orthogonal Q); the stream x becomes xQ: the embedding's rows and the outputs of every layer that writes
the stream are multiplied by Q (W <- Q^T W), every layer that reads it takes W <- W Q; each attention head's
values and the output projection's matching columns take a Hadamard transform of the head's width. The head
is untied from the embedding (its final-norm gain differs).
On SmolLM2-135M (16 held-out blocks, the kernel's rounding simulated, smoothing and GPTQ after it) the INT8
model's KL to FP went from 0.00178 to 0.00127; a random orthogonal Q over the whole width did worse with
smoothing (0.00164 on 8 blocks), as a token's large channel then widens every block's scale.
"""

from __future__ import annotations

import copy
import re
from pathlib import Path

import numpy as np

from edgekit.llm.blockwise import BLOCK  # MatMulNBits' blocks, along the input its int8 rounding works in

SEED = 0
ROTATED_FAMILIES = ("llama", "mistral", "qwen2", "qwen3")
_KNOWN = re.compile(r"model\.(embed_tokens\.weight|norm\.weight|layers\.\d+\.(input_layernorm\.weight|"
                    r"post_attention_layernorm\.weight|self_attn\.[qk]_norm\.weight|"
                    r"self_attn\.[qkvo]_proj\.(weight|bias)|mlp\.(gate|up|down)_proj\.(weight|bias)))|lm_head\.weight")


def hadamard(size: int):
    """The orthonormal Sylvester Hadamard matrix of `size` (a power of two), float64."""
    import torch

    if size < 1 or size & (size - 1):
        raise ValueError(f"a Sylvester Hadamard matrix needs a power of two, not {size}")
    h = torch.ones(1, 1, dtype=torch.float64)
    while h.shape[0] < size:
        h = torch.cat([torch.cat([h, h], 1), torch.cat([h, -h], 1)], 0)
    return h / size ** 0.5


def block_rotation(width: int, seed: int = SEED):
    """Q [width, width]: random signs on the channels, then a Hadamard transform within each block of 32."""
    import torch

    signs = np.random.default_rng(seed).choice([-1.0, 1.0], width)
    return torch.from_numpy(signs)[:, None] * torch.block_diag(*[hadamard(BLOCK)] * (width // BLOCK))


def why_not_rotated(model) -> str | None:
    """Why this model is left in its basis (None: it can be rotated). Only the families whose every tensor
    rule here knows: any other tensor might read or write the residual stream and would then compute
    something else."""
    config = model.config
    family = str(getattr(config, "model_type", ""))
    if family not in ROTATED_FAMILIES:
        return f"{family or 'this'} architecture (rotated: {', '.join(ROTATED_FAMILIES)})"
    if config.hidden_size % BLOCK:
        return f"hidden size {config.hidden_size} is not a multiple of {BLOCK}"
    unknown = [n for n, _ in model.named_parameters() if not _KNOWN.fullmatch(n)]
    return f"tensor {unknown[0]} has no rotation rule" if unknown else None


def _head_width(config) -> int:
    return getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads


def _rotate_heads(attention, head) -> None:
    """Each value head's outputs by `head`, and the output projection's columns of each head to match (the
    attention weights mix whole value vectors, so they commute with it)."""
    import torch

    v, o, size = attention.v_proj, attention.o_proj, head.shape[0]
    values = v.weight.double().reshape(-1, size, v.weight.shape[1])
    v.weight.copy_(torch.einsum("ji,hjd->hid", head, values).reshape(v.weight.shape))
    if v.bias is not None:
        v.bias.copy_((v.bias.double().reshape(-1, size) @ head).reshape(-1))
    columns = o.weight.double().reshape(o.weight.shape[0], -1, size)
    o.weight.copy_(torch.einsum("ohj,jk->ohk", columns, head).reshape(o.weight.shape))


def rotate(model, seed: int = SEED):
    """`model` (a causal LM that why_not_rotated accepts) with its residual stream in the basis block_rotation
    gives, in place; its head untied. Returns the model."""
    import torch

    config, q = model.config, block_rotation(model.config.hidden_size, seed)
    head_width = _head_width(config)
    heads = hadamard(head_width) if head_width & (head_width - 1) == 0 else None
    inner = model.model
    with torch.no_grad():
        head = model.lm_head.weight.double() * inner.norm.weight.double()[None]
        model.lm_head.weight = torch.nn.Parameter((head @ q).float())
        inner.embed_tokens.weight = torch.nn.Parameter((inner.embed_tokens.weight.double() @ q).float())
        config.tie_word_embeddings = False
        inner.norm.weight.fill_(1)
        for layer in inner.layers:
            attention, mlp = layer.self_attn, layer.mlp
            for norm, readers in ((layer.input_layernorm, (attention.q_proj, attention.k_proj, attention.v_proj)),
                                  (layer.post_attention_layernorm, (mlp.gate_proj, mlp.up_proj))):
                for linear in readers:
                    linear.weight.copy_((linear.weight.double() * norm.weight.double()[None]) @ q)
                norm.weight.fill_(1)
            for writer in (attention.o_proj, mlp.down_proj):
                writer.weight.copy_(q.T @ writer.weight.double())
                if writer.bias is not None:
                    writer.bias.copy_(writer.bias.double() @ q)
            if heads is not None:
                _rotate_heads(attention, heads)
    return model


def rotated_copy(model_dir: Path, model, out: Path):
    """(folder, model): a rotated copy of `model` saved as a transformers folder at `out` with `model_dir`'s
    tokenizer. The caller's model is left as it is (it stays the reference the graphs are measured against)."""
    from edgekit.llm.folder import save_model

    rotated = rotate(copy.deepcopy(model))
    return save_model(rotated, model_dir, out), rotated
