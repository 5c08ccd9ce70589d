"""Accuracy-aware fallback: keep the fewest, most sensitive nodes in FP32 until a budget holds.

Sensitivity is measured, not guessed: the FP32 and INT8 graphs run side by
side on evaluation samples and each node is scored by how much relative error
it adds on top of the error already in its inputs. Nodes fall back in that
order, doubling the count, until the fidelity budget holds.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import numpy as np
from edgekit.files import scratch_dir
from edgekit.progress import bar


def node_sensitivity(fp32: Path, qdq: Path, samples, names: list[str], limit: int = 32) -> list[tuple[str, float]]:
    """(node name, added relative error) for nodes of the FP32 graph, most sensitive first."""
    import onnx

    model = onnx.load(str(fp32))
    graph = model.graph
    floats = _float_tensors(model)
    quantized_outputs = {o for n in onnx.load(str(qdq)).graph.node for o in n.output} & floats
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


def _float_tensors(model) -> set[str]:
    """Tensors known to be float32: only these can be exposed as extra float outputs."""
    from onnx import TensorProto, shape_inference

    inferred = shape_inference.infer_shapes(model).graph
    infos = list(inferred.value_info) + list(inferred.output) + list(inferred.input)
    return {vi.name for vi in infos if vi.type.tensor_type.elem_type == TensorProto.FLOAT}


def _tensor_values(path: Path, tensors: list[str], samples, names: list[str], limit: int) -> dict[str, np.ndarray]:
    import onnx
    from onnx import TensorProto, helper

    from edgekit.backends import ort as ort_backend

    model = onnx.load(str(path))
    present = {o for n in model.graph.node for o in n.output}
    existing = {o.name for o in model.graph.output}
    model.graph.output.extend(helper.make_tensor_value_info(t, TensorProto.FLOAT, None)
                              for t in tensors if t in present and t not in existing)
    with scratch_dir("sens") as tmp:
        augmented = Path(tmp) / "augmented.onnx"
        onnx.save(model, str(augmented))
        sess = ort_backend.session(augmented)
        outputs = [o.name for o in sess.get_outputs()]
        values: dict[str, list[np.ndarray]] = {}
        for count, (inputs, _) in enumerate(samples.batches(1)):
            if count >= limit:
                break
            for name, value in zip(outputs, sess.run(None, {n: inputs[n] for n in names})):
                values.setdefault(name, []).append(np.asarray(value, dtype=np.float32).ravel())
    return {k: np.concatenate(v) for k, v in values.items()}


def _relative_error(reference: np.ndarray, value: np.ndarray) -> float:
    if reference.shape != value.shape:
        return 0.0
    return float(np.sum((reference - value) ** 2) / max(np.sum(reference ** 2), 1e-12))


def fallback_search(quantize: Callable[[list[str], Path], Path], fp32: Path, out: Path, samples, names: list[str],
                    drop_of: Callable[[Path], float], budget: float,
                    latency_of: Callable[[Path], float]) -> dict[str, Any]:
    """Quantize with growing FP32 exclusions until `drop_of(model) <= budget`; leaves the result at `out`.

    The report names the nodes kept in FP32 and the measured latency of the
    fully quantized graph against the chosen one: what the fallback cost.
    """
    quantize([], out)
    drop = drop_of(out)
    full_latency = latency_of(out)
    rows = [{"fallback_nodes": 0, "drop": drop}]
    excluded: list[str] = []
    if drop > budget:
        ranked = [name for name, _ in node_sensitivity(fp32, out, samples, names)]
        count = 1
        with bar("fallback probing (nodes back to FP32)", None) as advance:
            while drop > budget and excluded != ranked:
                excluded = ranked[:count]
                quantize(excluded, out)
                drop = drop_of(out)
                rows.append({"fallback_nodes": len(excluded), "drop": drop})
                count *= 2
                advance(1)
    return {"fallback": excluded, "drop": drop, "within_budget": drop <= budget, "steps": rows,
            "latency_ms_all_int8": full_latency, "latency_ms_with_fallback": latency_of(out)}
