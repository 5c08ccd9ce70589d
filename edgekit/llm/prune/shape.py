"""A causal LM's widths as pruning sees them, and the parameters they add up to (the embeddings included)."""

from __future__ import annotations

from edgekit.errors import InputError

MULTIPLE = 32  # a kept width stays a multiple of the weight-block size
MIN_KEEP = 0.25  # at most three quarters of a width goes


def shape(config) -> dict[str, int]:
    heads = config.num_attention_heads
    kv = getattr(config, "num_key_value_heads", None) or heads
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // heads
    return {"hidden": config.hidden_size, "heads": heads, "kv": kv, "head_dim": head_dim,
            "per_group": heads // kv, "layers": config.num_hidden_layers, "intermediate": config.intermediate_size}


def per_layer(config) -> int:
    """Parameters in one decoder layer: attention, MLP and its two norms."""
    s = shape(config)
    return s["hidden"] * s["head_dim"] * (2 * s["heads"] + 2 * s["kv"]) + 3 * s["hidden"] * s["intermediate"] + 2 * s["hidden"]


def count_params(config, tied: bool) -> int:
    s = shape(config)
    embeddings = config.vocab_size * s["hidden"] * (1 if tied else 2)
    return s["layers"] * per_layer(config) + embeddings + s["hidden"]


def floor_width(width: int) -> int:
    """The narrowest a width may become: a quarter of it, in whole weight blocks."""
    return max(MULTIPLE, int(width * MIN_KEEP) // MULTIPLE * MULTIPLE)


def copy_config(config):
    return config.__class__.from_dict(config.to_dict())


def check_ratio(ratio: float) -> None:
    if not 0 < ratio < 0.9:
        raise InputError(f"--prune {ratio}: give a share of the parameters between 0 and 0.9")
