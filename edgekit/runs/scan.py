"""Orchestration of `edgekit prune scan`: validate, scan, write JSON, plot and proposal atomically."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np

from edgekit.errors import InputError
from edgekit.files import scratch_dir, write_json
from edgekit.settings import ScanConfig


def run_scan(cfg: ScanConfig) -> dict[str, Any]:
    import torch

    from edgekit.outdir import check_output, claimed_output
    from edgekit.models import load_model
    from edgekit.pruning.scan import plot_scan, propose, scan
    from edgekit.target import load_target

    model_spec, weights, data_spec, out, force = cfg.model, cfg.weights, cfg.data, cfg.out, cfg.force
    eval_samples = cfg.eval_samples
    ratios = _ratios(cfg.ratios)
    target = load_target(cfg.target)
    model = load_model(model_spec, weights)
    if model.is_onnx:
        raise InputError("prune scan needs a PyTorch model; an .onnx file cannot be pruned")
    data = model.data(data_spec)
    order = np.random.default_rng(cfg.seed).permutation(len(data))
    evals = data.subset(order[:max(1, eval_samples)])
    recalib = data.subset(order[max(1, eval_samples):][:2048]) if len(data) > eval_samples else None
    check_output(out, force, False, [model_spec, weights, data_spec])
    inputs, _ = next(evals.batches(1))
    example = tuple(torch.from_numpy(inputs[n]) for n in model.input_names)
    result = scan(model.module, example, evals, model.input_names, ratios, target.round_to, cfg.protect,
                  recalib=recalib)
    result["proposal"] = propose(result, cfg.max_drop)
    result["max_drop"] = cfg.max_drop
    with claimed_output(out, force, False, [model_spec, weights, data_spec], "prune scan"), \
            scratch_dir("scan-plot") as tmp:
        plot_scan(result, Path(tmp) / "scan.png")
        shutil.move(str(Path(tmp) / "scan.png"), str(out / "scan.png"))  # a rename on one file system
        write_json(out / "layer-ratios.json", result["proposal"])
        write_json(out / "scan.json", result)
    return result



def _ratios(text: str) -> list[float]:
    try:
        values = [float(v) for v in text.split(",")]
    except ValueError:
        values = []
    if not values or any(not 0 < v < 1 for v in values):
        raise InputError(f"--ratios '{text}' must be fractions in (0, 1) separated by commas, e.g. 0.25,0.5,0.75")
    return sorted(values)
