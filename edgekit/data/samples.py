"""One in-memory form for every data source: batched arrays or per-sample items."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, replace
from typing import Iterator

import numpy as np

from edgekit.errors import DataError


@dataclass
class SampleSet:
    """Samples on axis 0 of `arrays`, or a list of `items` fed to the model as they are.

    Items exist for models whose inputs vary in shape or have no batch axis;
    they are always run one at a time.
    """

    source: str
    arrays: dict[str, np.ndarray] | None = None
    items: list[dict[str, np.ndarray]] | None = None
    labels: np.ndarray | None = None
    preprocess: dict | None = None
    label_names: list[str] | None = None
    indices: np.ndarray | None = field(default=None, repr=False)

    def __len__(self) -> int:
        if self.items is not None:
            return len(self.items)
        return len(next(iter(self.arrays.values())))

    @property
    def names(self) -> list[str]:
        first = self.items[0] if self.items is not None else self.arrays
        return list(first.keys())

    @property
    def batchable(self) -> bool:
        return self.arrays is not None

    def subset(self, idx: np.ndarray) -> "SampleSet":
        idx = np.asarray(idx, dtype=np.int64)
        base = self.indices if self.indices is not None else np.arange(len(self))
        return SampleSet(
            source=self.source,
            arrays={k: v[idx] for k, v in self.arrays.items()} if self.arrays is not None else None,
            items=[self.items[i] for i in idx] if self.items is not None else None,
            labels=self.labels[idx] if self.labels is not None else None,
            preprocess=self.preprocess,
            label_names=self.label_names,
            indices=base[idx],
        )

    def bind(self, input_names: list[str]) -> "SampleSet":
        """Map data arrays to the model's inputs: by name, or `x` for a one-input model."""
        names = self.names
        if set(input_names) <= set(names):
            mapping = {n: n for n in input_names}
        elif len(input_names) == 1 and "x" in names:
            mapping = {input_names[0]: "x"}
        else:
            raise DataError(
                f"data {self.source} has arrays {names} but the model needs {input_names}; "
                "name the arrays after the model inputs (or `x` for a one-input model)"
            )
        return self._mapped(lambda d: {n: d[src] for n, src in mapping.items()})

    def unbatched(self, whole: set[str]) -> "SampleSet":
        """Items, for a graph with inputs that have no batch axis (a recurrent state such as h0 [4, 1, 64]):
        each sample's array of such an input is fed as it is, the others with a batch axis of 1."""
        if self.arrays is None or not whole:
            return self
        items = [{k: v[i] if k in whole else v[i:i + 1] for k, v in self.arrays.items()} for i in range(len(self))]
        return replace(self, arrays=None, items=items)

    def cast(self, dtypes: dict[str, np.dtype]) -> "SampleSet":
        """Inputs in the dtypes a graph declares (an int32 input is fed int32, not the int64 ids default)."""
        return self._mapped(lambda d: {k: v.astype(dtypes[k], copy=False) if k in dtypes else v for k, v in d.items()})

    def _mapped(self, change) -> "SampleSet":
        """The same samples with `change` applied to the input arrays (or to each item's)."""
        return replace(self, arrays=change(self.arrays) if self.arrays is not None else None,
                       items=[change(i) for i in self.items] if self.items is not None else None)

    def batches(self, batch_size: int, order: np.ndarray | None = None) -> Iterator[tuple[dict, np.ndarray | None]]:
        """Yield (inputs, labels) in `order`; items always come one by one."""
        order = np.arange(len(self)) if order is None else order
        step = batch_size if self.batchable else 1
        for start in range(0, len(order), step):
            idx = order[start:start + step]
            if self.batchable:
                inputs = {k: v[idx] for k, v in self.arrays.items()}
            else:
                inputs = self.items[idx[0]]
            labels = self.labels[idx] if self.labels is not None else None
            yield inputs, labels

    def fingerprint(self) -> str:
        """sha256 over names, shapes and bytes: recorded in manifests as the input hash."""
        digest = hashlib.sha256()
        for inputs, labels in self.batches(1024):
            for name in sorted(inputs):
                arr = np.ascontiguousarray(inputs[name])
                digest.update(name.encode() + str(arr.shape).encode() + arr.tobytes())
            if labels is not None:
                digest.update(np.ascontiguousarray(labels).tobytes())
        return digest.hexdigest()


def stack_outputs(outputs: list[np.ndarray]) -> np.ndarray | list[np.ndarray]:
    """Per-sample outputs as one array, or as a list where their shapes differ (inputs that vary in size
    give outputs that do); the metrics in measure/ take either."""
    if len({o.shape for o in outputs}) <= 1:
        return np.stack(outputs)
    return list(outputs)


def model_arrays(arrays: dict[str, np.ndarray], source: str) -> dict[str, np.ndarray]:
    """Float inputs become float32 (what exported models take); integer ids stay int64."""
    out = {}
    for k, v in arrays.items():
        if np.issubdtype(v.dtype, np.floating):
            out[k] = check_finite(v.astype(np.float32), k, source)
        elif np.issubdtype(v.dtype, np.integer) or v.dtype == bool:
            out[k] = v.astype(np.int64)
        else:
            raise DataError(f"array `{k}` has dtype {v.dtype}; use float or integer arrays")
    return out


def check_finite(array: np.ndarray, name: str, source: str) -> np.ndarray:
    """NaN or infinity in calibration data poisons every range and every metric: refuse it, saying where."""
    bad = ~np.isfinite(array)
    if bad.any():
        index = tuple(int(i) for i in np.argwhere(bad)[0])
        raise DataError(f"array `{name}` in {source} holds {array[index]} at index {list(index)} "
                        f"({int(bad.sum())} non-finite values); give finite numbers")
    return array


def check_label_range(labels: np.ndarray | None, classes: int, source: str) -> None:
    """Labels must index the model's outputs: one-line error naming the data and the range found."""
    if labels is not None and len(labels) and (labels.min() < 0 or labels.max() >= classes):
        raise DataError(f"labels in {source} range {labels.min()}..{labels.max()} but the model has {classes} "
                        f"outputs; labels must be class indices 0..{classes - 1}")
