"""MobileNetV2 (transformers, 224x224, built from its config) through edgekit and its peers.

Prints, from one run on this machine: FP32; pruned 50% FP32; edgekit INT8; edgekit pruned 50% + INT8
(default protection of stem and classifier, and with the stem pruned too);
ONNX Runtime quantize_static on the FP32 model (U8S8 QDQ, per-channel, MinMax); NNCF PTQ on the FP32
model (when nncf is installed). Then the MNIST example table. Writes benchmarks/out/mobilenetv2.md.

    python benchmarks/mobilenetv2.py [--runs 100] [--calib 64]

Data: random crops of the two photographs shipped with scikit-learn (no download). The config's
default init gives vanishing activations, so weights are re-initialised (kaiming) and BatchNorm
statistics recalibrated on those images before anything is measured.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

OUT = Path(__file__).resolve().parent / "out"


def photo_crops(n: int, size: int = 224, seed: int = 0) -> np.ndarray:
    from PIL import Image
    from sklearn.datasets import load_sample_images

    rng = np.random.default_rng(seed)
    photos = load_sample_images().images
    mean, std = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])
    crops = []
    for i in range(n):
        img = photos[i % len(photos)]
        side = int(rng.integers(160, min(img.shape[:2])))
        top, left = rng.integers(0, img.shape[0] - side), rng.integers(0, img.shape[1] - side)
        patch = Image.fromarray(img[top:top + side, left:left + side]).resize((size, size), Image.BILINEAR)
        arr = (np.asarray(patch, np.float32) / 255 - mean) / std
        crops.append(arr.transpose(2, 0, 1))
    return np.stack(crops).astype(np.float32)


def build_model(folder: Path, data: np.ndarray) -> None:
    import torch
    from torch import nn
    from transformers import MobileNetV2Config, MobileNetV2ForImageClassification

    torch.manual_seed(0)
    model = MobileNetV2ForImageClassification(MobileNetV2Config(image_size=224))
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0, 0.01)
            nn.init.zeros_(m.bias)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.reset_running_stats()
            m.momentum = None
    model.train()
    with torch.no_grad():
        for start in range(0, len(data), 16):
            model(pixel_values=torch.from_numpy(data[start:start + 16]))
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    model.eval().save_pretrained(folder)


def ort_quantize_static(fp32: Path, dst: Path, calib: np.ndarray) -> Path:
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Reader:
        def __init__(self):
            self.items = iter({"pixel_values": calib[i:i + 1]} for i in range(len(calib)))

        def get_next(self):
            return next(self.items, None)

    pre = dst.with_suffix(".pre.onnx")
    quant_pre_process(str(fp32), str(pre), skip_symbolic_shape=True)
    quantize_static(str(pre), str(dst), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                    calibrate_method=CalibrationMethod.MinMax)
    return dst


def nncf_ptq(fp32: Path, dst: Path, calib: np.ndarray) -> Path | None:
    try:
        import nncf
        import onnx
    except ImportError:
        return None
    dataset = nncf.Dataset([{"pixel_values": calib[i:i + 1]} for i in range(len(calib))])
    quantized = nncf.quantize(onnx.load(str(fp32)), dataset, subset_size=len(calib))
    onnx.save(quantized, str(dst))
    return dst


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--calib", type=int, default=64)
    args = parser.parse_args()

    from edgekit.api import compress
    from edgekit.data import SampleSet
    from edgekit.progress import set_quiet
    from edgekit.settings import BenchSettings
    from edgekit.stages.bench import measure_model

    set_quiet(True)
    work = Path(tempfile.mkdtemp(prefix="edgekit-mnv2-"))
    images = photo_crops(args.calib * 2 + 32)
    build_model(work / "mnv2", images[: args.calib])
    np.savez(work / "data.npz", pixel_values=images)
    split = f"{0.5:.2f},{0.4:.2f},{0.1:.2f}"
    common = dict(model=str(work / "mnv2"), data=str(work / "data.npz"), target="x86-64", split=split)
    timings = {}
    start = time.perf_counter()
    compress(**common, out=work / "int8", quant="static")
    timings["edgekit INT8"] = time.perf_counter() - start
    start = time.perf_counter()
    compress(**common, out=work / "pruned", quant="static", prune=0.5)
    timings["edgekit pruned 50% + INT8"] = time.perf_counter() - start
    start = time.perf_counter()
    # the default keeps the stem conv's 32 output channels (and the first block coupled to them);
    # `--protect` with only the classifier lets pruning cut the 112x112 stage too
    compress(**common, out=work / "pruned-stem", quant="static", prune=0.5, protect=["model.classifier"])
    timings["edgekit pruned 50% + INT8, stem pruned"] = time.perf_counter() - start
    fp32 = work / "int8" / "work" / "01-source" / "fp32.onnx"
    calib = images[: args.calib]
    start = time.perf_counter()
    ort_q = ort_quantize_static(fp32, work / "ort_static.onnx", calib)
    timings["ORT quantize_static"] = time.perf_counter() - start
    start = time.perf_counter()
    nncf_q = nncf_ptq(fp32, work / "nncf.onnx", calib)
    timings["NNCF PTQ"] = time.perf_counter() - start

    models = {"FP32": fp32, "pruned 50% FP32": work / "pruned" / "work" / "03-calibrate" / "model.onnx",
              "edgekit INT8": work / "int8" / "x86-64" / "model.onnx",
              "edgekit pruned 50% + INT8": work / "pruned" / "x86-64" / "model.onnx",
              "edgekit pruned 50% + INT8, stem pruned": work / "pruned-stem" / "x86-64" / "model.onnx",
              "ORT quantize_static": ort_q}
    if nncf_q is not None:
        models["NNCF PTQ"] = nncf_q
    evals = SampleSet(source="photos", arrays={"pixel_values": images[-32:]})
    from edgekit.backends.ort import run_model

    reference = run_model(fp32, evals, ["pixel_values"])
    settings = BenchSettings(warmup=10, runs=args.runs, threads=1)
    rows = {name: measure_model(path, evals, ["pixel_values"], reference, settings) for name, path in models.items()}
    base = rows["FP32"]["latency_ms"]["p50"]
    lines = ["| model | size MiB | MMACs | p50 ms | speed-up vs FP32 | top-1 agreement | cosine | wall s |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for name, m in rows.items():
        wall = f"{timings[name]:.1f}" if name in timings else "–"
        lines.append(f"| {name} | {m['size_bytes'] / 2**20:.2f} | {m['macs'] / 1e6:.0f} | {m['latency_ms']['p50']:.2f} | "
                     f"{base / m['latency_ms']['p50']:.2f}x | {m['agreement']:.3f} | {m['cosine']:.4f} | {wall} |")
    ratio = rows["edgekit INT8"]["latency_ms"]["p50"] / rows["ORT quantize_static"]["latency_ms"]["p50"]
    summary = [f"edgekit INT8 latency / ORT quantize_static latency: {ratio:.3f} (target <= 1.05)",
               f"edgekit pruned 50% + INT8 speed-up vs FP32: "
               f"{base / rows['edgekit pruned 50% + INT8']['latency_ms']['p50']:.2f}x with the default protection, "
               f"{base / rows['edgekit pruned 50% + INT8, stem pruned']['latency_ms']['p50']:.2f}x with the stem pruned "
               "too (target >= 4)"]
    if nncf_q is None:
        summary.append("NNCF PTQ: skipped, nncf is not installed (pip install 'edgekit[nncf]')")
    text = "\n".join(["# MobileNetV2 224x224, x86-64 host, ONNX Runtime CPU, 1 thread, batch 1", "",
                      *lines, "", *summary, "", mnist_table()]) + "\n"
    OUT.mkdir(exist_ok=True)
    (OUT / "mobilenetv2.md").write_text(text)
    print(text)
    shutil.rmtree(work, ignore_errors=True)


def mnist_table() -> str:
    """The built-in example, per stage: accuracy, size, latency (runs the demo pipeline)."""
    from edgekit.api import compress
    from edgekit.examples.models import demo_recipe
    from edgekit.target import host_target

    with tempfile.TemporaryDirectory(prefix="edgekit-mnist-") as tmp:
        report = compress(**{**demo_recipe(), "target": host_target(), "out": Path(tmp) / "demo"})
    lines = ["# MNIST example (demo recipe), host target measured on the host", "",
             "| stage | accuracy % | size KiB | p50 ms | speed-up vs FP32 |", "|---|---:|---:|---:|---:|"]
    base = report["fp32"]["latency_ms"]["p50"]
    for label in ("fp32", "pruned", "final"):
        m = report[label]
        lines.append(f"| {label} | {m['accuracy']:.2f} | {m['size_bytes'] / 1024:.1f} | "
                     f"{m['latency_ms']['p50']:.3f} | {base / m['latency_ms']['p50']:.2f}x |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
