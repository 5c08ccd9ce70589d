"""Weight blocks (INT4, INT8): edgekit's integers reach the MatMulNBits graph exactly, the output head is 8-bit,
and a tied embedding reads the head's integers."""

import numpy as np
import pytest

from llm_fixtures import tiny_causal_lm


def test_round_to_nearest_on_known_numbers():
    from edgekit.llm.blockwise import round_to_nearest

    on_grid = (np.arange(16, dtype=np.float32) - 8) * 0.1  # -0.8 .. 0.7: the 16 levels of steps of 0.1
    weight = np.tile(on_grid, (2, 4))  # two rows of two blocks
    int4 = round_to_nearest(weight)
    assert int4.scales.shape == (2, 2) and np.all(int4.zeros == 8)
    assert np.allclose(int4.scales, 0.1)  # -0.8 is the end level -8: every level used, nothing lost
    assert int4.q.min() == 0 and int4.q.max() == 15 and np.allclose(int4.dequantized(), weight, atol=1e-6)
    int8 = round_to_nearest(weight, 8)
    assert np.all(int8.zeros == 128) and int8.q.min() == 0
    assert np.abs(int8.dequantized() - weight).max() <= 0.4 / 128 + 1e-6  # within half a step of 0.8 / 128
    with pytest.raises(ValueError, match="multiple of the block size"):
        round_to_nearest(weight[:, :40])
    wide = round_to_nearest(weight * np.repeat([1.0, 0.5], 32), 8, 64)  # one block of 64 per row: one scale
    assert wide.scales.shape == (2, 1) and wide.block == 64 and np.allclose(wide.scales, -0.8 / -128)
    assert np.abs(wide.dequantized() - weight * np.repeat([1.0, 0.5], 32)).max() <= 0.4 / 128 + 1e-6


def test_the_grid_uses_all_levels_and_shrinks_where_that_rounds_closer():
    """On bell-shaped weights, as trained layers hold, the chosen grid's error is well under that of the
    plain grid max|w| / 7 (15 levels, never clipped)."""
    from edgekit.llm.blockwise import round_to_nearest

    weight = np.random.default_rng(0).standard_t(5, size=(64, 256)).astype(np.float32)
    blocks = weight.reshape(64, -1, 32)
    plain_scale = np.abs(blocks).max(-1, keepdims=True) / 7
    plain = (np.round(blocks / plain_scale) * plain_scale).reshape(weight.shape)
    ours = round_to_nearest(weight)
    assert np.mean((ours.dequantized() - weight) ** 2) < 0.8 * np.mean((plain - weight) ** 2)


def _quantize_all(state, bits):
    from edgekit.llm.blockwise import HEAD, head_weight, linear_names, round_to_nearest

    quantized = {name: round_to_nearest(state[name], bits) for name in linear_names(state)}
    return {**quantized, HEAD: round_to_nearest(head_weight(state), 8)}


@pytest.mark.parametrize("bits", [4, 8])
def test_edgekit_weights_are_the_graphs_and_the_head_is_8_bit(tmp_path, tiny_llama, bits):
    from edgekit.llm.blockwise import HEAD, graph_weights, load_state, write_checkpoint
    from edgekit.llm.export import build_genai

    state = load_state(tiny_llama)
    quantized = _quantize_all(state, bits)
    assert len(quantized) == 2 * 7 + 1  # q, k, v, o, gate, up, down in each of two layers, and the head
    graph = graph_weights(build_genai(write_checkpoint(tiny_llama, tmp_path / "ck", quantized), tmp_path / "g", "int4"))
    for layer in (0, 1):
        ours = lambda part, kind="self_attn": quantized[f"model.layers.{layer}.{kind}.{part}.weight"].dequantized()  # noqa: E731
        got, qkv = graph[f"/model/layers.{layer}/attn/qkv_proj/MatMulNBits"]
        assert got == bits and np.array_equal(qkv, np.concatenate([ours("q_proj"), ours("k_proj"), ours("v_proj")]))
        assert np.array_equal(graph[f"/model/layers.{layer}/mlp/down_proj/MatMulNBits"][1], ours("down_proj", "mlp"))
    head = next(v for k, v in graph.items() if "lm_head" in k)
    assert head[0] == 8 and np.array_equal(head[1], quantized[HEAD].dequantized())
    import onnx

    nodes = onnx.load(str(tmp_path / "g" / "model.onnx"), load_external_data=False).graph.node
    assert all(len(n.input) == 3 for n in nodes if n.op_type == "MatMulNBits")  # symmetric: no zero points


