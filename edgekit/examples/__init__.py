"""The built-in examples (MNIST CNNs, the text teacher and its data), made on first use and cached.

The constants and the cache folder the examples share live here, so the example modules need not
import one another for them.
"""

from __future__ import annotations

import os
from pathlib import Path

CACHE_VERSION = "v1"
SPLIT = (0.7, 0.1, 0.2)
SEED = 0


def cache_dir() -> Path:
    root = os.environ.get("EDGEKIT_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "edgekit")
    return Path(root) / "example"
