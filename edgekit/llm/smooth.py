"""Activation outliers moved into the weights before 8-bit blocks (SmoothQuant): on the CPU, MatMulNBits
quantizes its input to int8 as it comes (blocks of 32 along the input), and a language model's inputs carry a
few channels far larger than the rest, which then set every scale of their block. Each such channel j is
divided by s_j = max|x_j|^alpha / max|W_j|^(1-alpha) where it is made (the RMSNorm's gain before the query,
key and value or the gate and up projections; the up projection's rows before the down projection) and
multiplied back into the next layers' input columns: the FP model computes the same function, the
activations are flatter, and the weights, held at 8 bits, take the spread at little cost.
"""

from __future__ import annotations

import numpy as np

ALPHA = 0.5


def smoothing_pairs(state: dict[str, np.ndarray], layers: int) -> list[tuple[str, str, list[str]]]:
    """(input the scale is divided out of, "gain" or "rows", the layers whose columns take it) per layer, for
    Llama-style names; a model that names its layers otherwise gets none."""
    pairs = []
    for i in range(layers):
        base = f"model.layers.{i}"
        candidates = [
            (f"{base}.input_layernorm.weight", "gain", [f"{base}.self_attn.{p}_proj.weight" for p in "qkv"]),
            (f"{base}.post_attention_layernorm.weight", "gain", [f"{base}.mlp.{p}_proj.weight" for p in ("gate", "up")]),
            (f"{base}.mlp.up_proj.weight", "rows", [f"{base}.mlp.down_proj.weight"]),
        ]
        pairs += [c for c in candidates if c[0] in state and all(n in state for n in c[2])]
    return pairs


def smooth(state: dict[str, np.ndarray], maxima: dict[str, np.ndarray], layers: int,
           alpha: float = ALPHA) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """(the tensors changed, the per-channel factor each consumer's input was divided by). `maxima` holds the
    largest |input| per channel of each consumer layer on calibration text."""
    changed: dict[str, np.ndarray] = {}
    factors: dict[str, np.ndarray] = {}
    for source, kind, consumers in smoothing_pairs(state, layers):
        if consumers[0] not in maxima:
            continue
        weights = [changed.get(n, state[n]).astype(np.float32) for n in consumers]
        weight_max = np.max([np.abs(w).max(axis=0) for w in weights], axis=0)
        s = np.power(np.maximum(maxima[consumers[0]], 1e-5), alpha) / np.power(np.maximum(weight_max, 1e-5), 1 - alpha)
        s = np.clip(s, 1e-2, 1e2).astype(np.float32)
        held = changed.get(source, state[source]).astype(np.float32)
        changed[source] = held / s if kind == "gain" else held / s[:, None]
        for name, weight in zip(consumers, weights):
            changed[name] = weight * s[None, :]
            factors[name] = s
    return changed, factors
