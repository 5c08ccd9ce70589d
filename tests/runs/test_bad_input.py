"""Bad input across commands: exit code 2, one line naming the problem and the fix, no traceback, and
nothing written. (Usage errors are in test_usage_errors.py, compress's own cases in test_cli_errors.py.)"""

import io
import json
import os
import shutil
import tarfile
from pathlib import Path

import numpy as np
import pytest

from conftest import run_cli

TINY = "tiny_models:resnet_tiny"


def _one_line_error(result, expected: str) -> str:
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert expected in lines[0], lines[0]
    return lines[0]


@pytest.fixture(scope="module")
def root(tmp_path_factory, digits_npz):
    root = tmp_path_factory.mktemp("bad-input")
    x = np.load(digits_npz)["x"][:60]
    np.savez(root / "string-labels.npz", x=x, y=np.array(["cat", "dog"] * 30))
    np.savez(root / "all-nan.npz", x=np.full_like(x, np.nan))
    spotted = x.copy()
    spotted[7, 0, 2, 3] = np.inf
    np.savez(root / "one-inf.npz", x=spotted)
    np.savez(root / "wrong-shape.npz", x=np.zeros((10, 3, 5, 5), np.float32))
    (root / "latin1.jsonl").write_bytes('{"text": "caf\xe9"}\n'.encode("latin-1"))
    (root / "a-file").write_text("not a folder")
    (root / "dangling").symlink_to(root / "nowhere")
    from PIL import Image

    for name, yaml_text in {"size-zero": "size: [0, 0]\n", "size-negative": "size: [-8, 8]\n",
                            "mean-4-for-rgb": "size: [8, 8]\nmean: [0.1, 0.2, 0.3, 0.4]\n",
                            "std-zero": "size: [8, 8]\nmode: L\nstd: [0]\n",
                            "yaml-list": "- 8\n- 8\n"}.items():
        folder = root / f"images-{name}"
        folder.mkdir()
        (folder / "preprocess.yaml").write_text(yaml_text)
        Image.fromarray(np.zeros((8, 8), np.uint8)).save(folder / "a.png")
    return root


def _compress(root, data, out, *extra, digits=None, tiny_weights=None):
    return run_cli("compress", "--model", TINY, "--weights", tiny_weights, "--data", data, "--out", out,
                   "--quant", "static", "--target", "x86-64", *extra)


COMPRESS_CASES = {
    "string labels": ("{root}/string-labels.npz", "dtype <U3"),
    "all NaN data": ("{root}/all-nan.npz", "holds nan at index [0, 0, 0, 0]"),
    "one inf in data": ("{root}/one-inf.npz", "holds inf at index [7, 0, 2, 3]"),
    "preprocess size zero": ("{root}/images-size-zero", "two positive sizes"),
    "preprocess size negative": ("{root}/images-size-negative", "two positive sizes"),
    "preprocess mean of 4 for RGB": ("{root}/images-mean-4-for-rgb", "'mean' has 4 values"),
    "preprocess std zero": ("{root}/images-std-zero", "positive numbers"),
    "preprocess not a mapping": ("{root}/images-yaml-list", "mapping"),
    "non-UTF-8 jsonl": ("{root}/latin1.jsonl", "not UTF-8"),
}


@pytest.mark.parametrize("case", sorted(COMPRESS_CASES))
def test_compress_refuses_bad_data(root, tiny_weights, case):
    data, expected = COMPRESS_CASES[case]
    out = root / f"out-{case.replace(' ', '-')}"
    _one_line_error(_compress(root, data.format(root=root), out, tiny_weights=tiny_weights), expected)
    assert not out.exists()


OUT_CASES = {
    "below a file": ("{root}/a-file/out", "is a file, not a folder"),
    "a file": ("{root}/a-file", "is a file"),
    "dangling symlink": ("{root}/dangling", "symlink to a missing folder"),
}


