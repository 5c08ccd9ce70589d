"""`edgekit bench`: measure a compiled artifact folder (and its FP32 baseline) on given data."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edgekit.data import load_for
from edgekit.data.samples import check_label_range
from edgekit.data.text import tokenizer_folder
from edgekit.errors import InputError
from edgekit.bundle.manifest import MANIFEST, read_manifest


def _declared_dtypes(path: Path) -> dict[str, str]:
    import onnx

    from edgekit.models.loader import input_dtypes

    return input_dtypes(onnx.load(str(path), load_external_data=False))


def run_bench(folder: Path, data: str, baseline: str | None, runs: int | None) -> dict[str, Any]:
    from edgekit.backends import ort as ort_backend
    from edgekit.settings import BenchSettings
    from edgekit.stages.bench import measure_model

    manifest = _read_manifest(folder)
    names = [i["name"] for i in manifest["inputs"]]
    label2id = {name: i for i, name in enumerate(manifest.get("labels") or [])} or None
    samples = load_for(data, names, tokenizer_folder(folder), label2id,
                       (manifest.get("preprocessing") or {}).get("max_length"))
    samples = samples.cast(_declared_dtypes(folder / "model.onnx"))
    _check_data_fits(folder / "model.onnx", samples, names, data)
    settings = BenchSettings(**manifest["target"]["bench"])
    if runs is not None:  # BenchConfig has checked it
        settings = settings.model_copy(update={"runs": runs})
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


def _check_data_fits(model: Path, samples, names: list[str], data: str) -> None:
    """One sample through the model and the labels against its outputs, before anything is timed."""
    from edgekit.backends import ort as ort_backend

    inputs, _ = next(samples.batches(1))
    try:
        out = ort_backend.session(model).run(None, {n: inputs[n] for n in names})[0]
    except Exception as exc:  # ORT raises its own types for wrong shapes and dtypes
        shapes = {n: list(inputs[n].shape) for n in names}
        raise InputError(f"data {data} (sample shapes {shapes}) does not fit {model}: "
                         f"{' '.join(str(exc).split())[:160]}; give data shaped like the model input") from exc
    check_label_range(samples.labels, out.shape[-1] if out.ndim else 1, data)


def _read_manifest(folder: Path) -> dict[str, Any]:
    path = folder / MANIFEST
    manifest = read_manifest(folder)
    target = manifest.get("target") if isinstance(manifest, dict) else None
    inputs = manifest.get("inputs") if isinstance(manifest, dict) else None
    if not (isinstance(target, dict) and isinstance(target.get("bench"), dict) and isinstance(inputs, list)
            and all(isinstance(i, dict) and isinstance(i.get("name"), str) for i in inputs)
            and isinstance(manifest.get("baseline", ""), str)):
        raise InputError(f"{path} lacks the inputs or target that `edgekit compress` writes; rerun `edgekit compress`")
    if not (folder / "model.onnx").is_file():
        raise InputError(f"{folder} has no model.onnx; give an OUT/<target> folder written by `edgekit compress`")
    return manifest
