"""report.json, report.md and a plot of accuracy vs latency vs size across FP32 -> pruned -> INT8."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edgekit.artifact import Artifact
from edgekit.files import write_json, write_text


def build_report(artifact: Artifact, measurements: dict[str, Any], target: str) -> dict[str, Any]:
    stages = [{"name": h.name, "folder": h.folder, "seconds": h.seconds, "settings": h.settings,
               "metrics": {k: v for k, v in h.metrics.items() if k != "models"}}
              for h in artifact.history]
    report: dict[str, Any] = {"target": target, "stages": stages, "timed_on": timed_on()}
    for label, values in measurements.items():
        report[label] = {**values, "stages": [h.name for h in artifact.history] if label == "final" else []}
    fp32, final = report["fp32"], report["final"]
    report["ratios"] = {
        "size": final["size_bytes"] / fp32["size_bytes"],
        "latency_p50": final["latency_ms"]["p50"] / fp32["latency_ms"]["p50"],
        "speedup_p50": fp32["latency_ms"]["p50"] / final["latency_ms"]["p50"],
        "accuracy_drop": (fp32["accuracy"] - final["accuracy"])
        if fp32["accuracy"] is not None and final["accuracy"] is not None else None,
    }
    return report


def timed_on() -> str:
    """Host timings are labelled as such: board numbers come from the board (build_engine.sh, profile)."""
    import platform

    return f"this host ({platform.machine()}), ONNX Runtime CPU"


def write_report(folder: Path, report: dict[str, Any]) -> None:
    write_json(folder / "report.json", report)
    write_text(folder / "report.md", render_markdown(report))
    plot(report, folder / "report.png")
    sensitivity = _export_metrics(report).get("fallback", {}).get("sensitivity")
    if sensitivity:
        plot_sensitivity(sensitivity, folder / "sensitivity.png")


def _export_metrics(report: dict[str, Any]) -> dict[str, Any]:
    return next((s["metrics"] for s in report["stages"] if s["name"] == "export"), {})


def _fmt(value, spec: str = ".2f") -> str:
    return "–" if value is None else format(value, spec)


def render_markdown(report: dict[str, Any]) -> str:
    labels = [k for k in ("fp32", "pruned", "final") if k in report]
    boards = report.get("on_board", {})
    lines = [f"# edgekit report — target `{report['target']}`", "",
             f"Latency timed on {report.get('timed_on', 'this host')}, batch 1"
             + ("; on-board columns from `edgekit profile`." if boards else "."), "",
             "| model | size (KiB) | params | MMACs | p50 ms | p90 ms | p99 ms | accuracy % | agreement | cosine |"
             + "".join(f" on {b} p50 ms |" for b in boards),
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|" + "---:|" * len(boards)]
    for label in labels:
        m = report[label]
        lat = m["latency_ms"]
        lines.append(
            f"| {label} | {m['size_bytes'] / 1024:.1f} | {m['params']:,} | {m['macs'] / 1e6:.2f} | "
            f"{lat['p50']:.3f} | {lat['p90']:.3f} | {lat['p99']:.3f} | {_fmt(m['accuracy'])} | "
            f"{_fmt(m['agreement'], '.4f')} | {_fmt(m['cosine'], '.4f')} |"
            + "".join(f" {b['latency_ms']['p50']:.3f} |" if label == "final" else " – |" for b in boards.values()))
    r = report["ratios"]
    lines += ["", f"Final vs FP32: size ×{r['size']:.3f}, speed-up ×{r['speedup_p50']:.2f} (p50), "
                  f"accuracy drop {_fmt(r['accuracy_drop'])} points.", ""]
    lines += _on_board_section(boards) + _int8_section(report) + ["## Stages", ""]
    for stage in report["stages"]:
        lines += [f"### {stage['folder']} ({stage['seconds']:.1f} s)", "", "| metric | value |", "|---|---|"]
        for key, value in stage["metrics"].items():
            if isinstance(value, (int, float, str)) or value is None:
                lines.append(f"| {key} | {_fmt(value, '.4g') if isinstance(value, float) else value} |")
        lines.append("")
    return "\n".join(lines) + "\n"


def _int8_section(report: dict[str, Any]) -> list[str]:
    """What static INT8 kept of each output, the floor it was held to, and what stayed float and why."""
    export = _export_metrics(report)
    compared = export.get("outputs")
    if not compared:
        return []
    lines = ["## INT8 against its FP32 graph (evaluation split)", "",
             "| output | SQNR dB | worst group SQNR dB | groups (axis) | worst group | decision F1 | top-1 agreement |",
             "|---|---:|---:|---|---:|---:|---:|"]
    for name, r in compared["outputs"].items():
        axis = f"{r['groups']} (axis {r['group_axis']})" if r["group_axis"] is not None else "1 (whole output)"
        lines.append(f"| {name} | {r['sqnr_db']:.2f} | {r['worst_group_sqnr_db']:.2f} | {axis} | {r['worst_group']} | "
                     f"{_fmt(r['decision_f1'], '.4f')} | {_fmt(r.get('top1_agreement'), '.4f')} |")
    fallback = export.get("fallback", {})
    floor = ", ".join(f"{k} {v}" for k, v in fallback.get("floor", {}).items())
    held = "held" if fallback.get("within_floor_on_eval") else "missed"
    lines += ["", f"Floor ({floor}): {held} on the evaluation split."]
    nodes = fallback.get("fallback") or []
    if nodes:
        cost = (f" (batch-1 latency {fallback['latency_ms_all_int8']:.3g} ms all-INT8, "
                f"{fallback['latency_ms_with_fallback']:.3g} ms with them)") if fallback.get("latency_ms_all_int8") else ""
        shown = ", ".join(f"`{n}`" for n in nodes[:12]) + (f" and {len(nodes) - 12} more" if len(nodes) > 12 else "")
        lines.append(f"Kept in FP32 to hold it, most sensitive first: {len(nodes)} nodes{cost}: {shown}.")
    bias = export.get("bias_correction") or {}
    if bias.get("layers"):
        lines.append(f"Bias correction: {bias['layers']} layers, {'kept' if bias['kept'] else 'not kept'} "
                     f"(worst group {_fmt(bias.get('worst_sqnr_db_without'))} -> {_fmt(bias.get('worst_sqnr_db_with'))} dB "
                     "on held-out calibration samples).")
    heads = export.get("concat_heads") or {}
    if heads.get("nodes"):
        lines.append(f"Concatenated output heads {', '.join(f'`{n}`' for n in heads['nodes'])}: "
                     f"{'kept float, a scale per branch' if heads['kept'] else 'quantized (a scale per branch measured no better)'}"
                     f" (worst group {_fmt(heads.get('worst_sqnr_db_shared'))} dB with one scale, "
                     f"{_fmt(heads.get('worst_sqnr_db_separate'))} dB with one per branch).")
    rounding = export.get("rounding") or {}
    if rounding.get("layers"):
        lines.append(f"Learned weight rounding: {rounding['layers']} layers, "
                     f"{'kept' if rounding['kept'] else 'not kept'} (worst group {_fmt(rounding.get('worst_sqnr_db_nearest'))}"
                     f" -> {_fmt(rounding.get('worst_sqnr_db_learned'))} dB on held-out calibration samples).")
    elif rounding.get("why"):
        lines.append(f"Learned weight rounding: not tried ({rounding['why']}).")
    for op, entry in (export.get("float_compute") or {}).items():
        lines.append(f"Float {op} ×{entry['count']}: {entry['reason']}.")
    return lines + [""] + _sensitivity_table(fallback.get("sensitivity"))


def _sensitivity_table(sensitivity: list[dict] | None) -> list[str]:
    """The nodes whose INT8 form added the most error, measured when the floor was missed (sensitivity.png)."""
    if not sensitivity:
        return []
    lines = ["### Per-node sensitivity (all-INT8 graph, calibration split)", "",
             "Error each node's INT8 form adds to its output, beyond what its inputs already carry "
             "(% of the output's energy); plotted in `sensitivity.png`.", "", "| node | added error % |", "|---|---:|"]
    lines += [f"| `{row['node']}` | {row['added_error_pct']:.4g} |" for row in sensitivity]
    return lines + [""]


def _on_board_section(boards: dict[str, Any]) -> list[str]:
    if not boards:
        return []
    lines = ["## On board", "", "| board | machine | p50 ms | p90 ms | p99 ms | per second | peak memory MiB | "
             "top-1 agreement with host | max abs diff | runtime |", "|---|---|---:|---:|---:|---:|---:|---:|---:|---|"]
    for name, b in boards.items():
        lat, agree = b["latency_ms"], b["agreement"]
        runtime = ", ".join(f"{k} {v}" for k, v in b.get("versions", {}).items() if k != "python")
        lines.append(f"| {name} | {b.get('machine', '–')} | {lat['p50']:.3f} | {lat['p90']:.3f} | {lat['p99']:.3f} | "
                     f"{b.get('throughput_per_s', 0):.0f} | {_fmt(b.get('peak_rss_bytes', 0) / 2**20, '.1f')} | "
                     f"{_fmt(agree.get('top1_agreement'), '.4f')} | {agree['max_abs_diff']:.3g} | {runtime} |")
    return lines + [""]


def fold_on_board(folder: Path, result: dict[str, Any]) -> None:
    """Add one board's profile to OUT/<target>'s report (measurements are not in manifest.json)."""
    import json

    report = json.loads((folder / "report.json").read_text())
    report.setdefault("on_board", {})[result["board"]] = {k: v for k, v in result.items() if k != "saved"}
    write_json(folder / "report.json", report)
    if report.get("format") == "causal-lm":
        from edgekit.llm.report import render as render_language_model

        write_text(folder / "report.md", render_language_model(report))
    else:
        write_text(folder / "report.md", render_markdown(report))


def plot(report: dict[str, Any], path: Path) -> None:
    """Accuracy against latency with size as marker area (left), and the four ratios to FP32 (right)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig = plt.figure(figsize=(11, 4.2), dpi=100)
    _tradeoff(report, fig.add_subplot(1, 2, 1))
    _radar(report, fig.add_subplot(1, 2, 2, projection="polar"))
    fig.tight_layout()
    fig.savefig(path, metadata={"Software": None})
    plt.close(fig)


