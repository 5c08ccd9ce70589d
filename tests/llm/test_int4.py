"""Weight-only INT4: edgekit's integers reach the MatMulNBits graph exactly, the output head stays at 8 bits."""

import numpy as np


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
