"""uint8 or int8 activations for ONNX Runtime targets: measured on this CPU, not assumed.

Asymmetric uint8 and int8 activations put values on the same grid (the zero point moves by 128), so the
choice changes no number, only which integer kernels the runtime fuses: on this project's x86 CPU int8
activations ran a detector at 46.8 ms against 13.8 ms for uint8 (FP32 30.5 ms), while ONNX Runtime
documents int8 as its first choice where the CPU has VNNI or on ARM. So where the host runs the target's
runtime on the target's architecture, a small Conv/MatMul probe graph is quantized both ways and timed in
alternating rounds, and the faster is kept; elsewhere (building for another board) the target's preset
stands. The measurement is cached per CPU, runtime version and thread count, so a run is reproducible.
"""

from __future__ import annotations

import json
import platform
from functools import lru_cache
from pathlib import Path

import numpy as np

from edgekit.errors import InputError
from edgekit.files import cache_root, scratch_dir
from edgekit.target import SCHEMES, QuantScheme, Target, host_arch

TYPES = {"uint8": "ort-u8s8", "int8": "ort-s8s8"}


def activation_scheme(target: Target, choice: str) -> tuple[QuantScheme, dict]:
    """(the scheme to quantize with, the record of how it was chosen)."""
    if target.runtime != "onnxruntime":
        if choice == "uint8":
            raise InputError(f"--activations uint8: {target.name} runs TensorRT, which takes int8 only; "
                             "drop --activations or give int8")
        return target.scheme, {"activations": "int8", "why": "TensorRT takes symmetric int8 only"}
    if choice in TYPES:
        return SCHEMES[TYPES[choice]], {"activations": choice, "why": "given"}
    preset = "int8" if target.scheme.signed_activations else "uint8"
    machine = host_arch()
    if machine != target.arch:
        return target.scheme, {"activations": preset, "why": f"the target's preset: not measured on this "
                                                              f"{machine} host for an {target.arch} board"}
    timings = probe_latencies()
    faster = min(timings, key=timings.get)
    return SCHEMES[TYPES[faster]], {"activations": faster, "why": "measured on this CPU (probe graph, batch 1)",
                                    "probe_ms": timings}


@lru_cache(maxsize=1)
def probe_latencies() -> dict[str, float]:
    """{"uint8": ms, "int8": ms} of the probe graph, from the cache or measured now."""
    import onnxruntime as ort

    key = f"{_cpu_name()}|onnxruntime {ort.__version__}|1 thread"
    path = cache_root() / "activation_probe.json"
    try:
        known = json.loads(path.read_text())
    except (OSError, ValueError):
        known = {}
    if key in known:
        return known[key]
    timings = _measure()
    known[key] = timings
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(known, indent=1))
        tmp.replace(path)
    except OSError:
        pass  # a read-only home: measured again next time
    return timings


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("model name", "Hardware", "CPU part")):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _measure(rounds: int = 5) -> dict[str, float]:
    from edgekit.backends.ort import session
    from edgekit.data.samples import SampleSet
    from edgekit.measure.latency import median_ms, percentiles
    from edgekit.ptq.qdq import quantize_qdq
    from edgekit.ptq.statistics import calibrate

    with scratch_dir("probe") as tmp:
        tmp = Path(tmp)
        fp32 = _probe_graph(tmp / "probe.onnx")
        x = np.random.default_rng(0).normal(size=(4, 32, 28, 28)).astype(np.float32)
        ranges = calibrate(fp32, SampleSet("probe", arrays={"x": x}), ["x"], "minmax", tmp)
        sessions = {kind: session(quantize_qdq(fp32, tmp / f"{kind}.onnx", ranges, "minmax", SCHEMES[preset]))
                    for kind, preset in TYPES.items()}
        feed = {"x": x[:1]}
        for sess in sessions.values():
            median_ms(sess, feed, 5, 1)
        samples = {kind: [] for kind in sessions}
        for _ in range(rounds):
            for kind, sess in sessions.items():
                samples[kind].append(median_ms(sess, feed, 0, 20))
    return {kind: round(percentiles(values)["p50"], 4) for kind, values in samples.items()}


def _probe_graph(path: Path) -> Path:
    """Conv 3x3 -> Relu -> Conv 1x1 -> Add (residual) -> MatMul over channels: the kernels models fuse."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    weights = {"w1": rng.normal(0, 0.1, (32, 32, 3, 3)), "b1": np.zeros(32), "w2": rng.normal(0, 0.1, (32, 32, 1, 1)),
               "b2": np.zeros(32), "w3": rng.normal(0, 0.1, (28, 28))}
    nodes = [helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], name="conv1", pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
             helper.make_node("Conv", ["r1", "w2", "b2"], ["c2"], name="conv2"),
             helper.make_node("Add", ["c2", "x"], ["s"], name="add"),
             helper.make_node("MatMul", ["s", "w3"], ["y"], name="matmul")]
    graph = helper.make_graph(nodes, "probe", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 32, 28, 28])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 32, 28, 28])],
                              [numpy_helper.from_array(v.astype(np.float32), k) for k, v in weights.items()])
    model = onnx.shape_inference.infer_shapes(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]))
    onnx.save(model, str(path))
    return path
