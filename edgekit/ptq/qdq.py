"""Static Q/DQ quantization of an ONNX graph with edgekit's ranges, in the target's scheme.

ONNX Runtime's quantizer places the Q/DQ pairs; the ranges are edgekit's (no second calibration pass),
and the placement rule for attention graphs is edgekit's (see `transformer_placement`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgekit.backends.ort import quiet
from edgekit.errors import StageError
from edgekit.files import scratch_dir


def quantize_qdq(fp32: Path, out: Path, ranges: dict[str, list[float]], method: str, scheme,
                 exclude: list[str] | None = None) -> Path:
    """Static QDQ quantization with the given ranges, in `scheme` (a target.QuantScheme)."""
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.calibrate import TensorData, TensorsData, save_tensors_data

    op_types, attention_matmuls = transformer_placement(fp32)
    with scratch_dir("q") as tmp:
        cache = Path(tmp) / "ranges.json"
        tensors = TensorsData(_method(method), {k: TensorData(lowest=np.float32(lo), highest=np.float32(hi))
                                                for k, (lo, hi) in ranges.items()})
        save_tensors_data(tensors, cache)
        options = {"ActivationSymmetric": scheme.symmetric_activations, "WeightSymmetric": True,
                   "QuantizeBias": scheme.int32_bias}

        def run(extra: dict) -> None:
            with quiet():
                quantize_static(
                    str(fp32), str(out), calibration_data_reader=None, calibration_cache_path=str(cache),
                    quant_format=QuantFormat.QDQ, activation_type=getattr(QuantType, scheme.activation_type),
                    weight_type=QuantType.QInt8, per_channel=True, calibrate_method=_method(method),
                    nodes_to_exclude=[*(exclude or []), *attention_matmuls], op_types_to_quantize=op_types,
                    extra_options={**options, **extra})

        try:
            run({})
        except ValueError:
            # The quantizer's int32-bias scale adjustment assumes one bias value per weight channel; a bias
            # broadcast from another shape (tf2onnx MatMul + Add) makes it fail. Without that adjustment the
            # graph quantizes: the bias keeps the scale input x weight, as it does in most graphs anyway.
            try:
                run({"QDQDisableWeightAdjustForInt32Bias": True})
            except Exception as exc:  # the quantizer raises many types on graphs it cannot handle
                raise StageError(f"ONNX Runtime's quantizer cannot quantize {fp32.name}: "
                                 f"{' '.join(str(exc).split())[:160]}; try --quant dynamic or --quant none") from exc
    return out


def is_attention_graph(graph) -> bool:
    """A softmax between MatMuls: the graphs that get transformer treatment (fusion, linear-only INT8)."""
    ops = [n.op_type for n in graph.node]
    return "Softmax" in ops and ops.count("MatMul") >= 2


def transformer_placement(fp32: Path) -> tuple[list[str] | None, list[str]]:
    """For attention graphs: quantize the weight-bearing MatMul/Gemm layers only.

    Quantizing softmax, the attention-score and context MatMuls (two activations), GELU and the
    residual adds of a small encoder cost 4.5 points of accuracy on BERT-tiny and ran no faster;
    the linear layers hold nearly all the weights and MACs. A hybrid graph (a convolutional backbone
    before the attention blocks, as in an OCR recognizer) has its Conv layers quantized too: leaving them
    float left ppocrv3_ch_rec at 0.81x its FP32 size and no faster. Other graphs: None (every op type).
    """
    import onnx

    graph = onnx.load(str(fp32), load_external_data=False).graph
    if not is_attention_graph(graph):
        return None, []
    weights = {i.name for i in graph.initializer}
    constants = {o for n in graph.node if n.op_type == "Constant" for o in n.output}
    activation_only = [n.name for n in graph.node if n.op_type == "MatMul"
                       and not any(i in weights or i in constants for i in n.input)]
    convs = ["Conv"] if any(n.op_type == "Conv" for n in graph.node) else []
    return ["MatMul", "Gemm", *convs], activation_only


def quantized_activations(path: Path) -> set[str]:
    """Float tensors that a QDQ graph quantizes (weights excluded); a graph output that the
    quantizer renamed is reported under its original name."""
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    weights = {i.name for i in graph.initializer}
    return {n.input[0].removesuffix("_QuantizeLinear_Input") for n in graph.node
            if n.op_type == "QuantizeLinear" and n.input[0] not in weights}


def _method(name: str):
    from onnxruntime.quantization import CalibrationMethod

    # Only labels the cache file ORT reads back; the ranges themselves are edgekit's.
    return {"minmax": CalibrationMethod.MinMax, "percentile": CalibrationMethod.Percentile,
            "entropy": CalibrationMethod.Entropy, "mse": CalibrationMethod.MinMax,
            "auto": CalibrationMethod.MinMax}[name]


COMPUTE_OPS = ("Conv", "ConvTranspose", "MatMul", "Gemm", "GRU", "LSTM", "RNN", "Loop", "If", "Scan")
RECURRENT = ("GRU", "LSTM", "RNN")
SUBGRAPHS = ("Loop", "If", "Scan")


def float_compute(path: Path) -> dict[str, dict]:
    """Compute nodes a Q/DQ graph leaves in float, by op type, with the reason: what a user reads to know
    which part of the model the INT8 result does not cover (a recurrent layer, a loop, an excluded MatMul)."""
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    dequantized = {o for n in graph.node if n.op_type == "DequantizeLinear" for o in n.output}
    found: dict[str, dict] = {}
    for node in graph.node:
        if node.op_type not in COMPUTE_OPS:
            continue
        if node.op_type in SUBGRAPHS:
            inside = any(n.op_type == "DequantizeLinear" for a in node.attribute if a.type == a.GRAPH for n in a.g.node)
            reason = "a subgraph: quantized inside" if inside else "a subgraph: its body stays float"
            if inside:
                continue
        elif any(i in dequantized for i in node.input):
            continue
        elif node.op_type in RECURRENT:
            reason = "recurrent: static INT8 leaves it float (--quant dynamic quantizes its weights)"
        else:
            reason = "left float by the placement (attention scores and context, a fallback, or no weights)"
        entry = found.setdefault(node.op_type, {"count": 0, "reason": reason})
        entry["count"] += 1
    return found
