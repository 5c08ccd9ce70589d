"""The Python API under the CLI: compress, bench, inspect. Each CLI command wraps one of these."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edgekit.recipe import make_config


def compress(model: Any = None, data: Any = None, **options: Any) -> dict[str, Any]:
    """Run prune -> calibrate -> QAD -> export -> compile -> bench; return report.json's content.

    `model` is a spec (path, `package.module:factory`, `example:NAME`) or an nn.Module;
    `data` is a spec, a dict of arrays, an (x, y) pair, or an iterable of batches.
    `teacher` may also be an nn.Module. Other options are those of `edgekit compress`.
    """
    from edgekit.runs.compress import run_compress
    from edgekit.data.memory import register_data, register_model

    if model is not None and not isinstance(model, (str, Path)):
        model = register_model(model)
    if data is not None and not isinstance(data, (str, Path)):
        data = register_data(data)
    teacher = options.get("teacher")
    if teacher is not None and not isinstance(teacher, (str, Path)):
        options["teacher"] = register_model(teacher)
    if model is not None:
        options["model"] = str(model)
    if data is not None:
        options["data"] = str(data)
    return run_compress(make_config(**options))


def bench(folder: str | Path, data: str, baseline: str | None = None, runs: int | None = None) -> dict[str, Any]:
    from edgekit.runs.bench import run_bench

    return run_bench(Path(folder), data, baseline, runs)


def inspect_model(spec: str, weights: str | None = None, data: str | None = None,
                  input_shape: list[int] | None = None) -> dict[str, Any]:
    from edgekit.runs.inspect import run_inspect

    return run_inspect(spec, weights, data, input_shape)


def pack(folder: str | Path, output: str | Path | None = None, force: bool = False) -> dict[str, Any]:
    """Bundle OUT/<target> into a reproducible .tar.gz (see edgekit.bundle.pack)."""
    from edgekit.bundle.pack import pack as pack_bundle

    return pack_bundle(Path(folder), Path(output) if output else None, force)


def verify(bundle: str | Path) -> dict[str, Any]:
    """Check a bundle's files against its manifest; raises BundleError on any difference."""
    from edgekit.bundle.pack import verify as verify_bundle

    return verify_bundle(Path(bundle))


def distill(**options: Any) -> dict[str, Any]:
    """Distil a student from a teacher (see edgekit.runs.distill); returns report.json's content."""
    from edgekit.runs.distill import run_distill
    from edgekit.recipe import DistillConfig, validated

    return run_distill(validated(DistillConfig, options))
