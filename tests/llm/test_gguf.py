"""GGUF both ways: edgekit's weight blocks written as Q4_0/Q8_0 for llama.cpp, read back by the gguf package's
decoder and by transformers' GGUF reader (which undoes llama.cpp's rotary row order), and a GGUF file taken as
the input model."""

import numpy as np
import pytest

from llm_fixtures import tiny_causal_lm


def _blocks(state, bits):
    from edgekit.llm.blockwise import linear_names, round_to_nearest

    return {name: round_to_nearest(state[name], bits) for name in linear_names(state)}


@pytest.mark.parametrize("family, bits", [("llama", 4), ("qwen2", 8)])
def test_gguf_holds_edgekit_integers_and_reads_back_as_the_same_model(tmp_path, family, bits):
    import gguf

    from edgekit.llm.blockwise import load_state
    from edgekit.llm.from_gguf import gguf_to_folder
    from edgekit.llm.to_gguf import write_gguf

    model, tokenizer = tiny_causal_lm(tmp_path / family, family)
    state = load_state(tmp_path / family)
    quantized = _blocks(state, bits)
    path = write_gguf(tmp_path / family, tmp_path / "model.gguf", quantized)
    reader = gguf.GGUFReader(str(path))
    tensors = {t.name: t for t in reader.tensors}
    down = tensors["blk.1.ffn_down.weight"]
    assert down.tensor_type.name == ("Q4_0" if bits == 4 else "Q8_0")
    assert tensors["token_embd.weight"].tensor_type.name == "Q8_0" and tensors["output.weight"].tensor_type.name == "Q8_0"
    ours = quantized["model.layers.1.mlp.down_proj.weight"].dequantized()
    decoded = gguf.quants.dequantize(down.data, down.tensor_type).reshape(ours.shape)
    assert np.abs(decoded - ours).max() <= 1e-3 * np.abs(ours).max()  # the scale rounded to float16, nothing else

    folder = gguf_to_folder(path, tmp_path / "read-back")
    back = load_state(folder)
    for name, weight in quantized.items():  # query and key rows back in transformers' order
        assert np.abs(back[name] - weight.dequantized()).max() <= 1e-3 * np.abs(weight.dequantized()).max(), name
    assert np.allclose(back["model.norm.weight"], state["model.norm.weight"])
    from edgekit.llm.corpus import load_tokenizer

    text = "Return the list of arguments, as a tuple."
    assert load_tokenizer(folder)(text).input_ids == tokenizer(text).input_ids
    assert gguf_to_folder(path, tmp_path / "read-back") == folder  # unchanged file: the folder is kept


def test_a_head_in_blocks_of_64_is_written_as_q8_0_blocks_of_32(tmp_path):
    """An INT4 model's 8-bit head of its own is in blocks of 64 (the graph's faster kernel); GGUF's Q8_0 blocks are
    32, so the file's head is rounded afresh at 32, and still holds the head."""
    import gguf

    from edgekit.llm.blockwise import HEAD, HEAD_BLOCK, load_state, quantize_model
    from edgekit.llm.to_gguf import block_bytes, write_gguf

    model, _ = tiny_causal_lm(tmp_path / "m", "llama", tie=False, hidden=128)
    quantized = quantize_model(tmp_path / "m", model, np.zeros((0, 1), np.int64), 4, "rtn", False, 8)
    assert quantized.blocks[HEAD].block == HEAD_BLOCK and "blocks of 64" in quantized.head
    with pytest.raises(ValueError, match="blocks are 32"):
        block_bytes(quantized.blocks[HEAD])
    path = write_gguf(tmp_path / "m", tmp_path / "model.gguf", quantized.blocks)
    out = {t.name: t for t in gguf.GGUFReader(str(path)).tensors}["output.weight"]
    head = load_state(tmp_path / "m")[HEAD]
    decoded = gguf.quants.dequantize(out.data, out.tensor_type).reshape(head.shape)
    assert out.tensor_type.name == "Q8_0" and np.abs(decoded - head).max() <= np.abs(head).max() / 127


def test_a_gguf_file_is_a_causal_lm_input(tmp_path):
    from edgekit.models.causal_lm import causal_lm_info, is_causal_lm
    from edgekit.llm.blockwise import load_state
    from edgekit.llm.to_gguf import write_gguf

    tiny_causal_lm(tmp_path / "llama", "llama")
    path = write_gguf(tmp_path / "llama", tmp_path / "tiny.gguf", _blocks(load_state(tmp_path / "llama"), 8))
    info = causal_lm_info(path)
    assert is_causal_lm(path) and info["layers"] == 2 and info["kv_heads"] == 2 and info["vocab"] == 384


def test_gguf_refuses_an_architecture_it_does_not_lay_out(tmp_path):
    import json

    from edgekit.errors import InputError
    from edgekit.llm.to_gguf import write_gguf

    tiny_causal_lm(tmp_path / "m", "llama")
    config = json.loads((tmp_path / "m" / "config.json").read_text())
    (tmp_path / "m" / "config.json").write_text(json.dumps({**config, "architectures": ["GPTNeoXForCausalLM"]}))
    with pytest.raises(InputError, match="GGUF is written for"):
        write_gguf(tmp_path / "m", tmp_path / "x.gguf", {})
    assert not (tmp_path / "x.gguf").exists()


def test_compress_takes_a_gguf_file_as_the_model(tmp_path):
    import json

    from conftest import run_cli
    from edgekit.llm.blockwise import load_state
    from edgekit.llm.to_gguf import write_gguf
    from llm_fixtures import python_docs

    tiny_causal_lm(tmp_path / "llama", "llama")
    path = write_gguf(tmp_path / "llama", tmp_path / "tiny.gguf", _blocks(load_state(tmp_path / "llama"), 8))
    (tmp_path / "docs.txt").write_text("\n\n".join(" ".join(d.split()) for d in python_docs()[:12]))
    result = run_cli("compress", "--model", path, "--data", tmp_path / "docs.txt", "--target", "x86-64", "--out",
                     tmp_path / "build", "--block-size", "64", "--new-tokens", "4", "--quant", "none", "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["fp32"]["kl_per_token"] < 1e-6  # measured against the GGUF's own (dequantized) weights
    assert (tmp_path / "build" / "x86-64" / "genai_config.json").is_file() and report["model"]["layers"] == 2
