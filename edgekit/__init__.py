"""edgekit: from a distilled PyTorch student to small, fast, measured INT8 artifacts for edge boards.

Importing edgekit stays light: torch, onnxruntime and other heavy packages are
imported by the functions that use them.
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["compress", "bench", "inspect_model", "__version__"]


def __getattr__(name: str):
    if name in ("compress", "bench", "inspect_model"):
        from edgekit import api

        return getattr(api, name)
    raise AttributeError(f"module 'edgekit' has no attribute {name!r}")
