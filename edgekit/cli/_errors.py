"""Known errors become one line on stderr and exit code 2; --debug or EDGEKIT_DEBUG=1 shows the traceback.

SIGINT and SIGTERM raise `Interrupted` (not KeyboardInterrupt, which typer turns into a silent return
value): it unwinds through every `finally`, so temporary folders are removed, then exits 130 / 143.
"""

from __future__ import annotations

import os
import signal
import sys
from typing import Callable

from ..errors import EdgekitError

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
    except EdgekitError as exc:
        if debug_enabled():
            raise
        _fail(f"error: {exc}", exc.exit_code)
    except Interrupted as exc:
        _fail(f"interrupted by {exc}; {_kept_note()}", exc.exit_code)
    except KeyboardInterrupt:
        _fail(f"interrupted by SIGINT; {_kept_note()}", 130)
    except OSError as exc:
        if debug_enabled() or exc.errno is None:
            raise
        from ..outdir import describe_os_error

        where = f" ({exc.filename})" if exc.filename else ""
        _fail(f"error: {describe_os_error(exc)}{where}; free space or choose a writable folder, then rerun", 2)


def _kept_note() -> str:
    command = next((a for a in sys.argv[1:] if not a.startswith("-")), "")
    if command in RESUMABLE:
        return "finished stages are kept: rerun with --resume"
    return "nothing half-written was kept"


def _fail(line: str, code: int) -> None:
    sys.stderr.write(line + "\n")
    sys.stderr.flush()
    sys.exit(code)
