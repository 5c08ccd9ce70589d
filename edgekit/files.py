"""Files: atomic writes, content hashes, scratch folders, YAML settings files and the data folders shipped with edgekit."""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator


SCRATCH_PREFIX = "edgekit-"


@contextmanager
def scratch_dir(purpose: str, base: str | None = None) -> Iterator[str]:
    """A temporary folder named after this process (`edgekit-<pid>-<purpose>-*`, the pid zero-padded so
    the path length never varies), removed on exit.

    A run killed with SIGKILL cannot clean up; the pid in the name lets the next run sweep what it left.
    """
    with tempfile.TemporaryDirectory(prefix=f"{SCRATCH_PREFIX}{os.getpid():07d}-{purpose}-", dir=base) as tmp:
        yield tmp


def sweep_scratch() -> None:
    """Remove scratch folders of edgekit processes that no longer run."""
    for base in {tempfile.gettempdir(), "/tmp"}:
        try:
            entries = list(Path(base).glob(f"{SCRATCH_PREFIX}*-*"))
        except OSError:
            continue
        for entry in entries:
            pid = entry.name[len(SCRATCH_PREFIX):].split("-", 1)[0]
            if pid.isdigit() and entry.is_dir() and not entry.is_symlink() and not _pid_alive(int(pid)):
                shutil.rmtree(entry, ignore_errors=True)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def sha256_tree(path: Path) -> str:
    """Hash a file, or a folder's relative names and contents in sorted order."""
    path = Path(path)
    if path.is_file():
        return sha256_file(path)
    digest = hashlib.sha256()
    for item in sorted(p for p in path.rglob("*") if p.is_file()):
        digest.update(str(item.relative_to(path)).encode())
        digest.update(sha256_file(item).encode())
    return digest.hexdigest()


def json_text(data: Any) -> str:
    """Sorted keys so equal data gives equal bytes; NaN and infinities become null (bare NaN is not JSON)."""
    return json.dumps(finite_or_none(data), indent=2, sort_keys=True, default=str, allow_nan=False) + "\n"


def finite_or_none(data: Any) -> Any:
    if isinstance(data, float):
        return data if math.isfinite(data) else None
    if isinstance(data, dict):
        return {k: finite_or_none(v) for k, v in data.items()}
    if isinstance(data, (list, tuple)):
        return [finite_or_none(v) for v in data]
    if hasattr(data, "item") and getattr(data, "ndim", None) == 0:  # numpy scalars
        return finite_or_none(data.item())
    return data


def write_json(path: Path, data: Any) -> None:
    """Write JSON atomically (see json_text)."""
    write_text(path, json_text(data))


def write_text(path: Path, text: str) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@contextmanager
def atomic_dir(final: Path, replace: bool = False) -> Iterator[Path]:
    """Yield a temporary sibling folder; rename it to `final` only on success."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=final.parent, prefix=f".{final.name}.", suffix=".tmp"))
    try:
        yield tmp
        if final.exists():
            if not replace:
                raise FileExistsError(final)
            shutil.rmtree(final)
        os.replace(tmp, final)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def read_mapping(path: Path, error: type[Exception], what: str) -> dict:
    """A YAML file that must hold a mapping, with one-line errors of the caller's type."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise error(f"{what} {path} does not exist; check the path")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except UnicodeDecodeError as exc:
        raise error(f"{what} {path} is not UTF-8 text (byte {exc.start}); save it as UTF-8") from exc
    except yaml.YAMLError as exc:
        raise error(f"{what} {path} is not valid YAML ({' '.join(str(exc).split())[:120]}); fix its syntax") from exc
    if not isinstance(raw, dict):
        raise error(f"{what} {path} must hold a mapping of settings")
    return raw


_PACKAGE = Path(__file__).resolve().parent


def data_dir(name: str) -> Path:
    """Return `targets` or `calibration`: packaged copy first, then the repo's."""
    for candidate in (_PACKAGE / "_data" / name, _PACKAGE.parent / name):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(f"edgekit data folder '{name}' is missing from the installation")


def cache_root() -> Path:
    """edgekit's per-user cache ($EDGEKIT_CACHE, else $XDG_CACHE_HOME/edgekit or ~/.cache/edgekit)."""
    return Path(os.environ.get("EDGEKIT_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "edgekit"))
