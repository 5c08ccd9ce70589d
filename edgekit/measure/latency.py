"""Time one ONNX model in a fresh process, so its peak memory is its own.

Run as `python -m edgekit.measure.latency MODEL INPUTS.npz WARMUP RUNS THREADS`;
prints one JSON line. Kept free of edgekit imports beyond the standard
library, numpy and onnxruntime so it can also run on a board.
"""

from __future__ import annotations

import json
import resource
import sys
import time


def measure(model: str, inputs_path: str, warmup: int, runs: int, threads: int) -> dict:
    import numpy as np
    import onnxruntime as ort

    with np.load(inputs_path) as npz:
        feed = {k: npz[k] for k in npz.files}
    rss_before = _peak_rss()
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    sess = ort.InferenceSession(model, opts, providers=["CPUExecutionProvider"])
    arr = np.asarray(time_runs(sess, feed, warmup, runs))
    return {"p50": float(np.percentile(arr, 50)), "p90": float(np.percentile(arr, 90)),
            "p99": float(np.percentile(arr, 99)), "mean": float(arr.mean()), "runs": runs,
            "threads": threads, "peak_rss_bytes": _peak_rss(),
            "session_memory_bytes": max(_peak_rss() - rss_before, 0), "onnxruntime": ort.__version__}


def time_runs(sess, feed: dict, warmup: int, runs: int) -> list[float]:
    """Milliseconds of each of `runs` calls after `warmup` untimed ones."""
    for _ in range(warmup):
        sess.run(None, feed)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        sess.run(None, feed)
        times.append((time.perf_counter() - start) * 1e3)
    return times


def _peak_rss() -> int:
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024


if __name__ == "__main__":
    m, i, w, r, t = sys.argv[1:6]
    print(json.dumps(measure(m, i, int(w), int(r), int(t))))
