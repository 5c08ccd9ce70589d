"""`edgekit prune scan` measures each group's sensitivity and its proposal drives `compress`."""

import json

import pytest

from conftest import run_cli


@pytest.fixture(scope="module")
def scanned(tmp_path_factory, digits_npz, tiny_weights):
    out = tmp_path_factory.mktemp("scan") / "scan"
    result = run_cli("prune", "scan", "--model", "tiny_models:resnet_tiny", "--weights", tiny_weights,
                     "--data", digits_npz, "--out", out, "--ratios", "0.25,0.5", "--eval-samples", "300",
                     "--max-drop", "1.0", "--json")
    assert result.returncode == 0, result.stderr
    return out, json.loads(result.stdout)


def test_scan_records_each_group_at_each_ratio(scanned):
    out, proposal = scanned
    scan = json.loads((out / "scan.json").read_text())
    roots = [g["root"] for g in scan["groups"]]
    assert "model.block1.conv1" in roots and "model.head" not in roots and "model.stem.0" not in roots
    for group in scan["groups"]:
        assert [r["ratio"] for r in group["results"]] == [0.25, 0.5]
        for row in group["results"]:
            assert row["latency_ms"] > 0 and 0 <= row["agreement"] <= 1 and row["accuracy"] is not None
            assert row["macs"] < scan["baseline"]["macs"]
    assert set(proposal) == set(roots) and (out / "scan.png").stat().st_size > 1000


def test_proposal_keeps_within_the_budget(scanned):
    out, proposal = scanned
    scan = json.loads((out / "scan.json").read_text())
    base = scan["baseline"]["accuracy"]
    for group in scan["groups"]:
        chosen = proposal[group["root"]]
        rows = {r["ratio"]: r for r in group["results"]}
        if chosen > 0:
            assert base - rows[chosen]["accuracy"] <= 1.0


def test_compress_applies_the_proposed_layer_ratios(scanned, tmp_path, digits_npz, tiny_weights):
    out, _ = scanned
    ratios = {"model.block2.conv1": 0.5}
    (tmp_path / "ratios.json").write_text(json.dumps(ratios))
    result = run_cli("compress", "--model", "tiny_models:resnet_tiny", "--weights", tiny_weights, "--data",
                     digits_npz, "--quant", "none", "--layer-ratios", tmp_path / "ratios.json", "--out",
                     tmp_path / "build", "--json")
    assert result.returncode == 0, result.stderr
    plan = json.loads((tmp_path / "build" / "work" / "02-prune" / "plan.json").read_text())
    assert plan["channels"]["model.block2.conv1"][1] == 16  # 32 -> 16
    assert plan["channels"]["model.block1.conv1"][1] == 16  # untouched


def test_scan_rejects_bad_ratios(tmp_path, digits_npz, tiny_weights):
    result = run_cli("prune", "scan", "--model", "tiny_models:resnet_tiny", "--weights", tiny_weights,
                     "--data", digits_npz, "--out", tmp_path / "s", "--ratios", "0.5,1.5")
    assert result.returncode == 2 and "--ratios" in result.stderr and not (tmp_path / "s").exists()
