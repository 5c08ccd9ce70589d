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