def test_a_tied_embedding_reads_the_8_bit_head_and_the_graph_computes_the_quantized_model(tmp_path):
    """A model that ties its embedding to its head (as most small LMs do): one set of 8-bit integers serves
    both, in blocks of 64 beside 4-bit linears (the head's kernel is slower at 32), the graph loads (its lookup's
    scales mended to the rank it needs), and its logits are those of the transformers model carrying the same
    dequantized weights."""
    import onnx
    import torch
    from transformers import AutoModelForCausalLM

    from edgekit.llm.blockwise import HEAD, HEAD_BLOCK, load_state, quantize_model, write_checkpoint
    from edgekit.llm.export import build_genai
    from edgekit.llm.measure import genai_block_logits, reference_block_logits

    model, _ = tiny_causal_lm(tmp_path / "tied", "llama", tie=True, hidden=128)
    assert HEAD not in load_state(tmp_path / "tied")
    quantized = quantize_model(tmp_path / "tied", model, np.zeros((0, 1), np.int64), 4, "rtn", False, 8).blocks
    assert quantized[HEAD].block == HEAD_BLOCK == 64 and quantized[HEAD].scales.shape[1] == 2
    genai = build_genai(write_checkpoint(tmp_path / "tied", tmp_path / "ck", quantized), tmp_path / "g", "int4")
    graph = onnx.load(str(genai / "model.onnx"), load_external_data=False).graph
    lookup = next(n for n in graph.node if n.op_type == "GatherBlockQuantized")
    head = next(n for n in graph.node if n.op_type == "MatMulNBits" and "lm_head" in n.name)
    for node in (lookup, head):
        attrs = {a.name: a.i for a in node.attribute}
        assert (attrs["bits"], attrs["block_size"]) == (8, HEAD_BLOCK), node.name
    model = AutoModelForCausalLM.from_pretrained(tmp_path / "tied").eval()
    with torch.no_grad():
        for name, weight in quantized.items():
            model.get_parameter(name).copy_(torch.from_numpy(weight.dequantized()))
    block = np.arange(3, 60)
    ours, theirs = genai_block_logits(genai, block), reference_block_logits(model, block)
    assert np.abs(ours - theirs).max() < 0.02 * np.abs(theirs).max()
    assert np.mean(ours.argmax(-1) == theirs.argmax(-1)) > 0.95


def test_an_embedding_of_its_own_is_read_from_8_bit_blocks_at_int4(tmp_path):
    """A model whose head and embedding are apart: at INT4 the embedding keeps 8 bits (not the builder's float
    table), read by an 8-bit lookup, and the graph computes the model carrying those weights."""
    import onnx
    import torch
    from transformers import AutoModelForCausalLM

    from edgekit.llm.blockwise import EMBED, quantize_model, write_checkpoint
    from edgekit.llm.export import build_genai
    from edgekit.llm.measure import genai_block_logits, reference_block_logits

    model, _ = tiny_causal_lm(tmp_path / "m", "llama", tie=False)
    quantized = quantize_model(tmp_path / "m", model, np.zeros((0, 1), np.int64), 4, "rtn", False, 8)
    assert quantized.blocks[EMBED].bits == 8 and quantized.embedding == "8-bit, its own blocks"
    genai = build_genai(write_checkpoint(tmp_path / "m", tmp_path / "ck", quantized.blocks), tmp_path / "g", "int4")
    graph = onnx.load(str(genai / "model.onnx"), load_external_data=False).graph
    assert [n.op_type for n in graph.node if n.output[0].startswith("/model/embed_tokens")] == ["GatherBlockQuantized"]
    model = AutoModelForCausalLM.from_pretrained(tmp_path / "m").eval()
    with torch.no_grad():
        for name, weight in quantized.blocks.items():
            model.get_parameter(name).copy_(torch.from_numpy(weight.dequantized()))
    block = np.arange(3, 60)
    ours, theirs = genai_block_logits(genai, block), reference_block_logits(model, block)
    assert np.abs(ours - theirs).max() < 0.02 * np.abs(theirs).max()


def test_error_compensation_beats_round_to_nearest_on_correlated_inputs():
    """Inputs that share a few common factors (as a language model's hidden features do): GPTQ's output error
    is well under RTN's on the same grid, on the inputs it saw and on new ones drawn alike."""
    from edgekit.llm.blockwise import gptq, round_to_nearest

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
    from transformers import AutoModelForCausalLM

    from edgekit.llm.corpus import corpus_splits, load_tokenizer
    from edgekit.llm.export import build_genai
    from edgekit.llm.blockwise import gptq, layer_hessians, linear_names, load_state, round_to_nearest, write_checkpoint
    from edgekit.llm.measure import quality
    from llm_fixtures import python_docs

    (tmp_path / "docs.txt").write_text("\n\n".join(" ".join(d.split()) for d in python_docs()[:80]))
    splits = corpus_splits(tmp_path / "docs.txt", load_tokenizer(tiny_llama), 64, (0.5, 0.25, 0.25))
    model = AutoModelForCausalLM.from_pretrained(tiny_llama).eval()
    state = load_state(tiny_llama)
    names = linear_names(state)
    hessians = layer_hessians(model, splits["calib"].ids[:16], names)
    scores = {}
    for label, method in (("rtn", lambda n: round_to_nearest(state[n])), ("gptq", lambda n: gptq(state[n], hessians[n]))):
        checkpoint = write_checkpoint(tiny_llama, tmp_path / label, {n: method(n) for n in names})
        genai = build_genai(checkpoint, tmp_path / f"{label}-genai", "int4")
        scores[label] = quality(genai, model, splits["eval"].ids[:8])
    assert scores["gptq"]["kl_per_token"] < 0.9 * scores["rtn"]["kl_per_token"]
    assert scores["gptq"]["top1_agreement"] >= scores["rtn"]["top1_agreement"]


