"""Run this edgekit bundle with ONNX Runtime on the board: outputs checked, then timed.

    python3 apps/python/run_onnxruntime.py [--model model.ort] [--runs 200] [--threads 1] [--json]
    python3 apps/python/run_onnxruntime.py --text "the plot was not good"   # text models

Needs only numpy and onnxruntime. It feeds the inputs shipped in reference.npz, compares the outputs
with the host's (top-1 agreement and largest absolute difference), then times batch-1 inference.
With --text (a bundle holding tokenizer.json; needs the `tokenizers` package) it classifies the
sentence instead, tokenized as on the host: same file, same padding length.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import sys
import time
from pathlib import Path

import numpy as np

BUNDLE = Path(__file__).resolve().parents[2]


def load_session(model: Path, threads: int):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    return ort.InferenceSession(str(model), opts, providers=["CPUExecutionProvider"])


def pick_model(requested: str | None) -> Path:
    if requested:
        return (BUNDLE / requested) if not Path(requested).is_absolute() else Path(requested)
    ort_file = BUNDLE / "model.ort"
    return ort_file if ort_file.is_file() else BUNDLE / "model.onnx"


def agreement(outputs: list[np.ndarray], reference) -> dict:
    """Compare every output with the host's; top-1 agreement where the output is class scores."""
    result = {"max_abs_diff": 0.0, "top1_agreement": None, "samples": int(outputs[0].shape[0])}
    for j, got in enumerate(outputs):
        want = reference[f"out_{j}"]
        result["max_abs_diff"] = max(result["max_abs_diff"], float(np.max(np.abs(got.astype(np.float64) - want))))
        if j == 0 and got.ndim == 2:
            result["top1_agreement"] = float(np.mean(got.argmax(1) == want.argmax(1)))
    return result


def classify_text(sess, names: list[str], manifest: dict, text: str) -> dict:
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(BUNDLE / "tokenizer.json"))
    config = BUNDLE / "tokenizer_config.json"
    pad = json.loads(config.read_text()).get("pad_token") if config.is_file() else None
    pad = pad if isinstance(pad, str) else "[PAD]"
    length = manifest["preprocessing"]["max_length"]
    tokenizer.enable_truncation(max_length=length)
    tokenizer.enable_padding(length=length, pad_id=tokenizer.token_to_id(pad), pad_token=pad)
    encoding = tokenizer.encode(text)
    arrays = {"input_ids": encoding.ids, "attention_mask": encoding.attention_mask, "token_type_ids": encoding.type_ids}
    scores = sess.run(None, {n: np.array([arrays[n]], np.int64) for n in names})[0][0]
    labels = manifest.get("labels") or [str(i) for i in range(len(scores))]
    return {"text": text, "label": labels[int(np.argmax(scores))], "scores": [float(s) for s in scores]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="model file in the bundle (default model.ort, else model.onnx)")
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--text", default=None, help="classify this sentence (bundles with tokenizer.json)")
    args = parser.parse_args()
    import onnxruntime as ort

    manifest = json.loads((BUNDLE / "manifest.json").read_text())
    names = [i["name"] for i in manifest["inputs"]]
    model = pick_model(args.model)
    sess = load_session(model, args.threads)
    if args.text is not None:
        if not (BUNDLE / "tokenizer.json").is_file():
            print("this bundle has no tokenizer.json; --text is for text models", file=sys.stderr)
            return 2
        result = classify_text(sess, names, manifest, args.text)
        print(json.dumps(result) if args.json else f"{result['label']}  {result['scores']}")
        return 0
    reference = np.load(BUNDLE / "reference.npz")
    count = reference["in_0"].shape[0]
    outputs = [sess.run(None, {n: reference[f"in_{i}"][k:k + 1] for i, n in enumerate(names)})
               for k in range(count)]
    stacked = [np.concatenate([o[j] for o in outputs]) for j in range(len(outputs[0]))]
    feed = {n: reference[f"in_{i}"][:1] for i, n in enumerate(names)}
    for _ in range(args.warmup):
        sess.run(None, feed)
    times = []
    for _ in range(args.runs):
        start = time.perf_counter()
        sess.run(None, feed)
        times.append((time.perf_counter() - start) * 1e3)
    p50, p90, p99 = np.percentile(times, [50, 90, 99])
    result = {"model": model.name, "latency_ms": {"p50": p50, "p90": p90, "p99": p99, "mean": float(np.mean(times))},
              "throughput_per_s": 1e3 / float(np.mean(times)), "runs": args.runs, "threads": args.threads,
              "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
              "agreement": agreement(stacked, reference),
              "versions": {"onnxruntime": ort.__version__, "numpy": np.__version__, "python": platform.python_version()},
              "machine": platform.machine()}
    if args.json:
        print(json.dumps(result, default=float))
    else:
        a = result["agreement"]
        print(f"{model.name}: p50 {p50:.3f} ms, p99 {p99:.3f} ms, {result['throughput_per_s']:.0f}/s; "
              f"vs host: top-1 agreement {a['top1_agreement']}, max |diff| {a['max_abs_diff']:.3g}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
