"""`compress` for a causal language model: optionally pruned (width, depth or hidden size, uniform across
layers) and distilled back from the unpruned model, then INT4 or INT8 weight blocks chosen here (GPTQ or RTN
on the calibration text), exported with a KV cache through the ONNX Runtime GenAI builder, measured against the FP model on held-out text and
against the FP32 export for speed, published as OUT/<target>/ (a GenAI folder) with its report.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from edgekit.data.splits import parse_fractions
from edgekit.errors import DataError, InputError
from edgekit.bundle.manifest import write_language_model_manifest
from edgekit.llm.report import plot, render
from edgekit.files import atomic_dir, write_json, write_text
from edgekit.outdir import claimed_output, input_paths
from edgekit.progress import console
from edgekit.settings import CompressConfig, QuantMode
from edgekit.target import Target

EVAL_BLOCKS = 32  # held-out blocks scored (each a prefill of the exported model and a forward of the FP one)
CALIB_BLOCKS = 128  # calibration blocks whose inputs make each layer's Hessian for GPTQ


BITS = {QuantMode.INT4: 4, QuantMode.INT8: 8}


def run_llm_compress(cfg: CompressConfig, target: Target) -> dict[str, Any]:
    from edgekit.llm.corpus import corpus_splits, load_tokenizer
    from edgekit.models.causal_lm import causal_lm_info

    info = causal_lm_info(cfg.model)
    if cfg.pruning.ratio > 0 and not cfg.model.endswith(".gguf"):  # refused before any text is read
        from transformers import AutoConfig

        from edgekit.llm.prune import check_share

        config = AutoConfig.from_pretrained(cfg.model, local_files_only=True)
        check_share(config, cfg.pruning.ratio, bool(getattr(config, "tie_word_embeddings", False)), cfg.llm.prune_axis)
    tokenizer = load_tokenizer(cfg.model)
    splits = corpus_splits(cfg.data, tokenizer, cfg.llm.block_size, parse_fractions(cfg.split), cfg.seed)
    if cfg.eval_data:
        splits["eval"] = corpus_splits(cfg.eval_data, tokenizer, cfg.llm.block_size, (0.0, 0.0, 1.0), cfg.seed)["eval"]
    for name in ("calib", "eval") + (("train",) if cfg.pruning.ratio > 0 else ()):
        if len(splits[name]) == 0:
            raise DataError(f"{cfg.data}: the {name} split has no block of {cfg.llm.block_size} tokens; give more "
                            "text, a smaller --block-size or another --split")
    with claimed_output(cfg.out, cfg.force, cfg.resume, input_paths(cfg.flat())):
        work = cfg.out / "work"
        work.mkdir(parents=True, exist_ok=True)
        report = _build_and_measure(cfg, target, info, splits, work, _model_folder(cfg.model, work))
        kind = report["rounding"].get("gguf")
        report["gguf"] = f"{target.name}-{kind}.gguf" if kind else None  # beside the folder: one file for llama.cpp
        with atomic_dir(cfg.out / target.name, replace=True) as tmp:
            for item in (work / report["shipped"]).iterdir():
                (shutil.copytree if item.is_dir() else shutil.copy2)(item, tmp / item.name)
            write_json(tmp / "reference.json", _reference(work / "final", splits["eval"].ids[0]))
            write_language_model_manifest(tmp, cfg, target, info, report["rounding"])
            write_json(tmp / "report.json", report)
            write_text(tmp / "report.md", render(report))
            plot(report, tmp / "report.png")
        if kind:
            os.replace(work / f"model-{kind}.gguf", cfg.out / report["gguf"])
        return report


REFERENCE_PROMPT, REFERENCE_TOKENS = 32, 16


def _reference(folder: Path, block: np.ndarray) -> dict[str, Any]:
    """A held-out prompt and the artifact's greedy continuation on this host (its CPU graph, for a GPU target the
    same weights as the shipped CUDA graph): what the board's runner checks."""
    from edgekit.llm.export import greedy_tokens

    prompt = [int(t) for t in block[:REFERENCE_PROMPT]]
    return {"prompt_ids": prompt, "greedy_tokens": greedy_tokens(folder, prompt, REFERENCE_TOKENS, full_length=True)}


