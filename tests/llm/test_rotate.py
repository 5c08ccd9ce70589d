"""The residual stream rotated before 8-bit blocks: the FP function is unchanged (in torch, after a save and load,
and in the exported graph), and on a model whose stream's large channels differ from token to token, as trained
language models' do, the INT8 graph lands closer to the FP model."""

import numpy as np
import pytest
import torch

from llm_fixtures import python_docs, tiny_causal_lm


def _uneven_gains(model):
    """Norm gains that differ by channel (a fresh model's are all 1, which would hide a folding mistake), and
    the value projection's bias where the model has one."""
    generator = torch.Generator().manual_seed(3)
    with torch.no_grad():
        norms = [model.model.norm] + [n for layer in model.model.layers
                                      for n in (layer.input_layernorm, layer.post_attention_layernorm)]
        for norm in norms:
            norm.weight.copy_(torch.rand(norm.weight.shape, generator=generator) * 1.5 + 0.5)
        for layer in model.model.layers:
            if layer.self_attn.v_proj.bias is not None:
                layer.self_attn.v_proj.bias.copy_(torch.randn(layer.self_attn.v_proj.bias.shape, generator=generator))
    return model


@pytest.mark.parametrize("family, tie", [("llama", True), ("qwen2", False)])
def test_rotation_keeps_the_function_through_save_and_load(tmp_path, family, tie):
    from transformers import AutoModelForCausalLM

    from edgekit.llm.folder import save_model
    from edgekit.llm.rotate import rotate, why_not_rotated

    model = _uneven_gains(tiny_causal_lm(tmp_path / "m", family, tie=tie)[0])
    ids = torch.randint(3, 380, (2, 40), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        before = model(ids).logits
        assert why_not_rotated(model) is None
        embedding = model.model.embed_tokens.weight.clone()
        rotate(model)
        assert not torch.allclose(model.model.embed_tokens.weight, embedding, atol=1e-3)  # something did move
        assert torch.allclose(model(ids).logits, before, atol=1e-4)
        loaded = AutoModelForCausalLM.from_pretrained(save_model(model, tmp_path / "m", tmp_path / "r")).eval()
        assert loaded.config.tie_word_embeddings is False
        assert torch.allclose(loaded(ids).logits, before, atol=1e-4)
        assert torch.all(loaded.model.layers[0].input_layernorm.weight == 1)


def _heavy_tailed_model(folder):
    """The tiny Llama, its weights 5x a fresh model's, with each token's embedding scaled channel by channel by a
    log-normal factor: a stream whose large channels differ from token to token, as trained language models'
    do at some tokens, which a per-channel factor fixed for all tokens (smoothing) cannot follow."""
    model, _ = tiny_causal_lm(folder, "llama", hidden=128)
    generator = torch.Generator().manual_seed(5)
    with torch.no_grad():
        for weight in (p for p in model.parameters() if p.ndim == 2):
            weight.mul_(5)
        embedding = model.model.embed_tokens.weight
        embedding.mul_(torch.exp(2.5 * torch.randn(embedding.shape, generator=generator)))
    model.save_pretrained(folder)
    return model


def test_int8_of_the_rotated_model_is_closer_to_the_fp_model(tmp_path):
    import copy

    from transformers import AutoModelForCausalLM

    from edgekit.llm.blockwise import quantize_model, write_checkpoint
    from edgekit.llm.corpus import corpus_splits, load_tokenizer
    from edgekit.llm.export import build_genai
    from edgekit.llm.folder import save_model
    from edgekit.llm.measure import quality
    from edgekit.llm.rotate import rotate

    _heavy_tailed_model(tmp_path / "m")
    (tmp_path / "docs.txt").write_text("\n\n".join(" ".join(d.split()) for d in python_docs()[:40]))
    splits = corpus_splits(tmp_path / "docs.txt", load_tokenizer(tmp_path / "m"), 64, (0.0, 0.5, 0.5))
    reference = AutoModelForCausalLM.from_pretrained(tmp_path / "m").eval()
    rotated = rotate(copy.deepcopy(reference))
    evals, kl = splits["eval"].ids[:6], {}
    fp32 = build_genai(save_model(rotated, tmp_path / "m", tmp_path / "r"), tmp_path / "r-fp32", "fp32")
    assert quality(fp32, reference, evals)["kl_per_token"] < 1e-6  # the exported graph computes the same
    for label, folder, model in (("plain", tmp_path / "m", reference), ("rotated", tmp_path / "r", rotated)):
        quantized = quantize_model(folder, model, splits["calib"].ids[:16], 8, "rtn", True)
        checkpoint = write_checkpoint(folder, tmp_path / f"ck-{label}", quantized.blocks, quantized.floats)
        kl[label] = quality(build_genai(checkpoint, tmp_path / f"g-{label}", "int4"), reference, evals)["kl_per_token"]
    assert kl["rotated"] < 0.7 * kl["plain"], kl


def test_architectures_without_a_rotation_rule_are_left_as_they_are(tmp_path):
    import transformers

    from edgekit.llm.rotate import why_not_rotated

    gemma = transformers.Gemma2ForCausalLM(transformers.Gemma2Config(
        vocab_size=384, hidden_size=64, intermediate_size=128, num_hidden_layers=1, num_attention_heads=4,
        num_key_value_heads=2, head_dim=16))
    assert "gemma2 architecture" in why_not_rotated(gemma)
    narrow, _ = tiny_causal_lm(tmp_path / "narrow", "llama", hidden=48)
    assert "hidden size 48 is not a multiple of 32" in why_not_rotated(narrow)
    biased, _ = tiny_causal_lm(tmp_path / "biased", "llama")
    biased.model.layers[0].register_parameter("extra", torch.nn.Parameter(torch.zeros(3)))
    assert "model.layers.0.extra has no rotation rule" in why_not_rotated(biased)
    with pytest.raises(ValueError, match="power of two"):
        from edgekit.llm.rotate import hadamard

        hadamard(24)
    assert np.allclose(hadamard(32).numpy() @ hadamard(32).numpy().T, np.eye(32))
