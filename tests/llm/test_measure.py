"""Language-model quality and speed measures: known numbers on made-up logits, then real exports."""

import numpy as np
import pytest


def test_the_measures_on_known_logits():
    from edgekit.llm.measure import compare_logits

    block = np.array([0, 1, 1, 0])
    reference = np.log(np.array([[0.5, 0.5], [0.25, 0.75], [0.9, 0.1], [0.5, 0.5]]))
    same = compare_logits(reference, reference, block)
    assert same["kl"] == pytest.approx(0.0) and same["agree"] == 3 and same["tokens"] == 3
    assert same["nll"] == pytest.approx(-(np.log(0.5) + np.log(0.75) + np.log(0.9)))
    flipped = np.log(np.array([[0.5, 0.5], [0.75, 0.25], [0.9, 0.1], [0.5, 0.5]]))
    other = compare_logits(flipped, reference, block)
    kl = 0.25 * np.log(0.25 / 0.75) + 0.75 * np.log(0.75 / 0.25)
    assert other["kl"] == pytest.approx(kl) and other["agree"] == 2


def test_fp32_export_matches_its_model_and_int4_measures_worse(tmp_path, tiny_llama, tiny_llama_genai):
    from transformers import AutoModelForCausalLM

    from edgekit.llm.corpus import corpus_splits, load_tokenizer
    from edgekit.llm.export import build_genai
    from edgekit.llm.measure import quality, speed

    from llm_fixtures import python_docs

    (tmp_path / "docs.txt").write_text("\n\n".join(" ".join(d.split()) for d in python_docs()[:40]))
    blocks = corpus_splits(tmp_path / "docs.txt", load_tokenizer(tiny_llama), 64, (0.5, 0.25, 0.25))["eval"].ids[:4]
    reference = AutoModelForCausalLM.from_pretrained(tiny_llama).eval()
    fp32 = quality(tiny_llama_genai, reference, blocks)
    assert fp32["kl_per_token"] < 1e-6 and fp32["top1_agreement"] == 1.0
    assert fp32["perplexity"] == pytest.approx(fp32["reference_perplexity"], rel=1e-4) and fp32["tokens"] == 4 * 63
    int4 = quality(build_genai(tiny_llama, tmp_path / "int4", "int4"), reference, blocks)
    assert int4["kl_per_token"] > 100 * max(fp32["kl_per_token"], 1e-9)
    timing = speed(tiny_llama_genai, blocks[0][:32].tolist(), 8, repeats=2)
    assert timing["ttft_ms"] > 0 and timing["decode_tok_s"] > 0 and timing["prefill_tok_s"] > 0


def test_side_by_side_decode_steps_every_artifact_alike(tiny_llama_genai):
    """Each artifact is stepped once per new token per round, in turn; the same graph under two names
    decodes at the same speed within the shared machine's noise, far from a tenfold error of bookkeeping."""
    from edgekit.llm.measure import decode_side_by_side
    from edgekit.measure.latency import decode_rates_side_by_side

    class Counting:
        def __init__(self, label, made, log):
            self.label, self.left, self.log = label, made, log

        def is_done(self):
            return self.left == 0

        def generate_next_token(self):
            self.left -= 1
            self.log.append(self.label)

    log: list[str] = []
    rates = decode_rates_side_by_side({"a": lambda: Counting("a", 3, log), "b": lambda: Counting("b", 5, log)}, 2)
    assert set(rates) == {"a", "b"} and min(rates.values()) > 0 and [log.count("a"), log.count("b")] == [6, 10]
    assert log[:8] == ["a", "b"] * 3 + ["b", "b"] and log[8:12] == ["b", "a", "b", "a"]  # order turns each round
    speeds = decode_side_by_side({"one": tiny_llama_genai, "same": tiny_llama_genai}, list(range(5, 21)), 16, 2)
    assert set(speeds) == {"one", "same"} and all(v > 0 for v in speeds.values())
    assert 0.5 < speeds["one"] / speeds["same"] < 2.0
