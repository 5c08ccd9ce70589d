"""Importing edgekit or asking for help must not pull heavy optional runtimes."""

import subprocess
import sys

HEAVY = ("onnxruntime", "nncf", "tensorrt")


def _loaded_after(code: str) -> set[str]:
    probe = f"{code}\nimport sys\nprint('LOADED=' + ','.join(m for m in {HEAVY!r} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    line = [ln for ln in out.stdout.splitlines() if ln.startswith("LOADED=")][-1]
    return {m for m in line.removeprefix("LOADED=").split(",") if m}


def test_import_edgekit_loads_no_heavy_runtime():
    assert _loaded_after("import edgekit") == set()


def test_cli_help_loads_no_heavy_runtime():
    code = ("import sys\nsys.argv=['edgekit','--help']\nfrom edgekit.cli import app\n"
            "try:\n    app(standalone_mode=False)\nexcept SystemExit:\n    pass")
    assert _loaded_after(code) == set()


def test_probe_detects_a_heavy_import():
    assert "onnxruntime" in _loaded_after("import onnxruntime")
