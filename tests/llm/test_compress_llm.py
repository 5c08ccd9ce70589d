"""`edgekit compress` on a causal language model: INT4 of edgekit's rounding, exported with a KV cache, measured
against the FP model and the FP32 export; bad input in one line."""

import json

import pytest

from conftest import run_cli
from llm_fixtures import python_docs, tiny_causal_lm


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    path = tmp_path_factory.mktemp("text") / "docs.txt"
    path.write_text("\n\n".join(" ".join(d.split()) for d in python_docs()[:12]))
    return path


@pytest.mark.parametrize("family, quant", [("llama", []), pytest.param("qwen2", ["--quant", "dynamic"],
                                                                     marks=pytest.mark.slow)])  # 20 s each
def test_compress_writes_a_measured_genai_folder(tmp_path, corpus, family, quant):
    tiny_causal_lm(tmp_path / family, family)
    result = run_cli("compress", "--model", tmp_path / family, "--data", corpus, "--target", "x86-64", "--out",
                     tmp_path / "build", "--block-size", "64", "--new-tokens", "8", "--json", *quant)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    bits = 8 if quant else 4
    folder = tmp_path / "build" / "x86-64"
    assert {"model.onnx", "genai_config.json", "tokenizer.json", "report.json", "report.md"} <= {p.name for p in folder.iterdir()}
    assert report["gguf"] == f"x86-64-Q{bits}_0.gguf" and (tmp_path / "build" / report["gguf"]).stat().st_size > 0
    fp32, final = report["fp32"], report["final"]
    assert report["quant"] == f"int{bits}" and report["rounding"] == {**report["rounding"], "method": "gptq", "bits": bits}
    assert fp32["kl_per_token"] < 1e-6 and fp32["top1_agreement"] == 1.0  # the FP32 export is the FP model
    assert 0 < final["kl_per_token"] < 0.05 and final["top1_agreement"] > 0.5
    assert final["size_bytes"] < 0.6 * fp32["size_bytes"] and final["decode_tok_s"] > 0 and final["ttft_ms"] > 0


@pytest.mark.parametrize("extra, expected", [
    (["--prune", "0.3"], "structured pruning of a causal language model is not available"),
    (["--quant", "static"], "takes --quant int4"),
    (["--block-size", "10000000"], "fewer than one block of 10000000"),
    (["--target", "jetson-orin-nano"], "exported for ONNX Runtime's CPU runtime only"),
])
def test_bad_language_model_input_is_one_line(tmp_path, tiny_llama, corpus, extra, expected):
    target = [] if "--target" in extra else ["--target", "x86-64"]
    result = run_cli("compress", "--model", tiny_llama, "--data", corpus, *target, "--out", tmp_path / "o", *extra)
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and expected in lines[-1] and "Traceback" not in result.stderr
    assert not (tmp_path / "o").exists() or not any((tmp_path / "o").glob("*/model.onnx"))