@pytest.mark.parametrize("case", sorted(OUT_CASES))
def test_compress_refuses_an_unusable_out(root, digits_npz, tiny_weights, case):
    out, expected = OUT_CASES[case]
    _one_line_error(_compress(root, digits_npz, out.format(root=root), tiny_weights=tiny_weights), expected)
    assert (root / "a-file").read_text() == "not a folder" and (root / "dangling").is_symlink()


@pytest.mark.skipif(not Path("/sys").is_dir(), reason="no /sys to stand in for an unwritable place")
def test_compress_refuses_an_out_it_cannot_create(digits_npz, tiny_weights, tmp_path):
    result = _compress(tmp_path, digits_npz, "/sys/edgekit-out", tiny_weights=tiny_weights)
    _one_line_error(result, "cannot create --out /sys/edgekit-out")


@pytest.fixture(scope="module")
def artifact(tmp_path_factory, digits_npz, tiny_weights) -> Path:
    from edgekit.api import compress

    out = tmp_path_factory.mktemp("bench-bad") / "build"
    compress(model=TINY, weights=str(tiny_weights), data=str(digits_npz), target="x86-64", out=out,
             quant="static", prune=0)
    return out / "x86-64"


BENCH_CASES = {
    "wrong shape": ("{root}/wrong-shape.npz", "does not fit"),
    "string labels": ("{root}/string-labels.npz", "dtype <U3"),
    "NaN data": ("{root}/all-nan.npz", "holds nan"),
    "missing data": ("{root}/none.npz", "does not exist"),
}


@pytest.mark.parametrize("case", sorted(BENCH_CASES))
def test_bench_refuses_bad_data(root, artifact, case):
    data, expected = BENCH_CASES[case]
    _one_line_error(run_cli("bench", artifact, "--data", data.format(root=root)), expected)


@pytest.mark.parametrize("content", ["[1, 2]", '{"inputs": []}', "{broken"], ids=["list", "no-target", "not-json"])
def test_bench_refuses_a_bad_manifest(root, artifact, tmp_path, content, digits_npz):
    copy = tmp_path / "x86-64"
    shutil.copytree(artifact, copy)
    (copy / "manifest.json").write_text(content)
    _one_line_error(run_cli("bench", copy, "--data", digits_npz), "manifest.json")


def _bundle_with(tmp_path: Path, manifest) -> Path:
    """A .tar.gz shaped like a bundle whose manifest.json is `manifest` (a folder when it is None)."""
    path = tmp_path / "b.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        top = tarfile.TarInfo("x86-64")
        top.type = tarfile.DIRTYPE
        tar.addfile(top)
        info = tarfile.TarInfo("x86-64/manifest.json")
        if manifest is None:
            info.type = tarfile.DIRTYPE
            tar.addfile(info)
        else:
            data = json.dumps(manifest).encode()
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


VERIFY_CASES = {
    "manifest is a folder": (None, "no x86-64/manifest.json"),
    "manifest is a list": ([1, 2], "is a list"),
    "manifest lacks files": ({"format": "edgekit-bundle/1", "target": {"name": "x"}}, "lacks `files`"),
    "file entry lacks sha256": ({"format": "edgekit-bundle/1", "target": {"name": "x"}, "files": {"a": {}}},
                                "lacks `files`"),
    "manifest lacks target": ({"format": "edgekit-bundle/1", "files": {}}, "lacks `target`"),
    "target lacks runtime": ({"format": "edgekit-bundle/1", "files": {}, "target": {"name": "x"}}, "runtime"),
}


@pytest.mark.parametrize("case", sorted(VERIFY_CASES))
def test_verify_refuses_a_malformed_manifest(tmp_path, case):
    manifest, expected = VERIFY_CASES[case]
    _one_line_error(run_cli("verify", _bundle_with(tmp_path, manifest)), expected)


def test_verify_on_a_folder_says_to_pack_it(artifact):
    _one_line_error(run_cli("verify", artifact), "is a folder; pass the .tar.gz")


def test_bench_on_a_file_instead_of_a_folder(root, digits_npz):
    _one_line_error(run_cli("bench", root / "a-file", "--data", digits_npz), "manifest.json")


