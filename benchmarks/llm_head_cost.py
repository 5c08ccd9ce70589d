"""What an 8-bit output head costs an INT4 language model's decode, on SmolLM2-135M-Instruct (vocabulary 49152 x
width 576: 28.3M of its 134.5M parameters are the head).

    python benchmarks/llm_head_cost.py [--rounds 7]

Four INT4 graphs that differ in the head alone, all rounded to nearest so that only the head differs: the
GenAI builder's own INT4 (the peer: a 4-bit head in blocks of 32), edgekit's with `--head-bits 4`, edgekit's
default 8-bit head (blocks of 64) and an 8-bit head in blocks of 32. Decode tokens/s (prompt 128, 128 new
tokens): 1 / the median time of a token, all stepped in turn one token at a time over fresh loads
(`decode_side_by_side`). Beside them, the head's MatMulNBits alone, one token at a time, three heads of
different weights in turn so that each is read from memory (as in the model, where the rest of the weights
push it out of the cache).
Writes benchmarks/out/llm_head_cost.md.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
OUT = HERE / "out"


KERNELS = ((4, 32), (8, 32), (8, 64))  # (bits, block) of the head timed alone
COPIES = 3  # heads of different weights run in turn: more bytes than the cache holds


def head_graph(weight: np.ndarray, bits: int, block: int) -> bytes:
    """A graph of COPIES head MatMulNBits, each holding `weight` (rolled by a row, so no two are alike) rounded
    to `bits`-bit blocks of `block`."""
    from onnx import TensorProto, helper, numpy_helper

    from edgekit.llm.blockwise import _pack, round_to_nearest

    rounded = round_to_nearest(weight, bits, block)
    vocab, width = weight.shape
    packed = _pack(rounded.q, bits).reshape(vocab, width // block, -1)
    nodes, weights = [], []
    for copy in range(COPIES):
        nodes.append(helper.make_node("MatMulNBits", ["x", f"w{copy}", f"s{copy}"], [f"y{copy}"],
                                      domain="com.microsoft", K=width, N=vocab, bits=bits, block_size=block,
                                      accuracy_level=4))
        weights += [numpy_helper.from_array(np.roll(packed, copy, axis=0), f"w{copy}"),
                    numpy_helper.from_array(np.roll(rounded.scales, copy, axis=0).reshape(-1), f"s{copy}")]
    graph = helper.make_graph(nodes, "heads", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, width])],
                              [helper.make_tensor_value_info(f"y{c}", TensorProto.FLOAT, [1, vocab])
                               for c in range(COPIES)], weights)
    opsets = [helper.make_opsetid("", 17), helper.make_opsetid("com.microsoft", 1)]
    return helper.make_model(graph, opset_imports=opsets).SerializeToString()


def head_sessions(weight: np.ndarray) -> dict:
    import onnxruntime as ort

    return {kernel: ort.InferenceSession(head_graph(weight, *kernel), providers=["CPUExecutionProvider"])
            for kernel in KERNELS}


def head_ms(session, width: int, runs: int = 60) -> float:
    """Median milliseconds of one token through one head, read from memory."""
    x = np.random.default_rng(0).standard_normal((1, width)).astype(np.float32)
    for _ in range(5):
        session.run(None, {"x": x})
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        session.run(None, {"x": x})
        times.append(time.perf_counter() - start)
    return float(np.median(times)) * 1e3 / COPIES


def graphs(model_dir: Path, reference, work: Path) -> dict[str, Path]:
    from edgekit.llm import blockwise as bw
    from edgekit.llm.export import build_genai

    def edgekit(head_bits: int, head_block: int | None = None) -> Path:
        quantized = bw.quantize_model(model_dir, reference, np.zeros((0, 1), np.int64), 4, "rtn", False, head_bits)
        if head_block is not None:
            quantized.blocks[bw.HEAD] = bw.round_to_nearest(bw.head_weight(bw.load_state(model_dir)), 8, head_block)
        name = f"h{head_bits}-{head_block or 'default'}"
        checkpoint = bw.write_checkpoint(model_dir, work / f"ck-{name}", quantized.blocks, quantized.floats)
        return build_genai(checkpoint, work / f"g-{name}", "int4")
    return {PEER: build_genai(model_dir, work / "g-builder", "int4"), FOUR: edgekit(4), EIGHT: edgekit(8),
            EIGHT_32: edgekit(8, 32)}


PEER, FOUR = "builder INT4 (4-bit head, blocks of 32)", "edgekit INT4, --head-bits 4"
EIGHT, EIGHT_32 = "edgekit INT4, 8-bit head in blocks of 64 (default)", "edgekit INT4, 8-bit head in blocks of 32"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()

    from transformers import AutoModelForCausalLM

    from edgekit.files import cache_root
    from edgekit.llm.blockwise import head_weight, load_state
    from edgekit.llm.from_gguf import gguf_to_folder
    from edgekit.llm.measure import decode_side_by_side
    from llm import smollm2_gguf

    started = time.perf_counter()
    model_dir = gguf_to_folder(smollm2_gguf(), cache_root() / "models" / "SmolLM2-135M-Instruct")
    reference = AutoModelForCausalLM.from_pretrained(model_dir, dtype="float32").eval()
    head = head_weight(load_state(model_dir)).astype(np.float32)
    prompt = list(range(1000, 1128))
    with tempfile.TemporaryDirectory() as tmp:
        folders = graphs(model_dir, reference, Path(tmp))
        tok_s = decode_side_by_side(folders, prompt, 128, args.rounds)
    sessions = head_sessions(head)
    kernel: dict[tuple, list[float]] = {k: [] for k in KERNELS}
    for _ in range(args.rounds):
        for key, session in sessions.items():
            kernel[key].append(head_ms(session, head.shape[1]))
    head_cost = {key: float(np.median(v)) for key, v in kernel.items()}
    peer = tok_s[PEER]
    four, eight = tok_s[FOUR], tok_s[EIGHT]
    lines = ["# What an 8-bit head costs INT4 decode (SmolLM2-135M-Instruct)", "",
             f"`python benchmarks/llm_head_cost.py` ({(time.perf_counter() - started) / 60:.0f} min, {args.rounds} "
             "rounds of fresh loads, decode stepped side by side; all four graphs rounded to nearest, differing in "
             "the head alone).", "",
             "| graph | decode tok/s | ms per token | x builder |", "|---|---:|---:|---:|"]
    lines += [f"| {label} | {v:.1f} | {1e3 / v:.2f} | {v / peer:.3f} |" for label, v in tok_s.items()]
    lines += ["", "| head's MatMulNBits alone, one token, read from memory | ms |", "|---|---:|"]
    lines += [f"| {bits}-bit, blocks of {block} | {ms:.3f} |" for (bits, block), ms in head_cost.items()]
    lines += ["", f"- Measured: the default 8-bit head's decode is {eight / peer:.3f}x the builder's (blocks of 32: "
              f"{tok_s[EIGHT_32] / peer:.3f}x), `--head-bits 4` "
              f"{four / peer:.3f}x (target >= 0.95: {'met' if eight / peer >= 0.95 else 'unmet'} with the 8-bit head, "
              f"{'met' if four / peer >= 0.95 else 'unmet'} with the 4-bit)."]
    OUT.mkdir(exist_ok=True)
    (OUT / "llm_head_cost.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
