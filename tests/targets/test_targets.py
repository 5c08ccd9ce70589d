import pytest

from edgekit.errors import TargetError
from edgekit.target import builtin_targets, load_target


def test_builtin_targets_load_and_validate():
    names = builtin_targets()
    assert {"arm64", "x86-64"} <= set(names)
    for name in names:
        target = load_target(name)
        assert target.name == name
        assert target.round_to >= 1


def test_user_board_file_is_accepted(tmp_path):
    board = tmp_path / "my-board.yaml"
    board.write_text("name: my-board\narch: aarch64\nruntime: onnxruntime\nround_to: 16\n")
    target = load_target(str(board))
    assert target.round_to == 16 and target.bench.runs == 100


def test_unknown_key_is_rejected_with_its_name(tmp_path):
    board = tmp_path / "bad.yaml"
    board.write_text("name: b\narch: aarch64\nruntime: onnxruntime\nround_too: 8\n")
    with pytest.raises(TargetError, match="round_too"):
        load_target(str(board))


def test_unknown_target_lists_known_ones():
    with pytest.raises(TargetError, match="arm64"):
        load_target("jetson-nano-9000")


def test_the_issue_boards_are_built_in():
    names = set(builtin_targets())
    assert {"jetson-orin-nano", "jetson-orin-nx", "jetson-agx-orin", "jetson-xavier-nx",
            "raspberry-pi-5", "raspberry-pi-4", "arm64", "x86-64"} <= names
    nano, xavier = load_target("jetson-orin-nano"), load_target("jetson-xavier-nx")
    assert nano.runtime == "tensorrt" and nano.quant_preset == "trt-s8s8" and nano.tensorrt.dla_cores == 0
    assert xavier.tensorrt.version_tuple() < (10,) and xavier.tensorrt.compute_capability == "7.2"
    assert load_target("raspberry-pi-5").cpu == "cortex-a76"


def test_tensorrt_board_without_its_tensorrt_block_is_refused(tmp_path):
    board = tmp_path / "my-jetson.yaml"
    board.write_text("name: my-jetson\narch: aarch64\nruntime: tensorrt\nquant_preset: trt-s8s8\nort_format: false\n")
    with pytest.raises(TargetError, match="needs a 'tensorrt' block"):
        load_target(str(board))


def test_targets_show_prints_one_board():
    import json

    from conftest import run_cli

    shown = run_cli("targets", "show", "jetson-xavier-nx")
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["tensorrt"]["jetpack"].startswith("5.")
    missing = run_cli("targets", "show", "jetson-nano-9000")
    assert missing.returncode == 2 and "unknown target" in missing.stderr
