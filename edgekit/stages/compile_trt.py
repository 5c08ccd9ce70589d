"""Compile for a TensorRT board: the explicit-quantization ONNX, its rules check and the engine script.

The ONNX is what TensorRT parses; every Q/DQ rule is checked here again on the final file, so a
graph that would fall back to FP32 or insert reformat layers never ships. The engine itself is
built on the board by build_engine.sh, or here when this machine is that board.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgekit.artifact import Artifact
from edgekit.backends.trt_rules import require_explicit_quantization
from edgekit.backends.trtexec import SCRIPT, build_script
from edgekit.files import write_json
from edgekit.onnx_compact import compact_names

RULES_REPORT = "trt_rules.json"


@dataclass
class TensorRTCompileStage:
    target: Any
    name: str = "compile"
    accepts: tuple[str, ...] = ("onnx-qdq", "onnx")

    def settings(self) -> dict[str, Any]:
        return {"runtime": "tensorrt", "tensorrt": self.target.tensorrt.model_dump(),
                "iterations": self.target.bench.runs}

    def run(self, ctx, artifact: Artifact, out: Path) -> tuple[Artifact, dict[str, Any]]:
        compact_names(artifact.path("onnx"), out / "model.onnx")
        rules = require_explicit_quantization(out / "model.onnx")
        write_json(out / RULES_REPORT, rules)
        inputs, dynamic = _input_shapes(out / "model.onnx", ctx, artifact.input_names)
        script = out / SCRIPT
        script.write_text(build_script(self.target, inputs, dynamic))
        script.chmod(0o755)
        files = {"onnx": "model.onnx", "build_script": SCRIPT, "trt_rules": RULES_REPORT}
        metrics: dict[str, Any] = {"onnx_bytes": (out / "model.onnx").stat().st_size,
                                   "qdq_pairs": rules["qdq_nodes"] // 2, "trt_rule_violations": 0}
        metrics.update(self._maybe_build_engine(out, files))
        return artifact.derive(out, "tensorrt", files), metrics

    def _maybe_build_engine(self, out: Path, files: dict[str, str]) -> dict[str, Any]:
        from edgekit.backends import trt

        blocker = trt.local_build_blocker(self.target)
        if blocker is not None:
            return {"engine": f"not built here: {blocker}; run {SCRIPT} on the board"}
        built = trt.build_engine(out / "model.onnx", out / "model.engine", self.target.tensorrt, out / "layers.json")
        files.update({"engine": "model.engine", "layers": "layers.json"})
        return {"engine": "built", **built}


def _input_shapes(path: Path, ctx, names: list[str]) -> tuple[dict[str, list[int]], bool]:
    """Batch-1 shapes from a real sample, and whether the graph leaves any dimension dynamic."""
    from edgekit.bundle.manifest import io_spec

    sample, _ = next(ctx.splits.calib.batches(1))
    dynamic = any(isinstance(d, str) or d == 0 for i in io_spec(path)["inputs"] for d in i["shape"])
    return {n: list(sample[n].shape) for n in names}, dynamic
