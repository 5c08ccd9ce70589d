"""Whole-head pruning for transformer attention, with the module attributes kept consistent.

Removing channels from q/k/v at random would merge heads silently (the
forward reshapes by head size); pruning whole heads keeps each head intact.
The residual stream (hidden size) is left alone: its width is read from the
config by embeddings, LayerNorms and attention masks across the model.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn


@dataclass(frozen=True)
class AttentionKind:
    heads: str
    q: str
    k: str
    v: str
    head_size: str | None
    width: str | None


# Attribute names used by transformers' attention modules: BERT-style, the newer q_proj style
# (ViT, Llama-like), and DistilBERT.
KINDS = (
    AttentionKind("num_attention_heads", "query", "key", "value", "attention_head_size", "all_head_size"),
    AttentionKind("num_attention_heads", "q_proj", "k_proj", "v_proj", "head_dim", None),
    AttentionKind("num_heads", "q_proj", "k_proj", "v_proj", "head_dim", None),
    AttentionKind("n_heads", "q_lin", "k_lin", "v_lin", None, "dim"),
)


def attention_modules(model: nn.Module) -> list[tuple[nn.Module, AttentionKind]]:
    found = []
    for module in model.modules():
        for kind in KINDS:
            if hasattr(module, kind.heads) and all(isinstance(getattr(module, n, None), nn.Linear)
                                                  for n in (kind.q, kind.k, kind.v)):
                found.append((module, kind))
                break
    return found


def head_counts(model: nn.Module) -> dict[nn.Module, int]:
    """The `num_heads` map Torch-Pruning needs: q, k and v layers -> heads."""
    counts = {}
    for module, kind in attention_modules(model):
        for name in (kind.q, kind.k, kind.v):
            counts[getattr(module, name)] = int(getattr(module, kind.heads))
    return counts


def residual_stream_layers(model: nn.Module) -> list[nn.Module]:
    """Layers whose outputs feed the residual stream of a transformer: never pruned on output."""
    config = getattr(model, "config", None) or getattr(getattr(model, "model", None), "config", None)
    hidden = getattr(config, "hidden_size", None) or getattr(config, "dim", None)
    if not attention_modules(model) or hidden is None:
        return []
    qkv = set(head_counts(model))
    return [m for m in model.modules()
            if isinstance(m, (nn.Linear, nn.Conv2d, nn.Embedding)) and m not in qkv
            and _out_width(m) == hidden]


def _out_width(module: nn.Module) -> int:
    if isinstance(module, nn.Linear):
        return module.out_features
    if isinstance(module, nn.Embedding):
        return module.embedding_dim
    return module.out_channels


def sync_attention_attributes(model: nn.Module) -> dict[str, int]:
    """After pruning, make head counts and widths match the layers; returns heads per module."""
    names = {m: n for n, m in model.named_modules()}
    heads = {}
    for module, kind in attention_modules(model):
        q = getattr(module, kind.q)
        head_size = (getattr(module, kind.head_size) if kind.head_size
                     else getattr(module, kind.width) // getattr(module, kind.heads))
        count = q.out_features // head_size
        setattr(module, kind.heads, count)
        if kind.width:
            setattr(module, kind.width, q.out_features)
        heads[names[module]] = count
    return heads
