"""The loaded model every loader returns (examples, factories, transformers folders, ONNX files, memory)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class LoadedModel:
    """A student or teacher ready for the pipeline; `spec` + `weights` rebuild it."""

    spec: str
    kind: str  # example | factory | hf | onnx
    module: object | None = None  # LogitsOnly-wrapped nn.Module in eval mode
    onnx_path: Path | None = None
    input_names: list[str] = field(default_factory=list)
    weights: Path | None = None
    tokenizer: Path | None = None  # folder with tokenizer.json, for text data
    label2id: dict[str, int] | None = None
    input_dtypes: dict[str, str] | None = None  # an ONNX graph's declared input types (numpy names)
    input_ranks: dict[str, int] | None = None  # and ranks

    @property
    def is_onnx(self) -> bool:
        return self.kind == "onnx"

    def data(self, spec: str | Path, max_length: int | None = None):
        """`spec` loaded for this model: text tokenized with its tokenizer, arrays bound to its inputs."""
        from edgekit.data import load_for

        samples = load_for(spec, self.input_names, self.tokenizer, self.label2id, max_length)
        if self.input_ranks and samples.arrays is not None:
            # samples on axis 0, each one already of the input's full rank: that input has no batch axis
            whole = {n for n, rank in self.input_ranks.items() if n in samples.arrays
                     and samples.arrays[n].ndim == rank + 1}
            samples = samples.unbatched(whole)
        return samples.cast(self.input_dtypes) if self.input_dtypes else samples
