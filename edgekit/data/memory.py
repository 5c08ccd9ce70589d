"""In-memory data for the Python API (notebooks, training scripts): arrays or batches become a SampleSet.

Specs look like `memory:data:0` and live for the current process only (models: edgekit.models.memory).
"""

from __future__ import annotations

from typing import Any, Iterable

import numpy as np

from edgekit.errors import DataError

_DATA: dict[str, Any] = {}


def register_data(data) -> str:
    spec = f"memory:data:{len(_DATA)}"
    _DATA[spec] = to_sample_set(data, spec)
    return spec


def load_memory_data(spec: str):
    if spec not in _DATA:
        raise DataError(f"{spec} is not registered in this process; pass the data to edgekit.compress")
    return _DATA[spec]


def to_sample_set(data, source: str):
    """Accept {name: array}, (x, y), or an iterable of such batches (torch tensors or numpy)."""
    from edgekit.data.samples import SampleSet, model_arrays

    if isinstance(data, dict) or (isinstance(data, tuple) and len(data) == 2 and _is_array(data[0])):
        batches: Iterable = [data]
    else:
        batches = data
    inputs: dict[str, list[np.ndarray]] = {}
    labels: list[np.ndarray] = []
    for batch in batches:
        x, y = (batch, None) if isinstance(batch, dict) else (batch[0], batch[1]) if isinstance(batch, (tuple, list)) else (batch, None)
        arrays = {k: _np(v) for k, v in x.items()} if isinstance(x, dict) else {"x": _np(x)}
        for k, v in arrays.items():
            inputs.setdefault(k, []).append(v)
        if y is not None:
            labels.append(_np(y).reshape(-1))
    if not inputs:
        raise DataError("the data given to edgekit.compress holds no batches")
    arrays = model_arrays({k: np.concatenate(v) for k, v in inputs.items()}, "the data given to edgekit.compress")
    y = np.concatenate(labels).astype(np.int64) if labels else None
    return SampleSet(source=source, arrays=arrays, labels=y)


def _is_array(value) -> bool:
    return hasattr(value, "shape")


def _np(value) -> np.ndarray:
    if hasattr(value, "detach"):
        value = value.detach().cpu().numpy()
    return np.asarray(value)
