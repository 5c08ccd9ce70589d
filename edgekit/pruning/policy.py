"""Which layers may lose channels, and how many: protection, floors and per-layer caps."""

from __future__ import annotations

from torch import nn

from edgekit.errors import InputError
from edgekit.pruning.attention import head_counts, residual_stream_layers

PRUNABLE = (nn.Conv2d, nn.Conv1d, nn.Linear)


def default_protected(model: nn.Module) -> list[str]:
    """The stem convolution (first layer, when it is a conv) and the last layer (class scores).

    In transformers the first Linear is an attention projection, not a stem:
    there the embeddings are kept by the residual-stream rule instead.
    """
    layers = [(n, m) for n, m in model.named_modules() if isinstance(m, PRUNABLE)]
    if not layers:
        return []
    keep = {layers[-1][0]}
    if isinstance(layers[0][1], (nn.Conv2d, nn.Conv1d)):
        keep.add(layers[0][0])
    return sorted(keep)


def ignored_layers(model: nn.Module, protect: list[str]) -> list[nn.Module]:
    modules = dict(model.named_modules())
    unknown = [n for n in protect if n not in modules]
    if unknown:
        raise InputError(f"--protect {unknown[0]}: no such layer; see `edgekit inspect` for layer names")
    return [modules[n] for n in protect] + residual_stream_layers(model)


def ratio_caps(model: nn.Module, ratio: float, min_channels: int, max_layer_ratio: float) -> dict[nn.Module, float]:
    """Per-layer ratios where the floor binds: no layer keeps fewer than `min_channels`."""
    caps = {}
    heads = head_counts(model)
    for module in model.modules():
        if not isinstance(module, PRUNABLE) or module in heads:
            continue
        width = module.out_channels if isinstance(module, (nn.Conv2d, nn.Conv1d)) else module.out_features
        limit = min(max_layer_ratio, max(0.0, 1.0 - min_channels / max(width, 1)))
        if limit < ratio:
            caps[module] = limit
    return caps


def named_ratios(model: nn.Module, ratios: dict[str, float]) -> dict[nn.Module, float]:
    """Per-layer ratios given by layer name (a scan's proposal) as the pruner wants them."""
    modules = dict(model.named_modules())
    unknown = [n for n in ratios if n not in modules]
    if unknown:
        raise InputError(f"layer ratio for {unknown[0]}: no such layer; see `edgekit inspect` for layer names")
    bad = [n for n, r in ratios.items() if not 0.0 <= r < 1.0]
    if bad:
        raise InputError(f"layer ratio {ratios[bad[0]]} for {bad[0]} is outside [0, 1)")
    return {modules[n]: float(r) for n, r in ratios.items()}
