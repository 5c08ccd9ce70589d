"""The four commands a user runs on a language model, at full size: SmolLM2-135M-Instruct (its GGUF file) is the
teacher of a fresh student with a third of its layers, which is then pruned, recovered, quantized to INT4,
measured, packed and profiled on a loopback board.

    python benchmarks/llm_commands.py [--student-layers 10] [--epochs 2] [--recover-minutes 5]

    edgekit distill  --teacher SmolLM2.gguf --student student.json --data distill.jsonl --out distilled/
    edgekit compress --model distilled/student --data docs.jsonl --target raspberry-pi-5 --prune 0.25 --quant int4
    edgekit bench    build/raspberry-pi-5 --prompts prompts.txt
    edgekit pack     build/raspberry-pi-5 && edgekit profile build/raspberry-pi-5.tar.gz --board ssh://...

Each is the real command line in a child process; the script prints each one's wall time and the figures its
JSON answer holds, and writes benchmarks/out/llm_commands.{md,json}. The student trains for minutes on this CPU,
so its quality is that of a student started minutes ago: what this run shows is that the commands carry a
real-size model and vocabulary (49152 tokens) through, and what each costs. The loopback board is a real
OpenSSH server on 127.0.0.1 (Debian's openssh-server); without it the profile step is skipped and says so.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE.parent / "tests" / "fixtures"))
OUT = HERE / "out"
DISTILL_CHARS = 120_000  # the distillation text: the first documents up to this many characters (minutes of CPU)


def edgekit(*args, timeout: int = 3600) -> tuple[dict, float]:
    """(the command's JSON answer, seconds): a failure stops the benchmark with the command's own error."""
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "edgekit", *map(str, args), "--json"], capture_output=True,
                          text=True, timeout=timeout)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"edgekit {args[0]} failed ({done.returncode}): {done.stderr.strip()[-1500:]}")
    print(f"edgekit {args[0]}: {seconds:.0f} s", flush=True)
    return json.loads(done.stdout), seconds


def texts(work: Path) -> tuple[Path, Path, Path]:
    """(all of Python's docs, their first documents for distillation, prompts from the last ones), as files."""
    import pydoc_data.topics as topics

    docs = [text for _, text in sorted(topics.topics.items())]
    full, part, prompts = work / "docs.jsonl", work / "distill.jsonl", work / "prompts.txt"
    full.write_text("".join(json.dumps({"text": d}) + "\n" for d in docs))
    taken, size = [], 0
    for doc in docs:
        if size >= DISTILL_CHARS:
            break
        taken.append(doc)
        size += len(doc)
    part.write_text("".join(json.dumps({"text": d}) + "\n" for d in taken))
    prompts.write_text("\n".join(" ".join(d.split())[:400] for d in docs[-8:]) + "\n")
    return full, part, prompts


def student_config(teacher_dir: Path, layers: int, out: Path) -> Path:
    config = json.loads((teacher_dir / "config.json").read_text())
    config.update({"num_hidden_layers": layers})
    config.pop("quantization_config", None)
    out.write_text(json.dumps(config, indent=1))
    return out


def profile_on_loopback(bundle: Path, work: Path) -> tuple[dict | None, float, str]:
    import sshd

    missing = sshd.unavailable()
    if missing:
        return None, 0.0, f"skipped: {missing}"
    path = f"{Path(sys.executable).parent}:/usr/local/bin:/usr/bin:/bin"
    board = sshd.LoopbackBoard(work / "board", path).start()
    try:
        report, seconds = edgekit("profile", bundle, "--board", board.url, "--ssh-config", board.ssh_config,
                                  "--remote-python", sys.executable, "--out", work / "results")
    finally:
        board.stop()
    return report, seconds, "loopback OpenSSH server on 127.0.0.1"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--student-layers", type=int, default=10)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--recover-minutes", type=float, default=5.0)
    args = parser.parse_args()

    from llm import smollm2_gguf

    from edgekit.files import cache_root
    from edgekit.llm.from_gguf import gguf_to_folder

    gguf = smollm2_gguf()
    teacher_dir = gguf_to_folder(gguf, cache_root() / "models" / "SmolLM2-135M-Instruct")  # only its config is read
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        docs, distill_text, prompts = texts(work)
        student = student_config(teacher_dir, args.student_layers, work / "student.json")
        seconds = {}
        distilled, seconds["distill"] = edgekit(
            "distill", "--teacher", gguf, "--student", student, "--data", distill_text, "--out", work / "distilled",
            "--epochs", args.epochs, "--block-size", 256)
        compressed, seconds["compress"] = edgekit(
            "compress", "--model", work / "distilled" / "student", "--data", docs, "--target", "raspberry-pi-5",
            "--prune", 0.25, "--quant", "int4", "--recover-minutes", args.recover_minutes, "--out", work / "build")
        benched, seconds["bench"] = edgekit("bench", work / "build" / "raspberry-pi-5", "--prompts", prompts)
        packed, seconds["pack"] = edgekit("pack", work / "build" / "raspberry-pi-5")
        profiled, seconds["profile"], board = profile_on_loopback(Path(packed["bundle"]), work)
    result = {"minutes": (time.perf_counter() - started) / 60, "seconds": seconds, "student_layers": args.student_layers,
              "epochs": args.epochs, "recover_minutes": args.recover_minutes, "board": board,
              "distill": distilled, "compress": compressed, "bench": benched, "profile": profiled}
    OUT.mkdir(exist_ok=True)
    (OUT / "llm_commands.json").write_text(json.dumps(result, indent=1, default=str))
    (OUT / "llm_commands.md").write_text(render(result))
    print(render(result))


def _pick(report: dict | None, *keys: str):
    for key in keys:
        if isinstance(report, dict) and key in report:
            report = report[key]
        else:
            return None
    return report


def _fmt(value, spec: str = ".3f") -> str:
    return "n/a" if value is None else format(value, spec)


def render(r: dict) -> str:
    d, c, b, p = r["distill"], r["compress"], r["bench"], r["profile"]
    lines = ["# The four commands on SmolLM2-135M-Instruct", "",
             f"`python benchmarks/llm_commands.py` (one run, {r['minutes']:.0f} min on this CPU): the GGUF teacher, a fresh "
             f"student of {r['student_layers']} layers, {r['epochs']} epochs; compress prunes 25% and recovers for "
             f"{r['recover_minutes']:g} min; profile on the {r['board']}.", "",
             "| command | seconds |", "|---|---:|"]
    lines += [f"| edgekit {name} | {s:.0f} |" for name, s in r["seconds"].items()]
    lines += ["", "## What each one answered", "",
              f"- distill: student {_fmt(_pick(d, 'student', 'params'), ',')} parameters "
              f"({_fmt(_pick(d, 'params_ratio'))}x the teacher's); on held-out text, perplexity "
              f"{_fmt(_pick(d, 'student_at_start', 'perplexity'), '.1f')} -> {_fmt(_pick(d, 'student', 'perplexity'), '.1f')}, "
              f"KL to the teacher {_fmt(_pick(d, 'student_at_start', 'kl'))} -> {_fmt(_pick(d, 'student', 'kl'))}, "
              f"top-1 agreement {_fmt(_pick(d, 'student_at_start', 'top1_agreement'))} -> "
              f"{_fmt(_pick(d, 'student', 'top1_agreement'))}.",
              f"- compress: size {_fmt(_pick(c, 'ratios', 'size'))}x its FP32 export, decode "
              f"{_fmt(_pick(c, 'ratios', 'decode_speedup'), '.2f')}x; perplexity FP32 {_fmt(_pick(c, 'fp32', 'perplexity'), '.1f')}, "
              f"pruned {_fmt(_pick(c, 'pruned', 'perplexity'), '.1f')}, final {_fmt(_pick(c, 'final', 'perplexity'), '.1f')}; "
              f"final KL to FP32 {_fmt(_pick(c, 'final', 'kl_per_token'))}.",
              f"- bench (final): {json.dumps(_summary(_pick(b, 'final')))}; ratios to FP32: "
              f"{json.dumps(_summary(_pick(b, 'ratios')))}",
              f"- profile: {json.dumps(_summary(p)) if p else r['board']}; greedy tokens as the host's: "
              f"{_pick(p, 'check', 'reference_match')}"]
    return "\n".join(lines) + "\n"


def _summary(report: dict | None) -> dict:
    """The report's scalar figures, rounded (nested sections left to the JSON file)."""
    if not report:
        return {}
    return {k: round(v, 4) if isinstance(v, float) else v for k, v in report.items()
            if isinstance(v, (int, float)) and not isinstance(v, bool)}


if __name__ == "__main__":
    main()
