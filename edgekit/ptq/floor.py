"""The fidelity floor static INT8 must keep: measured on a split, against the FP32 graph, output by output.

The built-in floors (worst group SQNR, decision F1, top-1 agreement of class distributions; see measure/compare.py) or the user's `--metric`. Range
method choice (`--calib auto`) and the per-node FP32 fallback both steer by `excess`: how far a candidate
graph falls below the floor, zero when it holds.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from edgekit.backends.ort import run_outputs
from edgekit.measure.compare import compare_outputs, shortfall
from edgekit.measure.user_metric import call_metric, load_metric
from edgekit.settings import FidelitySettings


class OutputFloor:
    """The FP32 graph's outputs on `samples`, and the floor a quantized graph is held to on them."""

    def __init__(self, fp32: Path, samples, names: list[str], settings: FidelitySettings):
        self.samples, self.names, self.settings = samples, names, settings
        self.reference = run_outputs(fp32, samples, names)
        self.metric = load_metric(settings.metric) if settings.metric else None
        self.floor: float | None = None
        if self.metric is not None:
            base = call_metric(self.metric, settings.metric, self.reference, self.reference)
            self.floor = settings.min_metric if settings.min_metric is not None else base - 0.01 * abs(base)

    def measure(self, path: Path) -> dict[str, Any]:
        """The comparison of `path` with the FP32 graph (and the user's metric, where given)."""
        return self.compare(run_outputs(path, self.samples, self.names))

    def compare(self, outputs: dict) -> dict[str, Any]:
        """`measure` for outputs already computed on the same samples."""
        record = compare_outputs(self.reference, outputs)
        if self.metric is not None:
            record["metric"] = call_metric(self.metric, self.settings.metric, self.reference, outputs)
        return record

    def try_measure(self, path: Path) -> dict[str, Any]:
        """`measure`, or {"error": ...} for a candidate graph the runtime cannot load or run: the quantizer
        writes some graphs (a fallback that splits a fused pattern, ranges a kernel rejects) that fail only
        when run, and another candidate may still succeed."""
        from edgekit.errors import InputError

        try:
            return self.measure(path)
        except InputError:
            raise  # the user's --metric: their error to fix, not a candidate to skip
        except Exception as exc:  # ONNX Runtime raises several types (Fail, InvalidGraph, RuntimeException)
            return {"error": " ".join(str(exc).split())[:200]}

    def excess(self, record: dict) -> float:
        """How far below the floor; 0.0 where the record meets it, infinite for a graph that did not run."""
        if "error" in record:
            return math.inf
        if self.metric is not None:
            return max(0.0, self.floor - record["metric"])
        return shortfall(record, self.settings.min_sqnr, self.settings.min_decision_f1, self.settings.min_agreement)

    def rank(self, record: dict) -> tuple[float, float]:
        """Sort key, best first: below the floor by less, then the better score."""
        if "error" in record:
            return (math.inf, 0.0)
        score = record["metric"] if self.metric is not None else record["worst_sqnr_db"]
        return (self.excess(record), -score)

    def describe(self) -> dict[str, Any]:
        if self.metric is not None:
            return {"metric": self.settings.metric, "min_metric": self.floor}
        return {"min_sqnr_db": self.settings.min_sqnr, "min_decision_f1": self.settings.min_decision_f1,
                "min_top1_agreement": self.settings.min_agreement}
