"""A training run's files: per-epoch history and settings (checked on --resume), weights as safetensors.

Shared by `distill` for every kind of student; tensors only, so resuming reads them with weights_only=True.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from edgekit.errors import InputError

if TYPE_CHECKING:
    from edgekit.settings import DistillConfig

RUN = "run.json"


def read_history(path: Path) -> list[dict]:
    try:
        history = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise InputError(f"{path} is damaged ({exc}); start again with --force instead of --resume") from exc
    if not isinstance(history, list) or not all(isinstance(r, dict) and isinstance(r.get("validation"), (int, float))
                                                for r in history):
        raise InputError(f"{path} is not a list of epoch records; start again with --force instead of --resume")
    return history


def run_settings(cfg: DistillConfig) -> dict[str, Any]:
    """What shapes the training, recorded at the start: a resumed run must use the same."""
    return {k: v for k, v in cfg.flat().items() if k not in ("out", "device")}


def check_same_settings(cfg: DistillConfig) -> None:
    path = cfg.out / RUN
    try:
        started = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise InputError(f"{path} is missing or damaged, so --resume cannot check the settings; "
                         "start again with --force") from exc
    now = run_settings(cfg)
    changed = sorted(k for k in set(started) | set(now) if started.get(k) != now.get(k))
    if changed:
        name = changed[0]
        raise InputError(f"--resume with --{name.replace('_', '-')} {now.get(name)} but the run started with "
                         f"{started.get(name)}; resume with the same settings, or start again with --force")


def save_weights(module: torch.nn.Module | dict[str, torch.Tensor], path: Path) -> None:
    """A module's state (or a state dict) as safetensors, written beside and renamed into place."""
    from safetensors.torch import save_file

    state = module if isinstance(module, dict) else module.state_dict()
    tensors, seen = {}, set()
    for name, value in state.items():  # a tied head shares the embedding's storage, which safetensors refuses
        tensors[name] = value.detach().clone() if value.data_ptr() in seen else value.detach().contiguous()
        seen.add(value.data_ptr())
    tmp = path.with_name(f".{path.name}.partial")
    save_file(tensors, str(tmp))
    tmp.replace(path)
