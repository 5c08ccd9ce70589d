"""Learned rounding of INT8 weights (AdaRound): each weight rounds up or down as its layer's output needs.

Rounding every weight to its nearest INT8 step minimises each weight's own error, not the layer's: the
errors of a channel add up in its output. AdaRound learns, layer by layer on the calibration split, a
soft up/down choice per weight that minimises the error of the layer's output (its input quantized as the
graph quantizes it, against the FP32 output), pushed to a hard 0/1 choice by an annealed regulariser. The
scales stay the quantizer's; only the INT8 values change, written into the Q/DQ graph. Conv (1-3 spatial
dimensions, grouped too), Gemm and MatMul with a constant weight.

Written here rather than taken from a library: the libraries that implement it run on their own model
representations (torch modules, their own graphs), and this runs on the Q/DQ ONNX graph the export writes.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgekit.ptq.bias_correction import DQ_SUFFIX
from edgekit.ptq.exposed import exposed_values

ZETA, GAMMA = 1.1, -0.1  # the stretch of the rectified sigmoid, so that 0 and 1 are reached
LAYERS = ("Conv", "Gemm", "MatMul")


@dataclass
class Layer:
    """One quantized layer as the Q/DQ graph holds it."""

    node: object  # the onnx NodeProto
    weight: str  # the FP32 weight's name
    quantized: str  # the initializer holding its INT8 values
    scale: np.ndarray  # per output channel (or one)
    axis: int
    input_quant: tuple[float, int, int, int] | None  # (scale, zero point, low, high) of its input, if quantized


def learn_rounding(qdq: Path, fp32: Path, samples, names: list[str], iterations: int = 200,
                   limit: int = 16, seed: int = 0) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """{quantized initializer: (learned INT8 values, the scale they are for)} for the MAX_LAYERS layers of
    `qdq` whose nearest rounding costs their output the most (learning costs about a second a layer)."""
    import onnx
    from onnx import numpy_helper

    layers = quantized_layers(qdq)
    weights = {i.name: numpy_helper.to_array(i).astype(np.float32) for i in onnx.load(str(fp32)).graph.initializer
               if i.name in {layer.weight for layer in layers}}
    inputs = _layer_inputs(fp32, [_input_of(layer) for layer in layers], samples, names, limit)
    usable = [layer for layer in layers if _input_of(layer) in inputs and layer.weight in weights]
    costs = {layer.quantized: _Problem.build(layer, weights[layer.weight], inputs[_input_of(layer)], seed)
             for layer in usable}
    ranked = sorted((layer for layer in usable if costs[layer.quantized] is not None),
                    key=lambda layer: -costs[layer.quantized].nearest_error)[:MAX_LAYERS]
    learned = {}
    for layer in ranked:
        problem = _Problem.build(layer, weights[layer.weight], inputs[_input_of(layer)], seed, keep=True)
        learned[layer.quantized] = (problem.learn(iterations, seed), layer.scale)
    return learned


def _input_of(layer: Layer) -> str:
    return layer.node.input[0].removesuffix(DQ_SUFFIX)


def apply_rounding(qdq: Path, learned: dict[str, tuple[np.ndarray, np.ndarray]]) -> int:
    """Write learned INT8 values into `qdq` in place where the quantizer gave the same scale; the count."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(qdq))
    written = 0
    scales = {layer.quantized: layer.scale for layer in quantized_layers(qdq)}
    for init in model.graph.initializer:
        entry = learned.get(init.name)
        if entry is None or init.name not in scales or not np.array_equal(scales[init.name], entry[1]):
            continue
        original = numpy_helper.to_array(init)
        if original.shape == entry[0].shape:
            init.CopyFrom(numpy_helper.from_array(entry[0].astype(original.dtype), init.name))
            written += 1
    onnx.save(model, str(qdq))
    return written


def quantized_layers(qdq: Path) -> list[Layer]:
    """Conv/Gemm/MatMul nodes whose weight is an INT8 initializer behind a DequantizeLinear."""
    import onnx
    from onnx import numpy_helper

    graph = onnx.load(str(qdq)).graph
    inits = {i.name: i for i in graph.initializer}
    producer = {o: n for n in graph.node for o in n.output}
    layers = []
    for node in graph.node:
        dq = producer.get(node.input[1]) if node.op_type in LAYERS and len(node.input) > 1 else None
        if dq is None or dq.op_type != "DequantizeLinear" or dq.input[0] not in inits:
            continue
        q = numpy_helper.to_array(inits[dq.input[0]])
        zero = numpy_helper.to_array(inits[dq.input[2]]) if len(dq.input) > 2 and dq.input[2] in inits else None
        if q.dtype != np.int8 or (zero is not None and np.any(zero != 0)) or _transposed_input(node):
            continue  # symmetric int8 weights only: what every preset writes
        axis = next((a.i for a in dq.attribute if a.name == "axis"), 1)
        layers.append(Layer(node, node.input[1].removesuffix(DQ_SUFFIX), dq.input[0],
                            numpy_helper.to_array(inits[dq.input[1]]).astype(np.float32), axis,
                            _input_quant(producer.get(node.input[0]), inits)))
    return layers


