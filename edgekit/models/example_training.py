"""Training recipes of the example models (teacher from labels, student by distillation)."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import torch

from edgekit.progress import console, stage
from edgekit.distill.loop import TrainConfig, distill

RECIPES = {
    "mnist-teacher": TrainConfig(epochs=6, lr=3e-3, batch_size=64, seed=0),
    "mnist-student": TrainConfig(epochs=8, lr=3e-3, batch_size=64, temperature=4.0, alpha=0.3, seed=0),
}


def train_example(name: str, path: Path) -> None:
    from safetensors.torch import save_file

    from edgekit.examples.models import accuracy, build, ensure_trained, example_splits
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
