"""`compress` for a causal language model: weight-only INT4 chosen here (GPTQ or RTN on the calibration text),
exported with a KV cache through the ONNX Runtime GenAI builder, measured against the FP model on held-out
text and against the FP32 export for speed, published as OUT/<target>/ (a GenAI folder) with its report.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from edgekit.data.splits import parse_fractions
from edgekit.errors import DataError, InputError
from edgekit.files import atomic_dir, write_json, write_text
from edgekit.outdir import claimed_output, input_paths
from edgekit.progress import console
from edgekit.settings import CompressConfig, QuantMode
from edgekit.target import Target

EVAL_BLOCKS = 32  # held-out blocks scored (each a prefill of the exported model and a forward of the FP one)
CALIB_BLOCKS = 128  # calibration blocks whose inputs make each layer's Hessian for GPTQ


def run_llm_compress(cfg: CompressConfig, target: Target) -> dict[str, Any]:
    from edgekit.llm.corpus import corpus_splits, load_tokenizer
    from edgekit.llm.info import causal_lm_info

    if target.runtime != "onnxruntime":
        raise InputError(f"--target {target.name}: language models are exported for ONNX Runtime's CPU runtime "
                         "only so far (the GenAI builder's CUDA variant is not checked here); use an arm64, "
                         "raspberry-pi or x86-64 target")
    info = causal_lm_info(cfg.model)
    tokenizer = load_tokenizer(cfg.model)
    splits = corpus_splits(cfg.data, tokenizer, cfg.llm.block_size, parse_fractions(cfg.split), cfg.seed)
    if cfg.eval_data:
        splits["eval"] = corpus_splits(cfg.eval_data, tokenizer, cfg.llm.block_size, (0.0, 0.0, 1.0), cfg.seed)["eval"]
    for name in ("calib", "eval"):
        if len(splits[name]) == 0:
            raise DataError(f"{cfg.data}: the {name} split has no block of {cfg.llm.block_size} tokens; give more "
                            "text, a smaller --block-size or another --split")
    with claimed_output(cfg.out, cfg.force, cfg.resume, input_paths(cfg.flat())):
        work = cfg.out / "work"
        work.mkdir(parents=True, exist_ok=True)
        report = _build_and_measure(cfg, target, info, splits, work)
        with atomic_dir(cfg.out / target.name, replace=True) as tmp:
            for item in (work / "final").iterdir():
                (shutil.copytree if item.is_dir() else shutil.copy2)(item, tmp / item.name)
            write_json(tmp / "report.json", report)
            write_text(tmp / "report.md", render(report))
        return report


def _build_and_measure(cfg, target, info, splits, work: Path) -> dict[str, Any]:
    from transformers import AutoModelForCausalLM

    from edgekit.llm.export import build_genai
    from edgekit.llm.measure import quality, speed

    reference = AutoModelForCausalLM.from_pretrained(cfg.model, local_files_only=True, dtype="float32").eval()
    for name in ("fp32", "final", "int4-checkpoint"):
        shutil.rmtree(work / name, ignore_errors=True)
    fp32 = build_genai(cfg.model, work / "fp32", "fp32")
    rounding: dict[str, Any] = {}
    if cfg.quant is QuantMode.INT4:
        checkpoint = _int4_checkpoint(cfg, reference, splits["calib"].ids[:CALIB_BLOCKS], work / "int4-checkpoint",
                                      rounding)
        from edgekit.llm.int4 import HEAD_AT_8_BITS

        final = build_genai(checkpoint, work / "final", "int4", extra_options=HEAD_AT_8_BITS)
    else:
        final = shutil.copytree(fp32, work / "final")
    evals = splits["eval"].ids[:EVAL_BLOCKS]
    prompt = splits["eval"].ids[0][:min(128, cfg.llm.block_size)].tolist()
    measured = {}
    for label, folder in (("fp32", fp32), ("final", final)):
        console.log(f"  measuring {label} ({folder.name}) …")
        measured[label] = {"size_bytes": _size(folder), **quality(folder, reference, evals),
                           **speed(folder, prompt, cfg.llm.new_tokens)}
    return {"target": target.name, "format": "causal-lm", "model": info, "quant": cfg.quant.value,
            "execution": "cpu", "rounding": rounding, "blocks": {k: len(v) for k, v in splits.items()},
            "block_size": cfg.llm.block_size, **measured, "ratios": _ratios(measured)}


def _int4_checkpoint(cfg, reference, calib: np.ndarray, out: Path, record: dict) -> Path:
    from safetensors.numpy import load_file

    from edgekit.llm.int4 import gptq, layer_hessians, linear_names, round_to_nearest, write_int4_checkpoint

    state = {}
    for file in sorted(Path(cfg.model).glob("*.safetensors")):
        state.update(load_file(str(file)))
    names = linear_names(state)
    if cfg.llm.int4_method == "gptq":
        console.log(f"  INT4 by error compensation: {len(names)} linear layers, {len(calib)} calibration blocks")
        hessians = layer_hessians(reference, calib, names)
        quantized = {n: gptq(state[n].astype(np.float32), hessians[n]) if n in hessians else round_to_nearest(state[n])
                     for n in names}
    else:
        quantized = {n: round_to_nearest(state[n].astype(np.float32)) for n in names}
    record.update({"method": cfg.llm.int4_method, "layers": len(quantized), "block": 32,
                   "output_head": "8-bit (builder, round to nearest)", "embeddings": "float"})
    return write_int4_checkpoint(cfg.model, out, quantized)


def _size(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file() and p.name.startswith("model"))


def _ratios(measured: dict) -> dict[str, float]:
    fp32, final = measured["fp32"], measured["final"]
    return {"size": final["size_bytes"] / fp32["size_bytes"],
            "decode_speedup": final["decode_tok_s"] / fp32["decode_tok_s"],
            "prefill_speedup": final["prefill_tok_s"] / fp32["prefill_tok_s"]}


def render(report: dict[str, Any]) -> str:
    """report.md: the artifact against the FP32 export and the FP model, one table."""
    model = report["model"]
    lines = [f"# edgekit report — `{report['target']}` (causal language model)", "",
             f"{model['architecture']}, {model['params']:,} parameters, {model['layers']} layers, "
             f"{model['heads']} heads / {model['kv_heads']} KV heads, vocabulary {model['vocab']}; "
             f"--quant {report['quant']}; {report['execution']}.", "",
             "| model | size MiB | perplexity | FP perplexity | KL per token | top-1 agreement | TTFT ms | "
             "prefill tok/s | decode tok/s |", "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for label in ("fp32", "final"):
        m = report[label]
        lines.append(f"| {label} | {m['size_bytes'] / 2**20:.2f} | {m['perplexity']:.3f} | "
                     f"{m['reference_perplexity']:.3f} | {m['kl_per_token']:.2e} | {m['top1_agreement']:.4f} | "
                     f"{m['ttft_ms']:.1f} | {m['prefill_tok_s']:.0f} | {m['decode_tok_s']:.1f} |")
    lines += ["", f"Held-out text: {report['blocks']['eval']} blocks of {report['block_size']} tokens "
              f"(calibration: {report['blocks']['calib']}, from other documents). INT4: "
              f"{json.dumps(report['rounding']) if report['rounding'] else 'none'}.", ""]
    return "\n".join(lines)
