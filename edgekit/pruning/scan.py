"""Sensitivity scan: prune one channel group at a time over several ratios and measure the damage.

Each (group, ratio) is pruned on a fresh copy, evaluated against the unpruned
model (accuracy where labels exist, top-1 agreement always) and timed on the
target runtime, so the proposal is driven by measured latency, not MACs.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import torch
from torch import nn

from edgekit.measure.latency import median_ms
from edgekit.measure.metrics import onnx_params_and_macs
from edgekit.models.export import export_onnx
from edgekit.progress import console
from edgekit.measure.fidelity import fidelity_drop, score
from edgekit.pruning.policy import PRUNABLE, default_protected, ignored_layers
from edgekit.files import scratch_dir


def prunable_roots(model: nn.Module, example: tuple[torch.Tensor, ...], protect: list[str] | None) -> list[str]:
    """Names of the root layers of every channel group the pruner may cut."""
    import torch_pruning as tp

    names = {m: n for n, m in model.named_modules()}
    protect = protect if protect is not None else default_protected(model)
    graph = tp.DependencyGraph().build_dependency(model, example_inputs=list(example), verbose=False)
    roots = []
    for group in graph.get_all_groups(ignored_layers=ignored_layers(model, protect),
                                      root_module_types=list(PRUNABLE)):
        root = group[0].dep.target.module
        if root in names and names[root] not in roots:
            roots.append(names[root])
    return roots


def scan(model: nn.Module, example: tuple[torch.Tensor, ...], evals, input_names: list[str],
         ratios: list[float], round_to: int, protect: list[str] | None, runs: int = 50,
         recalib=None) -> dict[str, Any]:
    """`recalib` (a SampleSet disjoint from `evals`) re-estimates BatchNorm statistics after each cut."""
    from edgekit.measure.fidelity import torch_outputs
    from edgekit.pruning.prune import PruneSettings, prune_model, recalibrate_batchnorm

    reference = torch_outputs(model, evals, input_names)
    base = measure(model, example, input_names, evals, reference, runs)
    groups = []
    for root in prunable_roots(model, example, protect):
        rows = []
        for ratio in ratios:
            candidate = copy.deepcopy(model)
            stage = PruneSettings(ratio=0.0, round_to=round_to, protect=protect, layer_ratios={root: ratio})
            plan = prune_model(candidate, example, stage)
            if recalib is not None:
                recalibrate_batchnorm(candidate, recalib, input_names)
            rows.append({"ratio": ratio, "channels": plan["channels"].get(root),
                         **measure(candidate, example, input_names, evals, reference, runs)})
        groups.append({"root": root, "results": rows})
        console.log(f"  scanned {root}: " + ", ".join(
            f"{r['ratio']:.2f}→agr {r['agreement'] or 0:.3f} {r['latency_ms']:.3f} ms" for r in rows))
    return {"baseline": base, "ratios": ratios, "groups": groups}


def measure(model, example, input_names, evals, reference, runs: int) -> dict[str, Any]:
    """Accuracy, agreement with `reference`, MACs and median ORT latency of a torch model."""
    from edgekit.backends import ort as ort_backend
    from edgekit.measure.fidelity import torch_outputs

    outputs = torch_outputs(model, evals, input_names)
    with scratch_dir("scan") as tmp:
        path = export_onnx(model, example, input_names, Path(tmp) / "m.onnx")
        _, macs = onnx_params_and_macs(path, {n: tuple(t.shape) for n, t in zip(input_names, example)})
        sess = ort_backend.session(path, threads=1)
        latency = median_ms(sess, {n: t[:1].numpy() for n, t in zip(input_names, example)}, 5, runs)
    return {**score(outputs, evals.labels, reference), "latency_ms": latency, "macs": macs}


def propose(result: dict[str, Any], max_drop: float) -> dict[str, float]:
    """Per group, the largest ratio whose accuracy (or agreement x100) drop stays within `max_drop` points."""
    base = result["baseline"]
    proposal = {}
    for group in result["groups"]:
        best = 0.0
        for row in group["results"]:
            if fidelity_drop(base, row) <= max_drop:
                best = max(best, row["ratio"])
        proposal[group["root"]] = best
    return proposal


def plot_scan(result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4), dpi=100)
    base = result["baseline"]
    for group in result["groups"]:
        ratios = [r["ratio"] for r in group["results"]]
        ax1.plot(ratios, [fidelity_drop(base, r) for r in group["results"]], marker="o", label=group["root"])
        ax2.plot(ratios, [r["latency_ms"] / base["latency_ms"] for r in group["results"]], marker="o")
    ax1.set_xlabel("pruning ratio of one group")
    ax1.set_ylabel("accuracy drop (points)")
    ax2.set_xlabel("pruning ratio of one group")
    ax2.set_ylabel("latency / unpruned (measured)")
    ax1.legend(fontsize=6)
    for ax in (ax1, ax2):
        ax.grid(alpha=0.3)
    fig.suptitle("edgekit prune scan: sensitivity per channel group")
    fig.tight_layout()
    fig.savefig(path, metadata={"Software": None})
    plt.close(fig)