BOARDS = {
    "not UTF-8": ('[boards.a]\nhost = "caf\xe9"\n'.encode("latin-1"), "not UTF-8"),
    "boards is a number": (b"boards = 3\n", "'boards' must be a table"),
    "board is a string": (b'[boards]\na = "host"\n', "board 'a' must be a [boards.a] table"),
    "host is an option": (b'[boards.a]\nhost = "-oProxyCommand=touch /tmp/owned"\n', "not a plain name"),
    "user is an option": (b'[boards.a]\nhost = "pi5"\nuser = "-oProxyCommand=x"\n', "not a plain name"),
    "host has a space": (b'[boards.a]\nhost = "pi5 -v"\n', "not a plain name"),
    "port out of range": (b'[boards.a]\nhost = "pi5"\nport = 70000\n', "port"),
    "not TOML": (b"[boards\n", "not valid TOML"),
}


@pytest.mark.parametrize("case", sorted(BOARDS))
def test_boards_check_refuses_a_bad_inventory(tmp_path, case):
    content, expected = BOARDS[case]
    (tmp_path / "boards.toml").write_bytes(content)
    _one_line_error(run_cli("boards", "check", "--inventory", tmp_path / "boards.toml"), expected)
    assert not Path("/tmp/owned").exists()


BOARD_URLS = {
    "host is an option": "ssh://-oProxyCommand=touch%20/tmp/owned",
    "user is an option": "ssh://-oProxyCommand=x@pi5",
    "no host": "ssh://pi@",
    "port not a number": "ssh://pi@pi5:ssh",
    "not ssh": "http://pi5",
}


@pytest.mark.parametrize("case", sorted(BOARD_URLS))
def test_profile_and_boards_check_refuse_a_bad_board_address(artifact, tmp_path, case):
    url = BOARD_URLS[case]
    for args in (["boards", "check", "--board", url], ["profile", artifact, "--board", url]):
        result = run_cli(*args, cwd=tmp_path)
        _one_line_error(result, "--board" if case in ("no host", "port not a number", "not ssh") else "not a plain name")
    assert not Path("/tmp/owned").exists()


def test_ssh_destination_comes_after_the_end_of_options():
    from edgekit.remote.ssh import SSH, Board

    args = SSH(Board(name="pi5", host="pi5", user="pi")).args()
    assert args[-2:] == ["--", "pi@pi5"]


def test_error_messages_quote_the_commands_they_suggest():
    from edgekit.remote.ssh import Board, explain_ssh_failure

    board = Board(name="b", host="pi5;rm", user="pi")
    text = explain_ssh_failure(board, "REMOTE HOST IDENTIFICATION HAS CHANGED")
    assert "`ssh-keygen -R 'pi5;rm'`" in text
    assert "`ssh -- 'pi@pi5;rm'`" in explain_ssh_failure(board, "something odd")


def test_pack_refuses_manifest_entries_outside_the_folder(artifact, tmp_path):
    copy = tmp_path / "art" / "x86-64"
    shutil.copytree(artifact, copy)
    secret = tmp_path / "art" / "secret.txt"
    secret.write_text("outside")
    manifest = json.loads((copy / "manifest.json").read_text())
    from edgekit.files import sha256_file

    manifest["files"]["../secret.txt"] = {"sha256": sha256_file(secret), "bytes": 7}
    (copy / "manifest.json").write_text(json.dumps(manifest))
    _one_line_error(run_cli("pack", copy), "not a file name inside")
    assert sorted(p.name for p in (tmp_path / "art").iterdir()) == ["secret.txt", "x86-64"]


def test_pickled_checkpoint_is_refused_without_advice_to_unpickle(root, digits_npz, tmp_path):
    import torch

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {tmp_path / 'ran'}",))

    torch.save({"w": Payload()}, tmp_path / "evil.pt")
    result = run_cli("compress", "--model", TINY, "--weights", tmp_path / "evil.pt", "--data", digits_npz,
                     "--out", tmp_path / "out")
    line = _one_line_error(result, "holds pickled Python objects")
    assert "weights_only=False" not in line and "safetensors" in line
    assert not (tmp_path / "ran").exists() and not (tmp_path / "out").exists()


