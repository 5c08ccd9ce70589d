"""The import graph of edgekit/, read from the code's own imports (module level and inside functions):
the layering rules of the house, each of which a new import can break."""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "edgekit"

BACKENDS_PAST_LEAVES: dict[str, set[str]] = {}  # none left: ONNX-side quantization lives in ptq/
# Leaves every layer may use (they import nothing of edgekit): errors; files (atomic writes, scratch folders
# the next run can sweep); progress (the one console, so a long loop anywhere can show its bar).
LEAVES = ("errors", "files", "progress")


def module_of(path: Path, package: Path = PACKAGE) -> str:
    parts = list(path.relative_to(package.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph(package: Path = PACKAGE) -> dict[str, set[str]]:
    """module -> the edgekit modules it imports (a `from pkg import name` counts pkg.name when that is a module)."""
    files = {module_of(p, package): p for p in package.rglob("*.py") if "templates" not in p.parts}
    graph: dict[str, set[str]] = {}
    for name, path in files.items():
        targets = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                targets |= {a.name for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module:
                base = node.module
                if node.level:
                    anchor = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
                    base = ".".join(anchor[:len(anchor) - node.level + 1] + [node.module])
                targets.add(base)
                targets |= {f"{base}.{a.name}" for a in node.names if f"{base}.{a.name}" in files}
        graph[name] = {t for t in targets if t in files and t != name}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            part = []
            while True:
                w = stack.pop()
                on.discard(w)
                part.append(w)
                if w == v:
                    break
            if len(part) > 1:
                out.append(sorted(part))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def violations(graph: dict[str, set[str]]) -> list[str]:
    found = []
    for part in cycles(graph):
        found.append(f"import cycle: {' -> '.join(part)}")
    for src, targets in graph.items():
        layer = src.split(".")[1] if "." in src else ""
        for dst in targets:
            to = dst.split(".")[1] if "." in dst else ""
            if layer == "cli" and to not in ("cli", "api", "errors", "progress"):
                found.append(f"{src} -> {dst}: cli/ imports only api, errors, progress")
            if to in ("cli", "api") and layer not in ("cli", "api", "__main__") and src != "edgekit":
                found.append(f"{src} -> {dst}: only the layer above imports cli/ or api")
            if layer == "backends" and to not in ("backends", "data", *LEAVES) \
                    and dst not in BACKENDS_PAST_LEAVES.get(src, set()):
                found.append(f"{src} -> {dst}: backends/ imports only errors, files and data")
            if layer == "quant" and to in ("backends", "ptq"):
                found.append(f"{src} -> {dst}: quant/ (torch side) never imports backends/ or ptq/")
            if layer == "stages" and to == "stages" and src != dst and not dst.endswith("._torch") \
                    and dst != "edgekit.stages":
                found.append(f"{src} -> {dst}: no stage imports another stage")
            if layer in ("pruning", "distill", "quant", "ptq", "measure") and to in ("stages", "runs"):
                found.append(f"{src} -> {dst}: algorithm packages never import stages/ or runs/")
    return sorted(found)


def test_the_import_graph_keeps_the_layering_rules():
    assert violations(import_graph()) == []


def test_a_cycle_is_caught(tmp_path):
    graph = import_graph()
    graph["edgekit.errors"] = {"edgekit.pipeline"}  # pipeline imports errors: a loop
    assert any(v.startswith("import cycle:") and "edgekit.errors" in v for v in violations(graph))


def test_the_rules_catch_a_violation(tmp_path):
    """A copy of the package with one deliberate wrong-way import (an algorithm importing a stage) fails."""
    import shutil

    copy = tmp_path / "edgekit"
    shutil.copytree(PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__", "templates"))
    target = copy / "pruning" / "policy.py"
    target.write_text(target.read_text() + "\nfrom edgekit.stages.qad import QadStage  # noqa\n")
    graph = import_graph(copy)
    assert "edgekit.pruning.policy -> edgekit.stages.qad: algorithm packages never import stages/ or runs/" \
        in violations(graph)


# Where edgekit may read a clock or take a median: the one timing loop, and the pipeline's stage seconds.
# templates/ is left out: those scripts ship in bundles and run on boards without edgekit installed.
TIMING_HOMES = ("measure/latency.py", "pipeline.py")
TIMING_CALLS = ("perf_counter", "np.median(", "np.percentile(", "statistics.median")


def timing_violations(package: Path = PACKAGE) -> list[str]:
    found = []
    for path in sorted(package.rglob("*.py")):
        rel = path.relative_to(package).as_posix()
        if rel.startswith("templates/") or rel in TIMING_HOMES:
            continue
        text = path.read_text()
        found += [f"{rel}: {call} outside measure/latency.py" for call in TIMING_CALLS if call in text]
    return found


def test_one_timing_loop_and_one_median():
    assert timing_violations() == []


def test_a_second_timing_loop_is_caught(tmp_path):
    import shutil

    copy = tmp_path / "edgekit"
    shutil.copytree(PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__"))
    scan = copy / "pruning" / "scan.py"
    scan.write_text(scan.read_text() + "\n\ndef clock():\n    import time\n    return time.perf_counter()\n")
    assert timing_violations(copy) == ["pruning/scan.py: perf_counter outside measure/latency.py"]


@pytest.mark.parametrize("module", ["edgekit.runs.compress", "edgekit.pruning.prune", "edgekit.measure.latency"])
def test_the_new_homes_import(module):
    import importlib

    importlib.import_module(module)


def test_every_declared_marker_marks_a_test():
    import re
    import tomllib

    root = PACKAGE.parent
    declared = [m.split(":")[0] for m in tomllib.loads((root / "pyproject.toml").read_text())
                ["tool"]["pytest"]["ini_options"]["markers"]]
    used = {m for path in (root / "tests").rglob("test_*.py")
            for m in re.findall(r"pytest\.mark\.(\w+)", path.read_text())}
    assert declared and set(declared) <= used, f"declared but unused: {set(declared) - used}"
