"""The `edgekit` command: one small module per subcommand, all thin wrappers over edgekit.api."""

from __future__ import annotations

import os
from typing import Annotated

import typer

from edgekit.cli import bench, boards, compress, demo, distill, engine_report, inspect, pack, profile, prune, targets
from edgekit.cli._errors import run_guarded
from edgekit.progress import console

app = typer.Typer(
    name="edgekit", no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
    help="From a distilled PyTorch student to small, fast, measured INT8 artifacts for edge boards.",
)


@app.callback()
def _root(debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks instead of one-line errors, and where log lines come from.")] = False,
          quiet: Annotated[bool, typer.Option("--quiet", help="No log lines or progress bars: only the summary (or the JSON).")] = False,
          ) -> None:
    if debug:
        os.environ["EDGEKIT_DEBUG"] = "1"
    console.configure(debug=debug or None, quiet=quiet or None)


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
    """Usage errors (a bad value, an unknown option or command, a missing argument) are one line and exit 2.

    typer raises its own exception classes (vendored click in recent releases, the click package in older
    ones); all derive from what `_usage_error_types` collects, so both are caught.
    """
    try:
        code = app(standalone_mode=False, prog_name="edgekit")
    except typer.Exit as exc:
        raise SystemExit(exc.exit_code) from None
    except typer.Abort:
        raise SystemExit(1) from None
    except _usage_error_types() as exc:
        raise SystemExit(_usage_error(exc)) from None
    if isinstance(code, int) and code:
        raise SystemExit(code)


def _usage_error_types() -> tuple[type[BaseException], ...]:
    kinds: list[type[BaseException]] = []
    if hasattr(typer, "TyperException"):
        kinds.append(typer.TyperException)
    try:
        import click

        kinds.append(click.ClickException)
    except ImportError:
        pass
    return tuple(kinds)


def _usage_error(exc) -> int:
    import sys

    ctx = getattr(exc, "ctx", None)
    where = ctx.command_path if ctx is not None else "edgekit"
    message = " ".join(exc.format_message().split()).rstrip(".")
    sys.stderr.write(f"error: {message}; see `{where} --help`\n")
    return getattr(exc, "exit_code", 2) or 2
