"""In-memory models for the Python API (notebooks, training scripts).

A module is kept as a pristine deep copy and every stage gets a fresh copy
of it, exactly as a spec on disk is rebuilt. Specs look like `memory:model:0`
and live for the current process only.
"""

from __future__ import annotations

import copy
from typing import Any

from edgekit.errors import ModelLoadError

_MODELS: dict[str, Any] = {}


def register_model(module) -> str:
    spec = f"memory:model:{len(_MODELS)}"
    _MODELS[spec] = copy.deepcopy(module).eval()
    return spec


def load_memory_model(spec: str):
    from edgekit.models.base import LoadedModel
    from edgekit.models.wrappers import LogitsOnly, forward_input_names

    if spec not in _MODELS:
        raise ModelLoadError(f"{spec} is not registered in this process; pass the nn.Module to edgekit.compress")
    module = copy.deepcopy(_MODELS[spec])
    names = forward_input_names(module)
    return LoadedModel(spec=spec, kind="memory", module=LogitsOnly(module, names).eval(), input_names=names)
