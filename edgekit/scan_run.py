"""Orchestration of `edgekit prune scan`: validate, scan, write JSON, plot and proposal atomically."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from .errors import InputError
from .fsutil import atomic_dir, write_json


def run_scan(model_spec: str, weights: str | None, data_spec: str, out: Path, target_spec: str, ratios_text: str,
             max_drop: float, eval_samples: int, protect: list[str] | None, seed: int, force: bool) -> dict[str, Any]:
    import torch

    from .api import check_out_dir
    from .models import load_model
    from .pruning.scan import plot_scan, propose, scan
    from .target import load_target

    ratios = _ratios(ratios_text)
    target = load_target(target_spec)
    model = load_model(model_spec, weights)
    if model.is_onnx:
        raise InputError("prune scan needs a PyTorch model; an .onnx file cannot be pruned")
    data = model.data(data_spec)
    order = np.random.default_rng(seed).permutation(len(data))
    evals = data.subset(order[:max(1, eval_samples)])
    recalib = data.subset(order[max(1, eval_samples):][:2048]) if len(data) > eval_samples else None
    check_out_dir(out, force, resume=False)
    inputs, _ = next(evals.batches(1))
    example = tuple(torch.from_numpy(inputs[n]) for n in model.input_names)
    result = scan(model.module, example, evals, model.input_names, ratios, target.round_to, protect,
                  recalib=recalib)
    result["proposal"] = propose(result, max_drop)
    result["max_drop"] = max_drop
    with atomic_dir(out, replace=force) as tmp:
        write_json(tmp / "scan.json", result)
        write_json(tmp / "layer-ratios.json", result["proposal"])
        plot_scan(result, tmp / "scan.png")
    return result


def _ratios(text: str) -> list[float]:
    try:
        values = [float(v) for v in text.split(",")]
    except ValueError:
        values = []
    if not values or any(not 0 < v < 1 for v in values):
        raise InputError(f"--ratios '{text}' must be fractions in (0, 1) separated by commas, e.g. 0.25,0.5,0.75")
    return sorted(values)
