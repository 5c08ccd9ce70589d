"""The built-in example: a residual CNN teacher and a 4x smaller student for MNIST.

Both are trained on first use (teacher on labels, student distilled from it)
and cached as safetensors in the user cache, so later runs start at once.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import torch
from torch import nn

from edgekit.errors import ModelLoadError
from edgekit.progress import console, stage
from edgekit.distill.loop import distill
from edgekit.settings import TrainSettings
from edgekit.examples import CACHE_VERSION, SEED, SPLIT, cache_dir

WIDTHS = {"mnist-teacher": (32, 64, 128), "mnist-student": (16, 32, 64)}


def demo_recipe() -> dict:
    """What `edgekit demo` runs: calibration/mnist-demo.yaml, shipped with the package."""
    from edgekit.settings import load_recipe
    from edgekit.files import data_dir

    return load_recipe(data_dir("calibration") / "mnist-demo.yaml")


class ConvBN(nn.Sequential):
    def __init__(self, cin: int, cout: int, stride: int = 1, relu: bool = True):
        layers = [nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout)]
        super().__init__(*layers, *( [nn.ReLU()] if relu else []))


class Residual(nn.Module):
    def __init__(self, width: int):
        super().__init__()
        self.conv1 = ConvBN(width, width)
        self.conv2 = ConvBN(width, width, relu=False)
        self.act = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(x + self.conv2(self.conv1(x)))


class MnistNet(nn.Module):
    """Three stages of conv + residual block, global pooling, linear classifier."""

    def __init__(self, widths: tuple[int, int, int] = (16, 32, 64), classes: int = 10):
        super().__init__()
        w1, w2, w3 = widths
        self.features = nn.Sequential(
            ConvBN(1, w1), Residual(w1),
            ConvBN(w1, w2, stride=2), Residual(w2),
            ConvBN(w2, w3, stride=2), Residual(w3),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        )
        self.classifier = nn.Linear(w3, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


def build(name: str) -> nn.Module:
    if name not in WIDTHS:
        raise ModelLoadError(f"unknown example model '{name}'; choose example:mnist-student, example:mnist-teacher "
                              "or example:text-teacher")
    return MnistNet(WIDTHS[name])


def mnist_student() -> nn.Module:
    """A fresh student for `edgekit distill --student edgekit.examples.models:mnist_student`: 0.21x the
    teacher's parameters (the demo's cached student, halved widths, is 0.252x: stem and classifier)."""
    torch.manual_seed(0)
    return MnistNet((16, 32, 56))


def load_example(spec: str, weights=None):
    from edgekit.models.loader import LoadedModel, load_weights_into
    from edgekit.models.wrappers import LogitsOnly

    name = spec.split(":", 1)[1]
    if name == "text-teacher":
        from edgekit.models.loader import load_model
        from edgekit.examples.text import ensure_teacher

        return load_model(str(ensure_teacher()), weights)
    model = build(name)
    path = Path(weights) if weights else ensure_trained(name)
    load_weights_into(model, path)
    return LoadedModel(spec=spec, kind="example", module=LogitsOnly(model, ["x"]).eval(),
                       input_names=["x"], weights=path)


def ensure_trained(name: str) -> Path:
    """Train (teacher) or distill (student) once; later calls read the cache."""
    path = cache_dir() / f"{name}-{CACHE_VERSION}.safetensors"
    if path.is_file():
        return path

    train_example(name, path)
    return path


def example_splits():
    from edgekit.data import load_data, make_splits

    return make_splits(load_data("example:mnist"), SPLIT, SEED)


def accuracy(model: nn.Module, x: np.ndarray, y: np.ndarray) -> float:
    with torch.no_grad():
        pred = model(torch.from_numpy(x)).argmax(-1).numpy()
    return float((pred == y).mean() * 100)


# Training recipes of the example models (teacher from labels, student by distillation).
RECIPES = {
    "mnist-teacher": TrainSettings(epochs=6, lr=3e-3, batch_size=64, seed=0),
    "mnist-student": TrainSettings(epochs=8, lr=3e-3, batch_size=64, temperature=4.0, alpha=0.3, seed=0),
}


def train_example(name: str, path: Path) -> None:
    from safetensors.torch import save_file

    from edgekit.models.loader import load_weights_into

    torch.manual_seed(0)
    splits = example_splits()
    x, y = splits.train.arrays["x"], splits.train.labels
    teacher = None
    if name == "mnist-student":
        teacher = build("mnist-teacher")
        load_weights_into(teacher, ensure_trained("mnist-teacher"))
    model = build(name)
    cfg = RECIPES[name]

    def batches(epoch: int):
        order = np.random.default_rng(cfg.seed + epoch).permutation(len(x))
        for start in range(0, len(order), cfg.batch_size):
            idx = order[start:start + cfg.batch_size]
            yield (torch.from_numpy(x[idx]),), torch.from_numpy(y[idx])

    with stage(f"training example model {name} (once; cached afterwards)"):
        distill(model, teacher, batches, cfg)
    acc = accuracy(model, splits.eval.arrays["x"], splits.eval.labels)
    console.log(f"{name}: eval accuracy {acc:.2f}% on {len(splits.eval)} held-out digits")
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=path.parent, suffix=".tmp", delete=False) as tmp:
        tmp_path = Path(tmp.name)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(tmp_path))
    tmp_path.replace(path)
