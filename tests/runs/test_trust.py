"""What a careless or hostile user must not be able to do: lose files to --force, mix two runs in one folder,
read an interrupted run as a success, resume from another folder's files, or get different bytes from
another folder or shell."""

import glob
import json
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import ROOT, run_cli
from edgekit.files import sha256_file

TINY = "tiny_models:resnet_tiny"
MODEL_FILES = ("model.onnx", "model.ort", "required_operators.config")


@pytest.fixture(scope="module")
def digits_npz(tmp_path_factory) -> Path:
    """600 of the real digits: every run here is a whole compress or distill, so a smaller set keeps them quick."""
    from conftest import digits_arrays

    x, y = digits_arrays()
    path = tmp_path_factory.mktemp("trust-data") / "digits600.npz"
    np.savez(path, x=x[:600], y=y[:600])
    return path


def _args(tiny_weights, digits_npz, out, *extra) -> list[str]:
    return ["compress", "--model", TINY, "--weights", str(tiny_weights), "--data", str(digits_npz), "--out", str(out),
            "--target", "x86-64", *map(str, extra)]


def _start(args: list[str], cwd: Path | None = None, env: dict | None = None) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "edgekit", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, cwd=cwd, env=env or os.environ.copy())


def _wait_for(pattern: str, proc: subprocess.Popen, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while not glob.glob(pattern):
        assert proc.poll() is None, f"process ended before {pattern} appeared: {proc.communicate()[1][-2000:]}"
        assert time.monotonic() < deadline, f"{pattern} never appeared"
        time.sleep(0.02)


def _last_line(text: str) -> str:
    return [ln for ln in text.splitlines() if ln.strip()][-1]


def _one_line_error(result, expected: str) -> None:
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    assert len(lines) == 1 and expected in lines[0], result.stderr


def _hashes(folder: Path, names=MODEL_FILES) -> dict[str, str]:
    return {n: sha256_file(folder / n) for n in names}


def _leftovers(out: Path, pid: int) -> list[str]:
    found = glob.glob(str(out / ".*.tmp")) + glob.glob(str(out / "work" / ".*.tmp"))
    found += glob.glob(str(out / "checkpoints" / ".*.partial"))
    return found + glob.glob(f"/tmp/edgekit-{pid:07d}-*")


# --- --force never deletes what edgekit did not make ------------------------------------------------------

@pytest.fixture(scope="module")
def made_once(tmp_path_factory, digits_npz, tiny_weights) -> Path:
    out = tmp_path_factory.mktemp("made") / "made"
    result = run_cli(*_args(tiny_weights, digits_npz, out, "--quant", "none"))
    assert result.returncode == 0, result.stderr
    return out


@pytest.fixture
def made(made_once, tmp_path) -> Path:
    """A copy of a folder a real compress wrote (with edgekit's marker)."""
    return Path(shutil.copytree(made_once, tmp_path / "made", symlinks=True))


def test_force_refuses_a_folder_edgekit_did_not_write(tmp_path, digits_npz, tiny_weights):
    project = tmp_path / "project"
    project.mkdir()
    (project / "notes.txt").write_text("mine")
    _one_line_error(run_cli(*_args(tiny_weights, digits_npz, project, "--force")), "edgekit did not write it")
    assert [p.name for p in project.iterdir()] == ["notes.txt"]


def test_force_refuses_the_working_directory(made, digits_npz, tiny_weights):
    before = sorted(p.name for p in made.iterdir())
    _one_line_error(run_cli(*_args(tiny_weights, digits_npz, ".", "--force"), cwd=made), "holds the working directory")
    _one_line_error(run_cli(*_args(tiny_weights, digits_npz, "..", "--force"), cwd=made / "work"),
                    "holds the working directory")
    assert sorted(p.name for p in made.iterdir()) == before


def test_force_refuses_a_folder_holding_an_input(made, tmp_path, digits_npz, tiny_weights):
    shutil.copy(digits_npz, made / "calib.npz")
    shutil.copy(tiny_weights, made / "work" / "w.safetensors")
    _one_line_error(run_cli(*_args(tiny_weights, made / "calib.npz", made, "--force")), "holds the input")
    _one_line_error(run_cli(*_args(made / "work" / "w.safetensors", digits_npz, made, "--force")), "holds the input")
    assert (made / "calib.npz").is_file() and (made / "work" / "w.safetensors").is_file()


def test_force_refuses_a_symlink(made, tmp_path, digits_npz, tiny_weights):
    link = tmp_path / "link"
    link.symlink_to(made)
    before = sorted(p.name for p in made.iterdir())
    _one_line_error(run_cli(*_args(tiny_weights, digits_npz, link, "--force")), "it is a symlink")
    assert sorted(p.name for p in made.iterdir()) == before and link.is_symlink()


def test_force_replaces_a_folder_edgekit_wrote(made, digits_npz, tiny_weights):
    (made / "work" / "stale.txt").write_text("old run")
    result = run_cli(*_args(tiny_weights, digits_npz, made, "--quant", "none", "--force"))
    assert result.returncode == 0, result.stderr
    assert not (made / "work" / "stale.txt").exists() and (made / "x86-64" / "model.onnx").is_file()
    assert (made / ".edgekit-output").is_file() and not (made / ".edgekit.lock").exists()


# --- signals: exit 130 / 143, one line, nothing half-written, --resume gives the same bytes ---------------

def test_sigint_in_qad_exits_130_cleans_up_and_resume_gives_the_same_model(tmp_path, digits_npz, tiny_weights):
    settings = ("--quant", "qad", "--epochs", "8", "--prune", "0")
    straight = _start(_args(tiny_weights, digits_npz, tmp_path / "straight", *settings))
    _wait_for(str(tmp_path / "straight" / ".edgekit.lock"), straight)
    second = run_cli(*_args(tiny_weights, digits_npz, tmp_path / "straight", "--force", *settings))
    _one_line_error(second, f"in use by another edgekit run (pid {straight.pid}")  # two runs never mix

    stopped = _start(_args(tiny_weights, digits_npz, tmp_path / "stopped", *settings))
    _wait_for(str(tmp_path / "stopped" / "work" / ".03-qad.*.tmp"), stopped)
    time.sleep(0.1)
    stopped.send_signal(signal.SIGINT)
    _, err = stopped.communicate(timeout=120)
    assert stopped.returncode == 130 and "Traceback" not in err, err
    assert _last_line(err) == "interrupted by SIGINT; finished stages are kept: rerun with --resume"
    assert _leftovers(tmp_path / "stopped", stopped.pid) == []
    assert not (tmp_path / "stopped" / ".edgekit.lock").exists()
    assert (tmp_path / "stopped" / "work" / "02-calibrate" / "artifact.json").is_file()
    assert not (tmp_path / "stopped" / "work" / "03-qad").exists()  # stopped inside QAD

    resumed = run_cli(*_args(tiny_weights, digits_npz, tmp_path / "stopped", "--resume", *settings))
    assert resumed.returncode == 0, resumed.stderr
    assert "reused 02-calibrate" in " ".join(resumed.stderr.split())
    assert straight.wait(timeout=300) == 0, straight.communicate()[1][-2000:]
    assert _hashes(tmp_path / "stopped" / "x86-64") == _hashes(tmp_path / "straight" / "x86-64")


def _distill_args(out: Path, digits_npz, tiny_weights, *extra) -> list[str]:
    return ["distill", "--teacher", TINY, "--teacher-weights", str(tiny_weights), "--student",
            "tiny_models:resnet_tiny_student", "--data", str(digits_npz), "--out", str(out), "--epochs", "6",
            "--lr", "3e-3", *map(str, extra)]


def test_sigterm_in_distill_exits_143_and_resume_ends_where_a_straight_run_does(tmp_path, digits_npz, tiny_weights):
    straight = run_cli(*_distill_args(tmp_path / "straight", digits_npz, tiny_weights))
    assert straight.returncode == 0, straight.stderr
    stopped = _start(_distill_args(tmp_path / "stopped", digits_npz, tiny_weights))
    _wait_for(str(tmp_path / "stopped" / "checkpoints" / "epoch-001.state.pt"), stopped)
    stopped.send_signal(signal.SIGTERM)
    _, err = stopped.communicate(timeout=120)
    assert stopped.returncode == 143 and "Traceback" not in err, err
    assert _last_line(err) == "interrupted by SIGTERM; finished stages are kept: rerun with --resume"
    assert _leftovers(tmp_path / "stopped", stopped.pid) == [] and not (tmp_path / "stopped" / "student.safetensors").exists()
    resumed = run_cli(*_distill_args(tmp_path / "stopped", digits_npz, tiny_weights, "--resume"))
    assert resumed.returncode == 0, resumed.stderr
    assert sha256_file(tmp_path / "stopped" / "student.safetensors") == sha256_file(tmp_path / "straight" / "student.safetensors")

    changed = run_cli(*_distill_args(tmp_path / "stopped", digits_npz, tiny_weights, "--resume", "--lr", "0.01"))
    _one_line_error(changed, "--resume with --lr 0.01 but the run started with 0.003")
    (tmp_path / "stopped" / "checkpoints" / "epoch-005.state.pt").write_bytes(b"\x00garbage")
    _one_line_error(run_cli(*_distill_args(tmp_path / "stopped", digits_npz, tiny_weights, "--resume")), "is damaged")
    (tmp_path / "stopped" / "history.json").write_text("[{broken")
    _one_line_error(run_cli(*_distill_args(tmp_path / "stopped", digits_npz, tiny_weights, "--resume")), "is damaged")


# --- resume reads a folder's own stage files --------------------------------------------------------------

@pytest.mark.slow  # 17 s: four compress runs
def test_a_copied_or_moved_output_folder_resumes_from_its_own_files(tmp_path, digits_npz, tiny_weights):
    original = tmp_path / "original"
    settings = ("--quant", "static", "--prune", "0.5")
    assert run_cli(*_args(tiny_weights, digits_npz, original, *settings)).returncode == 0
    int8 = _hashes(original / "x86-64")
    copy = tmp_path / "elsewhere" / "copy"
    shutil.copytree(original, copy, symlinks=True)
    export = next((original / "work").glob("*-export"))
    shutil.copy(original / "work" / "01-source" / "fp32.onnx", export / "model.onnx")  # the original changes

    resumed = run_cli(*_args(tiny_weights, digits_npz, copy, "--resume", *settings))
    assert resumed.returncode == 0, resumed.stderr
    assert "reused 05-compile" in " ".join(resumed.stderr.split())
    assert _hashes(copy / "x86-64") == int8

    shutil.rmtree(original)  # moved: the old place is gone
    assert run_cli(*_args(tiny_weights, digits_npz, copy, "--resume", *settings)).returncode == 0
    assert _hashes(copy / "x86-64") == int8

    record = copy / "work" / "03-calibrate" / "artifact.json"
    data = json.loads(record.read_text())
    data["folder"] = str(original / "work" / "03-calibrate")
    record.write_text(json.dumps(data))
    refused = run_cli(*_args(tiny_weights, digits_npz, copy, "--resume", *settings))
    assert refused.returncode == 2 and "Traceback" not in refused.stderr  # stages before it are reused first
    assert _last_line(refused.stderr).startswith("error: ") and "was written for another folder" in refused.stderr


# --- a killed run's leftovers and lock -------------------------------------------------------------------

def test_leftovers_and_the_lock_of_a_killed_run_are_cleared_by_the_next(made, digits_npz, tiny_weights):
    dead = subprocess.Popen(["true"])
    dead.wait()
    (made / ".edgekit.lock").write_text(json.dumps({"pid": dead.pid, "host": os.uname().nodename}))
    (made / "work" / ".04-qad.abc123.tmp").mkdir()
    (made / ".x86-64.def456.tmp").mkdir()
    scratch = Path(f"/tmp/edgekit-{dead.pid:07d}-q-leftover")
    scratch.mkdir(exist_ok=True)
    result = run_cli(*_args(tiny_weights, digits_npz, made, "--quant", "none", "--resume"))
    assert result.returncode == 0, result.stderr
    assert not (made / "work" / ".04-qad.abc123.tmp").exists() and not (made / ".x86-64.def456.tmp").exists()
    assert not scratch.exists() and not (made / ".edgekit.lock").exists()


# --- same inputs, same bytes, from any folder and shell --------------------------------------------------

@pytest.mark.slow  # 13 s; same-bytes runs in one folder stay in the default run (tests/runs/test_pipeline.py)
def test_same_inputs_give_the_same_bytes_from_another_folder_and_environment(tmp_path, digits_npz, tiny_weights):
    settings = ("--quant", "static", "--prune", "0.5")
    here = tmp_path / "a"
    there = tmp_path / "some" / "much" / "deeper" / "folder" / "b"
    (tmp_path / "cwd1").mkdir()
    there.parent.mkdir(parents=True)
    env = {**os.environ, "EDGEKIT_PROBE_PADDING": "x" * 517, "SOME_OTHER_SETTING": "1"}
    first = run_cli(*_args(tiny_weights, digits_npz, here, *settings), cwd=tmp_path / "cwd1")
    second = subprocess.run([sys.executable, "-m", "edgekit", *_args(tiny_weights, digits_npz, there, *settings)],
                            capture_output=True, text=True, cwd=there.parent, env=env, timeout=600)
    assert first.returncode == 0 and second.returncode == 0, first.stderr + second.stderr
    names = (*MODEL_FILES, "manifest.json", "reference.npz")
    assert _hashes(here / "x86-64", names) == _hashes(there / "x86-64", names)
    assert str(tmp_path) not in (here / "x86-64" / "manifest.json").read_text()
    bundles = [run_cli("pack", folder / "x86-64", "--json") for folder in (here, there)]
    assert all(b.returncode == 0 for b in bundles), bundles[0].stderr
    assert json.loads(bundles[0].stdout)["sha256"] == json.loads(bundles[1].stdout)["sha256"]


# --- bundles ---------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def bundle(tmp_path_factory, digits_npz, tiny_weights) -> Path:
    out = tmp_path_factory.mktemp("trust-bundle") / "build"
    assert run_cli(*_args(tiny_weights, digits_npz, out, "--quant", "static", "--prune", "0")).returncode == 0
    assert run_cli("pack", out / "x86-64").returncode == 0
    return out / "x86-64.tar.gz"


def test_verify_refuses_a_bundle_with_a_member_twice(bundle, tmp_path):
    doubled = tmp_path / "doubled.tar.gz"
    with tarfile.open(bundle) as src, tarfile.open(doubled, "w:gz") as dst:
        for member in src.getmembers():
            if member.name == "x86-64/model.onnx":
                fake = tarfile.TarInfo(member.name)
                fake.size = 4
                dst.addfile(fake, __import__("io").BytesIO(b"evil"))
            dst.addfile(member, src.extractfile(member) if member.isfile() else None)
    _one_line_error(run_cli("verify", doubled), "'x86-64/model.onnx' appears twice")


@pytest.mark.skipif(not Path("/proc/self/status").is_file(), reason="needs Linux /proc to read the peak memory")
def test_verify_streams_members_instead_of_reading_them_whole(bundle, tmp_path):
    from edgekit.bundle.pack import _write_tar

    with tarfile.open(bundle) as tar:
        tar.extractall(tmp_path, filter="data")
    root = tmp_path / "x86-64"
    size = 300 << 20
    with open(root / "big.bin", "wb") as f:
        f.truncate(size)
    manifest = json.loads((root / "manifest.json").read_text())
    manifest["files"]["big.bin"] = {"sha256": sha256_file(root / "big.bin"), "bytes": size}
    (root / "manifest.json").write_text(json.dumps(manifest))
    _write_tar(root, tmp_path / "big.tar.gz")
    (root / "big.bin").unlink()
    # VmHWM is this process's own peak (ru_maxrss would carry the parent's peak across exec)
    probe = ("import re, sys; from edgekit.bundle.pack import verify; verify(sys.argv[1]); "
             "print(int(re.search(r'VmHWM:\\s+(\\d+)', open('/proc/self/status').read()).group(1)) * 1024)")
    done = subprocess.run([sys.executable, "-c", probe, str(tmp_path / "big.tar.gz")], capture_output=True,
                          text=True, timeout=300, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    assert int(done.stdout.strip()) < size / 2  # a whole read would hold the 300 MiB member at once


# --- small things scripts rely on ------------------------------------------------------------------------

def test_json_never_holds_nan():
    from edgekit.files import json_text

    text = json_text({"a": float("nan"), "b": [float("inf"), 1.5], "c": np.float32("nan")})
    assert json.loads(text, parse_constant=lambda c: pytest.fail(f"bare {c} in JSON")) == \
        {"a": None, "b": [None, 1.5], "c": None}


@pytest.mark.skipif(shutil.which("ssh") is None, reason="no ssh client (apt-get install openssh-client)")
def test_boards_check_exits_1_when_a_board_is_unreachable(tmp_path):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed once the block ends: nothing listens there
    result = run_cli("boards", "check", "--board", f"ssh://nobody@127.0.0.1:{port}", "--json", cwd=tmp_path,
                     timeout=60)
    assert result.returncode == 1, result.stderr
    assert json.loads(result.stdout)[0]["reachable"] is False



@pytest.mark.parametrize("limit", [pytest.param(2_000, marks=pytest.mark.slow), 60_000],
                         ids=["first-write", "onnx-export"])  # the first write's case: 11 s, slow set
def test_a_full_disk_is_one_line_and_resume_completes(tmp_path, digits_npz, tiny_weights, limit):
    """A file-size limit (RLIMIT_FSIZE, SIGXFSZ ignored) fails writes with EFBIG, as a full disk does with
    ENOSPC; at 60 kB it hits the ONNX export, whose error once blamed "the model's ops"."""
    import resource

    def limited():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    out = tmp_path / "out"
    args = _args(tiny_weights, digits_npz, out, "--quant", "static", "--prune", "0.5")
    full = subprocess.run([sys.executable, "-m", "edgekit", *args], capture_output=True, text=True, timeout=600,
                          preexec_fn=limited)
    assert full.returncode == 2 and "Traceback" not in full.stderr, full.stderr
    assert _last_line(full.stderr).startswith("error: a file grew past the size limit")
    assert "model's ops" not in full.stderr
    assert not glob.glob(str(out / "work" / ".*.tmp")) and not (out / ".edgekit.lock").exists()
    resumed = run_cli(*args, "--resume")
    assert resumed.returncode == 0, resumed.stderr
    assert (out / "x86-64" / "model.ort").is_file()
