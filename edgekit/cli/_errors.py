"""Known errors become one line on stderr and exit code 2; --debug or EDGEKIT_DEBUG=1 shows the traceback."""

from __future__ import annotations

import os
import sys
from typing import Callable

from ..errors import EdgekitError


def debug_enabled() -> bool:
    return os.environ.get("EDGEKIT_DEBUG", "") not in ("", "0")


def run_guarded(app: Callable[[], object]) -> None:
    try:
        app()
    except EdgekitError as exc:
        if debug_enabled():
            raise
        sys.stderr.write(f"error: {exc}\n")
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        sys.stderr.write("interrupted; finished stages are kept: rerun with --resume\n")
        sys.exit(130)
