"""What the stages share: torch artifacts saved and rebuilt as source spec + JSON pruning plan +
safetensors, and the pre-processed FP32 ONNX graph that calibration, QAD and export start from.

A pickled nn.Module would run arbitrary code on load and break on refactors;
a plan re-applied to a fresh build of the student avoids both.
"""

from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path

import torch
from torch import nn

from edgekit.artifact import Artifact
from edgekit.models import load_model
from edgekit.backends import ort as ort_backend
from edgekit.models.export import export_onnx
from edgekit.models.loader import load_weights_into

WEIGHTS = "weights.safetensors"
PLAN = "plan.json"
MODEL = "model.onnx"
RANGES = "ranges.json"


def require_training_split(ctx, stage: str) -> None:
    """Pruning fine-tuning and QAD train on the train split; an empty one is the user's --split."""
    from edgekit.errors import InputError

    if len(ctx.splits.train) == 0:
        raise InputError(f"--split leaves no training samples, but {stage} trains; give a train fraction above 0, "
                         "or use --quant static with --prune 0")


def example_inputs(ctx_splits, input_names: list[str]) -> tuple[torch.Tensor, ...]:
    """One calibration sample as torch tensors, in the model's input order."""
    inputs, _ = next(ctx_splits.calib.batches(1))
    return tuple(torch.from_numpy(inputs[n]) for n in input_names)


def materialize(artifact: Artifact, example: tuple[torch.Tensor, ...]) -> nn.Module:
    """Rebuild the module an artifact describes: fresh build, plan, BN folding, weights."""
    model = load_model(artifact.source_spec, artifact.source_weights).module
    if artifact.has("plan"):
        apply_plan(model, json.loads(artifact.path("plan").read_text()), example)
    if artifact.bn_folded:
        from edgekit.quant.bn_fold import fold_batchnorm

        fold_batchnorm(model, example)
    if artifact.has("weights"):
        load_weights_into(model, artifact.path("weights"))
    return model.eval()


def apply_plan(model: nn.Module, plan: dict, example: tuple[torch.Tensor, ...]) -> None:
    import torch_pruning as tp

    from edgekit.pruning.attention import sync_attention_attributes
    from edgekit.pruning.channel_split import split_blocks

    split_blocks(model, plan.get("channel_splits", {}))
    graph = tp.DependencyGraph().build_dependency(model, example_inputs=list(example), verbose=False)
    history = [(name, bool(out), list(idx)) for name, out, idx in plan["history"]]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        graph.load_pruning_history(history)
    sync_attention_attributes(model)


def save_weights(model: nn.Module, folder: Path) -> str:
    from safetensors.torch import save_file

    state = {k: v.detach().contiguous().clone() for k, v in model.state_dict().items()}
    save_file(state, str(Path(folder) / WEIGHTS), metadata={"format": "pt"})
    return WEIGHTS


def fp32_graph(ctx, artifact: Artifact, out: Path, opset: int) -> dict[str, str]:
    """Write the pre-processed FP32 ONNX of the artifact to out/model.onnx; keep torch files."""
    files: dict[str, str] = {}
    raw = out / "raw.onnx"
    if artifact.format == "torch":
        example = example_inputs(ctx.splits, artifact.input_names)
        export_onnx(materialize(artifact, example), example, artifact.input_names, raw, opset)
        for role in ("plan", "weights"):
            if artifact.has(role) and artifact.path(role).resolve() != (out / artifact.files[role]).resolve():
                shutil.copyfile(artifact.path(role), out / artifact.files[role])
            if artifact.has(role):
                files[role] = artifact.files[role]
    else:
        shutil.copyfile(artifact.path("onnx"), raw)
    ort_backend.preprocess(raw, out / MODEL)
    raw.unlink()
    files["onnx"] = MODEL
    return files
