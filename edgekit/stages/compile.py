"""Compile for an ONNX Runtime target: QDQ ONNX, ORT format, and the required-operators config."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from edgekit.artifact import Artifact
from edgekit.backends import ort as ort_backend
from edgekit.onnx_compact import compact_names


@dataclass
class CompileStage:
    ort_format: bool = True
    platform: Literal["arm", "amd64"] = "amd64"  # ORT's --target_platform: the target's ort_platform
    name: str = "compile"
    accepts: tuple[str, ...] = ("onnx-qdq", "onnx-dynamic", "onnx")

    def settings(self) -> dict[str, Any]:
        return {"ort_format": self.ort_format, "optimization_style": "Fixed", "platform": self.platform}

    def run(self, ctx, artifact: Artifact, out: Path) -> tuple[Artifact, dict[str, Any]]:
        compact_names(artifact.path("onnx"), out / "model.onnx")
        files = {"onnx": "model.onnx"}
        metrics: dict[str, Any] = {"onnx_bytes": (out / "model.onnx").stat().st_size}
        if self.ort_format:
            ort_file, config = ort_backend.convert_to_ort(out / "model.onnx", out, self.platform)
            files.update({"ort": ort_file.name, "ops_config": config.name})
            metrics["ort_bytes"] = ort_file.stat().st_size
        return artifact.derive(out, "ort", files), metrics