def _quality_key(report: dict[str, Any]) -> str:
    return next((k for k in ("accuracy", "agreement", "cosine") if report["fp32"].get(k) is not None), "cosine")


def _tradeoff(report: dict[str, Any], ax) -> None:
    labels = [k for k in ("fp32", "pruned", "final") if k in report]
    lat = [report[k]["latency_ms"]["p50"] for k in labels]
    size = [report[k]["size_bytes"] / 1024 for k in labels]
    key = _quality_key(report)
    quality = [(report[k][key] or 0.0) * (1 if key == "accuracy" else 100) for k in labels]
    ax.plot(lat, quality, "-", color="0.7", zorder=1)
    ax.scatter(lat, quality, s=[max(30, s / max(size) * 600) for s in size], zorder=2, alpha=0.7)
    for x, y, label, s in zip(lat, quality, labels, size):
        ax.annotate(f"{label}\n{s:.0f} KiB", (x, y), textcoords="offset points", xytext=(8, 4), fontsize=8)
    ax.set_xlabel("latency p50 (ms, batch 1)")
    ax.set_ylabel({"accuracy": "accuracy (%)", "agreement": "top-1 agreement (%)",
                   "cosine": "cosine similarity to FP32 (x100)"}[key])
    ax.set_title(f"edgekit — {report['target']} (marker area ∝ size)", fontsize=10)
    ax.grid(alpha=0.3)


