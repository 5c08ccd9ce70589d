"""Iterative pruning and the accuracy-budget search.

Iterative: prune a little, re-estimate BatchNorm, distil briefly from the
FP32 teacher, repeat. Budget: candidates built from a sensitivity scan at
several per-group tolerances are each pruned, distilled and timed on the
target runtime; the fastest one within the accuracy budget wins.
"""

from __future__ import annotations

import copy
from typing import Any

from edgekit.progress import bar, console
from edgekit.distill.loop import TrainSettings, distill, epoch_batches

TOLERANCE_SCALES = (0.25, 0.5, 1.0, 2.0, 4.0, 8.0)


CNN_LR, ATTENTION_LR = 3e-3, 1e-3


def finetune(model, ctx, names: list[str], epochs: int, lr: float | None = None) -> None:
    """A short KD fine-tune against the FP32 teacher on the training split.

    Attention models get a lower rate: at 3e-3 one epoch cost the example BERT student 5 points before any
    pruning (Adam's step is too large for its attention and LayerNorm weights); at 1e-3 it gained 1."""
    from edgekit.pruning.attention import attention_modules

    if epochs < 1 or ctx.teacher is None:
        return
    if lr is None:
        lr = ATTENTION_LR if attention_modules(model) else CNN_LR
    cfg = TrainSettings(epochs=epochs, lr=lr, temperature=4.0, alpha=0.3, batch_size=64, seed=ctx.seed)
    distill(model, ctx.teacher, epoch_batches(ctx.splits.train, names, cfg.batch_size, ctx.seed), cfg)


def prune_iteratively(model, example, settings, ctx, names: list[str], steps: int, epochs: int) -> dict[str, Any]:
    """`steps` rounds whose kept fractions multiply to 1 - ratio; returns the combined plan."""
    from edgekit.pruning.prune import prune_model, recalibrate_batchnorm

    keep = (1.0 - settings.ratio) ** (1.0 / steps)
    history: list = []
    splits: dict[str, list[int]] = {}
    plan: dict[str, Any] = {}
    for step in range(steps):
        plan = prune_model(model, example, settings.model_copy(update={"ratio": 1.0 - keep, "steps": 1, "budget": None}),
                           head_share=settings.ratio if step == 0 else 0.0)
        history += plan["history"]
        splits.update(plan["channel_splits"])
        recalibrate_batchnorm(model, ctx.splits.train, names)
        finetune(model, ctx, names, epochs)
        console.log(f"  prune step {step + 1}/{steps}: {sum(p.numel() for p in model.parameters()):,} params")
    return {**plan, "history": history, "channel_splits": splits, "ratio": settings.ratio, "steps": steps}


def budget_search(model, example, settings, ctx, names: list[str], epochs: int) -> tuple[Any, dict[str, Any], dict]:
    """Return (pruned model, plan, report) for the fastest candidate within the budget."""
    from edgekit.measure.fidelity import fidelity_drop, teacher_outputs, torch_fidelity
    from edgekit.pruning.prune import prune_model, recalibrate_batchnorm
    from edgekit.pruning.scan import measure, propose, scan

    evals = ctx.splits.eval
    scanned = scan(model, example, evals, names, [0.25, 0.5, 0.75], settings.round_to, settings.protect,
                   recalib=ctx.splits.train)
    base = torch_fidelity(model, ctx, names)
    reference = teacher_outputs(ctx, names)
    candidates: dict[str, dict[str, float] | float] = {}
    for scale in TOLERANCE_SCALES:
        ratios = propose(scanned, settings.budget * scale)
        if any(ratios.values()) and ratios not in candidates.values():
            candidates[f"scan x{scale:g}"] = ratios
        floor_half = {root: max(0.5, ratio) for root, ratio in ratios.items()}
        if scale in (1.0, 2.0) and floor_half not in candidates.values() and any(v > 0.5 for v in floor_half.values()):
            candidates[f"50% + scan x{scale:g}"] = floor_half
    candidates["uniform 25%"] = 0.25
    candidates["uniform 50%"] = 0.5
    rows, best = [], None
    with bar("pruning search: candidates", len(candidates)) as advance:
        for label, ratios in candidates.items():
            trial = copy.deepcopy(model)
            uniform = isinstance(ratios, float)
            trial_settings = settings.model_copy(update={"ratio": ratios if uniform else 0.0, "budget": None,
                                                        "layer_ratios": None if uniform else ratios})
            plan = prune_model(trial, example, trial_settings)
            recalibrate_batchnorm(trial, ctx.splits.train, names)
            finetune(trial, ctx, names, epochs)
            quality = torch_fidelity(trial, ctx, names)
            timing = measure(trial, example, names, evals, reference, runs=300)
            drop = fidelity_drop(base, quality)
            row = {"candidate": label, "accuracy": quality["accuracy"], "agreement": quality["agreement"],
                   "drop": drop, "latency_ms": timing["latency_ms"], "macs": timing["macs"],
                   "params": sum(p.numel() for p in trial.parameters()), "within_budget": drop <= settings.budget}
            rows.append(row)
            console.log(f"  candidate {label}: drop {drop:.2f} pts, {timing['latency_ms']:.3f} ms")
            if row["within_budget"] and (best is None or row["latency_ms"] < best[2]["latency_ms"]):
                best = (trial, plan, row)
            advance(1)
    report = {"baseline": base, "candidates": rows, "budget": settings.budget,
              "verdict": _verdict(best, rows)}
    if best is None:
        return model, prune_model(model, example, settings.model_copy(
            update={"ratio": 0.0, "layer_ratios": None, "budget": None})), report
    return best[0], best[1], report


def _verdict(best, rows: list[dict]) -> str:
    uniform = next(r for r in rows if r["candidate"] == "uniform 50%")
    if best is None:
        return "no scan candidate stayed within the budget; the model is left unpruned"
    chosen = best[2]
    if chosen is uniform:
        return (f"uniform 50% was the fastest candidate within the budget ({chosen['latency_ms']:.3f} ms, "
                f"drop {chosen['drop']:.2f} pts): the scan's per-layer ratios bought no measured speed here")
    faster = chosen["latency_ms"] < uniform["latency_ms"]
    why = ("" if faster else "; it was the only kind of candidate within budget" if not uniform["within_budget"]
           else "")
    return (f"chose {chosen['candidate']}: drop {chosen['drop']:.2f} pts at {chosen['latency_ms']:.3f} ms vs "
            f"uniform 50% at {uniform['latency_ms']:.3f} ms (drop {uniform['drop']:.2f} pts, "
            f"{'within' if uniform['within_budget'] else 'over'} budget){why}")