def _transposed_input(node) -> bool:
    return node.op_type == "Gemm" and any(a.name == "transA" and a.i for a in node.attribute)


def _input_quant(dq, inits) -> tuple[float, int, int, int] | None:
    from onnx import numpy_helper

    if dq is None or dq.op_type != "DequantizeLinear" or dq.input[1] not in inits:
        return None
    scale = numpy_helper.to_array(inits[dq.input[1]])
    zero = numpy_helper.to_array(inits[dq.input[2]]) if len(dq.input) > 2 and dq.input[2] in inits else np.uint8(0)
    if scale.size != 1:
        return None
    info = np.iinfo(zero.dtype)
    return float(scale), int(zero), int(info.min), int(info.max)


# --- the layer's inputs, bounded in memory ---------------------------------------------------------------

MAX_VALUES = 1 << 19  # floats kept per layer input (2 MB): enough rows or windows to learn its rounding


def _layer_inputs(fp32: Path, tensors: list[str], samples, names: list[str], limit: int) -> dict[str, list]:
    """Each tensor's values on the first `limit` samples, keeping whole samples while they fit MAX_VALUES."""
    kept: dict[str, list[np.ndarray]] = {}
    for sample in exposed_values(fp32, sorted(set(tensors)), samples, names, limit):
        for name, value in sample.items():
            held = kept.setdefault(name, [])
            if sum(v.size for v in held) + value.size <= MAX_VALUES or not held:
                held.append(np.asarray(value, np.float32))
    return kept


# --- learning one layer ------------------------------------------------------------------------------------

MINIBATCH = 64  # rows or windows per step, drawn from the layer's pool (ROWS rows or WINDOWS windows)

MAX_LAYERS = 24


class _Problem:
    """One layer's rounding problem: its inputs (quantized as the graph quantizes them), its FP32 outputs,
    and how much nearest rounding alone costs them (relative to their energy)."""

    def __init__(self, forward, x_q, weight, scale, target, nearest_error: float):
        self.forward, self.x_q, self.weight, self.scale, self.target = forward, x_q, weight, scale, target
        self.nearest_error = nearest_error

    @classmethod
    def build(cls, layer: Layer, weight: np.ndarray, inputs: list[np.ndarray], seed: int, keep: bool = False):
        """The problem, or None where the layer is not one this learns; without `keep` only its cost stays."""
        import torch

        forward = _forward(layer.node, weight)
        batch = forward.batch(inputs, np.random.default_rng(seed)) if forward is not None else None
        if batch is None:
            return None
        x_fp = torch.from_numpy(batch)
        x_q = _fake_quant(x_fp, layer.input_quant)
        w = torch.from_numpy(weight)
        scale = torch.from_numpy(_broadcast(layer.scale, weight.ndim, layer.axis))
        with torch.no_grad():
            target = forward(x_fp, w)
            energy = float(torch.mean(target ** 2)) or 1e-12
            nearest = torch.clamp(torch.round(w / scale), -127, 127) * scale
            cost = (_error(forward, x_q, nearest, target) - _error(forward, x_q, w, target)) / energy
        if not keep:
            return cls(None, None, None, None, None, cost)
        return cls(forward, x_q, w, scale, target, cost)

    def learn(self, iterations: int, seed: int) -> np.ndarray:
        """The INT8 values whose rounding minimises the output error; nearest where learning does not beat it."""
        import torch

        w, scale, target = self.weight, self.scale, self.target
        floor = torch.floor(w / scale)
        rest = (w / scale - floor).clamp(0.01, 0.99)
        v = torch.nn.Parameter(-torch.log((ZETA - GAMMA) / (rest - GAMMA) - 1))
        optimizer = torch.optim.Adam([v], lr=1e-2)
        energy = torch.mean(target ** 2).clamp_min(1e-12)
        picks = torch.from_numpy(np.random.default_rng(seed).integers(
            0, len(target), (iterations, min(MINIBATCH, len(target)))))
        for step in range(iterations):
            soft = torch.clamp(torch.sigmoid(v) * (ZETA - GAMMA) + GAMMA, 0, 1)
            w_soft = torch.clamp(floor + soft, -127, 127) * scale
            rows = picks[step]
            loss = torch.mean((self.forward(self.x_q[rows], w_soft) - target[rows]) ** 2) / energy
            beta = 20 - 18 * max(0.0, (step - 0.2 * iterations) / (0.8 * iterations))
            if step >= 0.2 * iterations:  # after a warm-up, push each choice to 0 or 1
                loss = loss + 0.01 * torch.mean(1 - torch.abs(2 * soft - 1) ** beta)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        with torch.no_grad():
            hard = torch.clamp(floor + (v >= 0).float(), -127, 127)
            nearest = torch.clamp(torch.round(w / scale), -127, 127)
            if _error(self.forward, self.x_q, hard * scale, target) > _error(self.forward, self.x_q, nearest * scale, target):
                hard = nearest  # learning did not beat nearest on its own samples: keep nearest
        return hard.numpy().astype(np.int8)


