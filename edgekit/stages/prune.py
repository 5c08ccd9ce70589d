"""The prune stage: rebuild the student, prune it (once, iteratively, or by budget search), save the plan."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from edgekit.artifact import Artifact
from edgekit.errors import InputError
from edgekit.files import write_json
from edgekit.measure.fidelity import torch_fidelity
from edgekit.measure.metrics import count_params
from edgekit.pruning.prune import prune_model, recalibrate_batchnorm
from edgekit.pruning.search import budget_search, prune_iteratively
from edgekit.settings import PruneSettings
from edgekit.stages._torch import PLAN, example_inputs, materialize, require_training_split, save_weights


@dataclass
class PruneStage:
    prune: PruneSettings
    name: str = "prune"
    accepts: tuple[str, ...] = ("torch",)

    def settings(self) -> dict[str, Any]:
        return self.prune.plan_record()

    def check(self, ctx, artifact: Artifact) -> None:
        if artifact.format == "onnx":
            raise InputError(f"{artifact.source_spec} is ONNX: pruning and QAD need a PyTorch model; "
                             "use --prune 0 with --quant static or dynamic")
        require_training_split(ctx, "pruning")

    def run(self, ctx, artifact: Artifact, out: Path) -> tuple[Artifact, dict[str, Any]]:
        example = example_inputs(ctx.splits, artifact.input_names)
        model = materialize(artifact, example)
        before = count_params(model)
        names = artifact.input_names
        search = None
        settings = self.prune
        if settings.budget is not None:
            model, plan, search = budget_search(model, example, settings, ctx, names, settings.finetune_epochs)
        elif settings.steps > 1:
            plan = prune_iteratively(model, example, settings, ctx, names, settings.steps, settings.finetune_epochs)
        else:
            model, plan = self._prune_once(ctx, artifact, model, example, settings)
            recalibrate_batchnorm(model, ctx.splits.train, names)
        write_json(out / PLAN, plan)
        files = {"plan": PLAN, "weights": save_weights(model, out)}
        after = count_params(model)
        metrics = {"params_before": before, "params_after": after, "params_ratio": after / max(before, 1),
                   **torch_fidelity(model, ctx, names)}
        if search is not None:
            write_json(out / "search.json", search)
            files["search"] = "search.json"
            metrics["search_verdict"] = search["verdict"]
        return artifact.derive(out, "torch", files), metrics


    def _prune_once(self, ctx, artifact: Artifact, model, example, settings: PruneSettings):
        """(pruned model, plan). Where the pruned model does not run because its code fixes the width after a
        convolution (a flatten into a classifier), that convolution is kept whole and the model pruned again."""
        from edgekit.progress import console
        from edgekit.pruning.policy import default_protected
        from edgekit.pruning.prune import FixedWidthError

        names = artifact.input_names
        batches = _gradient_batches(ctx, names) if settings.importance == "taylor" else None
        try:
            return model, prune_model(model, example, settings, batches=batches, teacher=ctx.teacher)
        except FixedWidthError as exc:
            if not exc.protect:
                raise
            model = materialize(artifact, example)
            protect = [*(settings.protect if settings.protect is not None else default_protected(model)), *exc.protect]
            console.log(f"pruning keeps {', '.join(exc.protect)} whole: the model's code fixes the width after it")
            settings = settings.model_copy(update={"protect": protect})
            batches = _gradient_batches(ctx, names) if settings.importance == "taylor" else None
            return model, prune_model(model, example, settings, batches=batches, teacher=ctx.teacher)


def _gradient_batches(ctx, names: list[str]):
    labels_ok = ctx.splits.train.labels is not None
    for inputs, labels in ctx.splits.train.batches(32):
        yield (tuple(torch.from_numpy(inputs[n]) for n in names),
               torch.from_numpy(labels) if labels_ok else None)