def _model_folder(model: str, work: Path) -> Path:
    """The transformers folder of the model: itself, or the float model a GGUF file holds, written once."""
    if not model.endswith(".gguf"):
        return Path(model)
    from edgekit.llm.from_gguf import folder_name, gguf_to_folder

    console.log(f"  reading {Path(model).name} (GGUF) as a transformers folder …")
    return gguf_to_folder(model, work / folder_name(model))


def _build_and_measure(cfg, target, info, splits, work: Path, model_dir: Path) -> dict[str, Any]:
    from transformers import AutoModelForCausalLM

    from edgekit.llm.export import build_genai
    from edgekit.llm.measure import quality, speeds_side_by_side

    reference = AutoModelForCausalLM.from_pretrained(model_dir, local_files_only=True, dtype="float32").eval()
    for name in ("fp32", "final", "checkpoint", "cuda"):
        shutil.rmtree(work / name, ignore_errors=True)
    for stale in work.glob("model-*.gguf"):
        stale.unlink()
    fp32 = build_genai(model_dir, work / "fp32", "fp32")
    rounding: dict[str, Any] = {}
    pruning: dict[str, Any] = {}
    checkpoint = None
    student, student_dir = reference, model_dir
    if cfg.pruning.ratio > 0:
        student, student_dir = _prune_and_recover(cfg, model_dir, reference, splits, work, pruning)
    if cfg.quant in BITS:
        checkpoint = _quantize(cfg, student_dir, student, splits["calib"].ids[:CALIB_BLOCKS], work, rounding)
        final = build_genai(checkpoint, work / "final", "int4")  # a quantized checkpoint keeps its own bits
    else:
        final = shutil.copytree(work / "pruned-fp32" if pruning else fp32, work / "final")
    shipped = _gpu_variant(target, work, checkpoint if cfg.quant in BITS else student_dir, cfg.quant in BITS)
    evals = splits["eval"].ids[:EVAL_BLOCKS]
    prompt = splits["eval"].ids[0][:min(128, cfg.llm.block_size)].tolist()
    rows = {"fp32": fp32, **({"pruned": work / "pruned-fp32"} if pruning else {}), "final": final}
    console.log(f"  timing {', '.join(rows)} side by side …")
    measured = speeds_side_by_side(rows, prompt, cfg.llm.new_tokens)
    for label, folder in rows.items():
        console.log(f"  measuring {label} ({folder.name}) …")
        measured[label].update({"size_bytes": _size(folder), **quality(folder, reference, evals)})
    return {"target": target.name, "format": "causal-lm", "model": info, "quant": cfg.quant.value,
            "source": str(model_dir.resolve()), "baseline": "../work/fp32",  # what `edgekit bench` compares with
            "execution": "cuda" if shipped else "cpu", "shipped": shipped or "final",
            **({"unverified": GPU_UNVERIFIED} if shipped else {}), "rounding": rounding, "pruning": pruning, "blocks": {k: len(v) for k, v in splits.items()},
            "block_size": cfg.llm.block_size, **measured, "ratios": _ratios(measured)}


GPU_UNVERIFIED = ("the CUDA graph was built here but no CUDA GPU ran it: every figure in this report is of the CPU "
                  "graph with the same weights; `edgekit profile` on the board measures the shipped one")


def _gpu_variant(target, work: Path, source: Path, quantized: bool) -> str | None:
    """A GPU target ships the builder's CUDA variant of the same weights (float16 activations; a quantized
    checkpoint keeps its integers); the CPU graph beside it is what this host can measure."""
    if target.device != "gpu":
        return None
    from edgekit.llm.export import build_genai

    console.log("  building the CUDA variant for the board …")
    build_genai(source, work / "cuda", "int4" if quantized else "fp16", execution="cuda")
    return "cuda"


