"""Fidelity of a torch model against the FP32 teacher on the evaluation split."""

from __future__ import annotations

import numpy as np
import torch

from edgekit.data.samples import stack_outputs
from edgekit.measure.metrics import score


def torch_outputs(model, samples, input_names: list[str], batch_size: int = 256) -> np.ndarray:
    outs = []
    model.eval()
    device = next(model.parameters(), torch.empty(0)).device
    with torch.no_grad():
        for inputs, _ in samples.batches(batch_size):
            outs.append(model(*(torch.from_numpy(inputs[n]).to(device) for n in input_names)).float().cpu().numpy())
    return np.concatenate(outs) if samples.batchable else stack_outputs(outs)


def check_teacher_fits(teacher, student, splits, input_names: list[str]) -> None:
    """The teacher must read the student's inputs and answer in the same shape, or KD cannot compare them."""
    from edgekit.errors import InputError

    inputs, _ = next(splits.calib.batches(2))
    tensors = tuple(torch.from_numpy(inputs[n]) for n in input_names)
    with torch.no_grad():
        try:
            t_out = teacher.eval()(*tensors)
        except Exception as exc:  # torch raises many types for inputs that do not fit
            raise InputError(f"the teacher cannot read the student's inputs ({' '.join(str(exc).split())[:160]}); "
                             "give a teacher trained on the same inputs (and tokenizer)") from exc
        s_out = student.eval()(*tensors)
    if t_out.shape != s_out.shape:
        raise InputError(f"the teacher outputs shape {tuple(t_out.shape)} but the student {tuple(s_out.shape)}; "
                         "give a teacher for the same task (same classes)")


def agreement_scorer(model, teacher, samples, input_names: list[str]):
    """A validation score for early stopping: top-1 agreement with the teacher on `samples`, or cosine
    similarity for outputs that are not class scores. Higher is better."""
    reference = torch_outputs(teacher, samples, input_names)

    def validation_score() -> float:
        measured = score(torch_outputs(model, samples, input_names), None, reference)
        return measured["agreement"] if measured["agreement"] is not None else measured["cosine"]
    return validation_score


def teacher_outputs(ctx, input_names: list[str]) -> np.ndarray:
    """Teacher logits on the eval split, computed once per run."""
    if "teacher_eval" not in ctx.cache:
        ctx.cache["teacher_eval"] = torch_outputs(ctx.teacher, ctx.splits.eval, input_names)
    return ctx.cache["teacher_eval"]


def fidelity(outputs: np.ndarray, ctx, input_names: list[str]) -> dict[str, float | None]:
    """`score` on the evaluation split against the run's reference (the FP32 ONNX model's or the teacher's)."""
    reference = ctx.cache.get("reference_eval")
    if reference is None:
        reference = teacher_outputs(ctx, input_names)
    return score(outputs, ctx.splits.eval.labels, reference)


def torch_fidelity(model, ctx, input_names: list[str]) -> dict[str, float | None]:
    return fidelity(torch_outputs(model, ctx.splits.eval, input_names), ctx, input_names)


def fidelity_drop(base: dict, now: dict) -> float:
    """Points lost from `base` to `now`: accuracy where both have it, else top-1 agreement x 100,
    else (outputs that are not class scores, e.g. a detector's maps) mean cosine similarity x 100.

    The one measure every budget in edgekit (scan, pruning search, fallback,
    final check) is compared against.
    """
    if base.get("accuracy") is not None and now.get("accuracy") is not None:
        return base["accuracy"] - now["accuracy"]
    if now.get("agreement") is not None:
        return 100 * ((base.get("agreement") or 1.0) - now["agreement"])
    return 100 * ((base.get("cosine") or 1.0) - now["cosine"])


def drop_unit(base: dict) -> str:
    if base.get("accuracy") is not None:
        return "points of accuracy"
    return "points of top-1 agreement" if base.get("agreement") is not None else "points of cosine similarity (x100)"
