"""A folder of images plus preprocess.yaml (size, mean/std, layout, mode) becomes a SampleSet."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from pydantic import BaseModel, ConfigDict, ValidationError, field_validator, model_validator

from edgekit.errors import DataError
from edgekit.data.samples import SampleSet

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".ppm", ".pgm", ".tif", ".tiff", ".webp"}
PREPROCESS_FILE = "preprocess.yaml"


class Preprocess(BaseModel):
    """How raw pixels become model input; recorded in the manifest for the app developer."""

    model_config = ConfigDict(extra="forbid")
    size: tuple[int, int]
    mean: list[float] = [0.0]
    std: list[float] = [1.0]
    layout: str = "NCHW"
    mode: str = "RGB"
    scale: float = 1 / 255
    input: str = "x"

    @field_validator("size")
    @classmethod
    def _size(cls, v: tuple[int, int]) -> tuple[int, int]:
        if min(v) < 1:
            raise ValueError(f"must be two positive sizes [H, W], got {list(v)}")
        return v

    @field_validator("std")
    @classmethod
    def _std(cls, v: list[float]) -> list[float]:
        if not v or any(not (s > 0 and np.isfinite(s)) for s in v):
            raise ValueError(f"must be positive numbers (each channel is divided by it), got {v}")
        return v

    @field_validator("mean")
    @classmethod
    def _mean(cls, v: list[float]) -> list[float]:
        if not v or any(not np.isfinite(m) for m in v):
            raise ValueError(f"must be finite numbers, got {v}")
        return v

    @field_validator("scale")
    @classmethod
    def _scale(cls, v: float) -> float:
        if not (v > 0 and np.isfinite(v)):
            raise ValueError(f"must be a positive number, got {v}")
        return v

    @model_validator(mode="after")
    def _channels(self) -> "Preprocess":
        channels = 3 if self.mode == "RGB" else 1
        for name in ("mean", "std"):
            if len(getattr(self, name)) not in (1, channels):
                raise ValueError(f"'{name}' has {len(getattr(self, name))} values but mode {self.mode} has "
                                 f"{channels} channel(s); give 1 or {channels}")
        return self

    @field_validator("layout")
    @classmethod
    def _layout(cls, v: str) -> str:
        if v not in ("NCHW", "NHWC"):
            raise ValueError("must be NCHW or NHWC")
        return v

    @field_validator("mode")
    @classmethod
    def _mode(cls, v: str) -> str:
        if v not in ("RGB", "L"):
            raise ValueError("must be RGB or L (grayscale)")
        return v


def read_image_folder(path: Path) -> SampleSet:
    from PIL import Image

    spec_file = path / PREPROCESS_FILE
    if not spec_file.is_file():
        spec_file = path.with_suffix(".preprocess.yaml")
    try:
        pre = Preprocess(**load_preprocess(spec_file))
    except ValidationError as exc:
        err = exc.errors()[0]
        where = f"'{'.'.join(map(str, err['loc']))}' " if err["loc"] else ""
        raise DataError(f"{spec_file}: {where}{err['msg'].removeprefix('Value error, ')}; fix {PREPROCESS_FILE}") from exc
    except TypeError as exc:
        raise DataError(f"{spec_file} must be a mapping of settings (size, mean, std, ...); fix {PREPROCESS_FILE}") from exc
    files, labels, classes = _list_images(path)
    if not files:
        raise DataError(f"image folder {path} holds no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
    batch = np.stack([_load_image(Image, f, pre) for f in files])
    return SampleSet(source=str(path), arrays={pre.input: batch},
                     labels=np.asarray(labels, dtype=np.int64) if classes else None,
                     preprocess=pre.model_dump(), label_names=classes or None)


def _list_images(path: Path) -> tuple[list[Path], list[int], list[str]]:
    """Images directly in the folder, or in one subfolder per class (labels from sorted names)."""
    subdirs = sorted(p for p in path.iterdir() if p.is_dir())
    if subdirs:
        files, labels = [], []
        for idx, sub in enumerate(subdirs):
            for f in sorted(sub.iterdir()):
                if f.suffix.lower() in IMAGE_SUFFIXES:
                    files.append(f)
                    labels.append(idx)
        return files, labels, [s.name for s in subdirs]
    files = sorted(f for f in path.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES)
    return files, [], []


def _load_image(image_mod, file: Path, pre: Preprocess) -> np.ndarray:
    try:
        with image_mod.open(file) as img:
            img = img.convert(pre.mode).resize((pre.size[1], pre.size[0]), image_mod.BILINEAR)
            arr = np.asarray(img, dtype=np.float32) * pre.scale
    except OSError as exc:
        raise DataError(f"image {file} cannot be read ({exc}); remove or replace it") from exc
    if arr.ndim == 2:
        arr = arr[..., None]
    arr = (arr - np.asarray(pre.mean, np.float32)) / np.asarray(pre.std, np.float32)
    return arr.transpose(2, 0, 1) if pre.layout == "NCHW" else arr


def load_preprocess(path: Path) -> dict:
    from edgekit.files import read_mapping

    return read_mapping(path, DataError, "preprocessing file")
