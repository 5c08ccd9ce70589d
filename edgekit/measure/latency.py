"""The one timing loop and the one median: every stage, scan, search and benchmark times models here.

`time_runs` is the loop, `percentiles` the summary (p50 is numpy's median), `median_ms` what
comparisons use. `measure_in_process` times a model in a fresh process so its peak memory is its
own: `python -m edgekit.measure.latency MODEL INPUTS.npz WARMUP RUNS THREADS` prints one JSON line.
At module level this file needs only the standard library, numpy and onnxruntime.
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
    return {**percentiles(time_runs(sess, feed, warmup, runs)), "runs": runs, "threads": threads,
            "peak_rss_bytes": _peak_rss(),
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


def percentiles(times: list[float]) -> dict[str, float]:
    import numpy as np

    arr = np.asarray(times)
    return {"p50": float(np.percentile(arr, 50)), "p90": float(np.percentile(arr, 90)),
            "p99": float(np.percentile(arr, 99)), "mean": float(arr.mean())}


def median_ms(sess, feed: dict, warmup: int, runs: int) -> float:
    """Median milliseconds of `runs` calls: what every latency comparison in edgekit uses."""
    return percentiles(time_runs(sess, feed, warmup, runs))["p50"]


def time_generation(new_generator, prompt: list[int], repeats: int) -> dict[str, float]:
    """A token generator timed the way its users feel it: the median over `repeats` (after one untimed run)
    of the time to first token (the prompt's prefill and one step) and of decode tokens/s after it.
    `new_generator()` gives a fresh generator with `append_tokens`, `generate_next_token` and `is_done`
    (ONNX Runtime GenAI's), set to stop after the new tokens wanted."""
    import numpy as np

    ttft, decode = [], []
    for _ in range(repeats + 1):
        generator = new_generator()
        start = time.perf_counter()
        generator.append_tokens(prompt)
        generator.generate_next_token()
        first = time.perf_counter()
        steps = 0
        while not generator.is_done():
            generator.generate_next_token()
            steps += 1
        end = time.perf_counter()
        ttft.append(first - start)
        decode.append(steps / max(end - first, 1e-9))
    ttft_s = float(np.median(ttft[1:]))
    return {"ttft_ms": 1000 * ttft_s, "prefill_tok_s": len(prompt) / ttft_s, "decode_tok_s": float(np.median(decode[1:]))}


def decode_rates_side_by_side(starts: dict, rounds: int) -> dict[str, float]:
    """Tokens/s of several token generators (1 / the median time of one step), advanced in turn, one token
    each, so that all of them meet the same moments of a shared machine, whose speed drifts over seconds.
    Each round starts every generator afresh (`starts[label]()`: loaded, prompt taken, first token made),
    since where a load places the weights in memory moves decode speed too (the same graph loaded twice has
    differed by a tenth), and turns the order by one."""
    labels = list(starts)
    steps: dict[str, list[float]] = {label: [] for label in labels}
    for round_ in range(rounds):
        order = labels[round_ % len(labels):] + labels[:round_ % len(labels)]
        live = {label: starts[label]() for label in order}
        while live:
            for label in order:
                generator = live.get(label)
                if generator is None:
                    continue
                if generator.is_done():
                    del live[label]
                    continue
                start = time.perf_counter()
                generator.generate_next_token()
                steps[label].append(time.perf_counter() - start)
    return {label: 1.0 / percentiles(times)["p50"] for label, times in steps.items()}


def measure_in_process(path, feed: dict, warmup: int, runs: int, threads: int) -> dict:
    """`measure` in a child process (its peak memory then is the model's own)."""
    import subprocess
    from pathlib import Path

    import numpy as np

    from edgekit.errors import StageError
    from edgekit.files import scratch_dir

    with scratch_dir("bench") as tmp:
        inputs = Path(tmp) / "inputs.npz"
        np.savez(inputs, **feed)
        cmd = [sys.executable, "-m", "edgekit.measure.latency", str(path), str(inputs), str(warmup), str(runs),
               str(threads)]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=1800)
    if proc.returncode != 0:
        raise StageError(f"timing {path} failed: {proc.stderr.strip().splitlines()[-1][:200]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _peak_rss() -> int:
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024


if __name__ == "__main__":
    m, i, w, r, t = sys.argv[1:6]
    print(json.dumps(measure(m, i, int(w), int(r), int(t))))
