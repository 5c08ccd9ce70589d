"""Accuracy-aware fallback on the ONNX-input path: the fewest sensitive nodes go back to FP32."""

import numpy as np
import onnx

from edgekit.api import compress


def test_fallback_meets_a_budget_plain_int8_misses(tmp_path, tiny_fp32_onnx):
    # unlabeled noise: near-tied logits, so INT8 rounding flips some top-1 predictions
    noise = np.random.default_rng(0).standard_normal((400, 1, 8, 8)).astype(np.float32)
    np.savez(tmp_path / "noise.npz", x=noise)
    common = dict(model=str(tiny_fp32_onnx), data=str(tmp_path / "noise.npz"), target="x86-64", quant="static")
    plain = compress(**common, out=tmp_path / "plain")
    plain_drop = 100 * (1 - plain["final"]["agreement"])
    assert plain_drop > 0
    budget = plain_drop / 3
    report = compress(**common, out=tmp_path / "fb", max_accuracy_drop=budget)
    export = next(s for s in report["stages"] if s["name"] == "export")["metrics"]["fallback"]
    graph_nodes = {n.name for n in onnx.load(str(tiny_fp32_onnx)).graph.node}
    assert export["within_budget"] and export["excess"] == 0
    assert export["fallback"] and set(export["fallback"]) <= graph_nodes
    assert export["steps"][0]["excess"] > 0  # all-INT8 misses the budget; the fallback meets it
    assert export["latency_ms_all_int8"] > 0 and export["latency_ms_with_fallback"] > 0
    assert 100 * (1 - report["final"]["agreement"]) <= budget + 1e-9
