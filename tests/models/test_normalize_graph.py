"""Graph normalization on small graphs with the quirks other exporters write: unnamed nodes, and one weight
shared by several convolutions (a filterbank applied frame by frame)."""

import numpy as np


def _shared_filterbank(path):
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    nodes = [helper.make_node("Conv", ["x", "bank", "bias"], ["a"]), helper.make_node("Conv", ["x", "bank", "bias"], ["b"]),
             helper.make_node("Add", ["a", "b"], ["y"])]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 2, 8, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 4, 8, 8])],
                              [numpy_helper.from_array(rng.normal(size=(4, 2, 1, 1)).astype(np.float32), "bank"),
                               numpy_helper.from_array(rng.normal(size=4).astype(np.float32), "bias")])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))


def test_shared_weights_get_a_copy_per_layer_and_every_node_a_name(tmp_path):
    import onnx
    import onnxruntime as ort

    from edgekit.backends.ort import preprocess
    from edgekit.data.samples import SampleSet
    from edgekit.models.onnx_normalize import normalize_onnx
    from edgekit.ptq.qdq import quantize_qdq
    from edgekit.ptq.statistics import calibrate
    from edgekit.target import SCHEMES

    _shared_filterbank(tmp_path / "in.onnx")
    report = normalize_onnx(tmp_path / "in.onnx", tmp_path / "out.onnx")
    assert report["nodes_named"] == 3 and report["weights_unshared"] == 2  # the second Conv's weight and bias
    graph = onnx.load(str(tmp_path / "out.onnx")).graph
    assert len({n.name for n in graph.node}) == 3 and all(n.name for n in graph.node)
    assert len({n.input[1] for n in graph.node if n.op_type == "Conv"}) == 2
    x = np.random.default_rng(1).normal(size=(16, 2, 8, 8)).astype(np.float32)
    run = lambda p: ort.InferenceSession(str(p), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]  # noqa: E731
    np.testing.assert_array_equal(run(tmp_path / "in.onnx"), run(tmp_path / "out.onnx"))
    ready = preprocess(tmp_path / "out.onnx", tmp_path / "ready.onnx")  # as the calibrate stage does
    ranges = calibrate(ready, SampleSet("x", arrays={"x": x}), ["x"], "minmax", tmp_path)
    quantized = quantize_qdq(ready, tmp_path / "q.onnx", ranges, "minmax", SCHEMES["ort-u8s8"])
    assert np.corrcoef(run(quantized).ravel(), run(tmp_path / "in.onnx").ravel())[0, 1] > 0.99
