"""`edgekit pack` and `edgekit verify`: one reproducible .tar.gz per artifact, checked file by file.

The tarball is byte-reproducible: sorted entries, fixed mtimes, owner 0, normalised modes and a
gzip header without name or time, so packing the same folder twice gives the same sha256 and a
hash published for a bundle means something. Verification reads the archive without extracting
it: every file must be listed in manifest.json with its sha256, and nothing else may be there.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import shutil
import tarfile
from pathlib import Path, PurePosixPath

from edgekit.errors import InputError, OutputExistsError
from edgekit.files import json_text, scratch_dir, sha256_file
from edgekit.bundle.manifest import MANIFEST, read_manifest

BUNDLE_FORMAT = "edgekit-bundle/1"
FIXED_MTIME = 0


class BundleError(InputError):
    """A bundle is damaged, tampered with or not a bundle."""


def pack(folder: Path, output: Path | None = None, force: bool = False) -> dict:
    """OUT/<target> → OUT/<target>.tar.gz with the apps, samples, README and an all-files manifest."""
    from edgekit.bundle.apps import render_apps

    folder = Path(folder)
    manifest = _artifact_manifest(folder)
    output = Path(output) if output else folder.parent / f"{folder.name}.tar.gz"
    if output.exists() or output.is_symlink():
        if not force:
            raise OutputExistsError(f"{output} exists; pass --force to replace it or choose --output")
        _check_replaceable_bundle(output)
    with scratch_dir("pack") as tmp:
        root = Path(tmp) / folder.name
        root.mkdir()
        for name in manifest["files"]:
            shutil.copy(folder / name, root / name)
        render_apps(root, manifest)
        files = sorted(p for p in root.rglob("*") if p.is_file())
        bundle_manifest = {**manifest, "format": BUNDLE_FORMAT, "artifact_format": manifest["format"],
                           "files": {p.relative_to(root).as_posix(): {"sha256": sha256_file(p),
                                                                      "bytes": p.stat().st_size}
                                     for p in files}}
        (root / MANIFEST).write_text(json_text(bundle_manifest))
        partial = output.with_name(f".{output.name}.partial")
        output.parent.mkdir(parents=True, exist_ok=True)
        _write_tar(root, partial)
        partial.replace(output)
    return {"bundle": str(output), "sha256": sha256_file(output), "files": len(files) + 1,
            "target": manifest["target"]["name"]}


def _check_replaceable_bundle(output: Path) -> None:
    """--force replaces an earlier bundle only: never a folder, a symlink or a file edgekit did not pack."""
    if output.is_symlink() or not output.is_file():
        raise InputError(f"--force will not replace {output}: it is a folder or a symlink; choose another --output")
    try:
        with tarfile.open(output, "r:gz") as tar:
            first = tar.next()
            name = first.name if first is not None else ""
            if tar.getmember(f"{name.split('/')[0]}/{MANIFEST}") is None:
                raise KeyError(name)
    except (tarfile.TarError, OSError, EOFError, KeyError):
        raise InputError(f"--force will not replace {output}: it is not a bundle edgekit packed; "
                         "remove it yourself or choose another --output") from None


def _artifact_manifest(folder: Path) -> dict:
    """The folder's manifest, after checking that its files are still the ones compress wrote."""
    path = folder / MANIFEST
    manifest = read_manifest(folder)
    _check_manifest_shape(path, manifest, InputError)
    for name, entry in manifest["files"].items():
        if not _plain_name(name):
            raise InputError(f"{path} lists {name!r}, which is not a file name inside {folder}; re-run edgekit compress")
        if not (folder / name).is_file() or (folder / name).is_symlink():
            raise InputError(f"{folder / name} is listed in {MANIFEST} but missing; re-run edgekit compress")
        if sha256_file(folder / name) != entry["sha256"]:
            raise InputError(f"{folder / name} changed since edgekit compress wrote it; re-run edgekit compress")
    reference = "reference.json" if manifest.get("kind") == "causal-lm" else "reference.npz"
    if reference not in manifest["files"]:
        raise InputError(f"{folder} has no {reference} (made by an older edgekit); re-run edgekit compress")
    return manifest


def _plain_name(name: str) -> bool:
    """A name of a file directly in the artifact folder: no folders, no '..', nothing absolute."""
    path = PurePosixPath(name)
    return len(path.parts) == 1 and name not in (".", "..") and "\\" not in name and not path.is_absolute()


def _check_manifest_shape(where, manifest, error: type[Exception]) -> None:
    """A manifest must be an object with `files` ({name: {sha256, ...}}) and `target` ({name, runtime})."""
    problem = None
    if not isinstance(manifest, dict):
        problem = f"is a {type(manifest).__name__}, not an object"
    elif not isinstance(manifest.get("files"), dict) or not all(
            isinstance(e, dict) and isinstance(e.get("sha256"), str) for e in manifest["files"].values()):
        problem = "lacks `files` with a sha256 for each file"
    elif not isinstance(manifest.get("target"), dict) or not isinstance(manifest["target"].get("name"), str):
        problem = "lacks `target` with its name"
    if problem:
        raise error(f"{where}: {MANIFEST} {problem}; pack the artifact again with edgekit pack")


