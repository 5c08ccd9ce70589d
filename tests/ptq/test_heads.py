"""A head that concatenates box coordinates in pixels with scores in [0, 1]: one INT8 scale for the Concat
leaves the scores a step or two; keeping the Concat float gives each branch its own scale."""

import numpy as np


def _head(path, rng):
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    nodes = [helper.make_node("MatMul", ["x", "wb"], ["b0"], name="boxes"),
             helper.make_node("Mul", ["b0", "pixels"], ["b"], name="to_pixels"),
             helper.make_node("MatMul", ["x", "ws"], ["s0"], name="scores"),
             helper.make_node("Sigmoid", ["s0"], ["s"], name="sigmoid"),
             helper.make_node("Concat", ["b", "s"], ["y"], name="head", axis=-1)]
    inits = {"wb": rng.normal(size=(8, 4)), "ws": rng.normal(size=(8, 1)), "pixels": np.array(200.0)}
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 5])],
                              [numpy_helper.from_array(np.asarray(v, np.float32), k) for k, v in inits.items()])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))


def test_a_concatenated_head_keeps_a_scale_per_branch(tmp_path):
    from edgekit.api import compress
    from edgekit.ptq.heads import concat_heads

    rng = np.random.default_rng(0)
    _head(tmp_path / "head.onnx", rng)
    assert concat_heads(tmp_path / "head.onnx") == ["head"]
    np.savez(tmp_path / "x.npz", x=rng.normal(size=(80, 8)).astype(np.float32))
    report = compress(model=str(tmp_path / "head.onnx"), data=str(tmp_path / "x.npz"), target="x86-64",
                      out=tmp_path / "o", calib="minmax", rounding="nearest", equalize="off")
    export = next(s["metrics"] for s in report["stages"] if s["name"] == "export")
    heads = export["concat_heads"]
    assert heads["nodes"] == ["head"] and heads["kept"]
    assert heads["worst_sqnr_db_shared"] < 12 < heads["worst_sqnr_db_separate"]  # the score column crushed, then not
    assert export["fallback"]["fallback"] == [] and export["outputs"]["worst_sqnr_db"] > 12
