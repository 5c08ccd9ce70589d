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
        write_json(out / RANGES, ranges)
        files["ranges"] = RANGES
        spans = [hi - lo for lo, hi in ranges.values()]
        return artifact.derive(out, "onnx", files), {**report, "widest_range": max(spans) if spans else 0.0}
