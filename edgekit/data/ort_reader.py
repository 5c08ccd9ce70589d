"""The ONNX Runtime calibration protocol: get_next() -> dict | None. Nothing more is needed."""

from __future__ import annotations

from edgekit.data.samples import SampleSet


class SampleReader:
    """Feeds a SampleSet to ORT's calibrators one sample at a time (bounded memory)."""

    def __init__(self, samples: SampleSet, input_names: list[str], limit: int | None = None):
        self.samples = samples
        self.input_names = input_names
        self.limit = limit
        self.rewind()

    def rewind(self) -> None:
        self._it = self.samples.batches(1)
        self._count = 0

    def get_next(self) -> dict | None:
        if self.limit is not None and self._count >= self.limit:
            return None
        item = next(self._it, None)
        if item is None:
            return None
        self._count += 1
        inputs, _ = item
        return {n: inputs[n] for n in self.input_names}

    def __len__(self) -> int:
        return min(len(self.samples), self.limit or len(self.samples))
