"""`edgekit profile` against a real OpenSSH server on loopback, and the faults a real board gives."""

import glob
import hashlib
import json
import os
import sys
import time
from pathlib import Path

import pytest

import sshd
from conftest import run_cli

pytestmark = pytest.mark.skipif(sshd.unavailable() is not None, reason=f"no loopback board: {sshd.unavailable()}")
VENV_PATH = f"{Path(sys.executable).parent}:/usr/local/bin:/usr/bin:/bin"


@pytest.fixture(scope="module")
def bundle(tmp_path_factory) -> Path:
    """The MNIST example's arm64 bundle."""
    from edgekit.api import compress, pack

    out = tmp_path_factory.mktemp("profile") / "build"
    compress(model="example:mnist-student", data="example:mnist", target="arm64", out=out, quant="static", prune=0)
    return Path(pack(out / "arm64")["bundle"])


@pytest.fixture(scope="module")
def board(tmp_path_factory):
    running = sshd.LoopbackBoard(tmp_path_factory.mktemp("board"), VENV_PATH).start()
    yield running
    running.stop()


def _leftovers() -> set[str]:
    return set(glob.glob("/tmp/edgekit-profile.*"))


def _profile(bundle: Path, board, *extra, python: str = sys.executable) -> tuple:
    before = _leftovers()
    digest = hashlib.sha256(bundle.read_bytes()).hexdigest()
    start = time.monotonic()
    result = run_cli("profile", bundle, "--board", board.url, "--ssh-config", board.ssh_config, "--runs", "20",
                     "--remote-python", python, *extra, timeout=120)
    elapsed = time.monotonic() - start
    assert hashlib.sha256(bundle.read_bytes()).hexdigest() == digest  # the local bundle is untouched
    assert _leftovers() == before  # the board's temporary folder is gone
    return result, elapsed


def test_profile_returns_latency_percentiles_and_agreement(bundle, board, tmp_path):
    result, _ = _profile(bundle, board, "--json", "--out", str(tmp_path))
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    lat = report["latency_ms"]
    assert 0 < lat["p50"] <= lat["p90"] <= lat["p99"] and report["runs"] == 20
    assert report["agreement"]["top1_agreement"] == 1.0 and report["agreement"]["max_abs_diff"] < 1e-5
    assert report["board"] == f"127.0.0.1:{board.port}" and report["versions"]["onnxruntime"]
    saved = Path(report.pop("saved"))
    assert saved == tmp_path / f"arm64-on-127.0.0.1-{board.port}.json" and json.loads(saved.read_text()) == report


def _no_result_written(bundle: Path) -> bool:
    return not list(bundle.parent.glob("*-on-*.json"))


def test_changed_host_key_is_refused(bundle, board, tmp_path):
    other = sshd._keygen(tmp_path / "other_host_key")
    board.write_client_config(other)
    try:
        result, _ = _profile(bundle, board)
    finally:
        board.write_client_config(board.host_pub)
    assert result.returncode == 2 and "host key has changed" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and _no_result_written(bundle)


def test_stopped_server_is_reported_unreachable_quickly(bundle, tmp_path):
    stopped = sshd.LoopbackBoard(tmp_path / "stopped", VENV_PATH)  # configured, never started
    result, elapsed = _profile(bundle, stopped)
    assert result.returncode == 2 and "unreachable" in result.stderr and "127.0.0.1" in result.stderr
    assert elapsed < 30 and _no_result_written(bundle)


def test_board_without_the_runtime_names_what_to_install(bundle, tmp_path):
    bare = sshd.LoopbackBoard(tmp_path / "bare", "/usr/bin:/bin").start()  # no venv: no onnxruntime
    try:
        result, _ = _profile(bundle, bare, python="python3")
    finally:
        bare.stop()
    assert result.returncode == 2 and "board 127.0.0.1" in result.stderr
    assert "python3 is not on the board's PATH" in result.stderr or "python3 has no" in result.stderr
    assert _no_result_written(bundle)


def test_bad_board_spec_is_a_usage_error(bundle):
    result = run_cli("profile", bundle, "--board", "pi@192.0.2.1")
    assert result.returncode == 2 and "ssh://user@host" in result.stderr
    assert os.path.exists(bundle)


def test_timeout_ends_the_job_and_the_board_cleans_up(bundle, board):
    before = _leftovers()
    start = time.monotonic()
    result = run_cli("profile", bundle, "--board", board.url, "--ssh-config", board.ssh_config,
                     "--remote-python", sys.executable, "--runs", "50000000", "--timeout", "8", timeout=120)
    assert time.monotonic() - start < 40
    assert result.returncode == 2 and "no answer within 8 s" in result.stderr
    deadline = time.monotonic() + 20  # the board's trap removes its folder once sshd hangs up the session
    while _leftovers() != before and time.monotonic() < deadline:
        time.sleep(0.5)
    assert _leftovers() == before and _no_result_written(bundle)


