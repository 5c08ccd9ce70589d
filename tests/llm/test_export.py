"""The ONNX Runtime GenAI export of a causal LM: offline, with a KV cache, and the same greedy tokens as the
transformers model it came from."""

import json

import pytest

from llm_fixtures import python_docs


def test_the_fp32_export_generates_what_transformers_generates(tiny_llama, tiny_llama_genai):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from edgekit.llm.export import greedy_tokens

    out = tiny_llama_genai
    assert {"model.onnx", "genai_config.json", "tokenizer.json"} <= {p.name for p in out.iterdir()}
    assert not (out.parent / f".{out.name}.building").exists()
    config = json.loads((out / "genai_config.json").read_text())
    assert config["model"]["decoder"]["num_key_value_heads"] == 2  # grouped-query attention kept
    model = AutoModelForCausalLM.from_pretrained(tiny_llama).eval()
    tokenizer = AutoTokenizer.from_pretrained(tiny_llama)
    for text in (python_docs()[0][:80], python_docs()[5][:40]):
        prompt = tokenizer(text, add_special_tokens=False)["input_ids"]
        with torch.no_grad():
            expected = model.generate(torch.tensor([prompt]), max_new_tokens=16, do_sample=False,
                                      eos_token_id=None, pad_token_id=0)[0, len(prompt):].tolist()
        assert greedy_tokens(out, prompt, 16) == expected


def test_bad_inputs_are_one_line_before_anything_is_built(tmp_path, tiny_llama):
    import shutil

    from edgekit.errors import InputError
    from edgekit.llm.export import build_genai

    bare = tmp_path / "no-tokenizer"
    shutil.copytree(tiny_llama, bare)
    (bare / "tokenizer.json").unlink()
    with pytest.raises(InputError, match="has no tokenizer"):
        build_genai(bare, tmp_path / "a")
    config = json.loads((bare / "config.json").read_text())
    config["architectures"] = ["GPTJForCausalLM"]
    (bare / "config.json").write_text(json.dumps(config))
    with pytest.raises(InputError, match="does not take GPTJForCausalLM"):
        build_genai(bare, tmp_path / "b")
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()