def _prune_and_recover(cfg, model_dir: Path, reference, splits, work: Path, record: dict):
    from edgekit.llm.prune import prune_and_distill

    student, folder, done = prune_and_distill(model_dir, reference, splits["calib"].ids[:CALIB_BLOCKS],
                                              splits["train"].ids, cfg.pruning.ratio, cfg.llm.recover_minutes,
                                              cfg.llm.recover_lr, cfg.seed, work, cfg.llm.prune_axis)
    record.update(done)
    return student, folder


def _quantize(cfg, model_dir: Path, reference, calib: np.ndarray, work: Path, record: dict) -> Path:
    """The model folder with its decoder linears in edgekit's weight blocks and its head at 8 bits, and the same
    integers as a GGUF file for llama.cpp where its layout is known (`record` says which)."""
    from edgekit.llm import blockwise as bw
    from edgekit.llm.to_gguf import gguf_kind, write_gguf

    bits, head = BITS[cfg.quant], cfg.llm.head_bits
    if cfg.llm.weight_rounding == "gptq":
        console.log(f"  INT{bits} by error compensation on {len(calib)} calibration blocks …")
    # the residual stream rotated where the 8-bit head is the model's own: an INT8 model's inputs, rounded to int8 by
    # the CPU kernels, are its largest error (with a 4-bit head, untying the embedding would cost a table)
    rotated = bits == 8 and head == 8 and _rotated(model_dir, reference, work, record)
    if rotated:
        model_dir, reference = rotated
    # smoothing on at both widths: on SmolLM2-135M it took INT4's KL to FP from 0.138 to 0.087, INT8's from 0.0041
    # to 0.0026 (the CPU kernels quantize every MatMul input to int8, whatever the weights' width)
    quantized = bw.quantize_model(model_dir, reference, calib, bits, cfg.llm.weight_rounding, True, head)
    layers = [n for n in quantized.blocks if n not in (bw.HEAD, bw.EMBED)]
    record.update({"method": cfg.llm.weight_rounding, "bits": bits, "layers": len(layers), "block": bw.BLOCK,
                   "activation_smoothing": bool(quantized.floats), "output_head": quantized.head,
                   "embeddings": quantized.embedding})
    try:
        write_gguf(model_dir, work / f"model-{gguf_kind(bits)}.gguf", quantized.blocks, quantized.floats)
        record["gguf"] = gguf_kind(bits)
    except InputError as exc:
        console.log(f"  no GGUF file: {exc}")
        record["gguf"] = None
    checkpoint = bw.write_checkpoint(model_dir, work / "checkpoint", quantized.blocks, quantized.floats)
    if rotated:
        shutil.rmtree(model_dir)  # a float copy of the whole model: the checkpoint holds what the graph needs
    return checkpoint


def _rotated(model_dir: Path, reference, work: Path, record: dict):
    """(folder, model) of the model with its residual stream rotated (rotate.py), or None where the architecture
    has no rotation rule (`record` says why)."""
    from edgekit.llm.rotate import rotated_copy, why_not_rotated

    reason = why_not_rotated(reference)
    record["rotation"] = "Hadamard within blocks of 32" if reason is None else f"none ({reason})"
    if reason is not None:
        return None
    console.log("  rotating the residual stream (Hadamard within blocks of 32) …")
    return rotated_copy(model_dir, reference, work / "rotated")


def _size(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file() and p.name.startswith("model"))


def _ratios(measured: dict) -> dict[str, float]:
    fp32, final = measured["fp32"], measured["final"]
    return {"size": final["size_bytes"] / fp32["size_bytes"],
            "decode_speedup": final["decode_tok_s"] / fp32["decode_tok_s"],
            "prefill_speedup": final["prefill_tok_s"] / fp32["prefill_tok_s"]}