def test_connection_killed_mid_run_is_reported_and_cleaned_up(bundle, board):
    import subprocess

    before = _leftovers()
    cmd = [sys.executable, "-m", "edgekit", "profile", str(bundle), "--board", board.url, "--ssh-config",
           str(board.ssh_config), "--remote-python", sys.executable, "--runs", "50000000", "--timeout", "60"]
    client = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 30
    while _leftovers() == before and time.monotonic() < deadline:  # the job has started on the board
        time.sleep(0.2)
    time.sleep(1.0)
    # kill the server's per-connection processes: the link drops as if the board's cable were pulled
    subprocess.run(["pkill", "-KILL", "-P", str(board.proc.pid)], check=False)
    _, stderr = client.communicate(timeout=60)
    assert client.returncode == 2 and "board 127.0.0.1" in stderr
    assert "dropped" in stderr or "interrupted" in stderr or "unreachable" in stderr
    deadline = time.monotonic() + 20
    while _leftovers() != before and time.monotonic() < deadline:
        time.sleep(0.5)
    assert _leftovers() == before and _no_result_written(bundle)


def test_named_boards_from_an_inventory_run_in_parallel_and_a_failing_one_is_reported(bundle, board, tmp_path):
    stopped = sshd.LoopbackBoard(tmp_path / "stopped", VENV_PATH)
    inventory = tmp_path / "boards.toml"
    inventory.write_text(f'[boards.desk]\nhost = "127.0.0.1"\nport = {board.port}\nuser = "{board.user}"\n'
                         f'python = "{sys.executable}"\ntarget = "arm64"\n\n'
                         f'[boards.gone]\nhost = "127.0.0.1"\nport = {stopped.port}\n')
    result = run_cli("profile", bundle, "--board", "desk", "--board", "gone", "--inventory", inventory,
                     "--ssh-config", board.ssh_config, "--runs", "10", "--out", tmp_path, "--json", timeout=120)
    assert result.returncode == 2 and "board gone" in result.stderr and "unreachable" in result.stderr
    (desk,) = json.loads(result.stdout)
    assert desk["board"] == "desk" and desk["agreement"]["top1_agreement"] == 1.0
    assert (tmp_path / "arm64-on-desk.json").is_file() and not (tmp_path / "arm64-on-gone.json").exists()


def test_boards_check_reports_arch_runtimes_and_disk(board, tmp_path):
    inventory = tmp_path / "boards.toml"
    inventory.write_text(f'[boards.desk]\nhost = "127.0.0.1"\nport = {board.port}\nuser = "{board.user}"\n'
                         f'python = "{sys.executable}"\n\n[boards.bare]\nhost = "127.0.0.1"\nport = {board.port}\n'
                         f'python = "/nonexistent/python3"\n')
    result = run_cli("boards", "check", "--inventory", inventory, "--ssh-config", board.ssh_config, "--json")
    assert result.returncode == 0, result.stderr
    rows = {r["board"]: r for r in json.loads(result.stdout)}
    import platform

    import onnxruntime

    assert rows["desk"]["reachable"] and rows["desk"]["arch"] == platform.machine()
    assert rows["desk"]["onnxruntime"] == onnxruntime.__version__ and rows["desk"]["free_mb"] > 0
    assert rows["bare"]["reachable"] and rows["bare"]["onnxruntime"] is None and rows["bare"]["python"] is None


def test_inventory_with_an_unknown_key_is_refused(bundle, tmp_path):
    inventory = tmp_path / "boards.toml"
    inventory.write_text('[boards.pi]\nhost = "192.0.2.1"\nhostname = "x"\n')
    result = run_cli("profile", bundle, "--board", "pi", "--inventory", inventory)
    assert result.returncode == 2 and "'hostname'" in result.stderr and "boards.toml" in result.stderr