def radar_axes(report: dict[str, Any]) -> dict[str, float | None]:
    """The final model against FP32 on the four things a board trades (higher is better, FP32 = 1): quality
    kept, speed, memory and energy; None where no ratio was measured. Energy comes only from a board that
    reports power (`profile`), and only for the final model, so it has no FP32 figure to divide by: its
    axis says what the board measured instead."""
    fp32, final = report["fp32"], report["final"]
    key = _quality_key(report)
    quality = (final[key] / fp32[key]) if final.get(key) is not None and fp32.get(key) else None
    memory = fp32.get("peak_memory_bytes"), final.get("peak_memory_bytes")
    return {f"{key} kept": quality, "speed-up": fp32["latency_ms"]["p50"] / final["latency_ms"]["p50"],
            "memory saved": memory[0] / memory[1] if all(memory) else None, "energy saved": None}


def _board_energy(report: dict[str, Any]) -> str:
    measured = [f"{b['energy_per_inference_mj']:.3g} mJ" for b in report.get("on_board", {}).values()
                if b.get("energy_per_inference_mj")]
    return f"final on board: {measured[0]}" if measured else "not measured"


def _radar(report: dict[str, Any], ax) -> None:
    import numpy as np

    axes = radar_axes(report)
    angles = np.linspace(0, 2 * np.pi, len(axes), endpoint=False).tolist()
    values = [v if v is not None else float("nan") for v in axes.values()]  # a gap, not a zero
    ax.plot(angles + angles[:1], [1.0] * (len(axes) + 1), "--", color="0.5", label="FP32")
    ax.plot(angles + angles[:1], values + values[:1], "-o", label="final")
    ax.fill(angles + angles[:1], values + values[:1], alpha=0.2)
    ax.set_xticks(angles)
    unmeasured = {k: _board_energy(report) if k == "energy saved" else "not measured" for k in axes}
    ax.set_xticklabels([f"{k}\n{unmeasured[k] if v is None else f'{v:.2f}x'}" for k, v in axes.items()], fontsize=8)
    ax.set_rlabel_position(112)
    ax.tick_params(axis="y", labelsize=6)
    ax.set_title("final vs FP32 (ratios; FP32 = 1)", fontsize=10)
    ax.legend(loc="lower right", fontsize=7, bbox_to_anchor=(1.15, -0.1))


def plot_sensitivity(sensitivity: list[dict], path: Path) -> None:
    """Horizontal bars: the most sensitive nodes first."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [row["node"] for row in sensitivity][::-1]
    values = [row["added_error_pct"] for row in sensitivity][::-1]
    fig, ax = plt.subplots(figsize=(6, 0.3 * len(names) + 1.2), dpi=100)
    ax.barh(names, values, color="tab:red", alpha=0.7)
    ax.set_xlabel("error its INT8 form adds (% of output energy)")
    ax.set_title("per-node INT8 sensitivity (calibration split)", fontsize=10)
    ax.tick_params(axis="y", labelsize=7)
    fig.tight_layout()
    fig.savefig(path, metadata={"Software": None})
    plt.close(fig)
