"""`edgekit pack` and `edgekit verify`: a reproducible bundle for app developers, and its check."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from edgekit.cli._output import emit_json

PACK_HELP = """Pack an artifact folder into a reproducible .tar.gz for app developers.

The bundle holds the model files, manifest.json (sha256 of every file, tensors, preprocessing,
labels, target, versions), reference samples, a README and example apps (Python and C++/CMake).

Example:

  edgekit pack build/raspberry-pi-5          # writes build/raspberry-pi-5.tar.gz
"""

VERIFY_HELP = """Check every file of a bundle against its manifest; a changed byte is refused.

Example:

  edgekit verify build/raspberry-pi-5.tar.gz
"""


def pack_command(
    folder: Annotated[Path, typer.Argument(help="An OUT/<target> folder written by `edgekit compress`.")],
    output: Annotated[Optional[Path], typer.Option(help="Bundle file (default: FOLDER.tar.gz).")] = None,
    force: Annotated[bool, typer.Option("--force", help="Replace an existing bundle file.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    from edgekit.api import pack

    result = pack(folder, output, force)
    if as_json:
        emit_json(result)
    else:
        typer.echo(f"{result['bundle']}: {result['files']} files for {result['target']}, sha256 {result['sha256']}")


def verify_command(
    bundle: Annotated[Path, typer.Argument(help="A .tar.gz written by `edgekit pack`.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    from edgekit.api import verify

    result = verify(bundle)
    if as_json:
        emit_json(result)
    else:
        typer.echo(f"{result['bundle']}: all {result['files']} files match their sha256 ({result['target']})")
