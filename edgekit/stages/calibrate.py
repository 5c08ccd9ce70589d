"""Static INT8 calibration: activation ranges over the calibration split, on the ONNX graph.

Ranges are taken on the same (pre-processed) ONNX graph that is quantized
later, so tensor names match exactly; QAD reads them to start its training.
With `calibrator="nncf"`, NNCF's bias correction is applied to that graph and
its ranges replace edgekit's wherever NNCF quantizes a tensor.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgekit.artifact import Artifact
from edgekit.backends import ort as ort_backend
from edgekit.errors import InputError
from edgekit.files import write_json
from edgekit.stages._torch import MODEL, RANGES, fp32_graph

CALIBRATORS = ("edgekit", "nncf")


@dataclass
class CalibrateStage:
    method: str = "minmax"
    calibrator: str = "edgekit"
    preset: str = "ort-u8s8"
    opset: int = 17
    name: str = "calibrate"
    accepts: tuple[str, ...] = ("torch", "onnx")

    def __post_init__(self) -> None:
        if self.method not in ort_backend.CALIB_METHODS:
            raise InputError(f"--calib {self.method} is unknown; choose one of {', '.join(ort_backend.CALIB_METHODS)}")
        if self.calibrator not in CALIBRATORS:
            raise InputError(f"--calibrator {self.calibrator} is unknown; choose one of {', '.join(CALIBRATORS)}")

    def settings(self) -> dict[str, Any]:
        return {"method": self.method, "calibrator": self.calibrator, "preset": self.preset, "opset": self.opset}

    def run(self, ctx, artifact: Artifact, out: Path) -> tuple[Artifact, dict[str, Any]]:
        files = fp32_graph(ctx, artifact, out, self.opset)
        report: dict[str, Any] = {"method": self.method}
        names = artifact.input_names
        external: dict[str, list[float]] = {}
        if self.calibrator == "nncf":
            from edgekit.backends.nncf_ptq import nncf_calibrate

            external, nncf_report = nncf_calibrate(out / MODEL, ctx.splits.calib, names)
            report.update(nncf_report)
        if self.method == "auto":
            from edgekit.ptq.auto import choose_ranges

            _, ranges = choose_ranges(out / MODEL, ctx.splits.calib, names, self.preset, out, report)
        else:
            ranges = ort_backend.calibrate(out / MODEL, ctx.splits.calib, names, self.method, out, report=report)
        ranges.update(external)
        write_json(out / RANGES, ranges)
        files["ranges"] = RANGES
        spans = [hi - lo for lo, hi in ranges.values()]
        return artifact.derive(out, "onnx", files), {**report, "widest_range": max(spans) if spans else 0.0}
