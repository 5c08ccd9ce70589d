"""Engine building through TensorRT's Python API, used only where TensorRT and a matching GPU are here.

An engine runs only on the GPU architecture and TensorRT version that built it, so edgekit builds
one on this machine only when its GPU's compute capability and CPU architecture match the
target's (a Jetson building for itself); everywhere else the board runs build_engine.sh.
`tensorrt` is imported inside these functions: it is an optional extra.
"""

from __future__ import annotations

import platform
from pathlib import Path

from edgekit.errors import MissingDependencyError, StageError


def local_build_blocker(target) -> str | None:
    """None when an engine for `target` can be built here, else the reason it cannot."""
    try:
        import tensorrt  # noqa: F401
    except ImportError:
        return "TensorRT is not installed here (pip install 'edgekit[tensorrt]' on the board)"
    capability = _cuda_capability()
    if capability is None:
        return "no CUDA GPU here"
    arch = platform.machine().lower().replace("arm64", "aarch64")
    wanted = target.tensorrt.compute_capability
    if capability != wanted or arch != target.arch:
        return f"this machine ({arch}, GPU compute {capability}) is not a {target.name} ({target.arch}, compute {wanted})"
    return None


def _cuda_capability() -> str | None:
    try:
        import torch
    except ImportError:
        return None
    if not torch.cuda.is_available():
        return None
    major, minor = torch.cuda.get_device_capability(0)
    return f"{major}.{minor}"


def build_engine(onnx_path: Path, engine_path: Path, trt_settings, layers_path: Path | None = None) -> dict:
    """Parse the explicit-quantization ONNX, build and save the engine; optionally dump layer info."""
    try:
        import tensorrt as trt
    except ImportError as exc:
        raise MissingDependencyError("tensorrt", "tensorrt") from exc
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(_network_flags(trt))
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(Path(onnx_path).read_bytes()):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise StageError(f"TensorRT cannot parse {onnx_path}: {errors[:300]}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, trt_settings.workspace_mb << 20)
    config.profiling_verbosity = trt.ProfilingVerbosity.DETAILED
    if not _strongly_typed(trt):
        config.set_flag(trt.BuilderFlag.INT8)
        config.set_flag(trt.BuilderFlag.FP16)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise StageError(f"TensorRT could not build an engine from {onnx_path}; see the messages above")
    engine_path.write_bytes(bytes(serialized))
    if layers_path is not None:
        engine = trt.Runtime(logger).deserialize_cuda_engine(serialized)
        inspector = engine.create_engine_inspector()
        layers_path.write_text(inspector.get_engine_information(trt.LayerInformationFormat.JSON))
    return {"tensorrt_version": trt.__version__, "engine_bytes": engine_path.stat().st_size}


def _strongly_typed(trt) -> bool:
    from edgekit.backends.trtexec import STRONG_TYPING_FROM

    version = tuple(int(p) for p in trt.__version__.split(".")[:2])
    return version >= STRONG_TYPING_FROM


def _network_flags(trt) -> int:
    """TensorRT 8 needs explicit batch spelled out; 10.12+ is built strongly typed."""
    if int(trt.__version__.split(".")[0]) < 10:
        return 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
    if _strongly_typed(trt):
        return 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    return 0
