"""Stage 1: the FP32 baseline as ONNX, measured later against every compressed form."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgekit.artifact import Artifact
from edgekit.models.export import export_onnx
from edgekit.models.onnx_normalize import normalize_onnx
from edgekit.stages._torch import example_inputs, materialize
from edgekit.measure.fidelity import torch_fidelity

BASELINE = "fp32.onnx"


@dataclass
class SourceStage:
    opset: int = 17
    name: str = "source"
    accepts: tuple[str, ...] = ("torch", "onnx")

    def settings(self) -> dict[str, Any]:
        return {"opset": self.opset}

    def run(self, ctx, artifact: Artifact, out: Path) -> tuple[Artifact, dict[str, Any]]:
        metrics: dict[str, Any] = {}
        if artifact.format == "onnx":
            metrics.update(normalize_onnx(artifact.path("onnx"), out / BASELINE))
            return artifact.derive(out, "onnx", {"onnx": BASELINE}), metrics
        example = example_inputs(ctx.splits, artifact.input_names)
        model = materialize(artifact, example)
        export_onnx(model, example, artifact.input_names, out / BASELINE, self.opset)
        metrics.update(torch_fidelity(model, ctx, artifact.input_names))
        return artifact.derive(out, "torch", {"baseline": BASELINE}), metrics
