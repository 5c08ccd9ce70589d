"""Bias correction on a layer whose weights all round the same way: the shift is known in closed form."""

import numpy as np
import pytest


def _conv(path, bias: float = 0.5):
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    weight = np.full((4, 64, 1, 1), 0.3, np.float32)
    weight[:, 0] = 1.0  # sets each channel's scale to 1/127: 0.3 rounds to 38 steps, 0.00079 low, 63 times
    node = helper.make_node("Conv", ["x", "w", "b"], ["y"], name="conv")
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 64, 4, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 4, 4, 4])],
                              [numpy_helper.from_array(weight, "w"), numpy_helper.from_array(np.full(4, bias, np.float32), "b")])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return weight


@pytest.mark.parametrize("preset", ["ort-u8s8", "trt-s8s8"])  # int32 bias, and float bias
def test_the_rounding_shift_is_measured_and_removed(tmp_path, preset):
    import onnxruntime as ort

    from edgekit.data.samples import SampleSet
    from edgekit.ptq.bias_correction import correct_biases, input_means
    from edgekit.ptq.qdq import quantize_qdq
    from edgekit.ptq.statistics import calibrate
    from edgekit.target import SCHEMES

    _conv(tmp_path / "fp32.onnx")
    x = np.random.default_rng(0).uniform(0.5, 1.5, (64, 64, 4, 4)).astype(np.float32)
    samples = SampleSet("ones", arrays={"x": x})
    ranges = calibrate(tmp_path / "fp32.onnx", samples, ["x"], "minmax", tmp_path)
    qdq = quantize_qdq(tmp_path / "fp32.onnx", tmp_path / "q.onnx", ranges, "minmax", SCHEMES[preset])
    run = lambda p: ort.InferenceSession(str(p), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]  # noqa: E731
    before = float((run(qdq) - run(tmp_path / "fp32.onnx")).mean())
    expected = 63 * (38 / 127 - 0.3) * 1.0  # (W_int8 - W) summed over the inputs, times E[x] = 1
    assert before == pytest.approx(expected, rel=0.2)

    means = input_means(tmp_path / "fp32.onnx", samples, ["x"])
    assert means["x"] == pytest.approx(x.mean(axis=(0, 2, 3)), rel=1e-5)
    assert correct_biases(qdq, tmp_path / "fp32.onnx", means) == 1
    after = float((run(qdq) - run(tmp_path / "fp32.onnx")).mean())
    assert abs(after) < abs(before) / 10


def test_the_export_keeps_it_where_it_measures_better_on_held_out_samples(tmp_path):
    from edgekit.api import compress

    _conv(tmp_path / "fp32.onnx")
    x = np.random.default_rng(0).uniform(0.5, 1.5, (60, 64, 4, 4)).astype(np.float32)
    np.savez(tmp_path / "x.npz", x=x)
    common = dict(model=str(tmp_path / "fp32.onnx"), data=str(tmp_path / "x.npz"), target="x86-64")
    stages = lambda r: {s["name"]: s["metrics"] for s in r["stages"]}  # noqa: E731
    auto = stages(compress(**common, out=tmp_path / "auto"))["export"]
    assert auto["bias_correction"]["kept"] and auto["bias_correction"]["layers"] == 1
    assert auto["bias_correction"]["worst_sqnr_db_with"] > auto["bias_correction"]["worst_sqnr_db_without"]
    off = stages(compress(**common, out=tmp_path / "off", bias_correction="off"))["export"]
    assert not off["bias_correction"]["kept"] and off["outputs"]["worst_sqnr_db"] < auto["outputs"]["worst_sqnr_db"]
