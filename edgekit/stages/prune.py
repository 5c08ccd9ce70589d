"""L1 structured channel pruning: channels physically removed, coupled groups kept consistent.

Torch-Pruning's dependency graph decides which channels must go together
(residual adds, BN, depthwise/grouped convs, concat); we choose the ratio,
importance and rounding, and store the result as a replayable JSON plan.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..artifact import Artifact
from ..errors import InputError, StageError
from ..fsutil import write_json
from ..metrics import count_params
from ..torch_artifact import PLAN, example_inputs, materialize, save_weights
from .fidelity import torch_fidelity


@dataclass
class PruneStage:
    ratio: float
    round_to: int = 8
    protect: list[str] = field(default_factory=list)
    name: str = "prune"
    accepts: tuple[str, ...] = ("torch",)

    def __post_init__(self) -> None:
        if not 0.0 <= self.ratio < 1.0:
            raise InputError(f"--prune {self.ratio} is outside [0, 1); give a fraction of channels such as 0.5")

    def settings(self) -> dict[str, Any]:
        return {"ratio": self.ratio, "importance": "l1", "round_to": self.round_to, "protect": self.protect}

    def run(self, ctx, artifact: Artifact, out: Path) -> tuple[Artifact, dict[str, Any]]:
        example = example_inputs(ctx.splits, artifact.input_names)
        model = materialize(artifact, example)
        before = count_params(model)
        history = prune_l1(model, example, self.ratio, self.round_to, self.protect)
        recalibrate_batchnorm(model, ctx.splits.train, artifact.input_names)
        write_json(out / PLAN, {"ratio": self.ratio, "importance": "l1", "round_to": self.round_to,
                                "history": history, "channels": channel_counts(model)})
        files = {"plan": PLAN, "weights": save_weights(model, out)}
        after = count_params(model)
        return artifact.derive(out, "torch", files), {
            "params_before": before, "params_after": after, "params_ratio": after / max(before, 1),
            **torch_fidelity(model, ctx, artifact.input_names)}


def prune_l1(model: nn.Module, example: tuple[torch.Tensor, ...], ratio: float, round_to: int,
             protect: list[str]) -> list:
    """Prune in place and return the history (layer name, out-channel?, indices)."""
    import torch_pruning as tp

    ignored = [m for m in _classifier_layers(model)]
    modules = dict(model.named_modules())
    for name in protect:
        if name not in modules:
            raise InputError(f"--protect {name}: no such layer; see `edgekit inspect` for layer names")
        ignored.append(modules[name])
    pruner = tp.pruner.MetaPruner(
        model, list(example), importance=tp.importance.GroupMagnitudeImportance(p=1),
        pruning_ratio=ratio, ignored_layers=ignored, round_to=round_to if round_to > 1 else None,
    )
    try:
        pruner.step()
    except Exception as exc:  # the graph tracer raises many types on unsupported models
        raise StageError(f"pruning failed on this model ({exc}); try --prune 0 or --protect the layer named") from exc
    with torch.no_grad():
        model(*example)
    return [[name, bool(out), [int(i) for i in idx]] for name, out, idx in pruner.pruning_history()]


def recalibrate_batchnorm(model: nn.Module, samples, input_names: list[str], limit: int = 2048) -> None:
    """Re-estimate BatchNorm statistics after channels were removed.

    The surviving channels' inputs changed, so the stored running means and
    variances no longer describe them; a no-grad pass over training data fixes
    that at almost no cost.
    """
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not bns:
        return
    for bn in bns:
        bn.reset_running_stats()
        bn.momentum = None  # cumulative average over the pass
    model.train()
    seen = 0
    with torch.no_grad():
        for inputs, _ in samples.batches(128):
            model(*(torch.from_numpy(inputs[n]) for n in input_names))
            seen += len(next(iter(inputs.values())))
            if seen >= limit:
                break
    for bn in bns:
        bn.momentum = 0.1
    model.eval()


def _classifier_layers(model: nn.Module) -> list[nn.Module]:
    """The last Linear/Conv produces class scores: its outputs are never pruned."""
    layers = [m for m in model.modules() if isinstance(m, (nn.Linear, nn.Conv2d))]
    return layers[-1:]


def channel_counts(model: nn.Module) -> dict[str, list[int]]:
    counts = {}
    for name, m in model.named_modules():
        if isinstance(m, nn.Conv2d):
            counts[name] = [m.in_channels, m.out_channels]
        elif isinstance(m, nn.Linear):
            counts[name] = [m.in_features, m.out_features]
    return counts


def plan_summary(plan_path: Path) -> dict:
    return json.loads(Path(plan_path).read_text())["channels"]
