"""The built-in examples (MNIST CNNs, the text teacher and its data), made on first use and cached.

The constants and the cache folder the examples share live here, so the example modules need not
import one another for them.
"""

from __future__ import annotations

from pathlib import Path

CACHE_VERSION = "v1"
SPLIT = (0.7, 0.1, 0.2)
SEED = 0


def cache_dir() -> Path:
    from edgekit.files import cache_root

    return cache_root() / "example"
