"""Read a data spec (.npz, folder of .npz, image folder, text file, example:NAME) into a SampleSet
(a TextSet for text, tokenized once the model is known: `load_for`)."""

from __future__ import annotations

import importlib
import zipfile
from pathlib import Path

import numpy as np

from edgekit.errors import DataError
from edgekit.data.images import PREPROCESS_FILE, read_image_folder
from edgekit.data.samples import SampleSet, model_arrays
from edgekit.data.text import TEXT_SUFFIXES, read_text_file



def load_for(spec: str | Path, input_names: list[str], tokenizer_dir: Path | None = None,
             label2id: dict[str, int] | None = None, max_length: int | None = None) -> SampleSet:
    """Data ready for one model: text tokenized with the model's tokenizer (to `max_length` tokens when
    given), arrays bound to its inputs."""
    from edgekit.data.text import TextSet

    data = load_data(spec)
    if isinstance(data, TextSet) and tokenizer_dir is not None:
        data = data.tokenized(tokenizer_dir, input_names, label2id, max_length)
    return data.bind(input_names)


# Data specs that name a provider by prefix: imported on use, so data/ does not depend on what provides them.
PREFIX_READERS = {"example:": "edgekit.examples.data:load_example_data"}


def load_data(spec: str | Path) -> SampleSet:
    spec = str(spec)
    if spec.startswith("memory:"):
        from edgekit.data.memory import load_memory_data

        return load_memory_data(spec)
    for prefix, entry in PREFIX_READERS.items():
        if spec.startswith(prefix):
            module, function = entry.split(":")
            return getattr(importlib.import_module(module), function)(spec)
    path = Path(spec)
    if not path.exists():
        raise DataError(f"data {spec} does not exist; check the path")
    if path.is_file():
        if path.suffix in TEXT_SUFFIXES:
            return read_text_file(path)
        if path.suffix != ".npz":
            raise DataError(f"data file {spec} is not .npz or text (.jsonl, .csv, .tsv); give an .npz, a text "
                            "file, or a folder of .npz files or of images")
        return _read_npz(path)
    if any(path.glob("*.npz")):
        return _read_npz_folder(path)
    if (path / PREPROCESS_FILE).is_file() or path.with_suffix(".preprocess.yaml").is_file():
        return read_image_folder(path)
    raise DataError(
        f"folder {spec} holds no .npz files and no {PREPROCESS_FILE}; "
        f"add one .npz per sample, or images with a {PREPROCESS_FILE}"
    )


def _open_npz(path: Path) -> dict[str, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as npz:
            return {k: npz[k] for k in npz.files}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise DataError(f"data file {path} is corrupt or not an .npz ({exc}); re-save it with numpy.savez") from exc


def _split_labels(arrays: dict[str, np.ndarray], source: str) -> tuple[dict, np.ndarray | None]:
    labels = arrays.pop("y", None)
    if not arrays:
        raise DataError(f"data {source} holds no input arrays; name them after the model inputs or `x`")
    if labels is not None:
        if labels.dtype.kind not in "iubf":
            raise DataError(f"labels `y` in {source} have dtype {labels.dtype}; give integer class indices "
                            "(0..classes-1), not names or objects")
        if labels.dtype.kind == "f" and not (np.all(np.isfinite(labels)) and np.all(np.mod(labels, 1) == 0)):
            raise DataError(f"labels `y` in {source} must be integer class indices")
        labels = labels.astype(np.int64).reshape(-1)
    return arrays, labels


def _read_npz(path: Path) -> SampleSet:
    arrays, labels = _split_labels(_open_npz(path), str(path))
    lengths = {k: (v.shape[0] if v.ndim else 0) for k, v in arrays.items()}
    n = next(iter(lengths.values()))
    if n == 0 or any(v != n for v in lengths.values()):
        raise DataError(
            f"arrays in {path} must share a sample count on axis 0, got {lengths}; "
            "for varying shapes use a folder with one .npz per sample"
        )
    if labels is not None and len(labels) != n:
        raise DataError(f"{path}: `y` has {len(labels)} labels for {n} samples; give one label per sample")
    return SampleSet(source=str(path), arrays=model_arrays(arrays, str(path)), labels=labels)


def _read_npz_folder(path: Path) -> SampleSet:
    items, labels = [], []
    files = sorted(path.glob("*.npz"))
    for file in files:
        arrays, label = _split_labels(_open_npz(file), str(file))
        items.append(model_arrays(arrays, str(file)))
        labels.append(None if label is None else int(label[0]))
    if any(lbl is None for lbl in labels) and not all(lbl is None for lbl in labels):
        raise DataError(f"some files in {path} have a `y` label and some not; label all or none")
    names = {tuple(sorted(i)) for i in items}
    if len(names) > 1:
        raise DataError(f"files in {path} hold different array names {sorted(names)}; use the same names in all")
    label_arr = None if labels[0] is None else np.asarray(labels, dtype=np.int64)
    return SampleSet(source=str(path), items=items, labels=label_arr)
