"""Benchmark on the host with ONNX Runtime: latency, size, compute and fidelity per model.

The FP32 baseline and every compressed form are measured in the same run,
each in its own process (batch 1, warm-up, then timed runs).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgekit.artifact import Artifact
from edgekit.backends import ort as ort_backend
from edgekit.files import write_json
from edgekit.measure.fidelity import score
from edgekit.measure.latency import measure_in_process
from edgekit.measure.metrics import onnx_params_and_macs
from edgekit.progress import bar, console
from edgekit.settings import BenchSettings


def measure_model(path: Path, samples, input_names: list[str], reference: np.ndarray | None,
                  settings: BenchSettings) -> dict[str, Any]:
    """Everything report.json holds for one model file."""
    outputs = ort_backend.run_model(path, samples, input_names, settings.threads)
    first, _ = next(samples.batches(1))
    params, macs = onnx_params_and_macs(path, {n: first[n].shape for n in input_names})
    timing = measure_in_process(path, {n: first[n] for n in input_names}, settings.warmup, settings.runs,
                                settings.threads)
    result = {
        "file": Path(path).name, "size_bytes": Path(path).stat().st_size, "params": params, "macs": macs,
        "latency_ms": {k: timing[k] for k in ("p50", "p90", "p99", "mean")},
        "peak_memory_bytes": timing["peak_rss_bytes"], "session_memory_bytes": timing["session_memory_bytes"],
        **score(outputs, samples.labels, reference), "eval_samples": len(samples),
    }
    return result


@dataclass
class BenchStage:
    settings_: BenchSettings
    name: str = "bench"
    accepts: tuple[str, ...] = ("ort", "tensorrt")

    def settings(self) -> dict[str, Any]:
        return self.settings_.stage_settings()

    def run(self, ctx, artifact: Artifact, out: Path) -> tuple[Artifact, dict[str, Any]]:
        from edgekit.measure.fidelity import teacher_outputs

        names = artifact.input_names
        reference = ctx.cache.get("reference_eval")
        if reference is None and ctx.teacher is not None:
            reference = teacher_outputs(ctx, names)
        models = models_to_measure(ctx.work, artifact)
        results = {}
        with bar("measuring models", len(models)) as advance:
            for label, path in models.items():
                console.log(f"  measuring {label} ({path.name}) …")
                results[label] = measure_model(path, ctx.splits.eval, names, reference, self.settings_)
                advance(1)
        write_json(out / "measurements.json", results)
        brief = {f"{k}_p50_ms": v["latency_ms"]["p50"] for k, v in results.items()}
        return artifact.derive(out, "ort", {"measurements": "measurements.json"}), {**brief, "models": results}


def models_to_measure(work: Path, artifact: Artifact) -> dict[str, Path]:
    """fp32 (baseline), pruned FP32 (recovered by distillation when QAD ran), and the final model."""
    folders = {h.name: work / h.folder for h in artifact.history}
    models = {"fp32": folders["source"] / "fp32.onnx"}
    if "prune" in folders:
        recovered = folders.get("qad", work / "none") / "pruned_fp32.onnx"
        calibrated = folders.get("calibrate", work / "none") / "model.onnx"
        for candidate in (recovered, calibrated):
            if candidate.is_file():
                models["pruned"] = candidate
                break
    models["final"] = Path(artifact.folder) / artifact.files["onnx"]
    return models
