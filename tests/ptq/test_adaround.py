"""Learned rounding on layers whose weights all sit just past half a step: nearest rounding moves every
weight of a channel the same way, so their errors add in the output; learned rounding splits them."""

import numpy as np
import pytest

STEP = 1 / 127  # each channel's first weight is 1.0: the per-channel scale


def _weights(shape_out_in, rng):
    """[out, in]: integer steps plus 0.51 of a step, so nearest rounding errs 0.49 steps up, every time."""
    out, inputs = shape_out_in
    steps = rng.integers(-60, 60, (out, inputs)) + 0.51
    weight = (steps * STEP).astype(np.float32)
    weight[:, 0] = 1.0
    return weight


def _graph(path, op: str, weight: np.ndarray):
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    out, inputs = weight.shape
    if op == "Conv":
        w, x_shape, y_shape = weight.reshape(out, inputs, 1, 1), [None, inputs, 4, 4], [None, out, 4, 4]
        node = helper.make_node("Conv", ["x", "w"], ["y"], name="layer")
    else:
        w, x_shape, y_shape = weight.T.copy(), [None, inputs], [None, out]  # MatMul weight is [in, out]
        node = helper.make_node("MatMul", ["x", "w"], ["y"], name="layer")
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, x_shape)],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, y_shape)],
                              [numpy_helper.from_array(w, "w")])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))


@pytest.mark.parametrize("op", ["Conv", "MatMul"])
def test_learned_rounding_removes_the_error_nearest_rounding_adds_up(tmp_path, op):
    import onnxruntime as ort

    from edgekit.data.samples import SampleSet
    from edgekit.ptq.adaround import apply_rounding, learn_rounding
    from edgekit.ptq.qdq import quantize_qdq
    from edgekit.ptq.statistics import calibrate
    from edgekit.target import SCHEMES

    rng = np.random.default_rng(0)
    weight = _weights((4, 64), rng)
    _graph(tmp_path / "fp32.onnx", op, weight)
    shape = (48, 64, 4, 4) if op == "Conv" else (48, 64)
    x = rng.uniform(0.5, 1.5, shape).astype(np.float32)
    samples = SampleSet("x", arrays={"x": x})
    ranges = calibrate(tmp_path / "fp32.onnx", samples, ["x"], "minmax", tmp_path)
    qdq = quantize_qdq(tmp_path / "fp32.onnx", tmp_path / "q.onnx", ranges, "minmax", SCHEMES["ort-u8s8"])
    run = lambda p: ort.InferenceSession(str(p), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]  # noqa: E731
    reference = run(tmp_path / "fp32.onnx")
    nearest = float(np.sqrt(np.mean((run(qdq) - reference) ** 2)))
    # 63 weights each 0.49 steps high, on inputs of mean 1: the output errs by about 63 * 0.49 / 127
    assert nearest == pytest.approx(63 * 0.49 * STEP, rel=0.25)

    learned = learn_rounding(qdq, tmp_path / "fp32.onnx", samples, ["x"], iterations=300)
    assert apply_rounding(qdq, learned) == 1
    values = next(iter(learned.values()))[0].astype(np.int64)
    as_stored = weight.reshape(values.shape) if op == "Conv" else weight.T
    assert set(np.unique(values - np.floor(as_stored / STEP + 1e-4)).tolist()) <= {0, 1}  # up or down only
    after = float(np.sqrt(np.mean((run(qdq) - reference) ** 2)))
    assert after < nearest / 5


def test_the_export_learns_rounding_where_nearest_misses_the_floor_instead_of_falling_back(tmp_path):
    """A floor of 25 dB: nearest rounding gives about 19 dB and would send the layer back to FP32; learned
    rounding, judged on the calibration samples it did not learn from, holds it with the layer in INT8."""
    from edgekit.api import compress

    rng = np.random.default_rng(0)
    _graph(tmp_path / "fp32.onnx", "MatMul", _weights((4, 64), rng))
    np.savez(tmp_path / "x.npz", x=rng.uniform(0.5, 1.5, (60, 64)).astype(np.float32))
    common = dict(model=str(tmp_path / "fp32.onnx"), data=str(tmp_path / "x.npz"), target="x86-64", min_sqnr=25.0)
    export = lambda out, **kw: next(s["metrics"] for s in compress(**common, out=tmp_path / out, **kw)["stages"]  # noqa: E731
                                    if s["name"] == "export")
    learned = export("auto")
    assert learned["rounding"]["kept"] and learned["rounding"]["layers"] == 1
    assert learned["rounding"]["worst_sqnr_db_nearest"] < 25 <= learned["rounding"]["worst_sqnr_db_learned"]
    assert learned["fallback"]["fallback"] == [] and learned["outputs"]["worst_sqnr_db"] >= 25
    nearest = export("nearest", rounding="nearest")
    assert nearest["fallback"]["fallback"] == ["layer"]
