"""build_engine.sh: the trtexec command that builds and profiles the engine on the board itself.

Engines are specific to the GPU and TensorRT version they were built with, so the artifact
ships the explicit-quantization ONNX plus this script, and the board builds its own engine.
The flags follow the board's TensorRT version: weakly typed builds (`--int8 --fp16`) up to
10.11, strongly typed builds from 10.12 on (weak typing deprecated there, removed in 11).
Implicit INT8 calibration (a calibration cache) is never used: the Q/DQ nodes carry the scales.
"""

from __future__ import annotations

import shlex

SCRIPT = "build_engine.sh"
ENGINE = "model.engine"
OUTPUTS = {"engine": ENGINE, "timing_cache": "timing.cache", "layers": "layers.json",
           "profile": "profile.json", "times": "times.json", "log": "trtexec.log"}
STRONG_TYPING_FROM = (10, 12)


def precision_flags(version: tuple[int, ...]) -> list[str]:
    """Explicit quantization needs INT8 enabled on weakly typed builds; strong typing reads it from Q/DQ."""
    if version[:2] >= STRONG_TYPING_FROM:
        return ["--stronglyTyped"]
    return ["--int8", "--fp16"]


def shapes_flag(inputs: dict[str, list[int]], dynamic: bool) -> list[str]:
    """trtexec needs concrete shapes only for inputs with dynamic dimensions."""
    if not dynamic:
        return []
    spec = ",".join(f"{name}:{'x'.join(str(d) for d in dims)}" for name, dims in inputs.items())
    return [f"--shapes={spec}"]


def trtexec_args(trt, inputs: dict[str, list[int]], dynamic: bool, iterations: int) -> list[str]:
    """Build, save the engine and timing cache, then profile it with per-layer detail."""
    return ["--onnx=model.onnx", f"--saveEngine={ENGINE}", f"--timingCacheFile={OUTPUTS['timing_cache']}",
            *precision_flags(trt.version_tuple()), f"--memPoolSize=workspace:{trt.workspace_mb}",
            *shapes_flag(inputs, dynamic), "--profilingVerbosity=detailed",
            f"--exportLayerInfo={OUTPUTS['layers']}", f"--exportProfile={OUTPUTS['profile']}",
            f"--exportTimes={OUTPUTS['times']}", "--separateProfileRun", f"--iterations={iterations}"]


def build_script(target, inputs: dict[str, list[int]], dynamic: bool) -> str:
    """A bash script for the board: finds trtexec, optionally uses a DLA core, logs everything."""
    trt = target.tensorrt
    args = " \\\n  ".join(shlex.quote(a) for a in trtexec_args(trt, inputs, dynamic, max(target.bench.runs, 100)))
    dla = ('if [ -n "${DLA_CORE:-}" ]; then EXTRA+=(--useDLACore="$DLA_CORE" --allowGPUFallback); fi'
           if trt.dla_cores else
           'if [ -n "${DLA_CORE:-}" ]; then echo "this board has no DLA core; unset DLA_CORE" >&2; exit 2; fi')
    return f"""#!/usr/bin/env bash
# Builds and profiles the TensorRT engine for {target.name} on the board itself
# (JetPack {trt.jetpack}, TensorRT {trt.version}, GPU compute {trt.compute_capability}).
# Engines only run on the GPU and TensorRT version that built them.
# Usage: ./{SCRIPT} [extra trtexec flags]   DLA_CORE=0 ./{SCRIPT} uses a DLA core where the board has one.
# Writes {", ".join(OUTPUTS.values())}.
set -euo pipefail
cd "$(dirname "$0")"
TRTEXEC="${{TRTEXEC:-$(command -v trtexec || echo /usr/src/tensorrt/bin/trtexec)}}"
if [ ! -x "$TRTEXEC" ]; then
  echo "trtexec not found: install TensorRT (it comes with JetPack) or set TRTEXEC=/path/to/trtexec" >&2
  exit 2
fi
EXTRA=()
{dla}
"$TRTEXEC" \\
  {args} \\
  ${{EXTRA[@]+"${{EXTRA[@]}}"}} "$@" 2>&1 | tee {OUTPUTS['log']}
"""
