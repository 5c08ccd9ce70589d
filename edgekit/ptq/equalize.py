"""Per-channel scale migration before static INT8: cross-layer equalization for convolutional chains,
SmoothQuant for the linear layers of attention blocks.

Static INT8 gives an activation one scale for all its channels, so a few channels with large values leave the
others a handful of steps. Channel c of a tensor that feeds only weight layers can be divided by s_c where it
is made (the producer's output channel c: a Conv, Gemm or MatMul with its bias, through a Relu or LeakyRelu,
which commute with a positive scale; or a LayerNorm's gamma and beta) and multiplied back in the consumers'
input channel c weights: the FP32 graph computes the same function, and the activation's channels come out
on comparable scales. s_c = max|x_c|^a / max|w_c|^(1 - a) with a = 0.5 balances the activation's range
against the weights' (a per-channel weight scale absorbs what moves into the weights).

Written here rather than taken from a library: the implementations (AIMET, NNCF, ModelOpt) transform their
own model representations; this one rewrites the ONNX graph the calibration and export stages share.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgekit.ptq.exposed import exposed_values

HOMOGENEOUS = ("Relu", "LeakyRelu")  # f(s x) = s f(x) for s > 0
LAYERS = ("Conv", "Gemm", "MatMul")
ALPHA = 0.5
LIMITS = (1e-4, 1e4)  # the largest migration allowed, either way


@dataclass
class Site:
    """One tensor whose channels can be rescaled: where it is made and every layer that reads it."""

    tensor: str
    producer: object  # the weight layer or affine tail that makes it (onnx NodeProto)
    bias_add: object | None  # an Add of a constant bias between a MatMul producer and the tensor
    consumers: list  # Conv / Gemm / MatMul nodes reading it with a constant weight
    channels: int


def equalize(fp32: Path, out: Path, samples, names: list[str], limit: int = 32) -> int:
    """Write `fp32` with its activations' channels equalized to `out`; the number of tensors rescaled."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(fp32))
    graph = model.graph
    inits = {i.name: i for i in graph.initializer}
    sites = find_sites(graph)
    peaks = channel_peaks(fp32, sites, samples, names, limit)
    done = 0
    for site in sites:
        peak = peaks.get(site.tensor)
        if peak is None:
            continue
        if not _vectors_fit(site, inits):
            continue
        weights = [numpy_helper.to_array(inits[_weight_of(c)]) for c in site.consumers]
        weight_peak = np.max([_input_channel_peak(c, w) for c, w in zip(site.consumers, weights)], axis=0)
        scale = migration_scale(peak, weight_peak)
        if scale is None:
            continue
        _divide_producer(site, scale, inits)
        for consumer, weight in zip(site.consumers, weights):
            _set(inits, _weight_of(consumer), _scale_input_channels(consumer, weight, scale))
        done += 1
    onnx.save(model, str(out))
    return done


def migration_scale(activation_peak: np.ndarray, weight_peak: np.ndarray, alpha: float = ALPHA) -> np.ndarray | None:
    """s_c = |x_c|^a / |w_c|^(1-a), within LIMITS; None where a channel is dead or nothing would move."""
    if np.any(activation_peak <= 0) or np.any(weight_peak <= 0):
        return None
    scale = np.clip(activation_peak ** alpha / weight_peak ** (1 - alpha), *LIMITS)
    return scale.astype(np.float32) if np.ptp(np.log(scale)) > 1e-3 else None


# --- finding where channels can move ---------------------------------------------------------------------

def find_sites(graph) -> list[Site]:
    """Tensors made by a per-channel-scalable producer whose every reader is a weight layer, on the same
    channel axis (NCHW convolutions on both sides, or linear layers on both sides), touching no shared weight."""
    inits = {i.name: i for i in graph.initializer}
    producer = {o: n for n in graph.node for o in n.output}
    readers: dict[str, list] = {}
    for node in graph.node:
        for name in node.input:
            readers.setdefault(name, []).append(node)
    outputs = {o.name for o in graph.output}
    sites = []
    for tensor, consumers in readers.items():
        if tensor in outputs or tensor in inits or not all(_reads_as_input(c, tensor, inits) for c in consumers):
            continue
        made = _scalable_producer(tensor, producer, readers, inits, outputs)
        if made is None or _is_conv(made[0]) != (consumers[0].op_type == "Conv"):
            continue
        if any(c.op_type == "Conv" for c in consumers) != all(c.op_type == "Conv" for c in consumers):
            continue
        touched = [_weight_of(c) for c in consumers] + [i for n in made if n is not None for i in n.input if i in inits]
        channels = _channels(consumers, inits)
        if channels and all(len(readers[w]) == 1 for w in touched):
            sites.append(Site(tensor, made[0], made[1], consumers, channels))
    return sites


def _is_conv(node) -> bool:
    return node.op_type == "Conv"


def _reads_as_input(node, tensor: str, inits) -> bool:
    """A weight layer reading `tensor` as its activation, with a constant weight it can rescale."""
    if node.op_type not in LAYERS or node.input[0] != tensor or len(node.input) < 2 or node.input[1] not in inits:
        return False
    if node.op_type == "Gemm" and _attr(node, "transA"):
        return False
    if node.op_type == "Conv":
        return int(_attr(node, "group") or 1) == 1
    return len(inits[node.input[1]].dims) == 2


