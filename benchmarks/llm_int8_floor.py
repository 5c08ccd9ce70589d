"""Where an INT8 language model's distance to its FP model comes from, on SmolLM2-135M-Instruct: the weights'
8-bit blocks, or the int8 rounding of every MatMul input that ONNX Runtime's CPU kernels apply (MatMulNBits at
accuracy level 4: each row's blocks of 32 scaled by their largest magnitude, rounded to nearest).

    python benchmarks/llm_int8_floor.py [--eval-blocks 16]

Each row is the transformers model with edgekit's INT8 weights (the residual stream rotated, then
`quantize_model`, as `compress --quant int8` makes them; one row without the rotation) or the FP weights, and
with its linear layers' inputs rounded as the kernel rounds them or left in float; KL to the FP model and top-1 agreement on held-out Python docs. The graph itself is measured by
`benchmarks/llm.py`; this script shows what each part costs (the simulated "both" row matches the graph's
figures to within the held-out sample); the last rows leave one kind of layer's inputs in float at a time.
Writes benchmarks/out/llm_int8_floor.md.
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


def kernel_rounding(x, block: int = 32):
    """x with each row's blocks of `block` rounded to int8 on a scale of max|x|/127, as MatMulNBits does."""
    import torch

    blocks = x.reshape(*x.shape[:-1], -1, block)
    scale = blocks.abs().amax(-1, keepdim=True) / 127
    inverse = torch.where(scale > 0, 1 / scale, torch.zeros_like(scale))
    return (torch.clamp(torch.round(blocks * inverse), -128, 127) * scale).reshape(x.shape)


def with_weights(reference, quantized):
    """A copy of `reference` carrying the quantized model's dequantized blocks and rescaled floats (untied where
    the head was given blocks of its own)."""
    import copy

    import torch

    from edgekit.llm.blockwise import EMBED

    model = copy.deepcopy(reference)
    if EMBED in quantized.blocks:
        model.config.tie_word_embeddings = False
        model.lm_head.weight = torch.nn.Parameter(model.lm_head.weight.detach().clone())
    values = {**quantized.floats, **{n: w.dequantized() for n, w in quantized.blocks.items()}}
    with torch.no_grad():
        for name, value in values.items():
            model.get_parameter(name).copy_(torch.from_numpy(np.asarray(value, np.float32)))
    return model


KINDS = {"q/k/v": ("q_proj", "k_proj", "v_proj"), "o": ("o_proj",), "gate/up": ("gate_proj", "up_proj"),
         "down": ("down_proj",), "head": ("lm_head",)}


def distance(model, reference_logp, blocks, round_inputs: bool,
             float_kind: tuple[str, ...] = ()) -> tuple[float, float]:
    """KL to the reference and top-1 agreement, the linears' inputs rounded where `round_inputs` (except those of
    the layers whose names end in `float_kind`)."""
    import torch

    handles = [m.register_forward_pre_hook(lambda _m, a: (kernel_rounding(a[0]),)) for n, m in model.named_modules()
               if round_inputs and isinstance(m, torch.nn.Linear) and not (float_kind and n.endswith(float_kind))]
    kl = agree = count = 0.0
    try:
        with torch.no_grad():
            for block, ref in zip(blocks, reference_logp):
                logp = torch.log_softmax(model(torch.from_numpy(block)[None]).logits[0, :-1].double(), -1)
                kl += float((ref.exp() * (ref - logp)).sum())
                agree += float((logp.argmax(-1) == ref.argmax(-1)).sum())
                count += len(ref)
    finally:
        for handle in handles:
            handle.remove()
    return kl / count, agree / count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--eval-blocks", type=int, default=16)
    parser.add_argument("--calib-blocks", type=int, default=128)
    args = parser.parse_args()

    import torch
    from transformers import AutoModelForCausalLM

    from edgekit.files import cache_root
    from edgekit.llm.blockwise import quantize_model
    from edgekit.llm.corpus import corpus_splits, load_tokenizer
    from edgekit.llm.from_gguf import gguf_to_folder
    from edgekit.llm.rotate import rotated_copy
    from llm import BLOCK, corpus, smollm2_gguf

    started = time.perf_counter()
    model_dir = gguf_to_folder(smollm2_gguf(), cache_root() / "models" / "SmolLM2-135M-Instruct")
    reference = AutoModelForCausalLM.from_pretrained(model_dir, dtype="float32").eval()
    with tempfile.TemporaryDirectory() as tmp:
        splits = corpus_splits(corpus(Path(tmp) / "docs.jsonl"), load_tokenizer(model_dir), BLOCK, (0.5, 0.25, 0.25))
    calib, evals = splits["calib"].ids[:args.calib_blocks], splits["eval"].ids[:args.eval_blocks]
    with torch.no_grad():
        reference_logp = [torch.log_softmax(reference(torch.from_numpy(b)[None]).logits[0, :-1].double(), -1)
                          for b in evals]
    plain = with_weights(reference, quantize_model(model_dir, reference, calib, 8, "gptq", True, 8))
    with tempfile.TemporaryDirectory() as tmp:  # as `compress --quant int8` makes them: the stream rotated first
        rotated_dir, rotated = rotated_copy(model_dir, reference, Path(tmp) / "rotated")
        quantized = with_weights(rotated, quantize_model(rotated_dir, rotated, calib, 8, "gptq", True, 8))
    rows = {"FP weights (not smoothed), inputs rounded (the kernel's rounding alone)":
                distance(reference, reference_logp, evals, True),
            "FP weights rotated (not smoothed), inputs rounded": distance(rotated, reference_logp, evals, True),
            "INT8 weights of the model not rotated, inputs rounded": distance(plain, reference_logp, evals, True),
            "edgekit INT8 weights, inputs in float (the weights' share alone)":
                distance(quantized, reference_logp, evals, False),
            "edgekit INT8 weights, inputs rounded (what the graph computes)":
                distance(quantized, reference_logp, evals, True)}
    for kind, suffixes in KINDS.items():  # is the rounding's cost in one kind of layer, or spread over all?
        rows[f"edgekit INT8 weights, inputs rounded except the {kind} layers'"] = distance(
            quantized, reference_logp, evals, True, suffixes)
    lines = ["# Where INT8's distance to FP comes from (SmolLM2-135M-Instruct)", "",
             f"`python benchmarks/llm_int8_floor.py` ({(time.perf_counter() - started) / 60:.0f} min; "
             f"{len(evals)} held-out blocks of {BLOCK} tokens of Python's docs; transformers model, MatMul inputs "
             "rounded as MatMulNBits accuracy level 4 rounds them).", "",
             "| row | KL to FP | top-1 agreement |", "|---|---:|---:|"]
    lines += [f"| {label} | {kl:.5f} | {top1:.4f} |" for label, (kl, top1) in rows.items()]
    OUT.mkdir(exist_ok=True)
    (OUT / "llm_int8_floor.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
