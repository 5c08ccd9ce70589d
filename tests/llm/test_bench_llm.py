"""`edgekit bench` on a language-model folder: prefill at 128 and 512 tokens, decode, time to first token, peak
memory, and quality against the FP model, for the artifact and its FP32 export in one run."""

import json

import pytest

from conftest import run_cli
from llm_fixtures import python_docs


@pytest.fixture(scope="module")
def built(tmp_path_factory, tiny_llama_build):
    out, _, _ = tiny_llama_build
    root = tmp_path_factory.mktemp("bench-llm")
    (root / "held-out.txt").write_text("\n\n".join(" ".join(d.split()) for d in python_docs()[40:52]))
    (root / "prompts.txt").write_text("The for statement is used to iterate\n\nA class definition defines\n")
    return root, out / "raspberry-pi-5"


def test_bench_measures_the_artifact_and_its_fp32_export(built):
    root, folder = built
    result = run_cli("bench", folder, "--prompts", root / "prompts.txt", "--data", root / "held-out.txt", "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    fp32, final = report["fp32"], report["final"]
    assert report["format"] == "causal-lm" and report["prompts"] == 2
    assert report["prompt_lengths"] == [128, 192]  # 512 does not fit the tiny model's 256-token context
    for row in (fp32, final):
        assert row["prefill_128_tok_s"] > 0 and row["prefill_192_tok_s"] > 0 and row["decode_tok_s"] > 0
        assert row["ttft_ms"] > 0 and row["peak_rss_mib"] > 10 and row["size_bytes"] > 0
    assert fp32["greedy_exact_match"] == 1.0 and fp32["kl_per_token"] < 1e-6  # the FP32 export is the FP model
    assert 0 < final["kl_per_token"] < 0.05 and 0 <= final["greedy_matched_prefix"] <= 1
    assert report["ratios"]["size"] < 0.6
    table = run_cli("bench", folder)
    assert table.returncode == 0 and "prefill 192 tok/s" in table.stdout and "| final |" in table.stdout


@pytest.mark.parametrize("write, expected", [
    (None, "does not exist"),
    ("\n\n   \n", "holds no prompt"),
])
def test_bad_prompts_are_one_line(built, tmp_path, write, expected):
    prompts = tmp_path / "p.txt"
    if write is not None:
        prompts.write_text(write)
    result = run_cli("bench", built[1], "--prompts", prompts)
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and expected in lines[-1] and "Traceback" not in result.stderr
