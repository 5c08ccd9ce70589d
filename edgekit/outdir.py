"""Output folders edgekit may write, replace and resume: marked as its own, locked by one run at a time.

`--force` deletes, so it is only allowed on a folder that holds edgekit's marker (a file written when the
folder was first claimed), never on the working directory or a folder above it, one holding an input, or
a symlink. A lock file with the owner's pid keeps two runs out of one folder; a lock whose process is gone
(a killed run) is taken over, and the killed run's half-written `.*.tmp` leftovers are swept then.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
from contextlib import contextmanager
from pathlib import Path
from typing import Iterable, Iterator

from edgekit.errors import InputError, OutputExistsError, describe_os_error
from edgekit.files import sweep_scratch, write_json

MARKER = ".edgekit-output"
LOCK = ".edgekit.lock"


@contextmanager
def claimed_output(out: Path, force: bool, resume: bool, inputs: Iterable[str | Path | None] = (),
                   command: str = "compress") -> Iterator[Path]:
    """Check, lock and mark `out` for one run; with --force (and no --resume) empty it first."""
    out = Path(out)
    check_output(out, force, resume, inputs)
    fresh = not out.exists()
    _create(out)
    owned = False
    try:
        with _locked(out):
            owned = True
            if force and not resume:
                clear_output(out)
            sweep_leftovers(out)
            if not (out / MARKER).is_file():
                write_json(out / MARKER, {"made_by": "edgekit", "command": command})
            yield out
    except BaseException as exc:
        # A folder this run made goes again when the run ends on bad input (nothing in it is worth keeping:
        # the input must change) or before it finished any stage; otherwise finished stages stay for --resume.
        if owned and fresh and (isinstance(exc, InputError) or holds_nothing_finished(out)):
            shutil.rmtree(out, ignore_errors=True)
        raise


def holds_nothing_finished(out: Path) -> bool:
    """Only edgekit's marker, a distill run's settings and empty work/checkpoint folders: nothing that a
    --resume could reuse."""
    for child in out.iterdir():
        if child.name in (MARKER, "run.json"):
            continue
        if child.name in ("work", "checkpoints") and child.is_dir() and not child.is_symlink() \
                and not any(child.iterdir()):
            continue
        return False
    return True


def input_paths(options: dict) -> list[str]:
    """Every setting (by option name) that may name a file or folder of the user's, so --force never deletes one."""
    names = ("model", "data", "weights", "teacher", "teacher_weights", "eval_data", "layer_ratios", "student",
             "student_weights", "recipe", "teacher_cache")
    return [v for v in (options.get(n) for n in names) if isinstance(v, (str, Path))]


def check_output(out: Path, force: bool, resume: bool, inputs: Iterable[str | Path | None] = ()) -> None:
    """Every reason to refuse `out`, as one-line errors that say what to do instead."""
    shown = str(out)
    if out.is_symlink() and not out.exists():
        raise InputError(f"--out {shown} is a symlink to a missing folder; give a real folder path")
    _check_parent(out)
    if not out.exists():
        return
    if not out.is_dir():
        raise InputError(f"--out {shown} is a file; give a folder path")
    if not any(out.iterdir()):
        return  # an empty folder, such as one the user just made, holds nothing to lose
    if not (force or resume):
        raise OutputExistsError(f"output folder {shown} exists; pass --force to replace it or --resume to continue")
    marked = (out / MARKER).is_file()
    if resume and not marked:
        raise InputError(f"--out {shown} was not written by edgekit (no {MARKER} in it), so there is nothing "
                         "to resume; choose another --out")
    if force and not resume:
        _check_replaceable(out, marked, inputs)


def _check_replaceable(out: Path, marked: bool, inputs: Iterable[str | Path | None]) -> None:
    shown = str(out)
    if out.is_symlink():
        raise InputError(f"--force will not replace {shown}: it is a symlink; remove the link or choose another --out")
    real = out.resolve()
    cwd = Path.cwd().resolve()
    if real == cwd or real in cwd.parents:
        raise InputError(f"--force will not replace {shown}: it holds the working directory; choose another --out")
    for given in inputs:
        if given is None or not str(given) or not Path(given).exists():
            continue
        path = Path(given).resolve()
        if path == real or real in path.parents:
            raise InputError(f"--force will not replace {shown}: it holds the input {given}; "
                             "move the input out or choose another --out")
    if not marked:
        raise InputError(f"--force will not replace {shown}: edgekit did not write it (no {MARKER} in it); "
                         "remove it yourself or choose another --out")


def _check_parent(out: Path) -> None:
    """The nearest existing folder above `out` must be a writable folder."""
    parent = out.absolute().parent
    while not parent.exists() and parent != parent.parent:
        if parent.is_symlink():
            raise InputError(f"--out {out}: {parent} is a symlink to a missing folder; give a real folder path")
        parent = parent.parent
    if not parent.is_dir():
        raise InputError(f"--out {out}: {parent} is a file, not a folder; give a folder path")


def _create(out: Path) -> None:
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"cannot create --out {out}: {describe_os_error(exc)}; choose a writable folder") from exc


def clear_output(out: Path) -> None:
    """Empty a claimed folder (keeping its marker and lock) instead of deleting it: the folder may be a mount."""
    for child in out.iterdir():
        if child.name in (MARKER, LOCK):
            continue
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child)
        else:
            child.unlink()


def sweep_leftovers(out: Path) -> None:
    """Half-written `.*.tmp` files and folders a killed run left in OUT and OUT/work; safe under the lock."""
    for folder in (out, out / "work", out / "checkpoints"):
        if not folder.is_dir():
            continue
        for child in folder.iterdir():
            if child.name.startswith(".") and (child.name.endswith(".tmp") or child.name.endswith(".partial")):
                shutil.rmtree(child) if child.is_dir() and not child.is_symlink() else child.unlink()
    sweep_scratch()


@contextmanager
def _locked(out: Path) -> Iterator[None]:
    lock = out / LOCK
    me = {"pid": os.getpid(), "host": socket.gethostname()}
    for _ in range(3):
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            owner = _owner(lock)
            if owner is not None and _alive(owner):
                raise InputError(f"--out {out} is in use by another edgekit run (pid {owner['pid']} on "
                                 f"{owner['host']}, lock {lock}); wait for it or choose another --out") from None
            lock.unlink(missing_ok=True)  # its owner is gone: a killed run
            continue
        except OSError as exc:
            raise InputError(f"cannot write in --out {out}: {describe_os_error(exc)}; choose a writable folder") from exc
        with os.fdopen(fd, "w") as handle:
            json.dump(me, handle)
        break
    else:
        raise InputError(f"could not lock --out {out}; remove {lock} if no edgekit run uses it")
    try:
        yield
    finally:
        if _owner(lock) == me:
            lock.unlink(missing_ok=True)


def _owner(lock: Path) -> dict | None:
    try:
        data = json.loads(lock.read_text())
        return {"pid": int(data["pid"]), "host": str(data["host"])}
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _alive(owner: dict) -> bool:
    """A lock from another host is taken as live: its pid cannot be checked from here."""
    if owner["host"] != socket.gethostname():
        return True
    if owner["pid"] == os.getpid():
        return True
    try:
        os.kill(owner["pid"], 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
