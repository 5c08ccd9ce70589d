"""The Python API under the CLI: every command is one call here (compress, distill, bench, inspect, scan,
pack, verify, profile, check_boards, engine_report, targets, demo)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edgekit.settings import (BenchConfig, BoardsCheckConfig, CompressConfig, DemoConfig, DistillConfig, InspectConfig,
                              ProfileConfig, ScanConfig, make_config, validated)

# (option name, field) of every command-line option the settings models declare, read by cli/
COMPRESS_OPTIONS = CompressConfig.cli_fields()
DISTILL_OPTIONS = DistillConfig.cli_fields()
SCAN_OPTIONS = ScanConfig.cli_fields()
PROFILE_OPTIONS = ProfileConfig.cli_fields()
BENCH_OPTIONS = BenchConfig.cli_fields()
INSPECT_OPTIONS = InspectConfig.cli_fields()
DEMO_OPTIONS = DemoConfig.cli_fields()
DEMO_OUT = DemoConfig.model_fields["out"].default
BOARDS_CHECK_OPTIONS = BoardsCheckConfig.cli_fields()


def compress(model: Any = None, data: Any = None, **options: Any) -> dict[str, Any]:
    """Run prune -> calibrate -> QAD -> export -> compile -> bench; return report.json's content.

    `model` is a spec (path, `package.module:factory`, `example:NAME`) or an nn.Module;
    `data` is a spec, a dict of arrays, an (x, y) pair, or an iterable of batches.
    `teacher` may also be an nn.Module. Other options are those of `edgekit compress`.
    """
    from edgekit.runs.compress import run_compress
    from edgekit.data.memory import register_data
    from edgekit.models.memory import register_model

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


def bench(folder: str | Path, data: str | None = None, **options: Any) -> dict[str, Any]:
    """Measure an OUT/<target> folder again on `data`; options are BenchConfig's (baseline, runs)."""
    from edgekit.errors import InputError
    from edgekit.runs.bench import run_bench
    from edgekit.runs.bench_llm import is_language_model_folder, run_llm_bench

    cfg = validated(BenchConfig, {"data": data, **options})
    if is_language_model_folder(Path(folder)):
        return run_llm_bench(Path(folder), cfg.data, cfg.prompts, cfg.baseline)
    if cfg.prompts:
        raise InputError("--prompts is for a language-model folder; for this artifact give --data")
    if cfg.data is None:
        raise InputError("bench needs --data: evaluation samples for this artifact (.npz, folder, or example:mnist)")
    return run_bench(Path(folder), cfg.data, cfg.baseline, cfg.runs)


def inspect_model(spec: str, **options: Any) -> dict[str, Any]:
    """Params, MACs, layers and prunable groups; options are InspectConfig's (weights, data, input_shape)."""
    from edgekit.runs.inspect import run_inspect

    cfg = validated(InspectConfig, options)
    return run_inspect(spec, cfg.weights, cfg.data, cfg.input_shape)


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

    return run_distill(validated(DistillConfig, options))


def demo(**options: Any) -> dict[str, Any]:
    """The whole job on the built-in MNIST example, compiled for `target` (default: this machine's)."""
    from edgekit.examples.models import demo_recipe
    from edgekit.target import host_target

    cfg = validated(DemoConfig, options)
    return compress(**{**demo_recipe(), "out": cfg.out, "target": cfg.target or host_target(), "force": cfg.force})


def load_recipe(path: str | Path) -> dict[str, Any]:
    """A YAML recipe with any of compress's settings (validated when compress builds its config)."""
    from edgekit.settings import load_recipe as read

    return read(Path(path))


def scan(**options: Any) -> dict[str, Any]:
    """`edgekit prune scan`: each channel group pruned alone at each ratio, measured; a per-layer proposal.
    Options are those of ScanConfig (model, data, out, weights, target, ratios, max_drop, ...)."""
    from edgekit.runs.scan import run_scan

    return run_scan(validated(ScanConfig, options))


def profile(bundle: str | Path, board: list[str] | None = None, **options: Any) -> tuple[list[dict], list[str]]:
    """Run a bundle (or an OUT/<target> folder) on boards over SSH; returns (results, one error line per failed
    board). Options are those of ProfileConfig (inventory, ssh_config, remote_python, runs, timeout, out)."""
    from edgekit.errors import InputError
    from edgekit.remote.boards import load_inventory
    from edgekit.remote.profile import profile_boards

    cfg = validated(ProfileConfig, {"board": board, **options})
    bundle = Path(bundle)
    if not bundle.exists():
        raise InputError(f"{bundle} does not exist; pass a bundle from `edgekit pack` or an OUT/<target> folder")
    return profile_boards(bundle, cfg.board, load_inventory(cfg.inventory), cfg.ssh_config, cfg.remote_python,
                          cfg.runs, cfg.timeout, cfg.out or bundle.parent)


def board_failure(message: str) -> Exception:
    """The error a failed board ends a command with (a one-line message, exit code 2)."""
    from edgekit.remote.ssh import BoardError

    return BoardError(message)


def check_boards(board: list[str] | None = None, **options: Any) -> list[dict[str, Any]]:
    """Reachability, architecture, runtimes and free disk of each board (all of the inventory by default);
    options are BoardsCheckConfig's (inventory, ssh_config)."""
    from concurrent.futures import ThreadPoolExecutor

    from edgekit.errors import InputError
    from edgekit.remote.boards import check_board, load_inventory, resolve

    cfg = validated(BoardsCheckConfig, {"board": board, **options})
    known = load_inventory(cfg.inventory)
    specs = cfg.board or list(known)
    if not specs:
        raise InputError("no boards: pass --board ssh://user@host or write a boards.toml")
    resolved = [resolve(spec, known) for spec in specs]
    with ThreadPoolExecutor(max_workers=len(resolved)) as pool:
        return list(pool.map(lambda b: check_board(b, cfg.ssh_config), resolved))


def engine_report(folder: str | Path) -> dict[str, Any]:
    """What build_engine.sh wrote on a Jetson: latency, INT8 vs float layers, reformat layers."""
    from edgekit.backends.trt_reports import engine_report as read

    return read(Path(folder))


def targets() -> list[dict[str, Any]]:
    """The built-in targets' settings."""
    from edgekit.target import builtin_targets, load_target

    return [load_target(name).model_dump() for name in builtin_targets()]


def target(name: str) -> dict[str, Any]:
    """One target's settings, by name or from a board .yaml file."""
    from edgekit.target import load_target

    return load_target(name).model_dump()


def to_json(data: Any) -> str:
    """The JSON edgekit prints and writes: sorted keys, NaN as null."""
    from edgekit.files import json_text

    return json_text(data)


def language_model_report(report: dict[str, Any]) -> str:
    """report.md's text for a causal language model's `compress` report, or the table of its `bench`."""
    if "final" in report and "model" not in report:
        from edgekit.runs.bench_llm import render as render_bench

        return render_bench(report)
    from edgekit.llm.report import render

    return render(report)
