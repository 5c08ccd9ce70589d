"""Teacher vs distilled student vs compressed student, on the MNIST example and the text example.

Every row is measured the same way in one run: `edgekit compress` builds the model's ONNX graph for
the arm64 target and times it with ONNX Runtime on this host (1 thread, batch 1, p50), on the same
seeded evaluation split (20% of the data). The teacher's row is its FP32 graph (`--quant none`); the
student rows are the distilled FP32 student and its pruned INT8 artifact. The text example also shows
the student distilled without attention-map transfer, at the same epochs.

    python benchmarks/distill.py            # about 6 min on a 2-core host (the text teacher is cached after)
    python benchmarks/distill.py sentiment  # one case, merged into the saved tables

Writes benchmarks/out/distill.md and distill.json.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

from edgekit.api import compress, distill

OUT = Path(__file__).resolve().parent / "out"
CASES = {
    "MNIST": dict(
        teacher="example:mnist-teacher", student="edgekit.examples.models:mnist_student", data="example:mnist",
        distill=[("distilled", dict(epochs=8, lr=3e-3, alpha=0.3))],
        compress=dict(prune=0.25, quant="qad", epochs=4)),
    "Sentiment (text)": dict(
        teacher="example:text-teacher", student="edgekit.examples.text:text_student", data="example:sentiment",
        distill=[("distilled, logits only", dict(epochs=10, lr=2e-3, alpha=0.3)),
                 ("distilled + attention maps", dict(epochs=10, lr=2e-3, alpha=0.3, attention_kd=1.0))],
        compress=dict(prune=0.25, prune_steps=2, finetune_epochs=3, quant="dynamic", teacher="example:text-teacher")),
}


def row(name: str, measured: dict, seconds: float | None = None) -> dict:
    return {"model": name, "accuracy": measured["accuracy"], "size_kib": measured["size_bytes"] / 1024,
            "p50_ms": measured["latency_ms"]["p50"], "params": measured["params"], "seconds": seconds}


def run_case(title: str, case: dict, work: Path) -> list[dict]:
    teacher = compress(case["teacher"], case["data"], target="arm64", quant="none", out=work / "teacher")
    rows = [row("teacher (FP32)", teacher["final"])]
    best = None
    for label, options in case["distill"]:
        start = time.perf_counter()
        report = distill(teacher=case["teacher"], student=case["student"], data=case["data"],
                         out=work / label.replace(" ", "_"), **options)
        seconds = time.perf_counter() - start
        model, weights = (report["student_folder"], None) if "student_folder" in report else \
            (case["student"], str(work / label.replace(" ", "_") / "student.safetensors"))
        fp32 = compress(model, case["data"], weights=weights, target="arm64", quant="none", out=work / f"{label}-fp32")
        rows.append(row(f"student, {label} (FP32)", fp32["final"], seconds))
        best = (model, weights, label)
    model, weights, label = best
    start = time.perf_counter()
    final = compress(model, case["data"], weights=weights, target="arm64", out=work / "compressed", **case["compress"])
    settings = ", ".join(f"{k}={v}" for k, v in case["compress"].items() if k != "teacher")
    settings += ", teacher's KD" if "teacher" in case["compress"] else ""
    rows.append(row(f"student, {label}, compressed ({settings})", final["final"], time.perf_counter() - start))
    for r in rows:
        r["params_ratio"] = r["params"] / rows[0]["params"]
    return rows


def render(results: dict[str, list[dict]]) -> str:
    lines = ["# Teacher, distilled student, compressed student", "",
             "ONNX Runtime on this host, 1 thread, batch 1; accuracy on the seeded 20% evaluation split "
             "(MNIST: 1,000 digits; sentiment: 1,200 reviews). Produced by `python benchmarks/distill.py`. "
             "`wall s`: distillation or compression time on this host.", ""]
    for title, rows in results.items():
        teacher = rows[0]
        lines += [f"## {title}", "", "| model | accuracy % | size KiB | size vs teacher | p50 ms | speed vs teacher "
                  "| params vs teacher | wall s |", "|---|---|---|---|---|---|---|---|"]
        for r in rows:
            ratio = f"{r['params_ratio']:.3f}×"
            seconds = f"{r['seconds']:.0f}" if r["seconds"] else "—"
            lines.append(f"| {r['model']} | {r['accuracy']:.2f} | {r['size_kib']:.1f} | "
                         f"{r['size_kib'] / teacher['size_kib']:.3f}× | {r['p50_ms']:.3f} | "
                         f"{teacher['p50_ms'] / r['p50_ms']:.2f}× | {ratio} | {seconds} |")
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    """All cases, or (with a word from a title) one, merged into the last full run's tables."""
    saved = OUT / "distill.json"
    results = json.loads(saved.read_text()) if len(sys.argv) > 1 and saved.is_file() else {}
    with tempfile.TemporaryDirectory() as tmp:
        for title, case in CASES.items():
            if len(sys.argv) > 1 and sys.argv[1].lower() not in title.lower():
                continue
            results[title] = run_case(title, case, Path(tmp) / title.split()[0])
    OUT.mkdir(exist_ok=True)
    text = render(results)
    (OUT / "distill.md").write_text(text)
    (OUT / "distill.json").write_text(json.dumps(results, indent=2) + "\n")
    print(text)


if __name__ == "__main__":
    main()
