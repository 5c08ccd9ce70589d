"""Activation smoothing before 8-bit blocks: the FP function is unchanged, the input channels flatten, and on
a model with an outlier channel (as trained language models have) the INT8 graph, whose MatMuls quantize
their inputs to int8 as they come, lands closer to the FP model."""

import json

import numpy as np
import torch

from llm_fixtures import python_docs, tiny_causal_lm


def _outlier_model(folder):
    """The tiny Llama with one hidden channel 40x larger after every norm: an activation outlier."""
    model, _ = tiny_causal_lm(folder, "llama")
    with torch.no_grad():
        for layer in model.model.layers:
            layer.input_layernorm.weight[5] *= 40
            layer.post_attention_layernorm.weight[9] *= 40
    model.save_pretrained(folder)
    return model


def test_smoothing_keeps_the_function_and_flattens_the_inputs(tmp_path):
    from edgekit.llm.blockwise import layer_statistics, linear_names, load_state
    from edgekit.llm.smooth import smooth

    model = _outlier_model(tmp_path / "m")
    state = load_state(tmp_path / "m")
    blocks = np.random.default_rng(0).integers(3, 380, (4, 48))
    _, maxima = layer_statistics(model, blocks, linear_names(state))
    changed, factors = smooth(state, maxima, 2)
    assert {"model.layers.0.input_layernorm.weight", "model.layers.1.mlp.up_proj.weight"} <= set(changed)
    smoothed = type(model)(model.config).eval()
    smoothed.load_state_dict({k: torch.from_numpy(v) for k, v in {**state, **changed}.items()}, strict=False)
    smoothed.tie_weights()
    ids = torch.from_numpy(blocks[:1])
    with torch.no_grad():
        assert torch.allclose(model(ids).logits, smoothed(ids).logits, atol=1e-4, rtol=1e-4)
    _, after = layer_statistics(smoothed, blocks, linear_names(state))
    name = "model.layers.0.self_attn.q_proj.weight"
    spread = lambda peaks: peaks.max() / np.median(peaks)  # noqa: E731
    assert spread(after[name]) < 0.3 * spread(maxima[name])


def test_int8_with_smoothing_is_closer_to_the_fp_model(tmp_path):
    from transformers import AutoModelForCausalLM

    from edgekit.llm.blockwise import quantize_model, write_checkpoint
    from edgekit.llm.corpus import corpus_splits, load_tokenizer
    from edgekit.llm.export import build_genai
    from edgekit.llm.measure import quality

    _outlier_model(tmp_path / "m")
    (tmp_path / "docs.txt").write_text("\n\n".join(" ".join(d.split()) for d in python_docs()[:40]))
    splits = corpus_splits(tmp_path / "docs.txt", load_tokenizer(tmp_path / "m"), 64, (0.0, 0.5, 0.5))
    reference = AutoModelForCausalLM.from_pretrained(tmp_path / "m").eval()
    kl = {}
    for smoothing in (False, True):
        quantized = quantize_model(tmp_path / "m", reference, splits["calib"].ids[:16], 8, "rtn", smoothing)
        assert bool(quantized.floats) == smoothing
        ck = write_checkpoint(tmp_path / "m", tmp_path / f"ck{smoothing}", quantized.blocks, quantized.floats)
        kl[smoothing] = quality(build_genai(ck, tmp_path / f"g{smoothing}", "int4"), reference,
                                splits["eval"].ids[:6])["kl_per_token"]
    assert kl[True] < 0.7 * kl[False], kl
    assert json.loads((tmp_path / "gTrue" / "genai_config.json").read_text())["model"]["type"] == "llama"


def test_norms_whose_gain_is_not_a_plain_multiplier_are_left_alone(tmp_path):
    """Gemma scales by (1 + w) and Gemma 2 puts a norm on the attention's output: dividing those weights would
    change the model, so a Gemma model is quantized unsmoothed (and keeps its head tied)."""
    import transformers

    from edgekit.llm.blockwise import EMBED, quantize_model

    config = transformers.Gemma2Config(vocab_size=384, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                                       num_attention_heads=4, num_key_value_heads=2, head_dim=16)
    model = transformers.Gemma2ForCausalLM(config).eval()
    model.save_pretrained(tmp_path / "gemma2")
    blocks = np.random.default_rng(0).integers(3, 380, (2, 24))
    quantized = quantize_model(tmp_path / "gemma2", model, blocks, 8, "rtn", True)
    assert quantized.floats == {} and EMBED not in quantized.blocks and "tied" in quantized.embedding
    llama, _ = tiny_causal_lm(tmp_path / "llama", "llama")
    assert quantize_model(tmp_path / "llama", llama, blocks, 8, "rtn", True).floats  # the same call smooths a Llama
