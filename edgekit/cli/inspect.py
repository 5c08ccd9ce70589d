"""`edgekit inspect`: what a model is made of before compressing it."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from edgekit.api import INSPECT_OPTIONS
from edgekit.cli._options import given, with_settings
from edgekit.cli._output import emit_json, start

NAME = "inspect"
HELP = """Show params, MACs, layers and prunable channel groups of a model.

Examples:

  edgekit inspect ./student_dir

  edgekit inspect mypkg.models:build --weights w.safetensors --input-shape 1,3,224,224
"""


@with_settings(INSPECT_OPTIONS)
def command(
    model: Annotated[str, typer.Argument(help="transformers folder, package.module:factory, example:NAME, or .onnx")],
    as_json: Annotated[bool, typer.Option("--json", help="Print as JSON.")] = False,
    **settings: Any,
) -> None:
    from edgekit.api import inspect_model

    start(as_json)
    info = inspect_model(model, **given(settings, INSPECT_OPTIONS))
    if as_json:
        emit_json(info)
        return
    console = Console()
    if info["format"] == "causal-lm":
        _print_causal_lm(console, info)
        return
    console.print(f"[bold]{model}[/]: {info['params']:,} params, {info['macs'] / 1e6:.2f} MMACs per sample")
    if "layers" in info:
        table = Table(title="layers")
        for col in ("name", "type", "in", "out", "groups", "params"):
            table.add_column(col)
        for row in info["layers"]:
            table.add_row(*(str(row[c]) for c in ("name", "type", "in", "out", "groups", "params")))
        console.print(table)
        groups = Table(title="prunable channel groups (pruned together)")
        for col in ("root", "channels", "coupled layers"):
            groups.add_column(col)
        for g in info["prunable_groups"]:
            groups.add_row(g["root"], str(g["channels"]), ", ".join(g["layers"]))
        console.print(groups)


def _print_causal_lm(console, info: dict) -> None:
    params = f"{info['params']:,}" if info.get("params") else "unknown"
    console.print(f"[bold]{info['model']}[/]: {info['architecture']}, {params} params ({info.get('dtype') or '?'})")
    table = Table(title="causal language model")
    table.add_column("field")
    table.add_column("value")
    for key in ("layers", "hidden_size", "intermediate_size", "heads", "kv_heads", "head_dim", "vocab", "context",
                "tied_embeddings", "tokenizer", "exporter"):
        table.add_row(key.replace("_", " "), str(info.get(key)))
    console.print(table)