def test_split_without_training_data_is_refused_for_qad_and_used_as_asked_for_ptq(tmp_path, digits_npz, tiny_weights):
    result = run_cli("compress", "--model", TINY, "--weights", tiny_weights, "--data", digits_npz,
                     "--out", tmp_path / "qad", "--quant", "qad", "--split", "0,0.5,0.5")
    _one_line_error(result, "leaves no training samples")
    from edgekit.data import load_data, make_splits

    data = load_data(digits_npz)
    splits = make_splits(data, (0.0, 0.5, 0.5), 0)
    assert len(splits.train) == 0 and len(splits.calib) == 512 and len(splits.eval) == round(len(data) / 2)
    with_train = make_splits(data, (0.2, 0.6, 0.2), 0)
    assert len(with_train.calib) == 512 and len(with_train.train) + 512 + len(with_train.eval) == len(data)


def test_calibration_cap_is_said(tmp_path, digits_npz, tiny_weights):
    result = run_cli("compress", "--model", TINY, "--weights", tiny_weights, "--data", digits_npz,
                     "--out", tmp_path / "o", "--quant", "static", "--split", "0.2,0.6,0.2", "--target", "x86-64")
    assert result.returncode == 0, result.stderr
    assert "calibration uses 512 of the" in " ".join(result.stderr.split())


def test_pack_force_replaces_only_an_earlier_bundle(artifact, tmp_path):
    notes = tmp_path / "notes.tar.gz"
    notes.write_text("my notes")
    _one_line_error(run_cli("pack", artifact, "--output", notes, "--force"), "not a bundle edgekit packed")
    assert notes.read_text() == "my notes"
    bundle = tmp_path / "b.tar.gz"
    assert run_cli("pack", artifact, "--output", bundle).returncode == 0
    assert run_cli("pack", artifact, "--output", bundle, "--force").returncode == 0


OPTION_CASES = {
    "factory needs arguments": (["--model", "os:system"], "give a factory that builds the model"),
    "factory returns no module": (["--model", "os:getcwd"], "not a torch.nn.Module"),
    "no evaluation split": (["--split", "1,0,0"], "leaves no evaluation samples"),
    "unknown protected layer": (["--prune", "0.5", "--protect", "no.such.layer"], "--protect no.such.layer"),
    "unknown layer in ratios": (["--layer-ratios", "{root}/ratios.json"], "layer ratio for model.nope"),
}


@pytest.mark.parametrize("case", sorted(OPTION_CASES))
def test_compress_refuses_bad_options_and_leaves_no_folder(root, digits_npz, tiny_weights, case):
    """Some of these are found only once a stage runs: the folder that run made is removed again."""
    extra, expected = OPTION_CASES[case]
    (root / "ratios.json").write_text('{"model.nope": 0.5}')
    out = root / f"out-{case.replace(' ', '-')}"
    model = [] if extra[0] == "--model" else ["--model", TINY, "--weights", tiny_weights]
    result = run_cli("compress", *model, "--data", digits_npz, "--out", out, "--quant", "static",
                     "--target", "x86-64", *[e.format(root=root) for e in extra])
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    assert lines[-1].startswith("error: ") and expected in lines[-1], result.stderr
    assert not out.exists()


def test_inspect_and_scan_refuse_empty_shapes_and_sample_counts(tiny_weights, digits_npz, tmp_path):
    _one_line_error(run_cli("inspect", TINY, "--input-shape", "0,0"), "must be positive integers")
    _one_line_error(run_cli("prune", "scan", "--model", TINY, "--weights", tiny_weights, "--data", digits_npz,
                            "--out", tmp_path / "scan", "--eval-samples", "0"), "--eval-samples 0 must be at least 1")
    assert not (tmp_path / "scan").exists()
