"""Depth pruning of a causal LM: whole decoder layers dropped, the rest renumbered, so the pruned model is the
same class with fewer layers (the exporters take it as it is).

Importance is measured on calibration text: a layer's cost is the mean token KL from the full model's
next-token distribution to the model's without it. Layers go one at a time, greedily, each time the one whose
removal costs least given those already gone (a layer's worth changes once its neighbours are gone; a single
ranking from the full model misses that). Each later round weighs only a shortlist, the layers the full model
missed least: a layer it misses much does not become cheap once others go, and scoring every layer every
round costs a forward pass per layer per round (for a quarter of a 30-layer 135M model, about 255 passes of
2.5 s each on two cores, against about 120 with the shortlist).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from edgekit.errors import InputError
from edgekit.llm.prune.shape import check_ratio, copy_config, count_params, per_layer, shape

SCORE_BLOCKS = 4  # calibration blocks each candidate removal is scored on
SHORTLIST_SPARE = 4  # layers weighed in the later rounds beyond those still to drop


@dataclass
class DepthPlan:
    """Which decoder layers stay, and the measured KL after each removal in the order they went."""

    layers: np.ndarray  # kept layer indices, sorted
    dropped: list[int]  # removed layer indices, in the order chosen
    kl_after: list[float]  # KL to the full model once each of those had gone
    params_before: int
    params_after: int

    def config(self, old):
        new = copy_config(old)
        new.num_hidden_layers = len(self.layers)
        types = getattr(old, "layer_types", None)  # per-layer attention kinds (sliding or full) follow their layer
        if isinstance(types, list) and len(types) == old.num_hidden_layers:
            new.layer_types = [types[i] for i in self.layers]
        if isinstance(getattr(old, "max_window_layers", None), int):
            new.max_window_layers = min(old.max_window_layers, len(self.layers))
        return new

    def state(self, state: dict[str, np.ndarray], old) -> dict[str, np.ndarray]:
        number = {int(old_i): new_i for new_i, old_i in enumerate(self.layers)}
        kept = {}
        for name, value in state.items():
            if name.startswith("model.layers."):
                index, rest = name.removeprefix("model.layers.").split(".", 1)
                if int(index) not in number:
                    continue
                name = f"model.layers.{number[int(index)]}.{rest}"
            kept[name] = value
        return kept

    def describe(self) -> dict:
        return {"axis": "depth", "layers_kept": len(self.layers), "layers_dropped": sorted(self.dropped),
                "kl_after_each_drop": [round(v, 5) for v in self.kl_after],
                "kept": f"{len(self.layers)} of {len(self.layers) + len(self.dropped)} layers"}


def layers_to_drop(config, ratio: float, tied: bool) -> int:
    """How many whole layers remove the share nearest `ratio` (at least one; one layer always stays)."""
    check_ratio(ratio)
    layers = shape(config)["layers"]
    count = int(round(count_params(config, tied) * ratio / per_layer(config)))
    most = (layers - 1) * per_layer(config) / count_params(config, tied)
    if layers < 2 or count > layers - 1:
        raise InputError(f"--prune {ratio} --prune-axis depth: at most {most:.2f} of this model's parameters "
                         f"can go ({layers} layers, one stays; the embeddings stay); give a smaller share")
    return max(1, count)


def plan(model, calib: np.ndarray, ratio: float, tied: bool) -> DepthPlan:
    """Drop, one at a time, the layer whose removal moves the next-token distribution least."""
    count = layers_to_drop(model.config, ratio, tied)
    ids = torch.from_numpy(np.asarray(calib[:SCORE_BLOCKS], np.int64))
    with torch.no_grad():
        reference = torch.log_softmax(model(ids).logits.float(), -1)
    layers = model.model.layers
    dropped: list[int] = []
    kl_after: list[float] = []
    candidates = list(range(len(layers)))
    for round_ in range(count):
        costs = {i: _kl_without(model, layers, ids, reference, dropped + [i]) for i in candidates if i not in dropped}
        if round_ == 0:
            candidates = sorted(costs, key=costs.get)[:count + SHORTLIST_SPARE]
        best = min(costs, key=costs.get)
        dropped.append(best)
        kl_after.append(costs[best])
    kept = np.array([i for i in range(len(layers)) if i not in dropped])
    before = count_params(model.config, tied)
    return DepthPlan(kept, dropped, kl_after, before, before - count * per_layer(model.config))


def _kl_without(model, layers, ids, reference, skipped: list[int]) -> float:
    """Mean token KL(full ‖ model with `skipped` layers passed straight through)."""
    originals = {i: layers[i] for i in skipped}
    try:
        for i in skipped:
            layers[i] = _PassThrough()
        with torch.no_grad():
            log_q = torch.log_softmax(model(ids).logits.float(), -1)
    finally:
        for i, layer in originals.items():
            layers[i] = layer
    return float((reference.exp() * (reference - log_q)).sum(-1).mean())


class _PassThrough(torch.nn.Module):
    """A decoder layer that returns its input: the residual stream as if the layer were not there."""

    def forward(self, hidden_states, *args, **kwargs):
        return hidden_states
