"""Pruning ratio sweep 0-0.8: params, MACs, ONNX size, ORT latency (one run) and fidelity.

Models: transformers MobileNetV2 and ResNet-18 at 224x224 (built from configs, kaiming init, BatchNorm
recalibrated on real photos) and the MNIST example student (accuracy after BN recalibration and one
epoch of distillation). Writes benchmarks/out/prune_sweep.md and prune_sweep.png, and says where
latency stops following MACs.

    python benchmarks/prune_sweep.py [--runs 50]
"""

from __future__ import annotations

import argparse
import copy
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from mobilenetv2 import photo_crops  # noqa: E402

OUT = Path(__file__).resolve().parent / "out"
RATIOS = (0.0, 0.2, 0.4, 0.5, 0.6, 0.8)


def hf_model(kind: str, images: np.ndarray):
    from torch import nn
    from transformers import (MobileNetV2Config, MobileNetV2ForImageClassification, ResNetConfig,
                              ResNetForImageClassification)

    from edgekit.models.wrappers import LogitsOnly

    torch.manual_seed(0)
    if kind == "mobilenetv2":
        model = MobileNetV2ForImageClassification(MobileNetV2Config(image_size=224))
    else:
        model = ResNetForImageClassification(ResNetConfig(layer_type="basic", depths=[2, 2, 2, 2],
                                                          hidden_sizes=[64, 128, 256, 512], embedding_size=64))
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
    wrapped = LogitsOnly(model.eval(), ["pixel_values"])
    _recalibrate(wrapped, images)
    return wrapped


def _recalibrate(model, images: np.ndarray) -> None:
    from edgekit.data import SampleSet
    from edgekit.pruning.prune import recalibrate_batchnorm

    recalibrate_batchnorm(model, SampleSet(source="photos", arrays={"pixel_values": images}), ["pixel_values"])


def latency_ms(model, example, names, runs: int) -> tuple[float, int, int]:
    import onnxruntime as ort

    from edgekit.measure.latency import median_ms
    from edgekit.measure.metrics import onnx_params_and_macs
    from edgekit.models.export import export_onnx

    with tempfile.TemporaryDirectory() as tmp:
        path = export_onnx(model, example, names, Path(tmp) / "m.onnx")
        size = path.stat().st_size
        _, macs = onnx_params_and_macs(path, {n: tuple(t.shape) for n, t in zip(names, example)})
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 1
        sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        latency = median_ms(sess, {n: t[:1].numpy() for n, t in zip(names, example)}, 5, runs)
    return latency, macs, size


def sweep_image_model(kind: str, images: np.ndarray, runs: int) -> list[dict]:
    from edgekit.measure.metrics import top1_agreement
    from edgekit.pruning.prune import prune_l1

    base = hf_model(kind, images[:32])
    example = (torch.from_numpy(images[:1]),)
    evals = torch.from_numpy(images[32:64])
    with torch.no_grad():
        reference = base(evals).numpy()
    rows = []
    for ratio in RATIOS:
        model = copy.deepcopy(base)
        if ratio:
            prune_l1(model, example, ratio, 8)
            _recalibrate(model, images[:32])
        with torch.no_grad():
            agreement = top1_agreement(model(evals).numpy(), reference)
        lat, macs, size = latency_ms(model, example, ["pixel_values"], runs)
        rows.append({"model": kind, "ratio": ratio, "params": sum(p.numel() for p in model.parameters()),
                     "macs": macs, "size": size, "latency": lat, "quality": agreement * 100})
        print(f"{kind} {ratio:.1f}: {lat:.2f} ms", flush=True)
    return rows


def sweep_mnist(runs: int) -> list[dict]:
    from edgekit.models import load_model
    from edgekit.examples.models import accuracy, example_splits
    from edgekit.pipeline import Context
    from edgekit.pruning.search import finetune
    from edgekit.pruning.prune import prune_l1, recalibrate_batchnorm

    splits = example_splits()
    teacher = load_model("example:mnist-student").module
    example = (torch.from_numpy(splits.calib.arrays["x"][:1]),)
    ctx = Context(target=None, splits=splits, seed=0, work=Path("."), teacher=teacher)
    rows = []
    for ratio in RATIOS:
        model = copy.deepcopy(teacher)
        if ratio:
            prune_l1(model, example, ratio, 8)
            recalibrate_batchnorm(model, splits.train, ["x"])
            finetune(model, ctx, ["x"], epochs=1)
        acc = accuracy(model, splits.eval.arrays["x"], splits.eval.labels)
        lat, macs, size = latency_ms(model, example, ["x"], runs * 10)
        rows.append({"model": "mnist-student", "ratio": ratio, "params": sum(p.numel() for p in model.parameters()),
                     "macs": macs, "size": size, "latency": lat, "quality": acc})
        print(f"mnist {ratio:.1f}: {lat:.3f} ms, {acc:.1f}%", flush=True)
    return rows


def render(rows: list[dict]) -> str:
    lines = ["# Pruning sweep (FP32, ONNX Runtime CPU, 1 thread, batch 1, one run)", "",
             "Quality: top-1 agreement with the unpruned model (%) for the 224 models (random weights, BN "
             "recalibrated, no fine-tune); accuracy (%) after one KD epoch for the MNIST student.", "",
             "| model | ratio | params | MMACs | ONNX KiB | p50 ms | MACs ratio | latency ratio | quality |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    notes = []
    for model in dict.fromkeys(r["model"] for r in rows):
        group = [r for r in rows if r["model"] == model]
        base = group[0]
        for r in group:
            mac_ratio, lat_ratio = r["macs"] / base["macs"], r["latency"] / base["latency"]
            lines.append(f"| {model} | {r['ratio']:.1f} | {r['params']:,} | {r['macs'] / 1e6:.1f} | "
                         f"{r['size'] / 1024:.0f} | {r['latency']:.3f} | {mac_ratio:.2f} | {lat_ratio:.2f} | "
                         f"{r['quality']:.1f} |")
            if r["ratio"] and lat_ratio > 1.5 * mac_ratio:
                notes.append(f"- {model} at {r['ratio']:.1f}: MACs fall to {mac_ratio:.2f}x but latency only to "
                             f"{lat_ratio:.2f}x — latency stops following MACs here (fixed per-op overhead and "
                             "memory-bound depthwise/small layers dominate).")
    if not notes:
        notes.append("- latency followed MACs within 1.5x at every ratio measured.")
    return "\n".join(lines + ["", "## Where latency stops following MACs", "", *notes]) + "\n"


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4), dpi=100)
    for model in dict.fromkeys(r["model"] for r in rows):
        group = [r for r in rows if r["model"] == model]
        ax.plot([r["ratio"] for r in group], [r["latency"] / group[0]["latency"] for r in group], "o-",
                label=f"{model} latency")
        ax.plot([r["ratio"] for r in group], [r["macs"] / group[0]["macs"] for r in group], "x--",
                label=f"{model} MACs")
    ax.set_xlabel("pruning ratio")
    ax.set_ylabel("relative to unpruned")
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, metadata={"Software": None})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=50)
    args = parser.parse_args()
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    images = photo_crops(64)
    rows = sweep_image_model("mobilenetv2", images, args.runs) + sweep_image_model("resnet18", images, args.runs)
    rows += sweep_mnist(args.runs)
    OUT.mkdir(exist_ok=True)
    text = render(rows)
    (OUT / "prune_sweep.md").write_text(text)
    plot(rows, OUT / "prune_sweep.png")
    print(text)


if __name__ == "__main__":
    main()