def _error(forward, x, w, target) -> float:
    import torch

    return float(torch.mean((forward(x, w) - target) ** 2))


def _broadcast(scale: np.ndarray, ndim: int, axis: int) -> np.ndarray:
    shape = [1] * ndim
    if scale.size > 1:
        shape[axis] = scale.size
    return scale.reshape(shape).astype(np.float32)


def _fake_quant(x, quant):
    import torch

    if quant is None:
        return x
    scale, zero, low, high = quant
    return (torch.clamp(torch.round(x / scale) + zero, low, high) - zero) * scale


class _Linear:
    """MatMul (weight [in, out]) or Gemm (weight [out, in] with transB): rows of the input's last axis."""

    ROWS = 4096

    def __init__(self, transposed: bool):
        self.transposed = transposed

    def batch(self, inputs: list[np.ndarray], rng) -> np.ndarray | None:
        rows = np.concatenate([x.reshape(-1, x.shape[-1]) for x in inputs])
        if len(rows) > self.ROWS:
            rows = rows[rng.choice(len(rows), self.ROWS, replace=False)]
        return rows

    def __call__(self, x, w):
        return x @ (w.T if self.transposed else w)


class _Conv:
    """A Conv on windows cut from its zero-padded input: each window yields a few outputs exactly as the
    full convolution computes them, so memory stays bounded on large maps."""

    WINDOWS, OUTPUTS = 512, 4  # windows in the pool, outputs per spatial axis per window

    def __init__(self, node, weight: np.ndarray):
        attrs = {a.name: (list(a.ints) if a.ints else a.i) for a in node.attribute}
        dims = weight.ndim - 2
        self.dims, self.groups = dims, int(attrs.get("group", 1) or 1)
        self.strides = attrs.get("strides") or [1] * dims
        self.dilations = attrs.get("dilations") or [1] * dims
        self.pads = attrs.get("pads") or [0] * (2 * dims)
        self.kernel = list(weight.shape[2:])
        self.usable = attrs.get("auto_pad", b"NOTSET") in (b"NOTSET", 0) and 1 <= dims <= 3

    def batch(self, inputs: list[np.ndarray], rng) -> np.ndarray | None:
        if not self.usable:
            return None
        spans = [(k - 1) * d + 1 + s * (self.OUTPUTS - 1) for k, d, s in zip(self.kernel, self.dilations, self.strides)]
        padded = [np.pad(x, [(0, 0), (0, 0)] + [(self.pads[i], self.pads[i + self.dims]) for i in range(self.dims)])
                  for x in inputs]
        spans = [min(span, min(p.shape[2 + i] for p in padded)) for i, span in enumerate(spans)]
        windows = []
        for _ in range(self.WINDOWS):
            x = padded[rng.integers(len(padded))]
            n = rng.integers(x.shape[0])
            starts = [rng.integers(0, x.shape[2 + i] - spans[i] + 1) for i in range(self.dims)]
            cut = (n, slice(None), *[slice(s, s + span) for s, span in zip(starts, spans)])
            windows.append(x[cut])
        return np.stack(windows)

    def __call__(self, x, w):
        import torch.nn.functional as F

        conv = (F.conv1d, F.conv2d, F.conv3d)[self.dims - 1]
        return conv(x, w, None, stride=self.strides, dilation=self.dilations, groups=self.groups)


def _forward(node, weight: np.ndarray):
    """The layer's computation without its bias (which cancels in the error) on (input batch, weight), or
    None where it is not one this learns."""
    if node.op_type == "Conv":
        return _Conv(node, weight) if weight.ndim >= 3 else None
    if weight.ndim != 2:
        return None
    return _Linear(node.op_type == "Gemm" and any(a.name == "transB" and a.i for a in node.attribute))
