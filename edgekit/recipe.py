"""Validated settings of `compress` and `distill`; the CLI and the Python API both build these."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from edgekit.errors import InputError


class _Training(BaseModel):
    """Distillation settings `compress` (for QAD) and `distill` share, so both validate them alike."""

    model_config = ConfigDict(extra="forbid")
    teacher_weights: str | None = None
    temperature: float = Field(4.0, gt=0)
    alpha: float = Field(0.5, ge=0, le=1)
    alpha_end: float | None = Field(None, ge=0, le=1)
    patience: int = Field(0, ge=0)
    feature_kd: list[str] | None = None
    feature_weight: float = Field(1.0, ge=0)
    attention_kd: float = Field(0.0, ge=0)
    batch_size: int = Field(64, ge=1)
    split: str = "0.7,0.1,0.2"
    seed: int = 0
    force: bool = False
    resume: bool = False


class CompressConfig(_Training):
    model: str
    data: str
    target: str = "arm64"
    out: Path
    weights: str | None = None
    teacher: str | None = None
    eval_data: str | None = None
    prune: float = 0.0
    protect: list[str] | None = None
    importance: Literal["l1", "l2", "bn-scale", "taylor"] = "l1"
    global_prune: bool = False
    min_channels: int = Field(8, ge=1)
    max_layer_ratio: float = Field(0.9, gt=0, lt=1)
    layer_ratios: str | dict[str, float] | None = None
    prune_steps: int = Field(1, ge=1)
    finetune_epochs: int = Field(1, ge=0)
    max_accuracy_drop: float | None = Field(None, ge=0)
    quant: Literal["qad", "static", "dynamic", "none"] = "qad"
    calib: Literal["minmax", "percentile", "entropy", "mse", "auto"] = "minmax"
    calibrator: Literal["edgekit", "nncf"] = "edgekit"
    epochs: int = Field(6, ge=1)
    lr: float = Field(3e-3, gt=0)
    learn_scales: bool = False

    @field_validator("prune")
    @classmethod
    def _ratio(cls, v: float) -> float:
        if not 0.0 <= v < 1.0:
            raise ValueError(f"--prune {v} is outside [0, 1); give a fraction of channels such as 0.5")
        return v


class DistillConfig(_Training):
    teacher: str
    student: str
    data: str
    out: Path
    student_weights: str | None = None
    epochs: int = Field(10, ge=1)
    lr: float = Field(1e-3, gt=0)
    accumulate: int = Field(1, ge=1)
    curriculum: float | None = Field(None, gt=0, le=1)
    precision: Literal["fp32", "bf16"] = "fp32"
    device: Literal["auto", "cpu", "cuda"] = "auto"


def make_config(**options) -> CompressConfig:
    return validated(CompressConfig, options)


def validated(model: type[BaseModel], options: dict):
    """Build a config, turning validation errors into one-line InputErrors named after the option."""
    try:
        return model(**options)
    except ValidationError as exc:
        err = exc.errors()[0]
        name = "--" + str(err["loc"][0]).replace("_", "-") if err["loc"] else "option"
        msg = err["msg"].removeprefix("Value error, ")
        raise InputError(f"{name}: {msg}" if not msg.startswith("--") else msg) from exc


def load_layer_ratios(value: str | dict[str, float] | None) -> dict[str, float] | None:
    """Per-layer ratios: a dict, or the layer-ratios.json written by `edgekit prune scan`."""
    import json

    if value is None or isinstance(value, dict):
        return value
    path = Path(value)
    if not path.is_file():
        raise InputError(f"--layer-ratios {value} does not exist; run `edgekit prune scan` to make one")
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise InputError(f"--layer-ratios {value} is not valid JSON ({exc}); regenerate it") from exc
    if not isinstance(data, dict) or not all(isinstance(v, (int, float)) for v in data.values()):
        raise InputError(f"--layer-ratios {value} must map layer names to ratios")
    return {k: float(v) for k, v in data.items()}


def load_recipe(path: Path) -> dict:
    """Settings from a YAML recipe; unknown keys are reported when the config is built."""
    from edgekit.files import read_mapping

    return read_mapping(path, InputError, "recipe")
