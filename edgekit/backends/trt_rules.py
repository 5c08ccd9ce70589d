"""TensorRT's explicit-quantization rules, checked on the ONNX graph (no TensorRT needed).

TensorRT builds INT8 kernels exactly where Q/DQ pairs say so: symmetric INT8
(zero point 0), weights per channel on the output-channel axis, activations
quantized at the inputs of Conv/Gemm/MatMul, and both inputs of residual adds
quantized so the add fuses into the preceding convolution's INT8 epilogue.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

WEIGHTED = ("Conv", "ConvTranspose", "Gemm", "MatMul")


@dataclass(frozen=True)
class Violation:
    node: str
    rule: str
    fix: str

    def __str__(self) -> str:
        return f"{self.node}: {self.rule} ({self.fix})"


def require_explicit_quantization(path: Path) -> dict:
    """Check a graph that is about to ship: a violation stops with the first rule broken."""
    import onnx

    from edgekit.errors import StageError

    violations = check_explicit_quantization(path)
    if violations:
        raise StageError(f"{Path(path).name} breaks {len(violations)} TensorRT Q/DQ rule(s), first: "
                         f"{violations[0]}; quantize with the target's trt-s8s8 preset")
    graph = onnx.load(str(path), load_external_data=False).graph
    qdq = sum(n.op_type in ("QuantizeLinear", "DequantizeLinear") for n in graph.node)
    return {"checked": "tensorrt explicit quantization", "violations": [], "qdq_nodes": qdq, "nodes": len(graph.node)}


def check_explicit_quantization(path: Path) -> list[Violation]:
    import onnx
    from onnx import numpy_helper

    graph = onnx.load(str(path)).graph
    inits = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    producer = {o: n for n in graph.node for o in n.output}
    found: list[Violation] = []
    for node in graph.node:
        label = node.name or node.output[0]
        if node.op_type in ("QuantizeLinear", "DequantizeLinear"):
            found += _zero_point_rules(node, label, inits)
        elif node.op_type in WEIGHTED:
            found += _weighted_rules(node, label, inits, producer)
        elif node.op_type == "Add":
            found += _residual_rules(node, label, inits, producer)
    return found


def _zero_point_rules(node, label, inits) -> list[Violation]:
    zp = inits.get(node.input[2]) if len(node.input) > 2 and node.input[2] else None
    if zp is None:
        return []
    if zp.dtype == np.int32:
        return [Violation(label, "bias is quantized to int32", "keep biases in FP32: TensorRT quantizes them itself")]
    if zp.dtype != np.int8:
        return [Violation(label, f"zero point is {zp.dtype}, TensorRT needs int8",
                          "quantize activations as QInt8 with the TensorRT preset")]
    if np.any(zp != 0):
        return [Violation(label, "zero point is not 0 (asymmetric)", "use symmetric quantization")]
    return []


def _weighted_rules(node, label, inits, producer) -> list[Violation]:
    found = []
    act = producer.get(node.input[0])
    if act is None or act.op_type != "DequantizeLinear":
        found.append(Violation(label, "activation input is not quantized",
                               "insert Q/DQ on the input of every Conv/Gemm/MatMul"))
    weight = producer.get(node.input[1])
    if node.input[1] in inits:
        found.append(Violation(label, "weight has no Q/DQ", "quantize weights per channel"))
    elif weight is not None and weight.op_type == "DequantizeLinear":
        found += _weight_axis_rules(node, label, weight, inits)
    elif node.op_type == "MatMul" and (weight is None or weight.op_type != "DequantizeLinear"):
        found.append(Violation(label, "second MatMul input is not quantized", "insert Q/DQ on both inputs"))
    return found


def _weight_axis_rules(node, label, dq, inits) -> list[Violation]:
    weights = inits.get(dq.input[0])
    scale = inits.get(dq.input[1])
    if weights is None or scale is None:
        return []
    axis = next((a.i for a in dq.attribute if a.name == "axis"), 1)
    expected = _output_axis(node, weights)
    if scale.size == 1:
        return [Violation(label, "weights are quantized per tensor", "quantize weights per output channel")]
    if axis % weights.ndim != expected:
        return [Violation(label, f"per-channel axis is {axis}, output channels are on axis {expected}",
                          "quantize weights along the output-channel axis")]
    return []


def _output_axis(node, weights) -> int:
    if node.op_type == "ConvTranspose":
        return 1
    if node.op_type == "Gemm":
        trans_b = next((a.i for a in node.attribute if a.name == "transB"), 0)
        return 0 if trans_b else 1
    if node.op_type == "MatMul":
        return weights.ndim - 1
    return 0


def _residual_rules(node, label, inits, producer) -> list[Violation]:
    activations = [name for name in node.input if name not in inits and name in producer]
    if len(activations) < 2:
        return []
    unquantized = [name for name in activations if producer[name].op_type != "DequantizeLinear"]
    if unquantized:
        return [Violation(label, "residual add has an input without Q/DQ",
                          "quantize both inputs of the add so it fuses into the convolution")]
    return []
