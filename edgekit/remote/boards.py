"""Boards by name: a boards.toml inventory, and `edgekit boards check` (reachability and runtimes).

    [boards.pi5]
    host = "192.168.1.20"
    user = "pi"
    target = "raspberry-pi-5"
    python = "/home/pi/venv/bin/python"   # a Python with onnxruntime
    workdir = "/tmp"                       # where temporary bundle folders go
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from edgekit.errors import InputError
from edgekit.remote.ssh import SSH, Board

INVENTORY_PLACES = (Path("boards.toml"), Path.home() / ".config" / "edgekit" / "boards.toml")


class BoardEntry(BaseModel):
    model_config = ConfigDict(extra="forbid")
    host: str
    user: str | None = None
    port: int | None = Field(None, ge=1, le=65535)
    target: str | None = None
    workdir: str = "/tmp"
    python: str = "python3"


def load_inventory(path: Path | None) -> dict[str, Board]:
    """The named boards of `path`, or of ./boards.toml, or of ~/.config/edgekit/boards.toml."""
    if path is None:
        path = next((p for p in INVENTORY_PLACES if p.is_file()), None)
        if path is None:
            return {}
    elif not Path(path).is_file():
        raise InputError(f"inventory {path} does not exist; check the path to boards.toml")
    try:
        raw = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except UnicodeDecodeError as exc:
        raise InputError(f"inventory {path} is not UTF-8 text (byte {exc.start}); save it as UTF-8") from exc
    except tomllib.TOMLDecodeError as exc:
        raise InputError(f"inventory {path} is not valid TOML ({exc}); fix the file") from exc
    table = raw.get("boards", {})
    if not isinstance(table, dict):
        raise InputError(f"inventory {path}: 'boards' must be a table of boards ([boards.NAME] sections), "
                         f"not {type(table).__name__}; see `edgekit boards check --help`")
    boards = {}
    for name, entry in table.items():
        if not isinstance(entry, dict):
            raise InputError(f"inventory {path}: board '{name}' must be a [boards.{name}] table with host = ...; "
                             "fix that entry")
        try:
            boards[name] = Board(name=name, **BoardEntry(**entry).model_dump())
        except (ValidationError, TypeError) as exc:
            raise InputError(f"inventory {path}: board '{name}' is invalid ({_first_error(exc)}); fix that entry") from exc
    return boards


def _first_error(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        err = exc.errors()[0]
        return f"'{'.'.join(map(str, err['loc']))}' {err['msg'].lower()}"
    return str(exc)


def parse_board(spec: str) -> Board:
    """ssh://user@host[:port] → Board (inventory names come with boards.toml)."""
    if not spec.startswith("ssh://"):
        raise InputError(f"--board {spec}: give ssh://user@host[:port]")
    parts = urlsplit(spec)
    try:
        port = parts.port
    except ValueError as exc:
        raise InputError(f"--board {spec}: the port is not a number; give ssh://user@host[:port]") from exc
    if not parts.hostname:
        raise InputError(f"--board {spec}: no host; give ssh://user@host[:port]")
    return Board(name=parts.hostname if not port else f"{parts.hostname}:{port}", host=parts.hostname,
                 user=parts.username, port=port)


def resolve(spec: str, inventory: dict[str, Board]) -> Board:
    """An ssh:// address, or a board named in the inventory."""
    if spec.startswith("ssh://"):
        return parse_board(spec)
    if spec in inventory:
        return inventory[spec]
    known = ", ".join(inventory) or "none (no boards.toml found)"
    raise InputError(f"--board {spec}: give ssh://user@host[:port] or a board name from boards.toml (known: {known})")


# One remote call: architecture, Python and runtime versions, free space in the work dir.
CHECK = r"""
printf 'arch=%s\n' "$(uname -m)"
"$2" -c 'import platform; print("python=" + platform.python_version())' 2>/dev/null || echo "python="
"$2" -c 'import onnxruntime; print("onnxruntime=" + onnxruntime.__version__)' 2>/dev/null || echo "onnxruntime="
"$2" -c 'import tensorrt; print("tensorrt=" + tensorrt.__version__)' 2>/dev/null || echo "tensorrt="
printf 'free_mb=%s\n' "$(df -Pk "$1" 2>/dev/null | awk 'NR==2 {print int($4/1024)}')"
"""


def check_board(board: Board, ssh_config: Path | None, timeout: float = 30) -> dict:
    """Reachability and what the board can run; an unreachable board is a row, not an exception."""
    from edgekit.remote.ssh import BoardError

    try:
        done = SSH(board, ssh_config).run(["bash", "-c", CHECK, "edgekit-check", board.workdir, board.python],
                                          timeout)
    except BoardError as exc:
        return {"board": board.name, "reachable": False, "error": str(exc)}
    facts = dict(line.split("=", 1) for line in done.stdout.decode().splitlines() if "=" in line)
    free = facts.get("free_mb", "")
    return {"board": board.name, "reachable": True, "arch": facts.get("arch") or None,
            "python": facts.get("python") or None, "onnxruntime": facts.get("onnxruntime") or None,
            "tensorrt": facts.get("tensorrt") or None, "free_mb": int(free) if free.isdigit() else None,
            "target": board.target}
