"""`edgekit bench`: measure a compiled artifact folder (and its FP32 baseline) on given data."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .data import load_for
from .data.text import tokenizer_folder
from .errors import InputError
from .manifest import MANIFEST


def run_bench(folder: Path, data: str, baseline: str | None, runs: int | None) -> dict[str, Any]:
    from .backends import ort as ort_backend
    from .stages.bench import BenchSettings, measure_model

    manifest = _read_manifest(folder)
    names = [i["name"] for i in manifest["inputs"]]
    label2id = {name: i for i, name in enumerate(manifest.get("labels") or [])} or None
    samples = load_for(data, names, tokenizer_folder(folder), label2id,
                       (manifest.get("preprocessing") or {}).get("max_length"))
    settings = BenchSettings(**manifest["target"]["bench"])
    if runs is not None:
        if runs < 1:
            raise InputError(f"--runs {runs} must be at least 1")
        settings.runs = runs
    base = Path(baseline) if baseline else (folder / manifest["baseline"]).resolve()
    results: dict[str, Any] = {"target": manifest["target"]["name"], "data": data}
    reference = None
    if base.is_file():
        reference = ort_backend.run_model(base, samples, names, settings.threads)
        results["fp32"] = measure_model(base, samples, names, reference, settings)
    elif baseline:
        raise InputError(f"--baseline {baseline} does not exist; check the path")
    results["final"] = measure_model(folder / "model.onnx", samples, names, reference, settings)
    if "fp32" in results:
        results["speedup_p50"] = results["fp32"]["latency_ms"]["p50"] / results["final"]["latency_ms"]["p50"]
    return results


def _read_manifest(folder: Path) -> dict[str, Any]:
    path = folder / MANIFEST
    if not path.is_file():
        raise InputError(f"{folder} holds no {MANIFEST}; give an OUT/<target> folder written by `edgekit compress`")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise InputError(f"{path} is not valid JSON ({exc}); rerun `edgekit compress`") from exc
