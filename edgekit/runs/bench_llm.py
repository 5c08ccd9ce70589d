"""`edgekit bench` on a language-model folder (OUT/<target> of a causal LM): the LLM way. Prefill tokens/s at
prompts of 128 and 512 tokens, decode tokens/s, time to first token, peak memory and size, for the artifact
and its FP32 export in the same run; with `--prompts`, greedy continuations against the FP model; with
`--data`, perplexity, KL and top-1 agreement against the FP model on that text.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from edgekit.errors import InputError
from edgekit.progress import console

PREFILL_LENGTHS = (128, 512)
GREEDY_TOKENS = 32


def is_language_model_folder(folder: Path) -> bool:
    return (folder / "genai_config.json").is_file()


def run_llm_bench(folder: Path, data: str | None, prompts_file: str | None, baseline: str | None,
                  new_tokens: int = 128) -> dict[str, Any]:
    from edgekit.llm.corpus import load_tokenizer
    from edgekit.llm.measure import decode_side_by_side

    report = _compress_report(folder)
    _check_runs_here(folder, report)
    base = Path(baseline) if baseline else (folder / report.get("baseline", "../work/fp32")).resolve()
    if not is_language_model_folder(base):
        raise InputError(f"FP32 baseline {base} is not a GenAI folder; give --baseline, the work/fp32 folder "
                         "`edgekit compress` wrote")
    tokenizer = load_tokenizer(folder)
    prompts = _prompts(prompts_file, tokenizer)
    context = _context_length(folder)
    new_tokens = min(new_tokens, context // 4)
    timing = _timing_prompts(prompts, tokenizer, [min(n, context - new_tokens) for n in PREFILL_LENGTHS])
    reference = _reference(report) if (data or prompts_file) else None
    results: dict[str, Any] = {"target": report.get("target", folder.name), "format": "causal-lm",
                               "quant": report.get("quant"), "data": data, "prompts": len(prompts),
                               "prompt_lengths": list(timing)}
    folders = {"fp32": base, "final": folder}
    short = min(timing)
    console.log("  timing decode of fp32 and final side by side …")
    decode = decode_side_by_side(folders, timing[short], new_tokens)
    for label, path in folders.items():
        console.log(f"  measuring {label} ({path}) …")
        results[label] = {**_measure(path, timing, new_tokens, reference, prompts, data, tokenizer,
                                     report.get("block_size", 128)), "decode_tok_s": decode[label]}
    fp32, final = results["fp32"], results["final"]
    results["ratios"] = {"size": final["size_bytes"] / fp32["size_bytes"],
                         "decode_speedup": final["decode_tok_s"] / fp32["decode_tok_s"],
                         **{f"prefill_{n}_speedup": final[f"prefill_{n}_tok_s"] / fp32[f"prefill_{n}_tok_s"]
                            for n in timing}}
    return results


def _check_runs_here(folder: Path, report: dict[str, Any]) -> None:
    """A GPU target's folder holds the CUDA graph; without onnxruntime-genai's CUDA library it cannot run here."""
    import onnxruntime_genai

    providers = json.loads((folder / "genai_config.json").read_text())["model"]["decoder"]["session_options"]
    cuda = any("cuda" in option for option in providers.get("provider_options", []))
    if cuda and not any(Path(onnxruntime_genai.__file__).parent.glob("*onnxruntime-genai-cuda*")):
        raise InputError(f"{folder} holds the CUDA graph for {report.get('target', 'a GPU target')} and this host's "
                         "onnxruntime-genai has no CUDA library: measure it on the board with `edgekit profile`; "
                         "the CPU graph of the same weights was measured in its report.json")


def _compress_report(folder: Path) -> dict[str, Any]:
    path = folder / "report.json"
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise InputError(f"{path} is missing or unreadable; give an OUT/<target> folder written by "
                         "`edgekit compress`") from exc


def _prompts(prompts_file: str | None, tokenizer) -> list[list[int]]:
    if prompts_file is None:
        return []
    path = Path(prompts_file)
    if not path.is_file():
        raise InputError(f"--prompts {prompts_file} does not exist; give a text file with one prompt a line")
    lines = [line.strip() for line in path.read_text(errors="replace").splitlines() if line.strip()]
    ids = [tokenizer(line, add_special_tokens=False)["input_ids"] for line in lines]
    ids = [i for i in ids if i]
    if not ids:
        raise InputError(f"--prompts {prompts_file} holds no prompt; write one prompt a line")
    return ids


def _context_length(folder: Path) -> int:
    config = json.loads((folder / "genai_config.json").read_text())
    return int(config.get("model", {}).get("context_length") or 4096)


def _timing_prompts(prompts: list[list[int]], tokenizer, lengths: list[int]) -> dict[int, list[int]]:
    """Prompts of exactly 128 and 512 tokens (fewer where the model's context is shorter): the user's prompts
    one after another (repeated as needed), or a fixed English text where none are given, so the figures are
    comparable between runs."""
    stream = [t for p in prompts for t in p] or tokenizer(_FILLER, add_special_tokens=False)["input_ids"]
    return {n: (stream * (n // len(stream) + 1))[:n] for n in lengths}


_FILLER = ("The quick brown fox jumps over the lazy dog while the board counts every token it makes. "
           "Small models run on small machines, and each step of a decoder reads every weight once. ")


def _reference(report: dict[str, Any]):
    from transformers import AutoModelForCausalLM

    source = report.get("source")
    if not source or not Path(source).is_dir():
        raise InputError(f"the FP model {source} that `edgekit compress` read is gone; --data and --prompts "
                         "compare against it, so rerun compress or bench without them")
    return AutoModelForCausalLM.from_pretrained(source, local_files_only=True, dtype="float32").eval()


def _measure(path: Path, timing: dict[int, list[int]], new_tokens: int, reference, prompts, data, tokenizer,
             block_size: int) -> dict[str, Any]:
    from edgekit.llm.measure import greedy_match, peak_memory_mib, quality, speed

    size = sum(p.stat().st_size for p in path.iterdir() if p.is_file() and p.name.startswith("model"))
    short, long = timing
    measured = speed(path, timing[short], 1)  # its decode is timed beside the other artifact's
    row = {"size_bytes": size, "ttft_ms": measured["ttft_ms"],
           f"prefill_{short}_tok_s": measured["prefill_tok_s"],
           f"prefill_{long}_tok_s": speed(path, timing[long], 1)["prefill_tok_s"],
           "peak_rss_mib": peak_memory_mib(path, short, new_tokens), "new_tokens": new_tokens}
    if prompts:
        row.update(greedy_match(path, reference, prompts, GREEDY_TOKENS))
    if data:
        from edgekit.llm.corpus import corpus_splits

        blocks = corpus_splits(data, tokenizer, block_size, (0.0, 0.0, 1.0))["eval"].ids[:32]
        if len(blocks) == 0:
            raise InputError(f"--data {data}: no block of {block_size} tokens; give more text")
        row.update(quality(path, reference, blocks))
    return row


def render(results: dict[str, Any]) -> str:
    """The bench table: the artifact against its FP32 export."""
    short, long = results["prompt_lengths"]
    lines = [f"# edgekit bench — `{results['target']}` (causal language model, --quant {results['quant']})", "",
             f"| model | size MiB | TTFT ms | prefill {short} tok/s | prefill {long} tok/s | decode tok/s | peak RSS MiB |"
             " perplexity | KL per token | top-1 agreement | greedy exact |", "|---|" + "---:|" * 10]
    for label in ("fp32", "final"):
        m = results[label]
        cell = lambda key, fmt: format(m[key], fmt) if key in m else "–"  # noqa: E731
        lines.append(f"| {label} | {m['size_bytes'] / 2**20:.2f} | {m['ttft_ms']:.1f} | {m[f'prefill_{short}_tok_s']:.0f} | "
                     f"{m[f'prefill_{long}_tok_s']:.0f} | {m['decode_tok_s']:.1f} | {m['peak_rss_mib']:.0f} | "
                     f"{cell('perplexity', '.3f')} | {cell('kl_per_token', '.2e')} | {cell('top1_agreement', '.4f')} | "
                     f"{cell('greedy_exact_match', '.3f')} |")
    ratios = results["ratios"]
    lines += ["", f"Against FP32: size {ratios['size']:.3f}x, decode {ratios['decode_speedup']:.2f}x, prefill "
              f"({short}) {ratios[f'prefill_{short}_speedup']:.2f}x, ({long}) {ratios[f'prefill_{long}_speedup']:.2f}x; "
              f"{results['final']['new_tokens']} new tokens.", ""]
    return "\n".join(lines)
