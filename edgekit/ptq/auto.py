"""`--calib auto`: compute every range method from one statistics pass, keep the most faithful.

Which method wins depends on the model: min/max keeps outliers that matter
in detection heads, percentile and entropy clip long tails that waste
resolution in classifiers. Rather than ask the user to guess, each candidate
is quantized with the target's preset and scored against the FP32 graph on
the calibration split (never the evaluation split the report measures).
"""

from __future__ import annotations

from pathlib import Path

from edgekit.backends import ort as ort_backend
from edgekit.measure.metrics import mean_cosine, top1_agreement
from edgekit.files import scratch_dir

METHODS = ("minmax", "percentile", "entropy", "mse")


def choose_ranges(fp32: Path, samples, names: list[str], preset: str, work: Path,
                  report: dict) -> tuple[str, dict[str, list[float]]]:
    """(winning method, its ranges); `report` gets every candidate's score."""
    candidates = ort_backend.calibrate_methods(fp32, samples, names, METHODS, work, report)
    reference = ort_backend.run_model(fp32, samples, names)
    scores = {}
    with scratch_dir("auto") as tmp:
        for method, ranges in candidates.items():
            path = ort_backend.quantize_qdq(fp32, Path(tmp) / f"{method}.onnx", ranges, method, preset=preset)
            outputs = ort_backend.run_model(path, samples, names)
            scores[method] = (top1_agreement(outputs, reference), mean_cosine(outputs, reference))
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
