"""A language model's bundle: packed with its generate/chat runner, profiled on the loopback board (tokens per
second, time to first token, memory, greedy tokens checked against the host's), and run on an emulated aarch64
ONNX Runtime GenAI (the Raspberry Pi 5 artifact) with the host's greedy tokens."""

import json
import sys
import tarfile
from pathlib import Path

import pytest

import aarch64_env
import sshd
from conftest import run_cli

VENV_PATH = f"{Path(sys.executable).parent}:/usr/local/bin:/usr/bin:/bin"


@pytest.fixture(scope="module")
def pi5(tiny_llama_build):
    out, _, _ = tiny_llama_build
    packed = run_cli("pack", out / "raspberry-pi-5", "--json")
    assert packed.returncode == 0, packed.stderr
    return out / "raspberry-pi-5", Path(json.loads(packed.stdout)["bundle"])


def test_the_bundle_holds_the_model_folder_its_runner_and_the_hosts_tokens(pi5):
    folder, bundle = pi5
    with tarfile.open(bundle) as tar:
        names = {m.name.split("/", 1)[1] for m in tar.getmembers() if "/" in m.name}
    assert {"model.onnx", "genai_config.json", "tokenizer.json", "reference.json", "manifest.json",
            "apps/python/run_genai.py", "apps/python/verify_bundle.py", "README.md"} <= names
    reference = json.loads((folder / "reference.json").read_text())
    assert len(reference["prompt_ids"]) == 32 and len(reference["greedy_tokens"]) == 16
    verified = run_cli("verify", bundle, "--json")
    assert verified.returncode == 0 and json.loads(verified.stdout)["kind"] == "causal-lm"
    again = run_cli("pack", folder, "--output", bundle.with_name("again.tar.gz"))
    assert again.returncode == 0 and bundle.with_name("again.tar.gz").read_bytes() == bundle.read_bytes()


@pytest.mark.skipif(sshd.unavailable() is not None, reason=f"no loopback board: {sshd.unavailable()}")
def test_profile_on_the_loopback_board_reports_tokens_per_second(pi5, tmp_path):
    folder, bundle = pi5
    board = sshd.LoopbackBoard(tmp_path / "board", VENV_PATH).start()
    try:
        result = run_cli("profile", bundle, "--board", board.url, "--ssh-config", board.ssh_config, "--json",
                         "--remote-python", sys.executable, "--out", str(tmp_path / "results"), timeout=300)
        assert result.returncode == 0, result.stderr
        report = json.loads(result.stdout)
        assert report["check"]["reference_match"] is True and report["check"]["tokens"] == 16
        assert report["decode_tok_s"] > 0 and report["prefill_tok_s"] > 0 and report["ttft_ms"] > 0
        assert report["peak_rss_mib"] > 10 and report["runs"] >= 1
        folded = run_cli("profile", folder, "--board", board.url, "--ssh-config", board.ssh_config,
                         "--remote-python", sys.executable, "--out", str(tmp_path / "results"), timeout=300)
        assert folded.returncode == 0 and "decode" in folded.stdout, folded.stderr
        assert "On the board" in (folder / "report.md").read_text()
    finally:
        board.stop()


@pytest.mark.skipif(aarch64_env.unavailable() is not None, reason=f"no emulated aarch64: {aarch64_env.unavailable()}")
def test_the_pi5_artifact_generates_the_hosts_greedy_tokens_on_aarch64(pi5, tmp_path):
    _, bundle = pi5
    with tarfile.open(bundle) as tar:
        tar.extractall(tmp_path, filter="data")
    unpacked = tmp_path / "raspberry-pi-5"
    root = aarch64_env.ensure_root()
    ran = aarch64_env.run_python(root, ["apps/python/run_genai.py", "--json", "--runs", "1", "--prompt-tokens", "16",
                                        "--new-tokens", "8"], cwd=unpacked)
    assert ran.returncode == 0, ran.stderr[-2000:]
    result = json.loads(ran.stdout.strip().splitlines()[-1])
    assert result["machine"] == "aarch64" and result["check"]["reference_match"] is True, result


def _cpp_tools() -> str | None:
    import shutil

    missing = [tool for tool in ("cmake", "c++") if shutil.which(tool) is None]
    return f"{', '.join(missing)} not installed" if missing else None


@pytest.mark.skipif(_cpp_tools() is not None, reason=f"no C++ build: {_cpp_tools()}")
def test_the_cpp_app_builds_on_the_wheels_library_and_generates_the_hosts_tokens(pi5, tmp_path):
    """The bundle's C++ app, built with CMake against the libonnxruntime-genai.so of the pip wheel, checks the
    shipped prompt's greedy tokens (the host's) and times generation; without the library CMake stops in one
    line saying what to pass."""
    import os
    import subprocess

    import onnxruntime_genai

    _, bundle = pi5
    with tarfile.open(bundle) as tar:
        tar.extractall(tmp_path, filter="data")
    unpacked = tmp_path / "raspberry-pi-5"
    library = Path(onnxruntime_genai.__file__).parent
    configure = subprocess.run(["cmake", "-S", unpacked / "apps" / "cpp", "-B", tmp_path / "build",
                                f"-DONNXRUNTIME_GENAI_DIR={library}"], capture_output=True, text=True)
    assert configure.returncode == 0, configure.stderr[-2000:]
    built = subprocess.run(["cmake", "--build", tmp_path / "build"], capture_output=True, text=True)
    assert built.returncode == 0, built.stdout[-2000:] + built.stderr[-2000:]
    ran = subprocess.run([tmp_path / "build" / "edgekit_genai_app", unpacked, "--runs", "1", "--prompt-tokens", "16",
                          "--new-tokens", "8"], capture_output=True, text=True, timeout=300,
                         env={**os.environ, "LD_LIBRARY_PATH": str(library)})
    assert ran.returncode == 0, ran.stderr[-2000:]
    result = json.loads(ran.stdout.strip().splitlines()[-1])
    assert result["check"] == {"reference_match": True, "matched_tokens": 16, "tokens": 16}, result
    assert result["decode_tok_s"] > 0 and result["ttft_ms"] > 0 and result["new_tokens"] == 8

    nowhere = subprocess.run(["cmake", "-S", unpacked / "apps" / "cpp", "-B", tmp_path / "nowhere",
                              f"-DONNXRUNTIME_GENAI_DIR={tmp_path}"], capture_output=True, text=True)
    assert nowhere.returncode != 0 and "libonnxruntime-genai.so not found" in nowhere.stderr
