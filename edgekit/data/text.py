"""Text data: .jsonl / .csv / .tsv files of `text` (and `label`), tokenized with the model's own tokenizer.

Tokenization reads the model folder's tokenizer.json with the `tokenizers` library, the same file and
library the bundle's board app uses, so host and board turn a sentence into the same ids.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgekit.errors import DataError
from edgekit.data.samples import SampleSet

TEXT_SUFFIXES = {".jsonl", ".csv", ".tsv"}
TOKENIZER_FILE = "tokenizer.json"


@dataclass
class TextSet:
    """Sentences and labels before tokenization; `tokenized` turns them into a SampleSet."""

    source: str
    texts: list[str]
    labels: list | None = None

    def __len__(self) -> int:
        return len(self.texts)

    def bind(self, input_names: list[str]):
        raise DataError(f"data {self.source} is text and the model has no {TOKENIZER_FILE}; "
                        f"save the tokenizer in the model folder (tokenizer.save_pretrained(folder))")

    def tokenized(self, tokenizer_dir: Path, input_names: list[str], label2id: dict[str, int] | None,
                  length: int | None = None) -> SampleSet:
        """Padded to `length` (an exported model's fixed sequence length), else to the longest sentence."""
        tokenizer = load_tokenizer(tokenizer_dir)
        if length is None:
            tokenizer.no_padding()
            tokenizer.no_truncation()
            longest = max(len(e.ids) for e in tokenizer.encode_batch(self.texts))
            length = min(-(-longest // 8) * 8, _max_length(tokenizer_dir))  # a multiple of 8 suits INT8 kernels
        encodings = pad_to(tokenizer, tokenizer_dir, length).encode_batch(self.texts)
        arrays = {"input_ids": np.array([e.ids for e in encodings], np.int64),
                  "attention_mask": np.array([e.attention_mask for e in encodings], np.int64),
                  "token_type_ids": np.array([e.type_ids for e in encodings], np.int64)}
        arrays = {k: v for k, v in arrays.items() if k in input_names or k == "input_ids"}
        names = [n for n, _ in sorted(label2id.items(), key=lambda kv: kv[1])] if label2id else None
        return SampleSet(source=self.source, arrays=arrays, labels=self._label_ids(label2id),
                         preprocess={"tokenizer": TOKENIZER_FILE, "max_length": length}, label_names=names)

    def _label_ids(self, label2id: dict[str, int] | None) -> np.ndarray | None:
        if self.labels is None:
            return None
        if all(isinstance(v, (int, np.integer)) for v in self.labels):
            return np.asarray(self.labels, np.int64)
        names = sorted({str(v) for v in self.labels})
        known = label2id or {}
        missing = [n for n in names if n not in known]
        if missing:
            raise DataError(f"labels {missing[:3]} in {self.source} are not in the model's label2id "
                            f"({sorted(known) or 'none'}); use integer labels or set label2id in config.json")
        return np.asarray([known[str(v)] for v in self.labels], np.int64)


def trim_padding(inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """A training batch of token arrays cut to its longest sentence: padding is masked anyway, and the
    columns nobody reads cost a third of the compute on short sentences. Other inputs pass unchanged."""
    mask = inputs.get("attention_mask")
    if mask is None or mask.ndim != 2:
        return inputs
    longest = int(mask.sum(1).max()) if len(mask) else mask.shape[1]
    if longest == mask.shape[1] or mask[:, longest:].any():
        return inputs
    return {k: (v[:, :longest] if v.ndim == 2 and v.shape[1] == mask.shape[1] else v) for k, v in inputs.items()}


def tokenizer_folder(folder: Path) -> Path | None:
    """`folder` when it holds a tokenizer.json (a text model's folder or artifact), else None."""
    return folder if (Path(folder) / TOKENIZER_FILE).is_file() else None


def copy_tokenizer(source: Path | None, folder: Path) -> None:
    """A text model's tokenizer travels with it: the board app and `bench` tokenize with the same file."""
    import shutil

    for name in (TOKENIZER_FILE, "tokenizer_config.json"):
        if source is not None and (source / name).is_file():
            shutil.copy(source / name, folder / name)


def load_tokenizer(folder: Path):
    from tokenizers import Tokenizer

    path = Path(folder) / TOKENIZER_FILE
    try:
        return Tokenizer.from_file(str(path))
    except Exception as exc:  # the Rust side raises plain Exception for bad files
        raise DataError(f"{path} is not a tokenizer file ({exc}); re-save it with tokenizer.save_pretrained") from exc


def pad_to(tokenizer, folder: Path, length: int):
    """Pad and truncate every sentence to `length` tokens, with the tokenizer's own pad token."""
    pad = _tokenizer_config(folder).get("pad_token") or "[PAD]"
    pad = pad.get("content", "[PAD]") if isinstance(pad, dict) else pad
    pad_id = tokenizer.token_to_id(pad)
    if pad_id is None:
        raise DataError(f"the tokenizer in {folder} has no pad token {pad!r}; set pad_token and re-save it")
    tokenizer.enable_truncation(max_length=length)
    tokenizer.enable_padding(length=length, pad_id=pad_id, pad_token=pad)
    return tokenizer


def _tokenizer_config(folder: Path) -> dict:
    path = Path(folder) / "tokenizer_config.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def _max_length(folder: Path) -> int:
    """The longest input the model takes: its position table, else the tokenizer's limit, else 512."""
    limits = [512]
    config = Path(folder) / "config.json"
    if config.is_file():
        limits.append(int(json.loads(config.read_text()).get("max_position_embeddings", 512)))
    limit = _tokenizer_config(folder).get("model_max_length")
    if isinstance(limit, int) and limit > 0:
        limits.append(limit)
    return min(limits)


def read_text_file(path: Path) -> TextSet:
    try:
        rows = _read_jsonl(path) if path.suffix == ".jsonl" else _read_table(path)
    except UnicodeDecodeError as exc:
        raise DataError(f"{path} is not UTF-8 text (byte {exc.start}); save it as UTF-8") from exc
    except csv.Error as exc:
        raise DataError(f"{path} is not a readable table ({exc}); write one row per line with a `text` column") from exc
    if not rows:
        raise DataError(f"{path} holds no rows; give one sentence per line")
    if any("text" not in r or not isinstance(r["text"], str) for r in rows):
        raise DataError(f"every row of {path} needs a `text` string; name the column `text`")
    has_label = ["label" in r and r["label"] not in ("", None) for r in rows]
    if any(has_label) and not all(has_label):
        raise DataError(f"some rows of {path} have a `label` and some not; label all or none")
    labels = [_as_label(r["label"]) for r in rows] if all(has_label) else None
    return TextSet(source=str(path), texts=[r["text"] for r in rows], labels=labels)


def _read_jsonl(path: Path) -> list[dict]:
    rows = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(f"{path} line {number} is not JSON ({exc.msg}); write one object per line") from exc
        if not isinstance(row, dict):
            raise DataError(f"{path} line {number} is not an object; write {{\"text\": ..., \"label\": ...}}")
        rows.append(row)
    return rows


def _read_table(path: Path) -> list[dict]:
    with path.open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle, delimiter="\t" if path.suffix == ".tsv" else ","))


def _as_label(value):
    """Integer class indices stay integers (also as CSV strings); anything else is a class name."""
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int) or (isinstance(value, str) and value.strip().lstrip("-").isdigit()):
        return int(value)
    return str(value)
