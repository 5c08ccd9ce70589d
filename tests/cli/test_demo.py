"""`edgekit demo`: the built-in example end to end, with the issue's accuracy and size targets.

README's set-up command ends with `edgekit demo`, which writes ./edgekit-demo: where that folder is newer than
every source file, the test judges it (what a newcomer got) instead of running the same job a second time.
"""

import json

from conftest import ROOT, run_cli

SOURCES = [ROOT / "edgekit", ROOT / "targets", ROOT / "calibration"]


def _fresh_demo():
    """./edgekit-demo's report, where the set-up command wrote it after the last change to the code."""
    reports = sorted((ROOT / "edgekit-demo").glob("*/report.json"))
    if len(reports) != 1:
        return None
    newest_source = max(p.stat().st_mtime for folder in SOURCES for p in folder.rglob("*")
                        if p.is_file() and "__pycache__" not in p.parts)
    return reports[0] if reports[0].stat().st_mtime > newest_source else None


def test_demo_meets_accuracy_and_size_targets(tmp_path):
    found = _fresh_demo()
    if found is None:
        result = run_cli("demo", "--out", tmp_path / "demo", "--json", timeout=900)
        assert result.returncode == 0, result.stderr
        report, out = json.loads(result.stdout), tmp_path / "demo"
        assert json.loads((out / report["target"] / "report.json").read_text()) == report
    else:
        report, out = json.loads(found.read_text()), found.parent.parent
    fp32, final = report["fp32"], report["final"]
    assert fp32["accuracy"] > 95
    assert fp32["accuracy"] - final["accuracy"] <= 1.0
    assert final["size_bytes"] <= fp32["size_bytes"] / 8
    assert final["stages"] == ["source", "prune", "calibrate", "qad", "export", "compile", "bench"]
    assert report["target"] in ("x86-64", "arm64")  # the host's own target
    assert (out / report["target"] / "model.ort").is_file()
    again = run_cli("demo", "--out", out)
    assert again.returncode == 2 and "--force" in again.stderr
