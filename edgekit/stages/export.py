"""Export: the INT8 ONNX graph in the form the target's runtime fuses into integer kernels."""

from __future__ import annotations

import json
import math
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgekit.artifact import Artifact
from edgekit.backends import ort as ort_backend
from edgekit.errors import InputError
from edgekit.measure.fidelity import fidelity, fidelity_drop
from edgekit.ptq.qdq import float_compute
from edgekit.settings import FidelitySettings, QuantMode
from edgekit.stages._torch import fp32_graph
from edgekit.target import QuantScheme

MODEL = "model.onnx"


@dataclass
class ExportStage:
    mode: QuantMode
    method: str  # the calibration method (labels the ranges ORT reads back)
    scheme: QuantScheme
    opset: int = 17
    max_drop: float | None = None  # accuracy-aware fallback budget (points)
    fidelity: FidelitySettings = field(default_factory=FidelitySettings)
    bias_correction: str = "auto"  # CalibSettings.bias_correction
    rounding: str = "auto"  # CalibSettings.rounding
    activations: dict | None = None  # how the scheme's activation type was chosen (ptq/activation_type.py)
    name: str = "export"
    accepts: tuple[str, ...] = ("torch", "onnx")

    def settings(self) -> dict[str, Any]:
        return {"quant": self.mode.value, "method": self.method, "opset": self.opset, "preset": self.scheme.preset,
                "max_drop": self.max_drop, "bias_correction": self.bias_correction, "rounding": self.rounding,
                **self.fidelity.stage_settings()}

    def check(self, ctx, artifact: Artifact) -> None:
        if self.mode is QuantMode.DYNAMIC and self.scheme.explicit_quantization:
            raise InputError(f"{ctx.target.name} runs TensorRT, which has no dynamic INT8; use --quant static or qad")
        if self.mode is not QuantMode.NONE and artifact.format == "onnx":
            from edgekit.models.onnx_normalize import refuse_quantized

            refuse_quantized(artifact.path("onnx"))
        if self.fidelity.metric and self.mode.calibrates:
            from edgekit.measure.user_metric import load_metric

            load_metric(self.fidelity.metric)

    def run(self, ctx, artifact: Artifact, out: Path) -> tuple[Artifact, dict[str, Any]]:
        if self.mode.calibrates:
            if not artifact.has("ranges"):
                raise InputError("static INT8 export needs calibration ranges; run the calibrate stage first")
            ranges = json.loads(artifact.path("ranges").read_text())
            fmt, extra = "onnx-qdq", self._quantize_static(ctx, artifact, ranges, out / MODEL)
            extra["float_compute"] = float_compute(out / MODEL)
            if self.scheme.explicit_quantization:
                from edgekit.backends.trt_rules import require_explicit_quantization

                require_explicit_quantization(out / MODEL)
        else:
            fmt, extra = self._dynamic_or_fp32(ctx, artifact, out)
        counts = _loaded_op_counts(out / MODEL, self.mode)
        all_outputs = ort_backend.run_outputs(out / MODEL, ctx.splits.eval, artifact.input_names)
        outputs = next(iter(all_outputs.values()))
        if self.mode.calibrates:
            self._compare_on_eval(ctx, artifact, all_outputs, extra)
        metrics = {"integer_kernels": ort_backend.integer_kernels(counts),
                   "optimized_ops": dict(sorted(counts.items())), "quant": self.mode.value,
                   **({"activations": self.activations} if self.activations else {}),
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
            if self.mode is QuantMode.DYNAMIC:
                from edgekit.ptq.dynamic import quantize_dynamic

                first, _ = next(ctx.splits.calib.batches(1))
                feed = {n: first[n] for n in artifact.input_names}
                return "onnx-dynamic", quantize_dynamic(src, out / MODEL, feed)
            shutil.copyfile(src, out / MODEL)
            return "onnx", {}
        finally:
            shutil.rmtree(out / "_fp32", ignore_errors=True)

    def _quantize_static(self, ctx, artifact: Artifact, ranges: dict, out: Path) -> dict:
        """Static INT8 that keeps the fidelity floor on the calibration split (and --max-accuracy-drop on the
        evaluation split, where given): the fewest, most sensitive nodes fall back to FP32 until both hold."""
        from edgekit.ptq.adaround import apply_rounding
        from edgekit.ptq.bias_correction import correct_biases
        from edgekit.ptq.fallback import fallback_search
        from edgekit.ptq.floor import OutputFloor
        from edgekit.ptq.qdq import quantize_qdq

        fp32, names = artifact.path("onnx"), artifact.input_names
        floor = OutputFloor(fp32, ctx.splits.calib, names, self.fidelity)
        heads, head_record, plain = self._separate_heads(fp32, ranges, floor, out)
        learned, rounding = self._learned_rounding(ctx, fp32, names, ranges, floor, out, heads, plain)

        def rounded(exclude: list[str], path: Path) -> Path:
            quantize_qdq(fp32, path, ranges, self.method, self.scheme, exclude=[*heads, *exclude])
            if learned:
                apply_rounding(path, learned)
            return path

        means, correction = self._bias_correction(ctx, fp32, names, lambda path: rounded([], path), floor, out)

        def quantize(exclude: list[str], path: Path) -> Path:
            rounded(exclude, path)
            if means is not None:
                correct_biases(path, fp32, means)
            return path

        excess_of = self._excess(ctx, fp32, names, floor)
        first, _ = next(ctx.splits.calib.batches(1))

        def latency_of(path: Path) -> float:
            from edgekit.measure.latency import median_ms

            return median_ms(ort_backend.session(path), {n: first[n] for n in names}, 10, 200)

        result = fallback_search(quantize, fp32, out, ctx.splits.calib, names, excess_of, latency_of)
        _say_what_fell_back(result, fp32)
        return {"fallback": {**result, "floor": floor.describe()}, "bias_correction": correction, "rounding": rounding,
                "concat_heads": head_record}

    def _separate_heads(self, fp32: Path, ranges: dict, floor, out: Path) -> tuple[list[str], dict, dict | None]:
        """(Concat heads to keep float, report, the floor's record of the all-INT8 graph so chosen or None where
        none was measured): heads are kept float where the all-INT8 graph measures closer to the floor on the
        calibration split with them float than with them quantized (ptq/heads.py)."""
        from edgekit.ptq.heads import concat_heads
        from edgekit.ptq.qdq import quantize_qdq

        found = concat_heads(fp32)
        if not found or self.mode is QuantMode.QAD:
            return [], {"nodes": [], "kept": False}, None
        shared = floor.try_measure(quantize_qdq(fp32, out, ranges, self.method, self.scheme))
        separate = floor.try_measure(quantize_qdq(fp32, out, ranges, self.method, self.scheme, exclude=found))
        kept = floor.rank(separate) < floor.rank(shared)
        return (found if kept else []), {"nodes": found, "kept": kept,
                                          "worst_sqnr_db_shared": shared.get("worst_sqnr_db"),
                                          "worst_sqnr_db_separate": separate.get("worst_sqnr_db")}, \
            (separate if kept else shared)

    def _compare_on_eval(self, ctx, artifact: Artifact, outputs: dict, extra: dict) -> None:
        """The exported graph's evaluation outputs (already computed) against the FP32 graph's, output by output."""
        from edgekit.ptq.floor import OutputFloor

        floor = OutputFloor(artifact.path("onnx"), ctx.splits.eval, artifact.input_names, self.fidelity)
        extra["outputs"] = floor.compare(outputs)
        extra["fallback"]["within_floor_on_eval"] = floor.excess(extra["outputs"]) == 0

    def _learned_rounding(self, ctx, fp32: Path, names: list[str], ranges: dict, floor, out: Path,
                          heads: list[str], plain: dict | None):
        """(learned INT8 weights or None, report). Learning costs seconds per layer, so auto tries it only
        where nearest rounding misses the floor (before nodes fall back to FP32, which costs speed), learns
        on one half of the calibration split and keeps it where it measures closer on the other half."""
        from edgekit.ptq.adaround import apply_rounding, learn_rounding
        from edgekit.ptq.floor import OutputFloor
        from edgekit.ptq.qdq import quantize_qdq

        calib = ctx.splits.calib
        if self.rounding == "nearest" or self.mode is QuantMode.QAD:
            return None, {"kept": False}  # QAD trained its weights under nearest rounding
        quantize_qdq(fp32, out, ranges, self.method, self.scheme, exclude=heads)
        if self.rounding == "learned":
            learned = learn_rounding(out, fp32, calib, names)
            return learned, {"kept": bool(learned), "layers": len(learned)}
        if floor.excess(plain if plain is not None else floor.try_measure(out)) == 0:
            return None, {"kept": False, "why": "nearest rounding holds the floor"}
        if len(calib) < 4:
            return None, {"kept": False, "why": "fewer than 4 calibration samples to judge it on"}
        learn, judge = calib.subset(np.arange(0, len(calib), 2)), calib.subset(np.arange(1, len(calib), 2))
        judged = OutputFloor(fp32, judge, names, floor.settings)
        nearest = judged.try_measure(out)
        learned = learn_rounding(out, fp32, learn, names)
        apply_rounding(out, learned)
        measured = judged.try_measure(out) if learned else nearest
        kept = bool(learned) and judged.rank(measured) < judged.rank(nearest)
        report = {"kept": kept, "layers": len(learned), "judged_on": len(judge),
                  "worst_sqnr_db_nearest": nearest.get("worst_sqnr_db"), "worst_sqnr_db_learned": measured.get("worst_sqnr_db")}
        for key in ("top1_agreement", "decision_f1", "metric"):
            if nearest.get(key) is not None:
                report.update({f"{key}_nearest": nearest[key], f"{key}_learned": measured.get(key)})
        return (learned if kept else None), report

    def _bias_correction(self, ctx, fp32: Path, names: list[str], quantize_all, floor, out: Path):
        """(input means, report): with auto, bias correction is kept only where, its means taken on one half of
        the calibration split, it brings the all-INT8 graph closer to the floor on the other half (judged on
        the samples it learned from, it looked better on an echo-quality model and was worse on new speech).
        The means kept are taken on the whole split. Means is None where it is not kept. `quantize_all(path)`
        writes the all-INT8 graph the correction applies to."""
        from edgekit.ptq.bias_correction import correct_biases, input_means
        from edgekit.ptq.floor import OutputFloor

        if self.bias_correction == "off" or self.mode is QuantMode.QAD:
            # QAD trained its biases under the same weight rounding: the graph must score what training did
            return None, {"layers": 0, "kept": False}
        calib = ctx.splits.calib
        if self.bias_correction == "on":
            means = input_means(fp32, calib, names)
            quantize_all(out)
            layers = correct_biases(out, fp32, means)
            return (means if layers else None), {"layers": layers, "kept": layers > 0}
        if len(calib) < 4:
            return None, {"layers": 0, "kept": False, "why": "fewer than 4 calibration samples to judge it on"}
        learn, judge = calib.subset(np.arange(0, len(calib), 2)), calib.subset(np.arange(1, len(calib), 2))
        judged = OutputFloor(fp32, judge, names, floor.settings)
        quantize_all(out)
        plain = judged.try_measure(out)
        layers = correct_biases(out, fp32, input_means(fp32, learn, names))
        corrected = judged.try_measure(out) if layers else plain
        kept = layers > 0 and judged.rank(corrected) < judged.rank(plain)
        report = {"layers": layers, "kept": kept, "judged_on": len(judge),
                  "worst_sqnr_db_without": plain.get("worst_sqnr_db"), "worst_sqnr_db_with": corrected.get("worst_sqnr_db")}
        if judged.metric is not None:
            report.update({"metric_without": plain.get("metric"), "metric_with": corrected.get("metric")})
        return (input_means(fp32, calib, names) if kept else None), report

    def _excess(self, ctx, fp32: Path, names: list[str], floor):
        """How far a candidate graph misses what it must keep: the floor, and the accuracy budget if given."""
        if self.max_drop is None:
            return lambda path: floor.excess(floor.try_measure(path))
        baseline = fidelity(ort_backend.run_model(fp32, ctx.splits.eval, names), ctx, names)

        def excess(path: Path) -> float:
            below_floor = floor.excess(floor.try_measure(path))
            if math.isinf(below_floor):  # a graph that does not run has no accuracy to measure
                return below_floor
            measured = fidelity(ort_backend.run_model(path, ctx.splits.eval, names), ctx, names)
            return max(below_floor, fidelity_drop(baseline, measured) - self.max_drop)
        return excess


def _say_what_fell_back(result: dict, fp32: Path) -> None:
    """One line where the floor put nodes back in FP32: how many, and what it cost in speed."""
    import onnx

    from edgekit.progress import console

    if not result["fallback"]:
        return
    total = len(onnx.load(str(fp32), load_external_data=False).graph.node)
    before, after = result.get("latency_ms_all_int8"), result.get("latency_ms_with_fallback")
    cost = f"; batch-1 latency {before:.3g} -> {after:.3g} ms" if before and after else ""
    held = "holds" if result["within_budget"] else "still misses"
    console.log(f"static INT8 {held} the fidelity floor with {len(result['fallback'])} of {total} nodes in FP32"
                f"{cost}; the export record names them (work/*-export/artifact.json)")


def _loaded_op_counts(path: Path, mode: QuantMode):
    """The op counts of the graph ONNX Runtime runs; a graph the quantizer wrote but the runtime cannot
    load is one line naming the failing node (the runtime's message does) and what to try instead."""
    from edgekit.errors import StageError

    try:
        return ort_backend.optimized_op_counts(path)
    except StageError as exc:
        others = [m.value for m in (QuantMode.STATIC, QuantMode.DYNAMIC, QuantMode.NONE) if m is not mode]
        raise StageError(f"the --quant {mode.value} graph does not load in ONNX Runtime "
                         f"({str(exc).split(': ', 1)[-1][:200]}); try --quant {' or --quant '.join(others)}") from exc
