"""Usage errors of every command: a bad value, an unknown option or command, a missing argument.

Each must give exit code 2, one line naming the problem and where to read more, no traceback, and write
nothing (each runs in an empty working folder that must stay empty).
"""

import pytest

from conftest import run_cli

CASES = {
    "unknown command": (["frobnicate"], "No such command 'frobnicate'"),
    "unknown root option": (["--turbo", "targets"], "No such option: --turbo"),
    "compress prune not a number": (["compress", "--prune", "half"], "'--prune'"),
    "compress unknown option": (["compress", "--turbo"], "No such option: --turbo"),
    "compress epochs not an int": (["compress", "--epochs", "2.5"], "'--epochs'"),
    "compress option without value": (["compress", "--model"], "--model"),
    "compress force takes no value": (["compress", "--force=yes"], "--force"),
    "demo unknown option": (["demo", "--fast"], "No such option: --fast"),
    "demo extra argument": (["demo", "extra"], "unexpected extra argument"),
    "distill epochs not an int": (["distill", "--epochs", "many"], "'--epochs'"),
    "distill lr not a number": (["distill", "--lr", "fast"], "'--lr'"),
    "distill missing required": (["distill"], "Missing option"),
    "bench missing folder": (["bench"], "Missing argument"),
    "bench runs not an int": (["bench", "x", "--data", "d.npz", "--runs", "lots"], "'--runs'"),
    "inspect missing model": (["inspect"], "Missing argument"),
    "inspect unknown option": (["inspect", "m", "--depth", "3"], "No such option: --depth"),
    "engine-report missing folder": (["engine-report"], "Missing argument"),
    "profile missing bundle": (["profile"], "Missing argument"),
    "profile missing board": (["profile", "b.tar.gz"], "Missing option '--board'"),
    "profile runs not an int": (["profile", "b.tar.gz", "--board", "ssh://h", "--runs", "x"], "'--runs'"),
    "profile timeout not a number": (["profile", "b.tar.gz", "--board", "ssh://h", "--timeout", "soon"], "'--timeout'"),
    "pack missing folder": (["pack"], "Missing argument"),
    "pack extra argument": (["pack", "a", "b"], "unexpected extra argument"),
    "verify missing bundle": (["verify"], "Missing argument"),
    "targets unknown subcommand": (["targets", "frob"], "No such command 'frob'"),
    "targets show missing name": (["targets", "show"], "Missing argument"),
    "boards unknown subcommand": (["boards", "frob"], "No such command 'frob'"),
    "boards check unknown option": (["boards", "check", "--all"], "No such option: --all"),
    "prune unknown subcommand": (["prune", "frob"], "No such command 'frob'"),
    "prune scan missing required": (["prune", "scan"], "Missing option"),
    "prune scan max-drop not a number": (["prune", "scan", "--max-drop", "some"], "'--max-drop'"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_usage_error_is_one_line_exit_2_and_writes_nothing(case, tmp_path):
    args, expected = CASES[case]
    result = run_cli(*args, cwd=tmp_path)
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert expected in lines[0] and "--help`" in lines[0]
    assert list(tmp_path.iterdir()) == []


def test_help_still_exits_0(tmp_path):
    result = run_cli("compress", "--help", cwd=tmp_path)
    assert result.returncode == 0 and "--model" in result.stdout


def test_bench_without_data_on_a_tensor_artifact_says_to_give_it(tmp_path):
    """--data is optional on the command line (a language model is benched on prompts alone), not for others."""
    result = run_cli("bench", tmp_path, cwd=tmp_path)
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert len(lines) == 1 and "bench needs --data" in lines[0]
