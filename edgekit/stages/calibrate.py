"""Static INT8 calibration: activation ranges over the calibration split, on the ONNX graph.

Ranges are taken on the same (pre-processed) ONNX graph that is quantized
later, so tensor names match exactly; QAD reads them to start its training.
With `calibrator="nncf"`, NNCF's bias correction is applied to that graph and
its ranges replace edgekit's wherever NNCF quantizes a tensor.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgekit.artifact import Artifact
from edgekit.files import write_json
from edgekit.ptq.statistics import calibrate
from edgekit.settings import CalibSettings, FidelitySettings
from edgekit.stages._torch import MODEL, RANGES, fp32_graph
from edgekit.target import QuantScheme


@dataclass
class CalibrateStage:
    calib: CalibSettings
    scheme: QuantScheme
    fidelity: FidelitySettings = field(default_factory=FidelitySettings)
    opset: int = 17
    name: str = "calibrate"
    accepts: tuple[str, ...] = ("torch", "onnx")

    def settings(self) -> dict[str, Any]:
        fidelity = self.fidelity.stage_settings() if self.calib.method == "auto" else {}
        return {**self.calib.stage_settings(), **fidelity, "preset": self.scheme.preset, "opset": self.opset}

    def run(self, ctx, artifact: Artifact, out: Path) -> tuple[Artifact, dict[str, Any]]:
        files = fp32_graph(ctx, artifact, out, self.opset)
        method = self.calib.method
        report: dict[str, Any] = {"method": method}
        names = artifact.input_names
        external: dict[str, list[float]] = {}
        if self.calib.calibrator == "nncf":
            from edgekit.backends.nncf_ptq import nncf_calibrate

            external, nncf_report = nncf_calibrate(out / MODEL, ctx.splits.calib, names)
            report.update(nncf_report)
        if method == "auto":
            from edgekit.ptq.auto import choose_ranges
            from edgekit.ptq.floor import OutputFloor

            floor = OutputFloor(out / MODEL, ctx.splits.calib, names, self.fidelity)
            _, ranges = choose_ranges(out / MODEL, ctx.splits.calib, names, self.scheme, out, report, floor)
        else:
            ranges = calibrate(out / MODEL, ctx.splits.calib, names, method, out, report=report)
        ranges.update(external)
        if self.calib.equalize != "off":
            ranges = self._equalized(ctx, out, names, chosen_or(report, method), ranges, report)
        write_json(out / RANGES, ranges)
        files["ranges"] = RANGES
        spans = [hi - lo for lo, hi in ranges.values()]
        return artifact.derive(out, "onnx", files), {**report, "widest_range": max(spans) if spans else 0.0}

    def _equalized(self, ctx, out: Path, names: list[str], method: str, ranges: dict, report: dict) -> dict:
        """The ranges to keep; where equalization is kept, out/model.onnx becomes the equalized graph (the same
        FP32 function) and the ranges are its own. auto keeps it only where plain INT8 misses the floor on the
        calibration split and the equalized INT8 graph measures closer to it there."""
        import shutil

        from edgekit.files import scratch_dir
        from edgekit.ptq.equalize import equalize
        from edgekit.ptq.floor import OutputFloor
        from edgekit.ptq.qdq import quantize_qdq

        calib = ctx.splits.calib
        floor = OutputFloor(out / MODEL, calib, names, self.fidelity)
        with scratch_dir("equalize") as tmp:
            tmp = Path(tmp)
            plain = floor.try_measure(quantize_qdq(out / MODEL, tmp / "plain.onnx", ranges, method, self.scheme))
            if self.calib.equalize == "auto" and floor.excess(plain) == 0:
                report["equalize"] = {"kept": False, "why": "plain INT8 holds the floor"}
                return ranges
            sites = equalize(out / MODEL, tmp / "equalized.onnx", calib, names)
            if not sites:
                report["equalize"] = {"kept": False, "why": "no activation feeds only weight layers"}
                return ranges
            moved = calibrate(tmp / "equalized.onnx", calib, names, method, tmp)
            measured = floor.try_measure(quantize_qdq(tmp / "equalized.onnx", tmp / "q.onnx", moved, method, self.scheme))
            kept = self.calib.equalize == "on" or floor.rank(measured) < floor.rank(plain)
            report["equalize"] = {"kept": kept, "tensors": sites, "worst_sqnr_db_plain": plain.get("worst_sqnr_db"),
                                  "worst_sqnr_db_equalized": measured.get("worst_sqnr_db")}
            if not kept:
                return ranges
            shutil.move(str(tmp / "equalized.onnx"), str(out / MODEL))
        return moved


def chosen_or(report: dict, method: str) -> str:
    """The range method `--calib auto` settled on, or the one given."""
    return report.get("chosen_method") or method
