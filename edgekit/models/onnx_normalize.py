"""Bring an ONNX graph from another exporter into the form edgekit's quantization reads, without changing
what it computes: weights held in `Constant` nodes become initializers (PaddlePaddle exports them so,
and a quantizer looks for weights among initializers), and an opset below 13 is converted to 13
(per-channel QuantizeLinear/DequantizeLinear need the `axis` attribute that opset 13 added). Nodes without
a name get one: the quantizer keeps nodes in FP32 by name, so an unnamed node could never fall back. A
weight or bias that several Conv/Gemm/MatMul nodes share (a filterbank applied frame by frame) gets one copy
per node: ONNX Runtime's quantizer refuses a shared weight, or, with some names, writes a graph that does not
load.

The onnx package's own version converter does the opset step; what it cannot convert is reported as a
one-line error naming the operator, rather than left to fail later inside the quantizer.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edgekit.errors import ModelLoadError

MIN_OPSET = 13  # QuantizeLinear/DequantizeLinear take `axis` (per-channel) from opset 13


def normalize_onnx(src: Path, dst: Path) -> dict[str, Any]:
    """Write the normalized graph of `src` to `dst`; return what was changed (for the stage's record)."""
    import onnx

    model = onnx.load(str(src))
    report: dict[str, Any] = {"opset_in": default_opset(model)}
    report["constants_to_initializers"] = constants_to_initializers(model.graph)
    named = name_nodes(model.graph)
    if named:
        report["nodes_named"] = named
    unshared = unshare_weights(model.graph)
    if unshared:
        report["weights_unshared"] = unshared
    if report["opset_in"] < MIN_OPSET:
        model = _convert_opset(model, src)
    report["opset"] = default_opset(model)
    onnx.save(model, str(dst))
    return report


def default_opset(model) -> int:
    return next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)


def name_nodes(graph) -> int:
    """Give every unnamed node of the main graph a unique name, op type and index; returns how many."""
    taken = {n.name for n in graph.node if n.name}
    named = 0
    for index, node in enumerate(graph.node):
        if node.name:
            continue
        name = f"{node.op_type}_{index}"
        while name in taken:
            name += "_"
        node.name = name
        taken.add(name)
        named += 1
    return named


WEIGHT_LAYERS = ("Conv", "ConvTranspose", "Gemm", "MatMul")
MAX_COPIED_BYTES = 16 << 20  # shared weights larger than this in all stay shared (and unquantized by ORT)


def unshare_weights(graph) -> int:
    """Give each weight layer its own copy of an initializer it shares with other nodes; returns the copies."""
    inits = {i.name: i for i in graph.initializer}
    uses: dict[str, list[tuple[object, int]]] = {}
    for node in graph.node:
        for index, name in enumerate(node.input):
            if name in inits:
                uses.setdefault(name, []).append((node, index))
    taken = set(inits) | {o for n in graph.node for o in n.output}
    copied, copied_bytes = 0, 0
    for name, users in uses.items():
        layers = [(n, i) for n, i in users if n.op_type in WEIGHT_LAYERS and i >= 1]
        extra = layers[1:] if len(layers) == len(users) else layers
        size = _elements(inits[name]) * 4
        for node, index in extra:
            if copied_bytes + size > MAX_COPIED_BYTES:
                return copied
            fresh = f"{name}_{node.name or copied}"
            while fresh in taken:
                fresh += "_"
            copy = graph.initializer.add()
            copy.CopyFrom(inits[name])
            copy.name = fresh
            taken.add(fresh)
            node.input[index] = fresh
            copied, copied_bytes = copied + 1, copied_bytes + size
    return copied


def constants_to_initializers(graph) -> int:
    """Move tensor-valued `Constant` nodes of the main graph into initializers; returns how many moved.

    Only the `value` form holding a float tensor with more than one element is moved: scalars and
    integer shape constants stay nodes, where shape inference and the exporters' patterns expect them."""
    from onnx import TensorProto

    floats = {TensorProto.FLOAT, TensorProto.FLOAT16, TensorProto.DOUBLE}
    taken = {i.name for i in graph.initializer}
    keep, moved = [], 0
    for node in graph.node:
        value = next((a.t for a in node.attribute if a.name == "value"), None) if node.op_type == "Constant" else None
        if value is None or value.data_type not in floats or _elements(value) < 2 or node.output[0] in taken:
            keep.append(node)
            continue
        value.name = node.output[0]
        graph.initializer.append(value)
        moved += 1
    if moved:
        del graph.node[:]
        graph.node.extend(keep)
    return moved


def _elements(tensor) -> int:
    count = 1
    for dim in tensor.dims:
        count *= dim
    return count


def _convert_opset(model, src: Path):
    from onnx import version_converter

    try:
        converted = version_converter.convert_version(model, MIN_OPSET)
    except Exception as exc:  # the converter raises RuntimeError/ValueError/its own C++ errors per operator
        detail = " ".join(str(exc).split())[:200]
        raise ModelLoadError(f"{src} uses opset {default_opset(model)} and cannot be converted to opset "
                             f"{MIN_OPSET}, which INT8 Q/DQ needs ({detail}); re-export it with opset 13 or "
                             "newer") from exc
    if converted.ir_version < 7:
        converted.ir_version = 7  # opset 13 needs IR 7
    return converted


QUANTIZED_OPS = ("QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear", "QLinearConv", "QLinearMatMul",
                 "MatMulInteger", "ConvInteger", "QGemm", "QLinearAdd")


def refuse_quantized(path: Path) -> None:
    """An already-quantized graph cannot be quantized again: say so before any stage runs."""
    import onnx

    ops = [n.op_type for n in onnx.load(str(path), load_external_data=False).graph.node if n.op_type in QUANTIZED_OPS]
    if ops:
        first = max(set(ops), key=ops.count)
        raise ModelLoadError(f"{path} is already quantized ({ops.count(first)} {first} nodes); give its FP32 model, "
                             "or use --quant none to compile and measure it as it is")
