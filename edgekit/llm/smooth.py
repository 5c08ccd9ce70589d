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
FINAL_NORM = "model.norm.weight"
# Norms whose gain is not a plain multiplier, or that sit elsewhere: Gemma scales by (1 + w), and Gemma 2/3 put a
# "post_attention_layernorm" on the attention's output, not before the MLP. Dividing their weights by s would
# change what the model computes, so their activations are left as they are.
UNSMOOTHED_FAMILIES = ("gemma",)


def can_smooth(model_type: str) -> bool:
    return not str(model_type).startswith(UNSMOOTHED_FAMILIES)


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


def _factors(input_max: np.ndarray, weight_max: np.ndarray, alpha: float) -> np.ndarray:
    s = np.power(np.maximum(input_max, 1e-5), alpha) / np.power(np.maximum(weight_max, 1e-5), 1 - alpha)
    return np.clip(s, 1e-2, 1e2).astype(np.float32)


def smooth_head(state: dict[str, np.ndarray], head: np.ndarray, head_input_max: np.ndarray,
                alpha: float = ALPHA) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(the final norm's new gain, the head's new weight, s) for an output head of its own: the final norm's
    outlier channels moved into the head's columns as for the decoder layers. The head's input is the largest
    single share of an 8-bit model's error when its int8 rounding is left alone (SmolLM2-135M, in a side run
    simulating the kernels' rounding: 0.0010 of a KL of 0.0027), and a head tied to the embedding cannot take the
    factors (the lookup would change too)."""
    s = _factors(head_input_max, np.abs(head).max(axis=0), alpha)
    return state[FINAL_NORM].astype(np.float32) / s, head * s[None, :], s


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
        s = _factors(maxima[consumers[0]], weight_max, alpha)
        held = changed.get(source, state[source]).astype(np.float32)
        changed[source] = held / s if kind == "gain" else held / s[:, None]
        for name, weight in zip(consumers, weights):
            changed[name] = weight * s[None, :]
            factors[name] = s
    return changed, factors
