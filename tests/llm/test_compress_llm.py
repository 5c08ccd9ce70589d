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


def _check_report(report, folder, out, bits):
    assert {"model.onnx", "genai_config.json", "tokenizer.json", "report.json", "report.md"} <= {p.name for p in folder.iterdir()}
    assert (folder / "report.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"  # the plot, as for the other models
    assert report["gguf"] == f"{folder.name}-Q{bits}_0.gguf" and (out / report["gguf"]).stat().st_size > 0
    fp32, final = report["fp32"], report["final"]
    assert report["quant"] == f"int{bits}" and report["rounding"] == {**report["rounding"], "method": "gptq", "bits": bits}
    assert fp32["kl_per_token"] < 1e-6 and fp32["top1_agreement"] == 1.0  # the FP32 export is the FP model
    assert 0 < final["kl_per_token"] < 0.05 and final["top1_agreement"] > 0.5
    assert final["size_bytes"] < 0.6 * fp32["size_bytes"] and final["decode_tok_s"] > 0 and final["ttft_ms"] > 0


def test_compress_writes_a_measured_int4_genai_folder(tiny_llama_build):
    out, report, _ = tiny_llama_build
    _check_report(report, out / "raspberry-pi-5", out, 4)


@pytest.mark.slow  # 20 s
def test_compress_writes_a_measured_int8_genai_folder_for_qwen2(tmp_path, corpus):
    tiny_causal_lm(tmp_path / "qwen2", "qwen2")
    result = run_cli("compress", "--model", tmp_path / "qwen2", "--data", corpus, "--target", "x86-64", "--out",
                     tmp_path / "build", "--block-size", "64", "--new-tokens", "8", "--json", "--quant", "dynamic")
    assert result.returncode == 0, result.stderr
    _check_report(json.loads(result.stdout), tmp_path / "build" / "x86-64", tmp_path / "build", 8)


def test_compress_prunes_recovers_and_quantizes(tmp_path, tiny_llama, corpus):
    result = run_cli("compress", "--model", tiny_llama, "--data", corpus, "--target", "arm64", "--out",
                     tmp_path / "build", "--block-size", "64", "--new-tokens", "8", "--prune", "0.25",
                     "--recover-minutes", "0.05", "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    pruning, pruned, final = report["pruning"], report["pruned"], report["final"]
    assert abs(1 - pruning["params_after"] / pruning["params_before"] - 0.25) < 0.08
    assert pruning["intermediate_size"] % 32 == 0 and pruning["recovery"]["steps"] >= 1
    assert pruned["size_bytes"] < 0.85 * report["fp32"]["size_bytes"] and final["size_bytes"] < pruned["size_bytes"]
    assert report["blocks"]["train"] > 0 and "Pruned 25%" in (tmp_path / "build" / "arm64" / "report.md").read_text()


def test_compress_drops_a_whole_layer_with_prune_axis_depth(tmp_path, tiny_llama, corpus):
    result = run_cli("compress", "--model", tiny_llama, "--data", corpus, "--target", "x86-64", "--out",
                     tmp_path / "build", "--block-size", "64", "--new-tokens", "4", "--prune", "0.25",
                     "--prune-axis", "depth", "--recover-minutes", "0.05", "--json")
    assert result.returncode == 0, result.stderr
    pruning = json.loads(result.stdout)["pruning"]
    assert pruning["axis"] == "depth" and pruning["layers_kept"] == 1 and len(pruning["layers_dropped"]) == 1
    genai = json.loads((tmp_path / "build" / "x86-64" / "genai_config.json").read_text())
    assert genai["model"]["decoder"]["num_hidden_layers"] == 1  # the exported graph has one layer left


@pytest.mark.parametrize("extra, expected", [
    (["--prune", "0.6"], "at most 0.40 of this model's parameters can go"),
    (["--prune", "0.6", "--prune-axis", "depth"], "--prune-axis depth: at most"),
    (["--prune-axis", "sideways", "--prune", "0.2"], "sideways"),
    (["--quant", "static"], "takes --quant int4"),
    (["--block-size", "10000000"], "fewer than one block of 10000000"),
])
def test_bad_language_model_input_is_one_line(tmp_path, tiny_llama, corpus, extra, expected):
    target = [] if "--target" in extra else ["--target", "x86-64"]
    result = run_cli("compress", "--model", tiny_llama, "--data", corpus, *target, "--out", tmp_path / "o", *extra)
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and expected in lines[-1] and "Traceback" not in result.stderr
    assert not (tmp_path / "o").exists() or not any((tmp_path / "o").glob("*/model.onnx"))


def test_a_jetson_target_ships_the_cuda_graph_of_the_same_integers_marked_unverified(tmp_path, tiny_llama, corpus):
    import numpy as np
    import onnx
    from onnx import numpy_helper

    result = run_cli("compress", "--model", tiny_llama, "--data", corpus, "--target", "jetson-orin-nano", "--out",
                     tmp_path / "build", "--block-size", "64", "--new-tokens", "4", "--json")
    assert result.returncode == 0, result.stderr
    report, shipped = json.loads(result.stdout), tmp_path / "build" / "jetson-orin-nano"
    assert report["execution"] == "cuda" and "no CUDA GPU ran it" in report["unverified"]
    assert "Unverified" in (shipped / "report.md").read_text()
    genai = json.loads((shipped / "genai_config.json").read_text())
    assert any("cuda" in o for o in genai["model"]["decoder"]["session_options"]["provider_options"])

    def weights(path):
        model = onnx.load(path)
        init = {i.name: i for i in model.graph.initializer}
        return {n.name: [numpy_helper.to_array(init[x]) for x in n.input[1:3]] for n in model.graph.node
                if n.op_type == "MatMulNBits"}
    cpu, cuda = weights(tmp_path / "build" / "work" / "final" / "model.onnx"), weights(shipped / "model.onnx")
    assert cpu and sorted(cpu) == sorted(cuda)
    assert all(np.array_equal(cpu[k][0], cuda[k][0]) for k in cpu)  # edgekit's integers in both graphs
    assert all(np.allclose(cpu[k][1], cuda[k][1].astype(np.float32), rtol=1e-3) for k in cpu)  # float16 scales
    bench = run_cli("bench", shipped)
    assert bench.returncode == 2 and "edgekit profile" in bench.stderr and "Traceback" not in bench.stderr
