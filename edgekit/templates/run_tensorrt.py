"""Run this edgekit bundle with the TensorRT runtime on a Jetson: outputs checked, then timed.

    ./build_engine.sh                      # once, on the board: builds model.engine
    python3 apps/python/run_tensorrt.py [--engine model.engine] [--runs 200] [--json]

Needs tensorrt (JetPack ships it), numpy and cuda-python (`pip install cuda-python`). It feeds the
inputs shipped in reference.npz, compares the outputs with the host's, then times batch-1 inference.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np

BUNDLE = Path(__file__).resolve().parents[2]


def cudart():
    try:
        from cuda.bindings import runtime
    except ImportError:
        from cuda import cudart as runtime
    return runtime


def check(result):
    err, *rest = result if isinstance(result, tuple) else (result,)
    if int(err) != 0:
        raise RuntimeError(f"CUDA error {err}")
    return rest[0] if len(rest) == 1 else rest


class Engine:
    """One engine, its execution context and device buffers for batch-1 inputs and outputs."""

    def __init__(self, path: Path, feed: dict[str, np.ndarray]):
        import tensorrt as trt

        self.rt = cudart()
        logger = trt.Logger(trt.Logger.WARNING)
        self.engine = trt.Runtime(logger).deserialize_cuda_engine(path.read_bytes())
        if self.engine is None:
            raise SystemExit(f"{path} does not load: rebuild it on this board with ./build_engine.sh")
        self.context = self.engine.create_execution_context()
        self.stream = check(self.rt.cudaStreamCreate())
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        self.inputs = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        self.outputs = [n for n in names if n not in self.inputs]
        for name in self.inputs:
            self.context.set_input_shape(name, feed[name].shape)
        self.host = {n: np.empty(tuple(self.context.get_tensor_shape(n)), trt.nptype(self.engine.get_tensor_dtype(n)))
                     for n in self.outputs}
        self.device = {}
        for name in names:
            nbytes = feed[name].nbytes if name in feed else self.host[name].nbytes
            self.device[name] = check(self.rt.cudaMalloc(nbytes))
            self.context.set_tensor_address(name, int(self.device[name]))

    def run(self, feed: dict[str, np.ndarray]) -> list[np.ndarray]:
        h2d, d2h = self.rt.cudaMemcpyKind.cudaMemcpyHostToDevice, self.rt.cudaMemcpyKind.cudaMemcpyDeviceToHost
        for name in self.inputs:
            array = np.ascontiguousarray(feed[name])
            check(self.rt.cudaMemcpyAsync(self.device[name], array.ctypes.data, array.nbytes, h2d, self.stream))
        self.context.execute_async_v3(self.stream)
        for name in self.outputs:
            out = self.host[name]
            check(self.rt.cudaMemcpyAsync(out.ctypes.data, self.device[name], out.nbytes, d2h, self.stream))
        check(self.rt.cudaStreamSynchronize(self.stream))
        return [self.host[n].copy() for n in self.outputs]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--engine", default="model.engine")
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=50)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    import tensorrt as trt

    engine_path = BUNDLE / args.engine
    if not engine_path.is_file():
        raise SystemExit(f"{engine_path} is missing: run ./build_engine.sh on this board first")
    manifest = json.loads((BUNDLE / "manifest.json").read_text())
    names = [i["name"] for i in manifest["inputs"]]
    reference = np.load(BUNDLE / "reference.npz")
    first = {n: reference[f"in_{i}"][:1] for i, n in enumerate(names)}
    engine = Engine(engine_path, first)
    got = [engine.run({n: reference[f"in_{i}"][k:k + 1] for i, n in enumerate(names)})
           for k in range(reference["in_0"].shape[0])]
    out0 = np.concatenate([g[0] for g in got]).astype(np.float64)
    want = reference["out_0"]
    agreement = {"max_abs_diff": float(np.max(np.abs(out0 - want))), "samples": int(out0.shape[0]),
                 "top1_agreement": float(np.mean(out0.argmax(1) == want.argmax(1))) if out0.ndim == 2 else None}
    for _ in range(args.warmup):
        engine.run(first)
    times = []
    for _ in range(args.runs):
        start = time.perf_counter()
        engine.run(first)
        times.append((time.perf_counter() - start) * 1e3)
    p50, p90, p99 = np.percentile(times, [50, 90, 99])
    result = {"model": engine_path.name, "latency_ms": {"p50": p50, "p90": p90, "p99": p99, "mean": float(np.mean(times))},
              "throughput_per_s": 1e3 / float(np.mean(times)), "runs": args.runs, "agreement": agreement,
              "versions": {"tensorrt": trt.__version__, "python": platform.python_version()},
              "machine": platform.machine()}
    print(json.dumps(result, default=float) if args.json else
          f"{engine_path.name}: p50 {p50:.3f} ms, p99 {p99:.3f} ms; vs host: {agreement}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
