"""manifest.json: what an app developer needs (I/O, preprocessing, labels) and what reproduces it.

The manifest and the files it lists are reproducible: the same inputs and settings give the same bytes
from any folder. So it holds no paths (an input file is named by its file name and its sha256) and does
not list the measurements (report.*), whose timings differ from run to run; those stay beside it.
"""

from __future__ import annotations

import os
import platform
from importlib import metadata
from pathlib import Path
from typing import Any

from edgekit.files import sha256_file, write_json

MANIFEST = "manifest.json"
MEASUREMENTS = ("report.json", "report.md", "report.png", "sensitivity.png")
PATH_SETTINGS = ("model", "data", "weights", "teacher", "teacher_weights", "eval_data", "layer_ratios")
PACKAGES = ("edgekit", "torch", "onnx", "onnxruntime", "torch-pruning", "numpy", "transformers")


def tool_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


def io_spec(onnx_path: Path) -> dict[str, list[dict[str, Any]]]:
    import onnx

    graph = onnx.load(str(onnx_path), load_external_data=False).graph
    inits = {i.name for i in graph.initializer}

    def describe(values):
        return [{"name": v.name,
                 "dtype": onnx.helper.tensor_dtype_to_np_dtype(v.type.tensor_type.elem_type).name,
                 "shape": [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim]}
                for v in values if v.name not in inits]
    return {"inputs": describe(graph.input), "outputs": describe(graph.output)}


def write_manifest(folder: Path, cfg, target, compiled, ctx, student, baseline: Path) -> None:
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.name not in (MANIFEST, *MEASUREMENTS))
    data = ctx.splits.train
    manifest = {
        "format": "edgekit-artifact/1",
        "target": target.model_dump(),
        **io_spec(folder / "model.onnx"),
        "preprocessing": data.preprocess,
        "labels": data.label_names,
        "files": {p.name: {"sha256": sha256_file(p), "bytes": p.stat().st_size} for p in files},
        "baseline": os.path.relpath(baseline, folder),
        "inputs_hash": {
            "model": without_folders(student.spec),
            "weights_sha256": sha256_file(student.weights) if student.weights else None,
            "onnx_sha256": sha256_file(student.onnx_path) if student.is_onnx else None,
            "data": {name: getattr(ctx.splits, name).fingerprint() for name in ("train", "calib", "eval")},
        },
        "splits": ctx.splits.summary(),
        "settings": recorded_settings(cfg),
        "versions": tool_versions(),
        "stages": [h.name for h in compiled.history],
    }
    write_json(folder / MANIFEST, manifest)


def write_language_model_manifest(folder: Path, cfg, target, info: dict[str, Any], weights: dict[str, Any]) -> None:
    """manifest.json of a GenAI folder (a causal language model): its files, target, model and settings; the
    runner's check is reference.json (a prompt and the host's greedy continuation)."""
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.name not in (MANIFEST, *MEASUREMENTS))
    versions = tool_versions()
    try:
        versions["onnxruntime-genai"] = metadata.version("onnxruntime-genai")
    except metadata.PackageNotFoundError:
        pass
    manifest = {
        "format": "edgekit-artifact/1",
        "kind": "causal-lm",
        "target": target.model_dump(),
        "model": {**{k: v for k, v in info.items() if k != "model"}, "name": without_folders(str(cfg.model))},
        "weights": {k: v for k, v in weights.items() if k != "gguf"},
        "files": {p.name: {"sha256": sha256_file(p), "bytes": p.stat().st_size} for p in files},
        "settings": recorded_settings(cfg),
        "versions": versions,
    }
    write_json(folder / MANIFEST, manifest)


def recorded_settings(cfg) -> dict[str, Any]:
    """The settings that shaped the artifact, with input paths cut to their file names."""
    settings = {k: v for k, v in cfg.flat().items() if k != "out"}
    for name in PATH_SETTINGS:
        if isinstance(settings.get(name), str):
            settings[name] = without_folders(settings[name])
    return settings


def without_folders(spec: str) -> str:
    """A file or folder path → its name; other specs (example:NAME, package.module:factory) as given."""
    path = Path(spec)
    return path.name if path.exists() else spec


def read_manifest(folder: Path) -> dict:
    """OUT/<target>/manifest.json as written by compress; a missing or unreadable one is a one-line error."""
    import json

    from edgekit.errors import InputError

    path = Path(folder) / MANIFEST
    if not path.is_file():
        raise InputError(f"{folder} has no {MANIFEST}; give an OUT/<target> folder written by `edgekit compress`")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"{path} is not valid JSON ({exc}); rerun `edgekit compress`") from exc