def test_profiling_an_artifact_folder_adds_an_on_board_column_to_its_report(bundle, board, tmp_path):
    import shutil

    from edgekit.api import pack, verify

    folder = tmp_path / "arm64"
    shutil.copytree(bundle.parent / "arm64", folder)
    result = run_cli("profile", folder, "--board", board.url, "--ssh-config", board.ssh_config,
                     "--remote-python", sys.executable, "--runs", "10", timeout=120)
    assert result.returncode == 0, result.stderr
    report_md = (folder / "report.md").read_text()
    assert f"on 127.0.0.1:{board.port} p50 ms" in report_md and "## On board" in report_md
    report = json.loads((folder / "report.json").read_text())
    assert report["on_board"][f"127.0.0.1:{board.port}"]["agreement"]["top1_agreement"] == 1.0
    assert verify(pack(folder, tmp_path / "again.tar.gz")["bundle"])["ok"]  # hashes were kept in step


@pytest.fixture
def full_disk(tmp_path):
    """A 64 KiB tmpfs as the board's work dir: smaller than any bundle."""
    import subprocess

    mount = tmp_path / "tiny"
    mount.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mount)], capture_output=True).returncode:
        pytest.skip("cannot mount a small tmpfs here (needs root)")
    yield mount
    subprocess.run(["umount", str(mount)], check=False)


def test_full_remote_disk_names_the_board_and_the_fix(bundle, board, full_disk, tmp_path):
    inventory = tmp_path / "boards.toml"
    inventory.write_text(f'[boards.full]\nhost = "127.0.0.1"\nport = {board.port}\nuser = "{board.user}"\n'
                         f'python = "{sys.executable}"\nworkdir = "{full_disk}"\n')
    result = run_cli("profile", bundle, "--board", "full", "--inventory", inventory, "--ssh-config",
                     board.ssh_config, "--runs", "10", timeout=120)
    assert result.returncode == 2 and "board full: its disk is full" in result.stderr
    assert not list(full_disk.iterdir()) and _no_result_written(bundle)  # nothing left behind on the board


def test_refused_key_is_an_authentication_error(bundle, tmp_path):
    locked = sshd.LoopbackBoard(tmp_path / "locked", VENV_PATH)
    (locked.root / "authorized_keys").write_text(sshd._keygen(tmp_path / "someone_else") + "\n")
    locked.start()
    try:
        result, elapsed = _profile(bundle, locked)
    finally:
        locked.stop()
    assert result.returncode == 2 and "authentication failed" in result.stderr and "ssh-copy-id" in result.stderr
    assert elapsed < 30 and _no_result_written(bundle)


def test_tegrastats_lines_give_peak_memory_and_power():
    from edgekit.remote.tegrastats import energy_per_inference_mj, parse_tegrastats

    orin = ["11-24-2026 10:00:00 RAM 2405/7620MB (lfb 2x4MB) SWAP 0/3810MB (cached 0MB) CPU [12%@1510,8%@1510] "
            "GR3D_FREQ 45% cpu@52.1C VDD_IN 5120mW/5000mW VDD_CPU_GPU_CV 1520mW/1400mW VDD_SOC 1480mW/1450mW",
            "11-24-2026 10:00:00 RAM 2411/7620MB (lfb 2x4MB) SWAP 0/3810MB (cached 0MB) CPU [30%@1510,9%@1510] "
            "GR3D_FREQ 99% cpu@52.3C VDD_IN 6880mW/5940mW VDD_CPU_GPU_CV 2920mW/2160mW VDD_SOC 1600mW/1525mW"]
    parsed = parse_tegrastats(orin)
    assert parsed == {"samples": 2, "peak_ram_mb": 2411, "mean_power_mw": 6000.0}
    assert energy_per_inference_mj(parsed, 0.5) == pytest.approx(3.0)
    older = ["RAM 1900/3964MB (lfb 90x4MB) CPU [5%@1479,off,off,off] POM_5V_IN 3210/3100 POM_5V_GPU 120/100"]
    assert parse_tegrastats(older)["mean_power_mw"] == 3210
    assert parse_tegrastats(["no samples here"]) is None


def test_profiling_advances_a_bar_as_each_board_finishes(bundle, board, tmp_path, monkeypatch):
    from contextlib import contextmanager

    import edgekit.remote.profile as remote_profile
    from edgekit import api

    seen, real = [], remote_profile.bar

    @contextmanager
    def recording(description, total):
        steps = []
        with real(description, total) as advance:
            yield lambda n=1: (steps.append(n), advance(n))
        seen.append((description, total, sum(steps)))

    monkeypatch.setattr(remote_profile, "bar", recording)
    results, errors = api.profile(bundle, [board.url, "ssh://nobody@127.0.0.1:1"], ssh_config=board.ssh_config,
                                  remote_python=sys.executable, runs=5, timeout=60, out=tmp_path)
    assert len(results) == 1 and len(errors) == 1
    assert seen == [("profiling on 2 board(s)", 2, 2)]  # the failing board counts as finished too
