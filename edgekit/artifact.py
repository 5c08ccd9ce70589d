"""The record that travels between stages: files on disk plus what was done to them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from edgekit.errors import StageError
from edgekit.files import write_json

Format = Literal["torch", "onnx", "onnx-qdq", "onnx-dynamic", "ort", "tensorrt"]
RECORD = "artifact.json"


class StageRecord(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    folder: str
    key: str
    settings: dict[str, Any] = {}
    metrics: dict[str, Any] = {}
    seconds: float = 0.0


class Artifact(BaseModel):
    """A model in one format plus its history; `files` are relative to `folder`.

    Torch artifacts are rebuilt from `source_spec` (fresh build), the pruning
    plan and safetensors weights, so nothing pickled is ever loaded.
    """

    model_config = ConfigDict(extra="forbid")
    format: Format
    folder: str
    files: dict[str, str] = {}
    source_spec: str
    source_weights: str | None = None
    input_names: list[str]
    bn_folded: bool = False
    history: list[StageRecord] = Field(default_factory=list)

    def path(self, role: str) -> Path:
        return Path(self.folder) / self.files[role]

    def has(self, role: str) -> bool:
        return role in self.files

    def save(self, folder: Path) -> None:
        """The record names its folder by its own name only, so a copied or moved OUT resumes from itself."""
        record = json.loads(self.model_dump_json())
        record["folder"] = Path(self.folder).name
        write_json(Path(folder) / RECORD, record)

    @classmethod
    def load(cls, folder: Path) -> "Artifact":
        """Read a stage record and point it at the folder it was read from; refuse one written for another."""
        folder = Path(folder)
        try:
            artifact = cls.model_validate_json((folder / RECORD).read_text())
        except (OSError, ValueError) as exc:
            raise StageError(f"{folder / RECORD} is unreadable or corrupt; "
                             "delete that stage folder or rerun without --resume") from exc
        own = artifact.history[-1].folder if artifact.history else artifact.folder
        if Path(artifact.folder).is_absolute() or artifact.folder != folder.name or own != folder.name:
            raise StageError(f"{folder / RECORD} was written for another folder ({artifact.folder}); "
                             "delete that stage folder or rerun without --resume")
        bad = [name for name in artifact.files.values() if Path(name).is_absolute() or ".." in Path(name).parts]
        if bad:
            raise StageError(f"{folder / RECORD} names files outside its folder ({bad[0]}); "
                             "delete that stage folder or rerun without --resume")
        return artifact.model_copy(update={"folder": str(folder)})

    def derive(self, folder: Path, fmt: Format, files: dict[str, str], **changes: Any) -> "Artifact":
        """A new artifact in `folder` that keeps this one's source and history."""
        data = self.model_dump()
        data.update(format=fmt, folder=str(folder), files=files, **changes)
        return Artifact(**data)
