"""Shared output helpers: --json prints one JSON document on stdout, otherwise a rich summary."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table

from edgekit.progress import set_quiet


def start(as_json: bool) -> None:
    """--json keeps stdout for the one JSON document, so logs and bars go quiet (--quiet does that too)."""
    if as_json:
        set_quiet(True)


def emit_json(data: Any) -> None:
    from edgekit.api import to_json

    print(to_json(data), end="")


def summary_table(report: dict[str, Any], title: str) -> None:
    table = Table(title=title)
    for col in ("model", "size KiB", "MMACs", "p50 ms", "p99 ms", "accuracy %", "agreement"):
        table.add_column(col, justify="right" if col != "model" else "left")
    for label in ("fp32", "pruned", "final"):
        if label not in report:
            continue
        m = report[label]
        acc = "–" if m["accuracy"] is None else f"{m['accuracy']:.2f}"
        agr = "–" if m["agreement"] is None else f"{m['agreement']:.4f}"
        table.add_row(label, f"{m['size_bytes'] / 1024:.1f}", f"{m['macs'] / 1e6:.2f}",
                      f"{m['latency_ms']['p50']:.3f}", f"{m['latency_ms']['p99']:.3f}", acc, agr)
    Console().print(table)
