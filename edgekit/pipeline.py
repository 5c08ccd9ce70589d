"""Ordered stages, each writing a numbered folder; finished stages are reused on --resume."""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Protocol

from edgekit.artifact import RECORD, Artifact, StageRecord
from edgekit.errors import StageError
from edgekit.files import atomic_dir
from edgekit.progress import console, stage as stage_area


class Stage(Protocol):
    name: str
    accepts: tuple[str, ...]

    def settings(self) -> dict[str, Any]: ...

    # optional: def check(self, ctx, artifact) -> None, raising InputError for inputs the stage cannot take

    def run(self, ctx: "Context", artifact: Artifact, out: Path) -> tuple[Artifact, dict[str, Any]]: ...


@dataclass
class Context:
    """What every stage may read: target, data splits, teacher, seed, and a shared cache."""

    target: Any
    splits: Any
    seed: int
    work: Path
    teacher: Any = None
    student: Any = None  # the student module as loaded, for checks (stages rebuild their own from the artifact)
    cache: dict[str, Any] = field(default_factory=dict)


def stage_key(stage: Stage, artifact: Artifact) -> str:
    """Hash of the stage settings and its input record: a changed input reruns the stage.

    The input's folder enters by name only, so an OUT folder copied or moved elsewhere keeps its keys."""
    record = artifact.model_dump(exclude={"history"})
    record["folder"] = Path(artifact.folder).name
    payload = json.dumps({"stage": stage.name, "settings": stage.settings(),
                          "input": record,
                          "history": [h.key for h in artifact.history]}, sort_keys=True, default=str)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def check_stages(stages: list[Stage], ctx: Context, artifact: Artifact) -> None:
    """Every stage's own check of its inputs, before any stage runs (so bad input writes nothing)."""
    for stage in stages:
        check = getattr(stage, "check", None)
        if check is not None:
            check(ctx, artifact)


def run_stages(stages: list[Stage], ctx: Context, artifact: Artifact, work: Path,
               resume: bool = False, on_stage: Callable[[str, str], None] | None = None) -> Artifact:
    for index, stage in enumerate(stages, start=1):
        if artifact.format not in stage.accepts:
            raise StageError(
                f"stage {stage.name} accepts {', '.join(stage.accepts)} but was given {artifact.format}; "
                "change the stage order or the input model"
            )
        folder = work / f"{index:02d}-{stage.name}"
        key = stage_key(stage, artifact)
        cached = _cached(folder, key) if resume else None
        if cached is not None:
            console.log(f"[dim]stage {stage.name}: reused {folder.name} (--resume)[/]")
            artifact = cached
            continue
        if folder.exists():
            shutil.rmtree(folder)
        start = time.perf_counter()
        with stage_area(f"stage [bold]{stage.name}[/] ({index}/{len(stages)})"), atomic_dir(folder) as tmp:
            result, metrics = stage.run(ctx, artifact, tmp)
            record = StageRecord(name=stage.name, folder=folder.name, key=key, settings=stage.settings(),
                                 metrics=metrics, seconds=round(time.perf_counter() - start, 3))
            result = result.model_copy(update={"folder": str(folder), "history": [*artifact.history, record]})
            result.save(tmp)
        artifact = result
        console.log(f"stage [bold]{stage.name}[/] done in {record.seconds:.1f}s {_brief(metrics)}")
    return artifact


def _cached(folder: Path, key: str) -> Artifact | None:
    if not (folder / RECORD).is_file():
        return None
    artifact = Artifact.load(folder)
    if not artifact.history or artifact.history[-1].key != key:
        return None
    return artifact


def _brief(metrics: dict[str, Any]) -> str:
    shown = [f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
             for k, v in metrics.items() if isinstance(v, (int, float, str)) and len(str(v)) < 30]
    return ("[dim](" + ", ".join(shown[:6]) + ")[/]") if shown else ""
