"""Weight-only INT4: edgekit's integers reach the MatMulNBits graph exactly, the output head stays at 8 bits."""

import numpy as np
import pytest


def test_round_to_nearest_on_known_numbers():
    from edgekit.llm.int4 import round_to_nearest

    weight = np.tile(np.linspace(-0.7, 0.7, 32, dtype=np.float32), (2, 2))  # two rows of two blocks
    int4 = round_to_nearest(weight)
    assert int4.scales.shape == (2, 2) and np.allclose(int4.scales, 0.1)  # max |w| / 7
    assert int4.q.min() == 1 and int4.q.max() == 15 and np.all(int4.zeros == 8)
    assert np.abs(int4.dequantized() - weight).max() <= 0.05 + 1e-6  # within half a step


def test_edgekit_int4_weights_are_the_graphs_and_the_head_is_8_bit(tmp_path, tiny_llama):
    from safetensors.numpy import load_file

    from edgekit.llm.export import build_genai
    from edgekit.llm.int4 import HEAD_AT_8_BITS, graph_weights, linear_names, round_to_nearest, write_int4_checkpoint

    state = load_file(str(tiny_llama / "model.safetensors"))
    quantized = {name: round_to_nearest(state[name]) for name in linear_names(state)}
    assert len(quantized) == 2 * 7  # q, k, v, o, gate, up, down in each of two layers
    checkpoint = write_int4_checkpoint(tiny_llama, tmp_path / "int4-checkpoint", quantized)
    graph = graph_weights(build_genai(checkpoint, tmp_path / "genai", "int4", extra_options=HEAD_AT_8_BITS))
    for layer in (0, 1):
        ours = lambda part, kind="self_attn": quantized[f"model.layers.{layer}.{kind}.{part}.weight"].dequantized()  # noqa: E731
        bits, qkv = graph[f"/model/layers.{layer}/attn/qkv_proj/MatMulNBits"]
        assert bits == 4 and np.array_equal(qkv, np.concatenate([ours("q_proj"), ours("k_proj"), ours("v_proj")]))
        assert np.array_equal(graph[f"/model/layers.{layer}/mlp/down_proj/MatMulNBits"][1], ours("down_proj", "mlp"))
    head = next(v for k, v in graph.items() if "lm_head" in k)
    assert head[0] == 8 and np.abs(head[1] - state["lm_head.weight"]).max() < np.abs(state["lm_head.weight"]).max() / 100


def test_error_compensation_beats_round_to_nearest_on_correlated_inputs():
    """Inputs that share a few common factors (as a language model's hidden features do): GPTQ's output error
    is well under RTN's on the same grid, on the inputs it saw and on new ones drawn alike."""
    from edgekit.llm.int4 import gptq, round_to_nearest

    rng = np.random.default_rng(0)
    mixing = rng.normal(size=(8, 64))

    def inputs(count):
        return rng.normal(size=(count, 8)) @ mixing + 0.1 * rng.normal(size=(count, 64))
    seen, new = inputs(4096), inputs(2048)
    weight = rng.normal(size=(16, 64)).astype(np.float32)
    rtn, compensated = round_to_nearest(weight), gptq(weight, seen.T @ seen)
    error = lambda w, x: float(np.mean((x @ (w - weight).T) ** 2))  # noqa: E731
    assert set(np.unique(compensated.q)) <= set(range(16)) and np.all(compensated.zeros == 8)
    assert error(compensated.dequantized(), seen) < 0.5 * error(rtn.dequantized(), seen)
    assert error(compensated.dequantized(), new) < 0.5 * error(rtn.dequantized(), new)


@pytest.mark.slow  # three exports and two quality passes: about 20 s
def test_error_compensation_brings_the_int4_model_closer_to_fp32(tmp_path, tiny_llama):
    from safetensors.numpy import load_file
    from transformers import AutoModelForCausalLM

    from edgekit.llm.corpus import corpus_splits, load_tokenizer
    from edgekit.llm.export import build_genai
    from edgekit.llm.int4 import (HEAD_AT_8_BITS, gptq, layer_hessians, linear_names, round_to_nearest,
                                  write_int4_checkpoint)
    from edgekit.llm.measure import quality
    from llm_fixtures import python_docs

    (tmp_path / "docs.txt").write_text("\n\n".join(" ".join(d.split()) for d in python_docs()[:80]))
    splits = corpus_splits(tmp_path / "docs.txt", load_tokenizer(tiny_llama), 64, (0.5, 0.25, 0.25))
    model = AutoModelForCausalLM.from_pretrained(tiny_llama).eval()
    state = load_file(str(tiny_llama / "model.safetensors"))
    names = linear_names(state)
    hessians = layer_hessians(model, splits["calib"].ids[:16], names)
    scores = {}
    for label, method in (("rtn", lambda n: round_to_nearest(state[n])), ("gptq", lambda n: gptq(state[n], hessians[n]))):
        checkpoint = write_int4_checkpoint(tiny_llama, tmp_path / label, {n: method(n) for n in names})
        genai = build_genai(checkpoint, tmp_path / f"{label}-genai", "int4", extra_options=HEAD_AT_8_BITS)
        scores[label] = quality(genai, model, splits["eval"].ids[:8])
    assert scores["gptq"]["kl_per_token"] < 0.9 * scores["rtn"]["kl_per_token"]
    assert scores["gptq"]["top1_agreement"] >= scores["rtn"]["top1_agreement"]