def _scalable_producer(tensor, producer, readers, inits, outputs):
    """(producer, bias Add or None) whose output channels can be divided, or None."""
    node = producer.get(tensor)
    if node is not None and node.op_type in HOMOGENEOUS:
        tensor = node.input[0]
        if len(readers.get(tensor, [])) != 1 or tensor in outputs:
            return None
        node = producer.get(tensor)
    if node is None:
        return None
    if node.op_type in ("Conv", "Gemm") and len(node.input) > 1 and node.input[1] in inits:
        return None if node.op_type == "Gemm" and _attr(node, "transA") else (node, None)
    if node.op_type == "LayerNormalization" and node.input[1] in inits and _attr(node, "axis") in (None, -1):
        return node, None
    if node.op_type == "Add" and sum(i in inits for i in node.input) == 1:
        inner = next(i for i in node.input if i not in inits)
        made = producer.get(inner)
        if made is None or len(readers.get(inner, [])) != 1 or inner in outputs:
            return None
        if made.op_type == "MatMul" and made.input[1] in inits and len(inits[made.input[1]].dims) == 2:
            return made, node
        if made.op_type == "Mul" and sum(i in inits for i in made.input) == 1:
            return made, node  # a LayerNorm's affine tail: x * gamma + beta
    return None


def _channels(consumers, inits) -> int:
    """The rescaled axis's length, where every consumer agrees on it; 0 otherwise."""
    counts = set()
    for node in consumers:
        shape = list(inits[node.input[1]].dims)
        counts.add(shape[_input_axis(node)])
    return counts.pop() if len(counts) == 1 else 0


# --- statistics ------------------------------------------------------------------------------------------

def channel_peaks(fp32: Path, sites: list[Site], samples, names: list[str], limit: int) -> dict[str, np.ndarray]:
    """max |x_c| per channel of each site's tensor over the first `limit` samples (channels: axis 1 for a
    Conv's input, the last axis for a linear layer's)."""
    axes = {s.tensor: (1 if s.consumers[0].op_type == "Conv" else -1) for s in sites}
    peaks: dict[str, np.ndarray] = {}
    for sample in exposed_values(fp32, list(axes), samples, names, limit):
        for name, value in sample.items():
            value = np.abs(np.asarray(value, np.float32))
            channels = next(s.channels for s in sites if s.tensor == name)
            if value.ndim < 2 or value.shape[axes[name]] != channels:
                continue
            flat = np.moveaxis(value, axes[name], 0).reshape(channels, -1).max(axis=1)
            peaks[name] = np.maximum(peaks.get(name, flat), flat)
    return peaks


# --- rewriting --------------------------------------------------------------------------------------------

def _weight_of(node) -> str:
    return node.input[1]


def _attr(node, name: str):
    return next((a.i for a in node.attribute if a.name == name), None)


def _input_channel_peak(node, weight: np.ndarray) -> np.ndarray:
    axis = _input_axis(node)
    return np.abs(np.moveaxis(weight, axis, 0)).reshape(weight.shape[axis], -1).max(axis=1)


def _input_axis(node) -> int:
    if node.op_type == "Conv":
        return 1
    return 1 if node.op_type == "Gemm" and _attr(node, "transB") else 0


def _scale_input_channels(node, weight: np.ndarray, scale: np.ndarray) -> np.ndarray:
    shape = [1] * weight.ndim
    shape[_input_axis(node)] = scale.size
    return (weight * scale.reshape(shape)).astype(weight.dtype)


def _set(inits, name: str, value: np.ndarray) -> None:
    from onnx import numpy_helper

    inits[name].CopyFrom(numpy_helper.from_array(value, name))


def _divide_producer(site: Site, scale: np.ndarray, inits) -> None:
    """Output channel c of the producer (and its bias) divided by s_c."""
    from onnx import numpy_helper

    node = site.producer
    value = lambda name: numpy_helper.to_array(inits[name])  # noqa: E731
    if node.op_type in ("Conv", "Gemm", "MatMul"):
        axis = 0 if node.op_type == "Conv" or (node.op_type == "Gemm" and _attr(node, "transB")) else 1
        weight = value(node.input[1])
        shape = [1] * weight.ndim
        shape[axis] = scale.size
        _set(inits, node.input[1], (weight / scale.reshape(shape)).astype(weight.dtype))
        if len(node.input) > 2 and node.input[2] in inits:
            _set(inits, node.input[2], _divide_vector(value(node.input[2]), scale))
    else:  # Mul by gamma, LayerNormalization's scale and bias
        for name in [i for i in node.input if i in inits]:
            _set(inits, name, _divide_vector(value(name), scale))
    if site.bias_add is not None:
        for name in [i for i in site.bias_add.input if i in inits]:
            _set(inits, name, _divide_vector(value(name), scale))


def _vectors_fit(site: Site, inits) -> bool:
    """Every per-channel constant to divide is a scalar or one value per channel (not a [C, 1] broadcast)."""
    node = site.producer
    names = [] if node.op_type in ("Conv", "Gemm", "MatMul") else [i for i in node.input if i in inits]
    if node.op_type in ("Conv", "Gemm", "MatMul") and len(node.input) > 2 and node.input[2] in inits:
        names.append(node.input[2])
    if site.bias_add is not None:
        names += [i for i in site.bias_add.input if i in inits]
    for name in names:
        dims = list(inits[name].dims)
        size = int(np.prod(dims)) if dims else 1
        if size != 1 and (dims[-1] != site.channels or size != site.channels):
            return False
    return True


def _divide_vector(vector: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """A per-channel vector (or a scalar, broadcast) divided channel by channel."""
    if vector.shape[-1:] == scale.shape:
        return (vector / scale).astype(vector.dtype)
    return (np.broadcast_to(vector, vector.shape[:-1] + scale.shape) / scale).astype(vector.dtype)
