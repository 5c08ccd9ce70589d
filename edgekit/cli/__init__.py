"""The `edgekit` command: one small module per subcommand, all thin wrappers over edgekit.api."""

from __future__ import annotations

import os
from typing import Annotated

import typer

from . import bench, boards, compress, demo, distill, engine_report, inspect, pack, profile, prune, targets
from ._errors import run_guarded

app = typer.Typer(
    name="edgekit", no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
    help="From a distilled PyTorch student to small, fast, measured INT8 artifacts for edge boards.",
)


@app.callback()
def _root(debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks instead of one-line errors.")] = False,
          ) -> None:
    if debug:
        os.environ["EDGEKIT_DEBUG"] = "1"


for module in (demo, distill, compress, bench, inspect, engine_report, profile):
    app.command(name=module.NAME, help=module.HELP)(module.command)
app.command(name="pack", help=pack.PACK_HELP)(pack.pack_command)
app.command(name="verify", help=pack.VERIFY_HELP)(pack.verify_command)
app.add_typer(targets.app, name="targets")
app.add_typer(boards.app, name="boards")
app.add_typer(prune.app, name="prune")


def main() -> None:
    run_guarded(_run)


def _run() -> None:
    """typer's standalone mode maps usage errors to exit 2; our errors propagate to run_guarded."""
    import click

    try:
        app(standalone_mode=False)
    except click.exceptions.Exit as exc:
        raise SystemExit(exc.exit_code) from None
    except click.ClickException as exc:
        exc.show()
        raise SystemExit(exc.exit_code) from None
    except click.exceptions.Abort:
        raise SystemExit(1) from None
