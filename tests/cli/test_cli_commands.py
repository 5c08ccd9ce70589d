"""The CLI commands a user runs, through the real entry point."""

import json

import pytest

from conftest import run_cli


def test_targets_lists_and_shows():
    listing = run_cli("targets", "--json")
    assert listing.returncode == 0
    names = [t["name"] for t in json.loads(listing.stdout)]
    assert "arm64" in names and "x86-64" in names
    shown = run_cli("targets", "show", "arm64")
    assert json.loads(shown.stdout)["arch"] == "aarch64"


def test_inspect_reports_params_macs_and_groups(tiny_weights):
    result = run_cli("inspect", "tiny_models:resnet_tiny", "--weights", tiny_weights, "--input-shape", "1,1,8,8",
                     "--json")
    assert result.returncode == 0, result.stderr
    info = json.loads(result.stdout)
    assert info["params"] > 10_000 and info["macs"] > 100_000
    roots = {g["root"]: g for g in info["prunable_groups"]}
    residual = [g for g in info["prunable_groups"] if "model.block1.conv2" in g["layers"]]
    assert residual and "model.stem.0" in residual[0]["layers"]  # the residual add couples them
    assert "model.head" not in roots


@pytest.fixture(scope="module")
def compressed(tmp_path_factory, digits_npz, tiny_weights):
    out = tmp_path_factory.mktemp("cli") / "build"
    result = run_cli("compress", "--model", "tiny_models:resnet_tiny", "--weights", tiny_weights,
                     "--data", digits_npz, "--target", "arm64", "--quant", "static", "--out", out, "--json")
    assert result.returncode == 0, result.stderr
    return out, json.loads(result.stdout)


def test_compress_json_is_the_report(compressed):
    out, report = compressed
    assert report == json.loads((out / "arm64" / "report.json").read_text())


def test_bench_measures_the_artifact_against_its_baseline(compressed, digits_npz):
    out, _ = compressed
    result = run_cli("bench", out / "arm64", "--data", digits_npz, "--runs", "20", "--json")
    assert result.returncode == 0, result.stderr
    measured = json.loads(result.stdout)
    assert measured["final"]["eval_samples"] == 1797
    assert measured["fp32"]["agreement"] == 1.0 and measured["final"]["agreement"] > 0.9
    assert measured["speedup_p50"] > 0
