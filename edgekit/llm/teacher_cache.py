"""Offline distillation: the teacher runs once over the text and its top-k next-token logits go to disk in shards.

A 7-8B teacher and a 1.5B student then need not share one machine's memory: the cache is written where the
teacher fits (`distill --cache-only`) and read where the student trains (`distill --teacher CACHE/<key>`). Each
cache sits in its own folder named by a key: the hashes of the teacher's files, of the token blocks (which is the
data as this tokenizer cut it) and of the tokenizer's files, with k. A changed teacher, corpus, tokenizer or
split never reads another run's targets. Besides the top-k (sorted, float16 logits and int32 token ids per
position), each position keeps the teacher's exact log-probability of the text's own next token, so the
teacher's perplexity is known without it.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgekit.errors import InputError

MANIFEST = "teacher-cache.json"
SHARD_BLOCKS = 64  # blocks per shard file
FORMAT = 1
TOKENIZER_PARTS = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model", "vocab.json", "merges.txt",
                   "special_tokens_map.json", "chat_template.jinja")
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".gguf", ".pt", ".pth")


@dataclass
class Targets:
    """The teacher's top-k at every predicting position of one split: values/indices [blocks, length-1, k],
    target_logprob [blocks, length-1] (log p of the actual next token at temperature 1)."""

    values: np.ndarray
    indices: np.ndarray
    target_logprob: np.ndarray

    def __len__(self) -> int:
        return len(self.values)

    def top1(self) -> np.ndarray:
        return self.indices[..., 0]


def is_teacher_cache(spec: str | Path) -> bool:
    return (Path(spec) / MANIFEST).is_file()


def file_hash(paths: list[Path]) -> str:
    """sha256 over the names and bytes of `paths` (read in 8 MiB pieces: a teacher's weights can be many GB)."""
    digest = hashlib.sha256()
    for path in sorted(paths, key=lambda p: p.name):
        digest.update(path.name.encode() + b"\0")
        with path.open("rb") as handle:
            while piece := handle.read(8 << 20):
                digest.update(piece)
    return digest.hexdigest()


def teacher_hash(folder: Path) -> str:
    files = [p for p in folder.iterdir() if p.is_file() and (p.suffix in WEIGHT_SUFFIXES or p.name == "config.json")]
    return file_hash(files)


def tokenizer_hash(folder: Path) -> str:
    return file_hash([folder / n for n in TOKENIZER_PARTS if (folder / n).is_file()])


def data_hash(splits: dict[str, np.ndarray]) -> str:
    digest = hashlib.sha256()
    for name in sorted(splits):
        ids = np.ascontiguousarray(splits[name], np.int64)
        digest.update(f"{name}:{ids.shape}".encode())
        digest.update(ids.tobytes())
    return digest.hexdigest()


def cache_key(teacher: str, data: str, tokenizer: str, top_k: int) -> str:
    text = json.dumps({"format": FORMAT, "teacher": teacher, "data": data, "tokenizer": tokenizer, "top_k": top_k},
                      sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:20]


def write_cache(root: Path, teacher, teacher_dir: Path, tokenizer_dir: Path, splits: dict[str, np.ndarray],
                top_k: int, batch: int = 8, progress=None) -> Path:
    """ROOT/<key>/ for these blocks: reused when it is already there, else the teacher runs over every split
    (written to a temporary sibling and renamed into place, so a stopped run leaves no half cache)."""
    from edgekit.files import atomic_dir

    hashes = {"teacher": teacher_hash(teacher_dir), "data": data_hash(splits), "tokenizer": tokenizer_hash(tokenizer_dir)}
    key = cache_key(hashes["teacher"], hashes["data"], hashes["tokenizer"], top_k)
    folder = Path(root) / key
    if is_teacher_cache(folder):
        return folder
    with atomic_dir(folder, replace=True) as tmp:
        for name, ids in splits.items():
            _write_split(tmp, name, teacher, ids, top_k, batch, progress)
        (tmp / "tokenizer").mkdir()
        copy_tokenizer_files(tokenizer_dir, tmp / "tokenizer")
        manifest = {"format": FORMAT, "key": key, "top_k": top_k, **hashes, "teacher_path": str(teacher_dir),
                    "vocab": int(teacher.config.vocab_size), "block_size": int(next(iter(splits.values())).shape[1]),
                    "splits": {n: int(len(ids)) for n, ids in splits.items()}}
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=1))
    return folder


def copy_tokenizer_files(source: Path, folder: Path) -> None:
    """Every tokenizer file a transformers folder may hold (the cache and the distilled student carry the
    teacher's)."""
    for part in TOKENIZER_PARTS:
        if (source / part).is_file():
            shutil.copy2(source / part, folder / part)


def _write_split(folder: Path, name: str, teacher, ids: np.ndarray, top_k: int, batch: int, progress) -> None:
    import torch
    from safetensors.numpy import save_file

    for shard, start in enumerate(range(0, len(ids), SHARD_BLOCKS)):
        part = ids[start:start + SHARD_BLOCKS]
        pieces = [_top_k(teacher, torch.from_numpy(part[s:s + batch]), top_k) for s in range(0, len(part), batch)]
        save_file({k: np.concatenate([p[k] for p in pieces]) for k in pieces[0]},
                  str(folder / f"{name}-{shard:05d}.safetensors"))
        if progress:
            progress(len(part))


def _top_k(teacher, ids, top_k: int) -> dict[str, np.ndarray]:
    import torch

    with torch.no_grad():
        logits = teacher(ids).logits[:, :-1].float()
    values, indices = torch.topk(logits, top_k, dim=-1)
    logprob = torch.log_softmax(logits, -1).gather(-1, ids[:, 1:, None])[..., 0]
    return {"values": values.half().numpy(), "indices": indices.int().numpy(), "target_logprob": logprob.numpy()}


def read_manifest(folder: Path) -> dict:
    try:
        manifest = json.loads((Path(folder) / MANIFEST).read_text())
    except (OSError, ValueError) as exc:
        raise InputError(f"{folder} is not a readable teacher cache ({exc}); write it again with --cache-only") from exc
    if manifest.get("format") != FORMAT:
        raise InputError(f"{folder} is a teacher cache of format {manifest.get('format')}, this edgekit reads "
                         f"{FORMAT}; write it again with --cache-only")
    return manifest


def check_matches(folder: Path, splits: dict[str, np.ndarray]) -> dict:
    """The manifest, when the cache was made from exactly these blocks; a one-line error otherwise."""
    manifest = read_manifest(folder)
    if data_hash(splits) != manifest["data"]:
        raise InputError(f"--data gives other token blocks than the teacher cache {folder} was made from; give the "
                         f"same corpus, --block-size ({manifest['block_size']}), --split and --seed, or write a new "
                         "cache")
    return manifest


def read_split(folder: Path, name: str) -> Targets:
    from safetensors.numpy import load_file

    shards = sorted(Path(folder).glob(f"{name}-*.safetensors"))
    if not shards:
        raise InputError(f"teacher cache {folder} has no {name} shards; it is damaged: write it again with --cache-only")
    parts = [load_file(str(s)) for s in shards]
    return Targets(*(np.concatenate([p[k] for p in parts]) for k in ("values", "indices", "target_logprob")))