def _write_tar(root: Path, path: Path) -> None:
    with open(path, "wb") as raw, gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=FIXED_MTIME) as gz, \
            tarfile.open(fileobj=gz, mode="w", format=tarfile.PAX_FORMAT) as tar:
        entries = sorted([root, *root.rglob("*")], key=lambda p: p.relative_to(root.parent).as_posix())
        for entry in entries:
            info = tar.gettarinfo(str(entry), arcname=entry.relative_to(root.parent).as_posix())
            info.mtime, info.uid, info.gid, info.uname, info.gname = FIXED_MTIME, 0, 0, "", ""
            executable = entry.is_dir() or entry.stat().st_mode & 0o100
            info.mode = 0o755 if executable else 0o644
            info.pax_headers = {}
            if entry.is_file():
                with open(entry, "rb") as f:
                    tar.addfile(info, f)
            else:
                tar.addfile(info)


def verify(bundle: Path) -> dict:
    """Check every file's sha256 against manifest.json; refuse anything unlisted, missing or unsafe."""
    bundle = Path(bundle)
    if bundle.is_dir():
        raise InputError(f"{bundle} is a folder; pass the .tar.gz that edgekit pack wrote "
                         f"(make one with `edgekit pack {bundle}`)")
    if not bundle.is_file():
        raise InputError(f"{bundle} does not exist; pass the .tar.gz that edgekit pack wrote")
    try:
        with tarfile.open(bundle, "r:gz") as tar:
            listed = tar.getmembers()
            members = {m.name: m for m in listed}
            if len(members) != len(listed):
                twice = next(m.name for i, m in enumerate(listed) if m.name in {n.name for n in listed[:i]})
                raise BundleError(f"{bundle}: {twice!r} appears twice (tar would unpack the last copy, which is "
                                  "not the one checked); do not use it, pack it again")
            top = _check_members(bundle, members.values())
            manifest = _read_manifest(bundle, tar, members, top)
            found = {name[len(top) + 1:]: m for name, m in members.items() if m.isfile()}
            found.pop(MANIFEST, None)
            _check_listing(bundle, manifest, found)
            for name, entry in manifest["files"].items():
                if _member_sha256(tar, found[name]) != entry["sha256"]:
                    raise BundleError(f"{bundle}: {name} does not match its sha256 in {MANIFEST}; "
                                      "the bundle was changed after packing: do not use it, pack it again")
    except (tarfile.TarError, EOFError, OSError, gzip.BadGzipFile) as exc:
        raise BundleError(f"{bundle} is not a readable .tar.gz ({exc}); pack it again") from exc
    return {"bundle": str(bundle), "files": len(manifest["files"]) + 1, "target": manifest["target"]["name"],
            "runtime": manifest["target"]["runtime"], "kind": manifest.get("kind", "tensors"),
            "sha256": sha256_file(bundle), "ok": True}


def _member_sha256(tar, member) -> str:
    """Hash a member in 1 MiB chunks: a bundle may hold large files (or a crafted one, a huge zero file)."""
    digest = hashlib.sha256()
    handle = tar.extractfile(member)
    for chunk in iter(lambda: handle.read(1 << 20), b""):
        digest.update(chunk)
    return digest.hexdigest()


def _check_members(bundle: Path, members) -> str:
    tops = set()
    for m in members:
        path = PurePosixPath(m.name)
        if path.is_absolute() or ".." in path.parts or not (m.isfile() or m.isdir()):
            raise BundleError(f"{bundle}: entry {m.name!r} is unsafe (absolute, '..', link or device); "
                              "do not unpack it")
        tops.add(path.parts[0])
    if len(tops) != 1:
        raise BundleError(f"{bundle} must hold one top folder, found {sorted(tops)}; pack it again")
    return tops.pop()


def _read_manifest(bundle: Path, tar, members: dict, top: str) -> dict:
    member = members.get(f"{top}/{MANIFEST}")
    if member is None or not member.isfile():
        raise BundleError(f"{bundle} has no {top}/{MANIFEST}; it is not an edgekit bundle")
    try:
        manifest = json.load(io.TextIOWrapper(tar.extractfile(member), encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BundleError(f"{bundle}: {MANIFEST} is not valid JSON; pack it again") from exc
    _check_manifest_shape(bundle, manifest, BundleError)
    if manifest.get("format") != BUNDLE_FORMAT:
        raise BundleError(f"{bundle}: {MANIFEST} format is {manifest.get('format')!r}, not {BUNDLE_FORMAT}")
    if not isinstance(manifest["target"].get("runtime"), str):
        raise BundleError(f"{bundle}: {MANIFEST} lacks the target's runtime; pack the artifact again with edgekit pack")
    return manifest


def _check_listing(bundle: Path, manifest: dict, found: dict) -> None:
    listed = set(manifest["files"])
    if missing := sorted(listed - set(found)):
        raise BundleError(f"{bundle}: {missing[0]} is listed in {MANIFEST} but missing; pack it again")
    if extra := sorted(set(found) - listed):
        raise BundleError(f"{bundle}: {extra[0]} is not listed in {MANIFEST}; the bundle was changed after packing")
