"""report.md of a causal language model's artifact: against the FP32 export and the FP model, and on boards."""

from __future__ import annotations

import json
from typing import Any


def render(report: dict[str, Any]) -> str:
    """report.md: the artifact against the FP32 export and the FP model, one table."""
    model = report["model"]
    lines = [f"# edgekit report — `{report['target']}` (causal language model)", "",
             f"{model['architecture']}, {model['params']:,} parameters, {model['layers']} layers, "
             f"{model['heads']} heads / {model['kv_heads']} KV heads, vocabulary {model['vocab']}; "
             f"--quant {report['quant']}; {report['execution']}.", "",
             "| model | size MiB | perplexity | FP perplexity | KL per token | top-1 agreement | TTFT ms | "
             "prefill tok/s | decode tok/s |", "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for label in [k for k in ("fp32", "pruned", "final") if k in report]:
        m = report[label]
        lines.append(f"| {label} | {m['size_bytes'] / 2**20:.2f} | {m['perplexity']:.3f} | "
                     f"{m['reference_perplexity']:.3f} | {m['kl_per_token']:.2e} | {m['top1_agreement']:.4f} | "
                     f"{m['ttft_ms']:.1f} | {m['prefill_tok_s']:.0f} | {m['decode_tok_s']:.1f} |")
    lines += ["", f"Held-out text: {report['blocks']['eval']} blocks of {report['block_size']} tokens "
              f"(calibration: {report['blocks']['calib']}, from other documents). INT4: "
              f"{json.dumps(report['rounding']) if report['rounding'] else 'none'}.", ""]
    if report.get("pruning"):
        p = report["pruning"]
        lines += [f"Pruned {p['ratio']:.0%} of the parameters ({p['params_after']:,} of {p['params_before']:,} kept: "
                  f"{p['kept']}), then distilled from the unpruned "
                  f"model for {p['recovery']['steps']} steps ({p['recovery']['tokens']:,} tokens, "
                  f"{p['recovery']['seconds']:.0f} s).", ""]
    if report.get("unverified"):
        lines += [f"Unverified: {report['unverified']}.", ""]
    if report.get("gguf"):
        lines += [f"The same integers for llama.cpp: `{report['gguf']}` (beside this folder).", ""]
    if report.get("on_board"):
        lines += ["## On the board", "", "| board | machine | greedy tokens match the host | TTFT ms | prefill tok/s | "
                  "decode tok/s | peak RSS MiB |", "|---|---|---|---:|---:|---:|---:|"]
        for board, r in report["on_board"].items():
            lines.append(f"| {board} | {r.get('machine')} | {r['check']['reference_match']} | {r['ttft_ms']:.1f} | "
                         f"{r['prefill_tok_s']:.0f} | {r['decode_tok_s']:.1f} | {r['peak_rss_mib']:.0f} |")
        lines.append("")
    return "\n".join(lines)
