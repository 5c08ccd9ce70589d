"""`edgekit inspect` on causal language models answers from the config and weight headers, in seconds."""

import json
import time

import numpy as np
import pytest

from conftest import run_cli


def _save(tmp_path, family: str):
    import torch
    import transformers

    torch.manual_seed(0)
    config_cls, model_cls = {"llama": ("LlamaConfig", "LlamaForCausalLM"), "qwen2": ("Qwen2Config", "Qwen2ForCausalLM"),
                             "phi3": ("Phi3Config", "Phi3ForCausalLM")}[family]
    config = getattr(transformers, config_cls)(vocab_size=300, hidden_size=48, intermediate_size=96, num_hidden_layers=3,
                                               num_attention_heads=6, num_key_value_heads=2, max_position_embeddings=128,
                                               pad_token_id=0)
    model = getattr(transformers, model_cls)(config)
    model.save_pretrained(tmp_path / family)
    return model


@pytest.mark.parametrize("family", ["llama", "qwen2", "phi3"])
def test_a_causal_lm_folder_is_described_from_its_config(tmp_path, family):
    from edgekit.api import inspect_model

    model = _save(tmp_path, family)
    if family == "llama":  # the command itself, once; the others through the same function in-process
        started = time.monotonic()
        result = run_cli("inspect", tmp_path / family, "--json")
        assert result.returncode == 0, result.stderr
        assert time.monotonic() - started < 60  # seconds, not the minutes tracing took (a generous bound for CI)
        info = json.loads(result.stdout)
    else:
        info = inspect_model(str(tmp_path / family))
    assert info["format"] == "causal-lm" and info["architecture"] == type(model).__name__
    assert info["params"] == sum(p.numel() for p in model.state_dict().values())  # as saved, tied or not
    assert (info["layers"], info["heads"], info["kv_heads"], info["head_dim"]) == (3, 6, 2, 8)
    assert (info["vocab"], info["context"], info["hidden_size"]) == (300, 128, 48)
    assert info["exporter"].startswith("onnxruntime-genai")


def _gguf(path, tokens=8):
    import gguf

    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_block_count(2)
    writer.add_embedding_length(32)
    writer.add_feed_forward_length(64)
    writer.add_head_count(4)
    writer.add_head_count_kv(2)
    writer.add_context_length(256)
    writer.add_token_list([f"t{i}" for i in range(tokens)])
    writer.add_tensor("token_embd.weight", np.zeros((tokens, 32), np.float32))
    writer.add_tensor("blk.0.attn_q.weight", np.zeros((32, 32), np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def test_a_gguf_file_is_described_and_a_broken_one_is_one_line(tmp_path):
    from edgekit.api import inspect_model

    _gguf(tmp_path / "m.gguf")
    info = inspect_model(str(tmp_path / "m.gguf"))
    assert info["architecture"] == "LlamaForCausalLM" and info["params"] == 8 * 32 + 32 * 32
    assert (info["layers"], info["heads"], info["kv_heads"], info["context"], info["vocab"]) == (2, 4, 2, 256, 8)
    assert info["tied_embeddings"]  # no separate output.weight
    (tmp_path / "bad.gguf").write_bytes((tmp_path / "m.gguf").read_bytes()[:40])
    result = run_cli("inspect", tmp_path / "bad.gguf")
    assert result.returncode == 2 and "not a readable GGUF file" in result.stderr.strip().splitlines()[-1]
    assert "Traceback" not in result.stderr
