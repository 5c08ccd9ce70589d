"""Read a YAML file that must hold a mapping, with one-line errors of the caller's type."""

from __future__ import annotations

from pathlib import Path

import yaml

from edgekit.errors import EdgekitError


def read_mapping(path: Path, error: type[EdgekitError], what: str) -> dict:
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
