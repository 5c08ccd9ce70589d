"""Structured pruning of a causal LM, uniform across layers so the exporters take the result, followed by
distillation from the unpruned model: recovery is part of the stage (width pruning without it destroys
perplexity).

Three axes, each measured on calibration text and each physically removing what it prunes, so the pruned
model is a smaller model of the same class, saved with a config that says so:
- width (`width.py`): MLP neurons, and whole KV groups of attention heads;
- depth (`depth.py`): whole decoder layers;
- hidden (`hidden.py`): channels of the residual stream.
A plan from any of them has `config(old)`, `state(state, old)` and `describe()`.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np

from edgekit.errors import InputError
from edgekit.llm.folder import save_model
from edgekit.llm.prune.shape import count_params
from edgekit.llm.prune.width import PrunePlan, check_share as check_width_share, plan

__all__ = ["PrunePlan", "build_pruned", "check_share", "choose", "count_params", "plan",
           "prune_and_distill"]


def check_share(config, ratio: float, tied: bool, axis: str = "width") -> None:
    """Refuse, from the config alone (before any work), a share the model cannot give on that axis."""
    if axis == "depth":
        from edgekit.llm.prune.depth import layers_to_drop

        layers_to_drop(config, ratio, tied)
    elif axis == "hidden":
        from edgekit.llm.prune.hidden import kept_width

        kept_width(config, ratio, tied)
    else:
        check_width_share(config, ratio, tied)


def choose(axis: str, model_dir: Path, reference, calib: np.ndarray, ratio: float):
    """The plan for `axis`, from the model's weights and its activations on the calibration blocks."""
    from edgekit.llm import blockwise as bw

    state = bw.load_state(model_dir)
    tied = bw.HEAD not in state
    if axis == "depth":
        from edgekit.llm.prune import depth

        return state, depth.plan(reference, calib, ratio, tied)
    if axis == "hidden":
        from edgekit.llm.prune import hidden

        return state, hidden.plan(reference, state, calib, ratio, tied)
    names = [n for n in state if n.endswith(("mlp.down_proj.weight", "self_attn.o_proj.weight"))]
    return state, plan(state, bw.layer_statistics(reference, calib, names)[0], reference.config, ratio, tied)


def build_pruned(model, state: dict[str, np.ndarray], chosen):
    """A new model of the same class at the pruned shape, holding the kept weights."""
    import torch

    config = chosen.config(model.config)
    pruned = type(model)(config)
    tensors = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in chosen.state(state, model.config).items()}
    try:
        missing, unexpected = pruned.load_state_dict(tensors, strict=False)
    except RuntimeError as exc:  # a tensor of a shape the plan did not change
        missing, unexpected = [str(exc).splitlines()[-1].strip()], []
    if unexpected or [m for m in missing if not m.endswith("lm_head.weight")]:
        raise InputError(f"pruning does not know this model's layout (missing {missing[:2]}, unexpected "
                         f"{unexpected[:2]}); give a Llama- or Qwen2-style model, or drop --prune")
    if getattr(config, "tie_word_embeddings", False):
        pruned.tie_weights()
    return pruned.eval()


def prune_and_distill(model_dir: Path, reference, calib: np.ndarray, train: np.ndarray, ratio: float,
                      minutes: float, lr: float, seed: int, work: Path, axis: str = "width"):
    """The model pruned on `axis` by measured importance, distilled from the unpruned one on the training text,
    saved (work/pruned) and exported FP32 (work/pruned-fp32). Returns (student, its folder, what was done)."""
    from edgekit.llm.export import build_genai
    from edgekit.llm.recover import distill
    from edgekit.progress import console

    state, chosen = choose(axis, model_dir, reference, calib, ratio)
    described = chosen.describe()
    console.log(f"  pruned to {described['kept']}: {chosen.params_after:,} of {chosen.params_before:,} parameters; "
                f"distilling for {minutes:g} min …")
    student = build_pruned(reference, state, chosen)
    log = distill(student, reference, train, minutes, lr, seed=seed)
    for name in ("pruned", "pruned-fp32"):
        shutil.rmtree(work / name, ignore_errors=True)
    folder = save_model(student, model_dir, work / "pruned")
    build_genai(folder, work / "pruned-fp32", "fp32")
    done = {"ratio": ratio, **described, "params_before": chosen.params_before, "params_after": chosen.params_after,
            "recovery": {"steps": log.steps, "tokens": log.tokens, "seconds": round(log.seconds, 1),
                         "first_loss": log.losses[0] if log.losses else None,
                         "last_loss": log.losses[-1] if log.losses else None}}
    return student, folder, done
