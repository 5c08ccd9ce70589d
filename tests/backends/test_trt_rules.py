"""TensorRT's explicit-quantization rules, checked in code on real quantized graphs (no TensorRT needed)."""

import onnx
import pytest
from onnx import numpy_helper

from edgekit.ptq.qdq import quantize_qdq
from edgekit.ptq.statistics import calibrate
from edgekit.target import SCHEMES
from edgekit.backends.trt_rules import check_explicit_quantization
from edgekit.data import load_data


@pytest.fixture(scope="module")
def fp32(tiny_fp32_onnx, digits_npz):
    root = tiny_fp32_onnx.parent
    samples = load_data(digits_npz).bind(["x"]).subset(range(64))
    return root, calibrate(tiny_fp32_onnx, samples, ["x"], "minmax", root)


def test_trt_preset_passes_every_rule(fp32):
    root, ranges = fp32
    path = quantize_qdq(root / "fp32.onnx", root / "trt.onnx", ranges, "minmax", SCHEMES["trt-s8s8"])
    assert check_explicit_quantization(path) == []


def test_ort_preset_breaks_the_zero_point_rule(fp32):
    root, ranges = fp32
    path = quantize_qdq(root / "fp32.onnx", root / "ort.onnx", ranges, "minmax", SCHEMES["ort-u8s8"])
    rules = {v.rule for v in check_explicit_quantization(path)}
    assert any("zero point is uint8" in r for r in rules)


def test_checker_rejects_hand_broken_graphs(fp32):
    root, ranges = fp32
    good = onnx.load(str(quantize_qdq(root / "fp32.onnx", root / "t.onnx", ranges, "minmax", SCHEMES["trt-s8s8"])))
    graph = good.graph
    # 1: bypass the DQ feeding one residual add input
    producer = {o: n for n in graph.node for o in n.output}
    add = next(n for n in graph.node if n.op_type == "Add"
               and all(producer.get(i) is not None and producer[i].op_type == "DequantizeLinear" for i in n.input))
    dq = producer[add.input[0]]
    q = producer[dq.input[0]]
    add.input[0] = q.input[0]
    # 2: make one weight per-tensor
    conv = next(n for n in graph.node if n.op_type == "Conv")
    wdq = producer[conv.input[1]]
    scales = {i.name: i for i in graph.initializer}
    scale = numpy_helper.to_array(scales[wdq.input[1]])
    scales[wdq.input[1]].CopyFrom(numpy_helper.from_array(scale[:1].reshape(()).copy(), wdq.input[1]))
    zp = numpy_helper.to_array(scales[wdq.input[2]])
    scales[wdq.input[2]].CopyFrom(numpy_helper.from_array(zp[:1].reshape(()).copy(), wdq.input[2]))
    broken = root / "broken.onnx"
    onnx.save(good, str(broken))
    rules = {v.rule for v in check_explicit_quantization(broken)}
    assert "residual add has an input without Q/DQ" in rules
    assert "weights are quantized per tensor" in rules


def test_board_with_the_tensorrt_preset_gets_a_checked_graph(tmp_path, digits_npz, tiny_weights):
    from edgekit.api import compress

    board = tmp_path / "trt-board.yaml"
    board.write_text("name: trt-board\narch: aarch64\nruntime: onnxruntime\nquant_preset: trt-s8s8\n")
    report = compress(model="tiny_models:resnet_tiny", weights=str(tiny_weights), data=str(digits_npz),
                      target=str(board), out=tmp_path / "b", quant="static", prune=0.5)
    assert check_explicit_quantization(tmp_path / "b" / "trt-board" / "model.onnx") == []
    export = next(s for s in report["stages"] if s["name"] == "export")
    assert export["settings"]["preset"] == "trt-s8s8" and 0 < export["metrics"]["agreement"] <= 1
