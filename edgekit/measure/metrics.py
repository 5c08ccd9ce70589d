"""Size, compute and fidelity measures shared by stages, bench and inspect."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def count_params(model) -> int:
    return int(sum(p.numel() for p in model.parameters()))


def onnx_params_and_macs(path: Path, input_shapes: dict[str, tuple[int, ...]] | None = None) -> tuple[int, int]:
    """Weights and multiply-accumulates per sample of Conv/Gemm/MatMul, from ONNX shapes.

    Counted on the graph so torch models, pruned models and user ONNX files are
    measured the same way. Inputs are pinned to `input_shapes` (a real sample)
    so that padding computed at run time still gives concrete shapes; dimensions
    that stay symbolic count as 1.
    """
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(path))
    for value in model.graph.input:
        shape = (input_shapes or {}).get(value.name)
        dims = value.type.tensor_type.shape.dim
        if shape is not None and len(shape) == len(dims):
            for dim, size in zip(dims, shape):
                dim.Clear()
                dim.dim_value = int(size)
    model = _infer_shapes(model)
    graph = model.graph
    inits = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    shapes = {}
    for vi in list(graph.value_info) + list(graph.output) + list(graph.input):
        dims = [d.dim_value if d.HasField("dim_value") else 1 for d in vi.type.tensor_type.shape.dim]
        shapes[vi.name] = dims
    qparams = {t for n in graph.node if n.op_type in ("QuantizeLinear", "DequantizeLinear") for t in n.input[1:]}
    params = sum(int(a.size) for name, a in inits.items() if a.ndim >= 1 and a.size > 1 and name not in qparams)
    macs = 0
    producer = {o: n for n in graph.node for o in n.output}
    for node in graph.node:
        out = shapes.get(node.output[0])
        if out is None:
            continue
        if node.op_type in ("Conv", "QLinearConv", "ConvInteger"):
            w = _weight_shape(node, inits, producer, shapes, 3 if node.op_type == "QLinearConv" else 1)
            if w is not None:
                macs += int(np.prod(out)) * int(np.prod(w[1:]))
        elif node.op_type in ("Gemm", "MatMul", "MatMulInteger", "QGemm"):
            a = shapes.get(node.input[0])
            if a:
                macs += int(np.prod(out)) * int(a[-1])
    return int(params), int(macs)


def _weight_shape(node, inits, producer, shapes, index):
    name = node.input[index]
    if name in inits:
        return inits[name].shape
    src = producer.get(name)
    if src is not None and src.op_type == "DequantizeLinear" and src.input[0] in inits:
        return inits[src.input[0]].shape
    return shapes.get(name)


def _infer_shapes(model):
    """ORT's symbolic inference follows shapes through run-time padding (Shape -> Pad) where
    ONNX's own inference gives up; ONNX's is the fallback for graphs it cannot handle."""
    from onnx import shape_inference

    try:
        from onnxruntime.tools.symbolic_shape_infer import SymbolicShapeInference

        return SymbolicShapeInference.infer_shapes(model, auto_merge=True)
    except Exception:  # any failure of the optional, stricter pass falls back
        return shape_inference.infer_shapes(model, data_prop=True)


# Outputs are one array (samples on axis 0) or, for inputs that vary in size, a list of per-sample arrays.
Outputs = np.ndarray | list[np.ndarray]


def top1_agreement(a: Outputs, b: Outputs) -> float | None:
    """Share of samples with the same top class; None for outputs that are not (samples, classes),
    such as detection maps, where cosine similarity is the fidelity measure."""
    a, b = _class_scores(a), _class_scores(b)
    if a is None or b is None:
        return None
    return float((a.argmax(-1) == b.argmax(-1)).mean())


def mean_cosine(a: Outputs, b: Outputs) -> float:
    """Mean over samples of the cosine similarity of their flattened outputs.

    No epsilon in the denominator: a probability map of a page without text has a norm near 1e-7, and an
    epsilon of 1e-12 on the squared norms scored the FP32 model 0.008 against itself. Two all-zero
    outputs agree (1.0); a zero and a non-zero one do not (0.0)."""
    cosines = []
    for x, y in zip(_rows(a), _rows(b)):
        den = np.linalg.norm(x) * np.linalg.norm(y)
        if den == 0:
            cosines.append(1.0 if not x.any() and not y.any() else 0.0)
        else:
            cosines.append(float(np.dot(x, y) / den))
    return float(np.mean(cosines))


def accuracy(logits: Outputs, labels: np.ndarray | None) -> float | None:
    scores = _class_scores(logits)
    if labels is None or scores is None or len(scores) != len(labels):
        return None
    return float((scores.argmax(-1) == labels).mean() * 100)


def _rows(outputs: Outputs):
    if isinstance(outputs, list):
        return (np.asarray(o, dtype=np.float64).ravel() for o in outputs)
    return outputs.reshape(len(outputs), -1).astype(np.float64)


def _class_scores(outputs: Outputs) -> np.ndarray | None:
    """(samples, classes), from per-sample class rows (a list of [1, C]) too; None for other outputs."""
    if isinstance(outputs, list):
        rows = [np.asarray(o).reshape(-1) for o in outputs]
        if len({r.shape for r in rows}) != 1:
            return None
        outputs = np.stack(rows)
    return outputs if outputs.ndim == 2 else None


def score(outputs: np.ndarray, labels: np.ndarray | None, reference: np.ndarray | None) -> dict[str, float | None]:
    """Accuracy against the labels, top-1 agreement and mean cosine against the reference outputs: the one
    fidelity record every stage, scan, search and benchmark reports (None where a part is missing)."""
    return {"accuracy": accuracy(outputs, labels),
            "agreement": None if reference is None else top1_agreement(outputs, reference),
            "cosine": None if reference is None else mean_cosine(outputs, reference)}
