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
              f"(calibration: {report['blocks']['calib']}, from other documents). Weight blocks: "
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


def plot(report: dict[str, Any], path) -> None:
    """report.png: perplexity against decode speed with size as marker area (left), and the artifact's ratios to
    the FP32 export (right): what the table says, at a glance, as for the other models."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [k for k in ("fp32", "pruned", "final") if k in report]
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2), dpi=100)
    speed = [report[k]["decode_tok_s"] for k in labels]
    perplexity = [report[k]["perplexity"] for k in labels]
    size = [report[k]["size_bytes"] / 2 ** 20 for k in labels]
    left.scatter(speed, perplexity, s=[max(30, s / max(size) * 600) for s in size], alpha=0.7)
    for x, y, label, s in zip(speed, perplexity, labels, size):
        left.annotate(f"{label}\n{s:.1f} MiB", (x, y), textcoords="offset points", xytext=(8, 4), fontsize=8)
    left.set_xlabel("decode tokens/s")
    left.set_ylabel("perplexity on held-out text")
    left.set_title(f"edgekit — {report['target']} (marker area ∝ size)", fontsize=10)
    left.grid(alpha=0.3)
    fp32, final = report["fp32"], report["final"]
    names = ["size", "decode speed", "prefill speed", "top-1 agreement"]
    values = [final["size_bytes"] / fp32["size_bytes"], final["decode_tok_s"] / fp32["decode_tok_s"],
              final["prefill_tok_s"] / fp32["prefill_tok_s"], final["top1_agreement"]]
    bars = right.bar(names, values, color=["0.6", "C0", "C0", "C2"])
    right.bar_label(bars, fmt="%.2f", fontsize=8)
    right.axhline(1.0, color="0.3", linewidth=0.8)
    right.set_title("final against the FP32 export (x FP32; agreement with the FP model)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, metadata={"Software": None})
    plt.close(fig)
