"""Text for causal language models: documents read from .txt / .jsonl (or a folder of them), tokenized with the
model's own tokenizer and packed into fixed-length blocks, with training, calibration and evaluation taken
from different documents so no evaluated text was trained or calibrated on.

.txt: documents are separated by blank lines. .jsonl: one document per line, its `text`, or a chat's
`messages` rendered with the tokenizer's chat template (the form the model sees when it is used).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgekit.errors import DataError

SUFFIXES = (".txt", ".jsonl")


@dataclass
class Blocks:
    """[blocks, block_size] token ids of one split, and how many documents they came from."""

    ids: np.ndarray
    documents: int

    def __len__(self) -> int:
        return len(self.ids)


def read_documents(path: str | Path, tokenizer=None) -> list[str]:
    """The documents of a file or folder; chat messages need `tokenizer` (its chat template)."""
    path = Path(path)
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.suffix in SUFFIXES)
        if not files:
            raise DataError(f"{path} holds no .txt or .jsonl files; give a text corpus")
        return [doc for file in files for doc in read_documents(file, tokenizer)]
    if not path.is_file():
        raise DataError(f"text data {path} does not exist; check the path")
    if path.suffix == ".txt":
        text = path.read_text(encoding="utf-8", errors="replace")
        return [d.strip() for d in text.split("\n\n") if d.strip()]
    if path.suffix == ".jsonl":
        return [_document(json.loads(line), path, n, tokenizer) for n, line in _lines(path)]
    raise DataError(f"{path}: text data must be .txt or .jsonl (or a folder of them)")


def _lines(path: Path):
    for number, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
        if line.strip():
            yield number, line


def _document(row, path: Path, line: int, tokenizer) -> str:
    if isinstance(row, dict) and isinstance(row.get("text"), str):
        return row["text"]
    if isinstance(row, dict) and isinstance(row.get("messages"), list):
        if tokenizer is None or not getattr(tokenizer, "chat_template", None):
            raise DataError(f"{path}:{line} holds chat messages and the tokenizer has no chat template; give "
                            "`text` lines, or a model folder whose tokenizer_config.json has one")
        return tokenizer.apply_chat_template(row["messages"], tokenize=False)
    raise DataError(f"{path}:{line}: each line must be a JSON object with `text` or `messages`")


def load_tokenizer(model_dir: str | Path):
    """The model's own tokenizer (transformers, local files only): its folder's, or the one a GGUF file holds."""
    from transformers import AutoTokenizer

    path = Path(model_dir)
    try:
        if path.suffix == ".gguf":
            return AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name, local_files_only=True)
        return AutoTokenizer.from_pretrained(str(model_dir), local_files_only=True)
    except (OSError, ValueError) as exc:
        raise DataError(f"{model_dir} has no tokenizer (tokenizer.json or tokenizer.model); save it with "
                        "tokenizer.save_pretrained(folder)") from exc


def pack(documents: list[str], tokenizer, block_size: int) -> np.ndarray:
    """Each document's ids followed by the end-of-sequence token, concatenated and cut into whole blocks."""
    eos = tokenizer.eos_token_id
    stream: list[int] = []
    for document in documents:
        stream += tokenizer(document, add_special_tokens=False)["input_ids"]
        if eos is not None:
            stream.append(eos)
    count = len(stream) // block_size
    return np.asarray(stream[:count * block_size], np.int64).reshape(count, block_size)


def corpus_splits(path: str | Path, tokenizer, block_size: int, fractions: tuple[float, float, float],
                  seed: int = 0) -> dict[str, Blocks]:
    """{"train", "calib", "eval"}: blocks of disjoint documents (shuffled with `seed`, then cut by `fractions`).
    A corpus of one document is cut along its text instead, still in disjoint stretches."""
    documents = read_documents(path, tokenizer)
    total = pack(documents, tokenizer, block_size)
    if len(total) == 0:
        tokens = sum(len(tokenizer(d, add_special_tokens=False)["input_ids"]) for d in documents)
        raise DataError(f"{path} has {tokens} tokens, fewer than one block of {block_size}; give more text or a "
                        "smaller --block-size")
    names = ("train", "calib", "eval")
    if len(documents) < 3:
        bounds = np.cumsum([0, *[round(f * len(total)) for f in fractions]])
        return {n: Blocks(total[a:b], 1) for n, a, b in zip(names, bounds[:-1], bounds[1:])}
    order = np.random.default_rng(seed).permutation(len(documents))
    bounds = np.cumsum([0, *[round(f * len(documents)) for f in fractions]])
    return {n: Blocks(pack([documents[i] for i in order[a:b]], tokenizer, block_size), int(b - a))
            for n, a, b in zip(names, bounds[:-1], bounds[1:])}
