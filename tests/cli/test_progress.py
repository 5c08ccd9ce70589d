"""What a user watching a run sees: log lines without file:line (unless --debug), bars inside the stage's
live area, nothing but the summary with --quiet and nothing but JSON with --json."""

import json
import re

import numpy as np
import pytest

from conftest import run_cli

FILE_LINE = re.compile(r"\b\w+\.py:\d+\b")


@pytest.fixture(scope="module")
def small(tmp_path_factory, digits_npz):
    path = tmp_path_factory.mktemp("progress") / "d.npz"
    data = np.load(digits_npz)
    np.savez(path, x=data["x"][:300], y=data["y"][:300])
    return path


def _compress(small, tiny_weights, out, *root_options, quant="none"):
    return run_cli(*root_options, "compress", "--model", "tiny_models:resnet_tiny", "--weights", tiny_weights,
                   "--data", small, "--out", out, "--quant", quant, "--epochs", "1", "--target", "x86-64")


@pytest.mark.slow  # 13 s: two compress runs; the quiet/json test keeps the output's shape in the default run
def test_log_lines_name_no_file_unless_debug(small, tiny_weights, tmp_path):
    plain = _compress(small, tiny_weights, tmp_path / "a", quant="qad")
    assert plain.returncode == 0, plain.stderr
    assert "stage qad done" in plain.stderr and not FILE_LINE.search(plain.stderr), plain.stderr
    debug = _compress(small, tiny_weights, tmp_path / "b", "--debug")
    assert debug.returncode == 0 and FILE_LINE.search(debug.stderr), debug.stderr


def test_quiet_prints_only_the_summary_and_json_only_json(small, tiny_weights, tmp_path):
    quiet = _compress(small, tiny_weights, tmp_path / "q", "--quiet")
    assert quiet.returncode == 0 and quiet.stderr.strip() == "", quiet.stderr
    assert "edgekit compress" in quiet.stdout and "final" in quiet.stdout
    as_json = run_cli("compress", "--model", "tiny_models:resnet_tiny", "--weights", tiny_weights, "--data", small,
                      "--out", tmp_path / "j", "--quant", "none", "--target", "x86-64", "--json")
    assert as_json.returncode == 0 and as_json.stderr.strip() == "", as_json.stderr
    assert json.loads(as_json.stdout)["target"] == "x86-64"


def test_bars_join_the_live_stage_area_and_stay_silent_when_quiet(capsys):
    from edgekit import progress

    with progress.stage("stage test"):
        assert progress._live is not None
        with progress.bar("epoch 1/1", 3) as advance:
            tasks = progress._live.tasks
            assert [t.description for t in tasks] == ["stage test", "epoch 1/1"]
            for _ in range(3):
                advance(1)
            assert tasks[1].completed == 3
    assert progress._live is None
    progress.set_quiet(True)
    try:
        with progress.stage("silent"), progress.bar("silent bar", 2) as advance:
            assert progress._live is None
            advance(2)
    finally:
        progress.set_quiet(False)
    assert "silent" not in capsys.readouterr().err
