"""Export: the INT8 ONNX graph in the form the target's runtime fuses into integer kernels."""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgekit.artifact import Artifact
from edgekit.backends import ort as ort_backend
from edgekit.errors import InputError
from edgekit.stages._torch import fp32_graph
from edgekit.measure.fidelity import fidelity, fidelity_drop

MODEL = "model.onnx"
QUANT_MODES = ("static", "qad", "dynamic", "none")


@dataclass
class ExportStage:
    quant: str = "static"
    method: str = "minmax"
    opset: int = 17
    preset: str = "ort-u8s8"
    max_drop: float | None = None  # accuracy-aware fallback budget (points)
    name: str = "export"
    accepts: tuple[str, ...] = ("torch", "onnx")

    def __post_init__(self) -> None:
        if self.quant not in QUANT_MODES:
            raise InputError(f"--quant {self.quant} is unknown; choose one of {', '.join(QUANT_MODES)}")

    def settings(self) -> dict[str, Any]:
        return {"quant": self.quant, "method": self.method, "opset": self.opset, "preset": self.preset,
                "max_drop": self.max_drop}

    def run(self, ctx, artifact: Artifact, out: Path) -> tuple[Artifact, dict[str, Any]]:
        if self.quant in ("static", "qad"):
            if not artifact.has("ranges"):
                raise InputError("static INT8 export needs calibration ranges; run the calibrate stage first")
            ranges = json.loads(artifact.path("ranges").read_text())
            fallback = self._quantize_static(ctx, artifact, ranges, out / MODEL)
            fmt, extra = "onnx-qdq", ({"fallback": fallback} if fallback is not None else {})
            if self.preset == "trt-s8s8":
                from edgekit.backends.trt_rules import require_explicit_quantization

                require_explicit_quantization(out / MODEL)
        else:
            fmt, extra = self._dynamic_or_fp32(ctx, artifact, out)
        counts = ort_backend.optimized_op_counts(out / MODEL)
        outputs = ort_backend.run_model(out / MODEL, ctx.splits.eval, artifact.input_names)
        metrics = {"integer_kernels": ort_backend.integer_kernels(counts),
                   "optimized_ops": dict(sorted(counts.items())), "quant": self.quant,
                   **fidelity(outputs, ctx, artifact.input_names), **extra}
        return artifact.derive(out, fmt, {"onnx": MODEL}), metrics

    def _dynamic_or_fp32(self, ctx, artifact: Artifact, out: Path) -> tuple[str, dict]:
        if artifact.has("onnx"):
            src = artifact.path("onnx")
        else:
            (out / "_fp32").mkdir()
            fp32_graph(ctx, artifact, out / "_fp32", self.opset)
            src = out / "_fp32" / MODEL
        try:
            if self.quant == "dynamic":
                first, _ = next(ctx.splits.calib.batches(1))
                feed = {n: first[n] for n in artifact.input_names}
                return "onnx-dynamic", ort_backend.quantize_dynamic(src, out / MODEL, feed)
            shutil.copyfile(src, out / MODEL)
            return "onnx", {}
        finally:
            shutil.rmtree(out / "_fp32", ignore_errors=True)

    def _quantize_static(self, ctx, artifact: Artifact, ranges: dict, out: Path) -> dict | None:
        """Plain static INT8, or with --max-accuracy-drop the fewest FP32 fallbacks that meet it."""
        fp32 = artifact.path("onnx")

        def quantize(exclude: list[str], path: Path) -> Path:
            return ort_backend.quantize_qdq(fp32, path, ranges, self.method, exclude=exclude, preset=self.preset)

        if self.max_drop is None:
            quantize([], out)
            return None
        from edgekit.ptq.fallback import fallback_search

        names = artifact.input_names
        baseline = fidelity(ort_backend.run_model(fp32, ctx.splits.eval, names), ctx, names)

        def drop_of(path: Path) -> float:
            return fidelity_drop(baseline, fidelity(ort_backend.run_model(path, ctx.splits.eval, names), ctx, names))

        first, _ = next(ctx.splits.eval.batches(1))

        def latency_of(path: Path) -> float:
            from edgekit.measure.latency import time_runs

            runs = time_runs(ort_backend.session(path), {n: first[n] for n in names}, 10, 200)
            return float(sorted(runs)[len(runs) // 2])

        return fallback_search(quantize, fp32, out, ctx.splits.eval, names, drop_of, self.max_drop, latency_of)

