"""`edgekit profile` on a real attached board: run with `python -m pytest -m board` and
EDGEKIT_TEST_BOARD=ssh://user@host (a board with python3 and onnxruntime, its host key known)."""

import json
import os

import pytest

from conftest import run_cli

pytestmark = pytest.mark.board


@pytest.fixture(scope="module")
def board_spec() -> str:
    spec = os.environ.get("EDGEKIT_TEST_BOARD")
    if not spec:
        pytest.skip("EDGEKIT_TEST_BOARD is not set: give ssh://user@host of an attached board")
    return spec


def test_an_attached_board_runs_the_bundle_it_was_built_for(board_spec, tmp_path):
    check = run_cli("boards", "check", "--board", board_spec, "--json")
    assert check.returncode == 0, check.stderr
    arch = json.loads(check.stdout)[0]["arch"]
    target = "arm64" if arch in ("aarch64", "arm64") else "x86-64"
    built = run_cli("compress", "--model", "example:mnist-student", "--data", "example:mnist", "--target", target,
                    "--quant", "static", "--prune", "0", "--out", tmp_path / "build")
    assert built.returncode == 0, built.stderr
    result = run_cli("profile", tmp_path / "build" / target, "--board", board_spec, "--runs", "50", "--json",
                     "--out", tmp_path, timeout=900)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert 0 < report["latency_ms"]["p50"] <= report["latency_ms"]["p99"] and report["runs"] == 50
    assert report["agreement"]["top1_agreement"] > 0.99  # the board answers as the host did
