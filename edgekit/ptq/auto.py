"""`--calib auto`: compute every range method from one statistics pass, keep the most faithful.

Which method wins depends on the model: min/max keeps outliers that matter
in detection heads, percentile and entropy clip long tails that waste
resolution in classifiers. Rather than ask the user to guess, each candidate
is quantized with the target's preset and scored against the FP32 graph on
the calibration split (never the evaluation split the report measures).
"""

from __future__ import annotations

from pathlib import Path

from edgekit.backends.ort import run_model
from edgekit.files import scratch_dir
from edgekit.measure.metrics import score
from edgekit.ptq.qdq import quantize_qdq
from edgekit.ptq.statistics import calibrate_methods
from edgekit.settings import CALIB_METHODS

METHODS = tuple(m for m in CALIB_METHODS if m != "auto")


def choose_ranges(fp32: Path, samples, names: list[str], scheme, work: Path,
                  report: dict) -> tuple[str, dict[str, list[float]]]:
    """(winning method, its ranges); `report` gets every candidate's score."""
    candidates = calibrate_methods(fp32, samples, names, METHODS, work, report)
    reference = run_model(fp32, samples, names)
    scores = {}
    with scratch_dir("auto") as tmp:
        for method, ranges in candidates.items():
            path = quantize_qdq(fp32, Path(tmp) / f"{method}.onnx", ranges, method, scheme)
            outputs = run_model(path, samples, names)
            measured = score(outputs, None, reference)
            scores[method] = (measured["agreement"], measured["cosine"])
    best = max(scores, key=lambda m: (scores[m][0] or 0.0, scores[m][1]))
    report.update({"chosen_method": best,
                   "method_scores": {m: {"agreement": a, "cosine": c} for m, (a, c) in scores.items()}})
    return best, candidates[best]


def chosen_method(artifact, default: str) -> str:
    """The method `--calib auto` settled on in this artifact's calibrate stage."""
    for record in reversed(artifact.history):
        if record.name == "calibrate" and record.metrics.get("chosen_method"):
            return record.metrics["chosen_method"]
    return "minmax" if default == "auto" else default
