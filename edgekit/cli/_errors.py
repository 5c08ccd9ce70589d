"""Known errors become one line on stderr and exit code 2; --debug or EDGEKIT_DEBUG=1 shows the traceback.

SIGINT and SIGTERM raise `Interrupted` (not KeyboardInterrupt, which typer turns into a silent return
value): it unwinds through every `finally`, so temporary folders are removed, then exits 130 / 143.
"""

from __future__ import annotations

import errno
import os
import signal
import sys
from typing import Callable

from edgekit.errors import EdgekitError, describe_os_error

RESUMABLE = ("compress", "distill")


class Interrupted(BaseException):
    """A stop signal; a BaseException so that no `except Exception` in a stage swallows it."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.exit_code = 128 + signum


def debug_enabled() -> bool:
    return os.environ.get("EDGEKIT_DEBUG", "") not in ("", "0")


def _on_signal(signum: int, _frame) -> None:
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, signal.SIG_IGN)  # a second Ctrl-C must not cut the clean-up short
    raise Interrupted(signum)


def install_signal_handlers() -> None:
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, _on_signal)


def run_guarded(app: Callable[[], object]) -> None:
    install_signal_handlers()
    try:
        app()
    except Exception as exc:
        if debug_enabled():
            raise
        disk = disk_error(exc)
        if disk is not None:
            _fail(f"error: {disk}; free space or choose a writable folder, then rerun", 2)
        if not isinstance(exc, EdgekitError):
            raise
        _fail(f"error: {exc}", exc.exit_code)
    except Interrupted as exc:
        _fail(f"interrupted by {exc}; {_kept_note()}", exc.exit_code)
    except KeyboardInterrupt:
        _fail(f"interrupted by SIGINT; {_kept_note()}", 130)


DISK_ERRNOS = {errno.ENOSPC, errno.EFBIG, errno.EDQUOT, errno.EROFS}
DISK_TEXTS = {"no space left": errno.ENOSPC, "file too large": errno.EFBIG, "disk quota": errno.EDQUOT,
              "read-only file system": errno.EROFS}


def disk_error(exc: BaseException) -> str | None:
    """A full, size-limited or read-only disk anywhere in the exception chain, however a library wrapped it."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, OSError) and exc.errno in DISK_ERRNOS:
            return describe_os_error(exc) + (f" writing {exc.filename}" if exc.filename else "")
        text = str(exc).lower()
        for needle, code in DISK_TEXTS.items():
            if needle in text:
                return describe_os_error(OSError(code, needle))
        exc = exc.__cause__ or exc.__context__
    return None


def _kept_note() -> str:
    command = next((a for a in sys.argv[1:] if not a.startswith("-")), "")
    if command in RESUMABLE:
        return "finished stages are kept: rerun with --resume"
    return "nothing half-written was kept"


def _fail(line: str, code: int) -> None:
    sys.stderr.write(line + "\n")
    sys.stderr.flush()
    sys.exit(code)
