"""Accuracy-aware fallback: keep the fewest, most sensitive nodes in FP32 until a budget holds.

Sensitivity is measured, not guessed: the FP32 and INT8 graphs run side by
side on evaluation samples and each node is scored by how much relative error
it adds on top of the error already in its inputs. Nodes fall back in that
order, doubling the count, until the fidelity budget holds.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Callable

import numpy as np
from edgekit.ptq.exposed import exposed_values
from edgekit.progress import bar


def node_sensitivity(fp32: Path, qdq: Path, samples, names: list[str], limit: int = 32) -> list[tuple[str, float]]:
    """(node name, added relative error) for nodes of the FP32 graph, most sensitive first."""
    import onnx

    model = onnx.load(str(fp32))
    graph = model.graph
    floats = _float_tensors(model)
    quantized_outputs = ({o for n in onnx.load(str(qdq)).graph.node for o in n.output} & floats) - _constant_tensors(graph)
    nodes = [n for n in graph.node if n.name and n.output[0] in quantized_outputs]
    tensors = sorted({n.output[0] for n in nodes} | {i for n in nodes for i in n.input if i in quantized_outputs})
    reference = _tensor_values(fp32, tensors, samples, names, limit)
    quantized = _tensor_values(qdq, tensors, samples, names, limit)
    error = {t: _relative_error(reference[t], quantized[t]) for t in tensors if t in reference and t in quantized}
    scores = []
    for node in nodes:
        if node.output[0] not in error:
            continue
        inherited = max((error.get(i, 0.0) for i in node.input), default=0.0)
        scores.append((node.name, error[node.output[0]] - inherited))
    return sorted(scores, key=lambda item: -item[1])


def _constant_tensors(graph) -> set[str]:
    """Tensors computed from weights alone (a weight's Reshape): not activations, and exposing one as an output
    stops the runtime folding it, which leaves some per-channel DequantizeLinear nodes that then fail."""
    constant = {i.name for i in graph.initializer}
    for node in graph.node:
        if all(i in constant or not i for i in node.input):
            constant.update(node.output)
    return constant


def _float_tensors(model) -> set[str]:
    """Tensors known to be float32: only these can be exposed as extra float outputs."""
    from onnx import TensorProto, shape_inference

    inferred = shape_inference.infer_shapes(model).graph
    infos = list(inferred.value_info) + list(inferred.output) + list(inferred.input)
    return {vi.name for vi in infos if vi.type.tensor_type.elem_type == TensorProto.FLOAT}


def _tensor_values(path: Path, tensors: list[str], samples, names: list[str], limit: int) -> dict[str, np.ndarray]:
    values: dict[str, list[np.ndarray]] = {}
    for sample in exposed_values(path, tensors, samples, names, limit):
        for name, value in sample.items():
            values.setdefault(name, []).append(np.asarray(value, dtype=np.float32).ravel())
    return {k: np.concatenate(v) for k, v in values.items()}


def _relative_error(reference: np.ndarray, value: np.ndarray) -> float:
    if reference.shape != value.shape:
        return 0.0
    return float(np.sum((reference - value) ** 2) / max(np.sum(reference ** 2), 1e-12))


def _measured_sensitivity(fp32: Path, qdq: Path, samples, names: list[str], report: dict) -> list:
    """`node_sensitivity`, or [] (graph order) where the graph with every tensor exposed does not run: exposing
    a weight's DequantizeLinear output stops the runtime folding it, and some per-channel ones then fail."""
    try:
        return node_sensitivity(fp32, qdq, samples, names)
    except Exception as exc:  # ONNX Runtime raises several types
        report["sensitivity"] = f"not measured ({' '.join(str(exc).split())[:160]}); graph order used"
        return []


def fallback_order(fp32: Path, ranked: list[str], quantized: set[str] | None = None) -> list[str]:
    """Node names to exclude, most sensitive first, each with the compute node it is fused with.

    The quantizer fuses Conv -> Relu into one quantized step whose error shows at the Relu's output; keeping
    only the Relu in FP32 leaves the Conv INT8, so each ranked node brings the producer whose only consumer
    it is. Nodes the ranking missed come last, so the search can always reach an all-FP32 graph. Where
    `quantized` names the nodes the all-INT8 graph quantizes, only those are listed: excluding a node the
    placement left float changes nothing, and the report would count it as kept in FP32."""
    import onnx

    graph = onnx.load(str(fp32), load_external_data=False).graph
    producer = {o: n for n in graph.node for o in n.output}
    consumers: dict[str, int] = {}
    for node in graph.node:
        for name in node.input:
            consumers[name] = consumers.get(name, 0) + 1
    order: list[str] = []
    for name in ranked:
        node = next((n for n in graph.node if n.name == name), None)
        fused = [producer[i].name for i in (node.input if node is not None else [])
                 if i in producer and consumers.get(i) == 1 and producer[i].op_type in FUSED_INTO_NEXT]
        order += [n for n in [*fused, name] if n not in order]
    order += [n.name for n in graph.node if n.name and n.name not in order]
    return order if quantized is None else [n for n in order if n in quantized]


def quantized_nodes(qdq: Path) -> set[str]:
    """Names of the nodes of a Q/DQ graph that read a dequantized tensor or feed a quantizer."""
    import onnx

    graph = onnx.load(str(qdq), load_external_data=False).graph
    dequantized = {o for n in graph.node if n.op_type == "DequantizeLinear" for o in n.output}
    quantizing = {n.input[0] for n in graph.node if n.op_type == "QuantizeLinear"}
    return {n.name for n in graph.node if n.op_type not in ("QuantizeLinear", "DequantizeLinear")
            and (any(i in dequantized for i in n.input) or any(o in quantizing for o in n.output))}


SENSITIVITY_SHOWN = 20  # nodes the record (and the report's table and plot) lists
FUSED_INTO_NEXT = ("Conv", "ConvTranspose", "MatMul", "Gemm", "Add")


def fallback_search(quantize: Callable[[list[str], Path], Path], fp32: Path, out: Path, samples, names: list[str],
                    excess_of: Callable[[Path], float], latency_of: Callable[[Path], float]) -> dict[str, Any]:
    """Quantize with growing FP32 exclusions until `excess_of(model)` is 0 (it meets what it must keep);
    leaves the result at `out`.

    The report names the nodes kept in FP32 and, where any were, the measured latency of the fully
    quantized graph against the chosen one: what the fallback cost.
    """
    quantize([], out)
    excess = excess_of(out)
    rows = [{"fallback_nodes": 0, "excess": excess}]
    excluded: list[str] = []
    report: dict[str, Any] = {}
    if excess > 0:
        runs = not math.isinf(excess)  # a graph that does not run can be neither timed nor probed
        report["latency_ms_all_int8"] = latency_of(out) if runs else None
        sensitive = _measured_sensitivity(fp32, out, samples, names, report) if runs else []
        report["sensitivity"] = [{"node": name, "added_error_pct": round(100 * added, 4)}
                                 for name, added in sensitive[:SENSITIVITY_SHOWN]]
        ranked = fallback_order(fp32, [name for name, _ in sensitive], quantized_nodes(out) if runs else None)
        count = 1
        with bar("fallback probing (nodes back to FP32)", None) as advance:
            while excess > 0 and excluded != ranked:
                excluded = ranked[:count]
                quantize(excluded, out)
                excess = excess_of(out)
                rows.append({"fallback_nodes": len(excluded), "excess": excess})
                count *= 2
                advance(1)
            if excess <= 0 and len(rows) > 2:
                excluded = _bisect(quantize, out, ranked, rows, excess_of, advance)
        report["latency_ms_with_fallback"] = latency_of(out)
    return {"fallback": excluded, "excess": excess, "within_budget": excess <= 0, "steps": rows, **report}


def _bisect(quantize, out: Path, ranked: list[str], rows: list[dict], excess_of, advance) -> list[str]:
    """Fewer nodes than the doubling found: bisect between the last count that missed and the first that held,
    to within 1/16 of it (each probe is one quantization and one measurement). Leaves that graph at `out`."""
    low, high = rows[-2]["fallback_nodes"], rows[-1]["fallback_nodes"]
    held_at_high = True  # `out` holds ranked[:high]
    while high - low > max(1, high // 16):
        middle = (low + high) // 2
        quantize(ranked[:middle], out)
        excess = excess_of(out)
        rows.append({"fallback_nodes": middle, "excess": excess})
        advance(1)
        low, high, held_at_high = (low, middle, True) if excess <= 0 else (middle, high, False)
    if not held_at_high:  # the last probe missed: the graph that held goes back, and the record ends on it
        quantize(ranked[:high], out)
        rows.append(next(row for row in reversed(rows) if row["fallback_nodes"] == high))
    return ranked[:high]
