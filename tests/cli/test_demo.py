"""`edgekit demo`: the built-in example end to end, with the issue's accuracy and size targets."""

import json

from conftest import run_cli


def test_demo_meets_accuracy_and_size_targets(tmp_path):
    result = run_cli("demo", "--out", tmp_path / "demo", "--json", timeout=900)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    fp32, final = report["fp32"], report["final"]
    assert fp32["accuracy"] > 95
    assert fp32["accuracy"] - final["accuracy"] <= 1.0
    assert final["size_bytes"] <= fp32["size_bytes"] / 8
    assert final["stages"] == ["source", "prune", "calibrate", "qad", "export", "compile", "bench"]
    assert report["target"] in ("x86-64", "arm64")  # the host's own target
    assert (tmp_path / "demo" / report["target"] / "model.ort").is_file()
    again = run_cli("demo", "--out", tmp_path / "demo")
    assert again.returncode == 2 and "--force" in again.stderr
