"""Scale migration on graphs with one loud channel: the FP32 function is unchanged, the activation's channels
and the weights meet at sqrt(|x| |w|) per channel (a = 0.5), and per-tensor INT8 of the activation improves."""

import numpy as np
import pytest


def _save(path, nodes, inits, x_shape, y_shape):
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, x_shape)],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, y_shape)],
                              [numpy_helper.from_array(v.astype(np.float32), k) for k, v in inits.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.save(onnx.shape_inference.infer_shapes(model), str(path))  # as the pipeline's pre-processing leaves it


def conv_relu_conv(path, rng):
    """Channel 0 of the Relu's output runs 100x louder than the other seven, and the next layer weighs it 100x
    less: per-tensor INT8 spends its range on a channel that hardly reaches the output."""
    from onnx import helper

    w1 = rng.normal(0, 1, (8, 4, 1, 1))
    w1[0] *= 100
    nodes = [helper.make_node("Conv", ["x", "w1", "b1"], ["h"]), helper.make_node("Relu", ["h"], ["a"]),
             helper.make_node("Conv", ["a", "w2"], ["y"])]
    w2 = rng.normal(0, 1, (3, 8, 1, 1))
    w2[:, 0] /= 100
    _save(path, nodes, {"w1": w1, "b1": np.full(8, 0.1), "w2": w2},
          [None, 4, 6, 6], [None, 3, 6, 6])


def norm_tail_matmul(path, rng):
    """A LayerNorm's affine tail (x * gamma + beta) feeding a linear layer; one feature 50x louder, weighed
    50x less."""
    from onnx import helper

    gamma = rng.uniform(0.5, 1.5, 16)
    gamma[3] *= 50
    nodes = [helper.make_node("Mul", ["x", "gamma"], ["g"]), helper.make_node("Add", ["g", "beta"], ["n"]),
             helper.make_node("MatMul", ["n", "w"], ["y"])]
    w = rng.normal(0, 1, (16, 8))
    w[3] /= 50
    _save(path, nodes, {"gamma": gamma, "beta": rng.normal(0, 0.1, 16), "w": w},
          [None, 16], [None, 8])


@pytest.mark.parametrize("build, tensor, shape", [(conv_relu_conv, "a", (32, 4, 6, 6)), (norm_tail_matmul, "n", (32, 16))])
def test_migration_keeps_the_function_and_evens_the_channels(tmp_path, build, tensor, shape):
    import onnxruntime as ort

    from edgekit.data.samples import SampleSet
    from edgekit.measure.compare import sqnr_db
    from edgekit.ptq.equalize import channel_peaks, equalize, find_sites
    from edgekit.ptq.qdq import quantize_qdq
    from edgekit.ptq.statistics import calibrate
    from edgekit.target import SCHEMES

    import onnx

    rng = np.random.default_rng(0)
    build(tmp_path / "fp32.onnx", rng)
    x = rng.normal(0, 1, shape).astype(np.float32)
    samples = SampleSet("x", arrays={"x": x})
    assert equalize(tmp_path / "fp32.onnx", tmp_path / "eq.onnx", samples, ["x"]) == 1
    run = lambda p: ort.InferenceSession(str(p), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]  # noqa: E731
    np.testing.assert_allclose(run(tmp_path / "eq.onnx"), run(tmp_path / "fp32.onnx"), rtol=1e-4, atol=1e-3)

    graph = onnx.load(str(tmp_path / "eq.onnx")).graph
    site = next(s for s in find_sites(graph) if s.tensor == tensor)
    peak = channel_peaks(tmp_path / "eq.onnx", [site], samples, ["x"], 32)[tensor]
    weight = next(i for i in graph.initializer if i.name == site.consumers[0].input[1])
    w = onnx.numpy_helper.to_array(weight)
    w_peak = np.abs(np.moveaxis(w, 1 if build is conv_relu_conv else 0, 0)).reshape(len(peak), -1).max(1)
    np.testing.assert_allclose(peak, w_peak, rtol=1e-3)  # both at sqrt(|x_c| |w_c|)

    def int8_sqnr(path):
        ranges = calibrate(path, samples, ["x"], "minmax", tmp_path)
        return sqnr_db(run(tmp_path / "fp32.onnx"), run(quantize_qdq(path, tmp_path / "q.onnx", ranges, "minmax",
                                                                        SCHEMES["ort-u8s8"])))
    before, after = int8_sqnr(tmp_path / "fp32.onnx"), int8_sqnr(tmp_path / "eq.onnx")
    assert after > before + 6


def test_a_tensor_read_by_anything_but_weight_layers_is_left_alone(tmp_path):
    import onnx
    from onnx import helper

    from edgekit.ptq.equalize import find_sites

    rng = np.random.default_rng(1)
    conv_relu_conv(tmp_path / "fp32.onnx", rng)
    model = onnx.load(str(tmp_path / "fp32.onnx"))
    assert [s.tensor for s in find_sites(model.graph)] == ["a"]
    model.graph.node.append(helper.make_node("Sigmoid", ["a"], ["side"]))  # a second, non-linear reader
    assert find_sites(model.graph) == []


def test_the_export_equalizes_where_plain_int8_misses_the_floor_instead_of_falling_back(tmp_path):
    """A 30 dB floor: plain INT8 of the loud-channel chain gives about 20 dB and would keep a layer in FP32;
    equalized, the same graph holds it fully in INT8. With --equalize off the fallback is what holds it."""
    from edgekit.api import compress

    rng = np.random.default_rng(0)
    conv_relu_conv(tmp_path / "fp32.onnx", rng)
    np.savez(tmp_path / "x.npz", x=rng.normal(0, 1, (60, 4, 6, 6)).astype(np.float32))
    common = dict(model=str(tmp_path / "fp32.onnx"), data=str(tmp_path / "x.npz"), target="x86-64", min_sqnr=30.0,
                  calib="minmax", rounding="nearest")
    stages = lambda out, **kw: {s["name"]: s["metrics"] for s in compress(**common, out=tmp_path / out, **kw)["stages"]}  # noqa: E731
    auto = stages("auto")
    assert auto["calibrate"]["equalize"]["kept"] and auto["calibrate"]["equalize"]["tensors"] == 1
    assert auto["calibrate"]["equalize"]["worst_sqnr_db_plain"] < 30 <= auto["calibrate"]["equalize"]["worst_sqnr_db_equalized"]
    assert auto["export"]["fallback"]["fallback"] == [] and auto["export"]["outputs"]["worst_sqnr_db"] >= 28
    off = stages("off", equalize="off")
    assert "equalize" not in off["calibrate"] and off["export"]["fallback"]["fallback"]
