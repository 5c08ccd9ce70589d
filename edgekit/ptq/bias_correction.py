"""Bias correction: move each INT8 layer's bias so its outputs keep the FP32 layer's mean.

Rounding a layer's weights to INT8 shifts its output by (W_int8 - W) · E[x], a bias that every following
layer inherits: channels whose weights all round the same way move together. The shift is known once the
mean of the layer's input is: measured on the calibration split, on the FP32 graph. The correction is
written into the Q/DQ graph itself (the float bias, or the int32 one at its own scale), so nodes that a
fallback keeps in FP32 keep their own biases. Convolutions (grouped too) and Gemm layers with a bias.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgekit.ptq.exposed import exposed_values

DQ_SUFFIX = "_DequantizeLinear_Output"


def input_means(fp32: Path, samples, names: list[str], limit: int = 64) -> dict[str, np.ndarray]:
    """Per-channel mean of every Conv and Gemm input of the FP32 graph (axis 1: NCHW channels, Gemm features)."""
    import onnx

    graph = onnx.load(str(fp32), load_external_data=False).graph
    weights = {i.name for i in graph.initializer}
    wanted = sorted({n.input[0] for n in graph.node if n.op_type in ("Conv", "Gemm") and n.input[0] not in weights})
    sums: dict[str, np.ndarray] = {}
    counts: dict[str, int] = {}
    for sample in exposed_values(fp32, wanted, samples, names, limit):
        for name, value in sample.items():
            value = np.asarray(value, np.float64)
            if value.ndim < 2:
                continue
            sums[name] = sums.get(name, 0) + np.moveaxis(value, 1, 0).reshape(value.shape[1], -1).sum(1)
            counts[name] = counts.get(name, 0) + value.size // value.shape[1]
    return {name: sums[name] / counts[name] for name in sums}


def correct_biases(qdq: Path, fp32: Path, means: dict[str, np.ndarray]) -> int:
    """Rewrite the biases of `qdq`'s quantized Conv and Gemm layers in place; the number of layers corrected."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(qdq))
    graph = model.graph
    inits = {i.name: i for i in graph.initializer}
    originals = {i.name: numpy_helper.to_array(i) for i in onnx.load(str(fp32)).graph.initializer}
    producer = {o: n for n in graph.node for o in n.output}
    corrected = 0
    for node in graph.node:
        if node.op_type not in ("Conv", "Gemm") or len(node.input) < 3 or not node.input[2]:
            continue
        mean = means.get(node.input[0].removesuffix(DQ_SUFFIX))
        weight_name = node.input[1].removesuffix(DQ_SUFFIX)
        quantized = _dequantized(producer.get(node.input[1]), inits)
        if mean is None or quantized is None or weight_name not in originals:
            continue
        shift = _output_shift(node, quantized - originals[weight_name].astype(np.float64), mean)
        if shift is not None and _move_bias(node.input[2], shift, producer, inits):
            corrected += 1
    onnx.save(model, str(qdq))
    return corrected


def _dequantized(dq, inits) -> np.ndarray | None:
    """The real values a weight's DequantizeLinear gives (per-axis scales broadcast on its axis)."""
    from onnx import numpy_helper

    if dq is None or dq.op_type != "DequantizeLinear" or dq.input[0] not in inits:
        return None
    q = numpy_helper.to_array(inits[dq.input[0]]).astype(np.float64)
    scale = numpy_helper.to_array(inits[dq.input[1]]).astype(np.float64)
    zero = numpy_helper.to_array(inits[dq.input[2]]).astype(np.float64) if len(dq.input) > 2 else np.zeros_like(scale)
    axis = next((a.i for a in dq.attribute if a.name == "axis"), 1)
    shape = [1] * q.ndim
    if scale.ndim == 1 and scale.size > 1:
        shape[axis] = scale.size
    return (q - zero.reshape(shape)) * scale.reshape(shape)


def _output_shift(node, error: np.ndarray, mean: np.ndarray) -> np.ndarray | None:
    """(W_int8 - W) · E[x] per output channel."""
    attrs = {a.name: a for a in node.attribute}
    if node.op_type == "Conv":
        groups = attrs["group"].i if "group" in attrs else 1
        per_channel = error.reshape(error.shape[0], error.shape[1], -1).sum(-1)  # [out, in per group]
        if mean.size != per_channel.shape[1] * groups:
            return None
        group_of = np.arange(error.shape[0]) // (error.shape[0] // groups)
        return np.einsum("oc,oc->o", per_channel, mean.reshape(groups, -1)[group_of])
    if "transA" in attrs and attrs["transA"].i:
        return None
    weight = error.T if ("transB" in attrs and attrs["transB"].i) else error  # [in, out]
    return mean @ weight if mean.size == weight.shape[0] else None


def _move_bias(name: str, shift: np.ndarray, producer, inits) -> bool:
    """bias -= shift, on the float bias or on its int32 quantized form (rounded at the bias's own scale)."""
    from onnx import numpy_helper

    if name in inits:
        bias = numpy_helper.to_array(inits[name]).astype(np.float64)
        inits[name].CopyFrom(numpy_helper.from_array((bias - shift).astype(np.float32), name))
        return True
    dq = producer.get(name)
    if dq is None or dq.op_type != "DequantizeLinear" or dq.input[0] not in inits:
        return False
    q = numpy_helper.to_array(inits[dq.input[0]]).astype(np.int64)
    scale = numpy_helper.to_array(inits[dq.input[1]]).astype(np.float64)
    moved = np.clip(np.round(q - shift / scale), -2 ** 31, 2 ** 31 - 1).astype(np.int32)
    inits[dq.input[0]].CopyFrom(numpy_helper.from_array(moved, dq.input[0]))
    return True
