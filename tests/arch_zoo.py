"""Architectures the pruning tests cover, each built from a transformers config or a few lines of torch."""

from __future__ import annotations

import torch
from torch import nn


def conv_bn(cin: int, cout: int, k: int = 3, s: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, k, s, k // 2, bias=False), nn.BatchNorm2d(cout), nn.SiLU())


class Bottleneck(nn.Module):
    def __init__(self, c: int):
        super().__init__()
        self.cv1, self.cv2 = conv_bn(c, c), conv_bn(c, c)

    def forward(self, x):
        return x + self.cv2(self.cv1(x))


class C2f(nn.Module):
    """YOLO-style block: split in two, chain bottlenecks on one half, concat every stage."""

    def __init__(self, c: int, n: int = 2):
        super().__init__()
        h = c // 2
        self.cv1 = conv_bn(c, 2 * h, 1)
        self.m = nn.ModuleList(Bottleneck(h) for _ in range(n))
        self.cv2 = conv_bn((2 + n) * h, c, 1)

    def forward(self, x):
        y = list(self.cv1(x).chunk(2, 1))
        y.extend(m(y[-1]) for m in self.m)
        return self.cv2(torch.cat(y, 1))


class TinyYolo(nn.Module):
    """Backbone at two scales, upsample + concat neck, box and class branches concatenated."""

    def __init__(self, classes: int = 3, block: type = C2f):
        super().__init__()
        self.stem = conv_bn(3, 16, 3, 2)
        self.c1 = block(16)
        self.down = conv_bn(16, 32, 3, 2)
        self.c2 = block(32)
        self.up = nn.Upsample(scale_factor=2, mode="nearest")
        self.fuse = conv_bn(48, 32, 1)
        self.c3 = block(32)
        self.box = nn.Sequential(conv_bn(32, 32), nn.Conv2d(32, 4, 1))
        self.cls = nn.Sequential(conv_bn(32, 32), nn.Conv2d(32, classes, 1))

    def forward(self, x):
        p1 = self.c1(self.stem(x))
        p2 = self.c2(self.down(p1))
        n = self.c3(self.fuse(torch.cat([self.up(p2), p1], 1)))
        return torch.cat([self.box(n), self.cls(n)], 1).flatten(2)


class Vgg(nn.Module):
    def __init__(self, classes: int = 5):
        super().__init__()
        layers, cin = [], 3
        for cout in (16, 16, "M", 32, 32, "M", 64):
            if cout == "M":
                layers.append(nn.MaxPool2d(2))
            else:
                layers += [nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU()]
                cin = cout
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(nn.Flatten(), nn.Linear(64 * 8 * 8, 64), nn.ReLU(), nn.Linear(64, classes))

    def forward(self, x):
        return self.classifier(self.features(x))


def _hf(cls_name: str, config_name: str, **config):
    import transformers

    return getattr(transformers, cls_name)(getattr(transformers, config_name)(**config))


def _text():
    return (torch.randint(0, 100, (2, 12)), torch.ones(2, 12, dtype=torch.long))


def _image(size: int):
    return (torch.randn(2, 3, size, size),)


# name -> (builder, input names, example inputs builder)
ZOO = {
    "resnet": (lambda: _hf("ResNetForImageClassification", "ResNetConfig", embedding_size=16,
                           hidden_sizes=[16, 32, 64, 128], depths=[1, 1, 1, 1], num_labels=5),
               ["pixel_values"], lambda: _image(64)),
    "mobilenetv2": (lambda: _hf("MobileNetV2ForImageClassification", "MobileNetV2Config", image_size=32,
                                depth_multiplier=0.5, num_labels=5), ["pixel_values"], lambda: _image(32)),
    "convnext": (lambda: _hf("ConvNextForImageClassification", "ConvNextConfig", hidden_sizes=[16, 32, 64, 128],
                             depths=[1, 1, 1, 1], num_labels=5), ["pixel_values"], lambda: _image(64)),
    "efficientnet": (lambda: _hf("EfficientNetForImageClassification", "EfficientNetConfig", image_size=64,
                                 width_coefficient=0.25, depth_coefficient=0.25, hidden_dim=320, num_labels=5),
                     ["pixel_values"], lambda: _image(64)),
    "yolo-c2f": (TinyYolo, ["x"], lambda: _image(32)),
    "vgg": (Vgg, ["x"], lambda: _image(32)),
    "vit": (lambda: _hf("ViTForImageClassification", "ViTConfig", image_size=32, patch_size=8, hidden_size=64,
                        num_hidden_layers=2, num_attention_heads=4, intermediate_size=128, num_labels=5),
            ["pixel_values"], lambda: _image(32)),
    "bert": (lambda: _hf("BertForSequenceClassification", "BertConfig", vocab_size=100, hidden_size=64,
                         max_position_embeddings=16,
                         num_hidden_layers=2, num_attention_heads=4, intermediate_size=128, num_labels=3),
             ["input_ids", "attention_mask"], _text),
    "distilbert": (lambda: _hf("DistilBertForSequenceClassification", "DistilBertConfig", vocab_size=100, dim=64,
                               max_position_embeddings=16,
                               n_layers=2, n_heads=4, hidden_dim=128, num_labels=3),
                   ["input_ids", "attention_mask"], _text),
}


def build(name: str):
    """A fresh, seeded, eval-mode model wrapped like edgekit wraps students, and its example inputs."""
    from edgekit.models.wrappers import LogitsOnly

    builder, names, example = ZOO[name]
    torch.manual_seed(0)
    model = LogitsOnly(builder().eval(), names).eval()
    torch.manual_seed(1)
    return model, example()