def test_a_4_bit_head_is_rounded_with_error_compensation(tmp_path):
    """With GPTQ and --head-bits 4, the head's output error on the calibration text is under RTN's."""
    from transformers import AutoModelForCausalLM

    from edgekit.llm.blockwise import HEAD, head_weight, layer_statistics, load_state, quantize_model, round_to_nearest

    tiny_causal_lm(tmp_path / "tied", "llama", tie=True)
    reference = AutoModelForCausalLM.from_pretrained(tmp_path / "tied").eval()
    blocks = np.random.default_rng(0).integers(3, 380, (4, 48))
    quantized = quantize_model(tmp_path / "tied", reference, blocks, 4, "gptq", True, 4)
    weight = head_weight(load_state(tmp_path / "tied"))
    h = layer_statistics(reference, blocks, [HEAD])[0][HEAD]
    error = lambda w: float(np.trace((w - weight) @ h @ (w - weight).T))  # noqa: E731
    assert quantized.blocks[HEAD].bits == 4
    assert error(quantized.blocks[HEAD].dequantized()) < 0.9 * error(round_to_nearest(weight, 4).dequantized())


@pytest.mark.parametrize("tie", [True, False])
def test_at_8_bits_the_head_is_untied_smoothed_and_the_graph_computes_that_model(tmp_path, tie):
    """INT8 of a tied model (or one with a head of its own): the head gets blocks of its own with the final
    norm's outlier channel moved into it, the embedding keeps 8-bit blocks of its own, read by an 8-bit lookup
    in the graph (the builder's float table gone); the graph's logits are those of the untied transformers model
    carrying the same weights, and the GGUF file holds both tensors."""
    import gguf
    import onnx
    import torch
    from onnx import numpy_helper
    from transformers import AutoModelForCausalLM

    from edgekit.llm.blockwise import EMBED, HEAD, graph_weights, load_state, quantize_model, write_checkpoint
    from edgekit.llm.export import build_genai
    from edgekit.llm.measure import genai_block_logits, reference_block_logits
    from edgekit.llm.to_gguf import write_gguf

    model, _ = tiny_causal_lm(tmp_path / "tied", "llama", tie=tie)
    with torch.no_grad():
        model.model.norm.weight[7] *= 40  # an outlier channel at the head's input
    model.save_pretrained(tmp_path / "tied")
    blocks = np.random.default_rng(0).integers(3, 380, (4, 48))
    quantized = quantize_model(tmp_path / "tied", model, blocks, 8, "gptq", True, 8)
    assert {HEAD, EMBED} <= set(quantized.blocks) and "model.norm.weight" in quantized.floats
    assert quantized.floats["model.norm.weight"][7] < 0.2 * model.model.norm.weight[7].item()  # moved into the head
    assert ("untied" in quantized.embedding) == tie and "8-bit, its own blocks" in quantized.embedding
    assert "its own" in quantized.head

    genai = build_genai(write_checkpoint(tmp_path / "tied", tmp_path / "ck", quantized.blocks, quantized.floats),
                        tmp_path / "g", "int4")
    graph = onnx.load(str(genai / "model.onnx"))
    lookup = next(n for n in graph.graph.node if n.op_type == "GatherBlockQuantized")
    inits = {i.name: numpy_helper.to_array(i) for i in graph.graph.initializer}
    assert np.array_equal(inits[lookup.input[0]], quantized.blocks[EMBED].q) and EMBED not in inits
    head = next(v for k, v in graph_weights(genai).items() if "lm_head" in k)
    assert head[0] == 8 and np.array_equal(head[1], quantized.blocks[HEAD].dequantized())

    untied = type(model)(type(model.config).from_dict({**model.config.to_dict(), "tie_word_embeddings": False})).eval()
    weights = {**load_state(tmp_path / "tied"), **quantized.floats,
               **{name: weight.dequantized() for name, weight in quantized.blocks.items()}}
    untied.load_state_dict({k: torch.from_numpy(v) for k, v in weights.items()})
    block = np.arange(3, 60)
    ours, theirs = genai_block_logits(genai, block), reference_block_logits(untied, block)
    assert np.abs(ours - theirs).max() < 0.02 * np.abs(theirs).max()
    assert np.mean(ours.argmax(-1) == theirs.argmax(-1)) > 0.95

    path = write_gguf(tmp_path / "tied", tmp_path / "model.gguf", quantized.blocks, quantized.floats)
    tensors = {t.name: t for t in gguf.GGUFReader(str(path)).tensors}
    out = tensors["output.weight"]
    decoded = gguf.quants.dequantize(out.data, out.tensor_type).reshape(head[1].shape)
    assert np.abs(decoded - head[1]).max() <= 1e-3 * np.abs(head[1]).max()
    assert np.allclose(tensors["output_norm.weight"].data, quantized.floats["model.norm.weight"])
