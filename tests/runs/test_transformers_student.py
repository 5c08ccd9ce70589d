"""A transformers folder as the student: loaded locally, pruned, quantized, compiled, measured."""

import json

import numpy as np
import pytest

from conftest import run_cli


@pytest.fixture(scope="module")
def mnv2(tmp_path_factory):
    import torch
    from transformers import MobileNetV2Config, MobileNetV2ForImageClassification

    root = tmp_path_factory.mktemp("hf")
    torch.manual_seed(0)
    config = MobileNetV2Config(image_size=32, depth_multiplier=0.5, num_labels=5)
    MobileNetV2ForImageClassification(config).eval().save_pretrained(root / "student")
    rng = np.random.default_rng(0)
    np.savez(root / "calib.npz", pixel_values=rng.standard_normal((60, 3, 32, 32)).astype(np.float32))
    return root


def test_compress_transformers_mobilenetv2(mnv2):
    out = mnv2 / "build"
    result = run_cli("compress", "--model", mnv2 / "student", "--data", mnv2 / "calib.npz", "--target", "arm64",
                     "--prune", "0.5", "--quant", "static", "--calib", "minmax", "--min-sqnr", "0", "--min-decision-f1", "0",
                     "--min-agreement", "0", "--out", out, "--json")  # loading and pruning, not INT8 fidelity
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["final"]["accuracy"] is None and report["final"]["agreement"] is not None
    assert report["final"]["macs"] < 0.6 * report["fp32"]["macs"]
    manifest = json.loads((out / "arm64" / "manifest.json").read_text())
    assert manifest["inputs"][0]["name"] == "pixel_values"


def test_inspect_transformers_folder(mnv2):
    result = run_cli("inspect", mnv2 / "student", "--json")
    assert result.returncode == 0, result.stderr
    info = json.loads(result.stdout)
    assert info["inputs"]["pixel_values"] == [1, 3, 32, 32] and len(info["prunable_groups"]) > 5


def _compress_bert(tmp_path, **options) -> dict:
    """The zoo's BERT on 120 generated token sequences."""
    from arch_zoo import build
    from edgekit.api import compress

    model, _ = build("bert")
    ids = np.random.default_rng(0).integers(1, 100, (120, 12)).astype(np.int64)
    np.savez(tmp_path / "text.npz", input_ids=ids, attention_mask=np.ones_like(ids))
    return compress(model.model, str(tmp_path / "text.npz"), **options)


def test_bert_dynamic_int8_is_fused_quantized_and_faithful(tmp_path):
    report = _compress_bert(tmp_path, target="arm64", out=tmp_path / "b", quant="dynamic")
    export = next(s for s in report["stages"] if s["name"] == "export")["metrics"]
    ops = export["optimized_ops"]
    assert ops.get("SkipLayerNormalization", 0) > 0  # fused, offline or by the session
    # the offline transformer fusion is kept only where it runs faster than the plain graph
    assert export["transformer_fusion"] in ("kept", "dropped (slower here)")
    faster = min(export["fused_p50_ms"], export["plain_p50_ms"])
    assert faster == (export["fused_p50_ms"] if export["transformer_fusion"] == "kept" else export["plain_p50_ms"])
    assert ops.get("DynamicQuantizeMatMul", 0) + ops.get("MatMulIntegerToFloat", 0) >= 8
    assert report["final"]["agreement"] > 0.9 and report["final"]["size_bytes"] < report["fp32"]["size_bytes"]


def test_bert_static_int8_quantizes_the_linear_layers_only(tmp_path):
    import onnx

    from edgekit.ptq.qdq import transformer_placement

    report = _compress_bert(tmp_path, target="x86-64", out=tmp_path / "s", quant="static")
    ops = next(s for s in report["stages"] if s["name"] == "export")["metrics"]["optimized_ops"]
    assert "QLinearSoftmax" not in ops and "QLinearAdd" not in ops
    graph = onnx.load(str(tmp_path / "s" / "work" / "01-source" / "fp32.onnx")).graph
    op_types, attention = transformer_placement(tmp_path / "s" / "work" / "01-source" / "fp32.onnx")
    assert op_types == ["MatMul", "Gemm"] and len(attention) == 2 * sum(n.op_type == "Softmax" for n in graph.node)
    assert report["final"]["agreement"] > 0.95
