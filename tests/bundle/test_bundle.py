"""`edgekit pack` / `verify`: reproducible bundles, tamper detection, and the example apps run for real."""

import gzip
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest

from conftest import run_cli
from edgekit.api import pack, verify
from edgekit.bundle.pack import BundleError, _write_tar
from edgekit.errors import InputError, OutputExistsError


@pytest.fixture(scope="module")
def artifact(tmp_path_factory, digits_npz, tiny_weights) -> Path:
    from edgekit.api import compress

    out = tmp_path_factory.mktemp("bundle") / "build"
    compress(model="tiny_models:resnet_tiny", weights=str(tiny_weights), data=str(digits_npz), target="arm64",
             out=out, quant="static", prune=0)
    return out / "arm64"


@pytest.fixture(scope="module")
def bundle(artifact) -> Path:
    return Path(pack(artifact)["bundle"])


def _unpack(bundle: Path, where: Path) -> Path:
    with tarfile.open(bundle) as tar:
        tar.extractall(where, filter="data")
    return where / "arm64"


def test_pack_twice_gives_the_same_bytes(artifact, bundle, tmp_path):
    again = pack(artifact, tmp_path / "again.tar.gz")
    assert again["sha256"] == hashlib.sha256(bundle.read_bytes()).hexdigest()
    with tarfile.open(bundle) as tar:
        names = tar.getnames()
        assert names == sorted(names) and all(m.mtime == 0 and m.uid == 0 for m in tar.getmembers())
    assert {"arm64/model.onnx", "arm64/model.ort", "arm64/required_operators.config", "arm64/manifest.json",
            "arm64/reference.npz", "arm64/README.md", "arm64/apps/python/run_onnxruntime.py",
            "arm64/apps/cpp/CMakeLists.txt", "arm64/apps/cpp/main.cpp", "arm64/apps/cpp/model_io.h"} <= set(names)


def test_verify_accepts_the_bundle_and_its_manifest_describes_the_model(bundle, tmp_path):
    assert verify(bundle)["ok"] is True
    root = _unpack(bundle, tmp_path)
    manifest = json.loads((root / "manifest.json").read_text())
    assert manifest["format"] == "edgekit-bundle/1" and manifest["target"]["name"] == "arm64"
    assert manifest["inputs"][0]["name"] == "x" and manifest["versions"]["onnxruntime"]
    for name, entry in manifest["files"].items():
        assert hashlib.sha256((root / name).read_bytes()).hexdigest() == entry["sha256"]


def _repack(root: Path, path: Path) -> Path:
    _write_tar(root, path)
    return path


def test_verify_catches_one_changed_byte(bundle, tmp_path):
    root = _unpack(bundle, tmp_path)
    model = bytearray((root / "model.onnx").read_bytes())
    model[len(model) // 2] ^= 0x01
    (root / "model.onnx").write_bytes(bytes(model))
    with pytest.raises(BundleError, match="model.onnx does not match its sha256"):
        verify(_repack(root, tmp_path / "tampered.tar.gz"))
    result = run_cli("verify", tmp_path / "tampered.tar.gz")
    assert result.returncode == 2 and "model.onnx does not match" in result.stderr
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_verify_refuses_extra_files_links_and_corrupt_archives(bundle, tmp_path):
    root = _unpack(bundle, tmp_path / "a")
    (root / "payload.sh").write_text("echo hi\n")
    with pytest.raises(BundleError, match="payload.sh is not listed"):
        verify(_repack(root, tmp_path / "extra.tar.gz"))
    (root / "payload.sh").unlink()
    (root / "link").symlink_to("/etc/passwd")
    with pytest.raises(BundleError, match="unsafe"):
        verify(_repack(root, tmp_path / "link.tar.gz"))
    broken = bytearray(bundle.read_bytes())
    broken[len(broken) // 2] ^= 0xFF
    (tmp_path / "corrupt.tar.gz").write_bytes(bytes(broken))
    with pytest.raises(BundleError):
        verify(tmp_path / "corrupt.tar.gz")


def test_pack_refuses_existing_output_and_changed_artifacts(artifact, bundle, tmp_path):
    with pytest.raises(OutputExistsError, match="--force"):
        pack(artifact)
    copy = tmp_path / "arm64"
    shutil.copytree(artifact, copy)
    (copy / "model.onnx").write_bytes((copy / "model.onnx").read_bytes() + b"\0")
    with pytest.raises(InputError, match="changed since edgekit compress"):
        pack(copy)
    assert not (tmp_path / "arm64.tar.gz").exists()
    with pytest.raises(InputError, match="no manifest.json"):
        pack(tmp_path)


def test_python_app_in_the_bundle_reproduces_the_host_outputs(bundle, tmp_path):
    root = _unpack(bundle, tmp_path)
    done = subprocess.run([sys.executable, str(root / "apps" / "python" / "run_onnxruntime.py"), "--json",
                           "--runs", "20"], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["model"] == "model.ort" and result["agreement"]["top1_agreement"] == 1.0
    assert result["agreement"]["max_abs_diff"] < 1e-5 and result["latency_ms"]["p50"] > 0


def test_cpp_app_io_header_and_samples_match_the_model(bundle, tmp_path):
    root = _unpack(bundle, tmp_path)
    header = (root / "apps" / "cpp" / "model_io.h").read_text()
    assert '{"x", "float32", {1, 1, 8, 8}, "samples/in_0.bin"}' in header
    reference = np.load(root / "reference.npz")
    sample = np.fromfile(root / "samples" / "in_0.bin", dtype="<f4").reshape(1, 1, 8, 8)
    np.testing.assert_array_equal(sample, reference["in_0"][:1])
    assert (root / "samples" / "out_0.bin").stat().st_size == reference["out_0"][0].size * 4


def _ort_sdk() -> Path | None:
    """ONNX Runtime's C/C++ release folder, if the machine has one (EDGEKIT_ORT_SDK or /usr)."""
    for root in filter(None, [os.environ.get("EDGEKIT_ORT_SDK"), "/usr/local", "/usr"]):
        if list(Path(root).glob("include/**/onnxruntime_cxx_api.h")):
            return Path(root)
    return None


@pytest.mark.skipif(shutil.which("cmake") is None, reason="cmake is not installed")
def test_cpp_app_builds_and_matches_the_host(bundle, tmp_path):
    root = _unpack(bundle, tmp_path)
    build = tmp_path / "build"
    sdk = _ort_sdk()
    configure = subprocess.run(["cmake", "-S", str(root / "apps" / "cpp"), "-B", str(build),
                                f"-DONNXRUNTIME_ROOT={sdk or tmp_path / 'no-sdk'}"],
                               capture_output=True, text=True, timeout=120)
    if sdk is None:
        assert configure.returncode != 0 and "ONNX Runtime not found" in configure.stderr
        pytest.skip("ONNX Runtime's C/C++ headers are on neither PyPI nor Debian 12: set EDGEKIT_ORT_SDK "
                    "to a release folder to build the app")
    assert configure.returncode == 0, configure.stderr
    subprocess.run(["cmake", "--build", str(build)], check=True, capture_output=True, timeout=300)
    ran = subprocess.run([str(build / "edgekit_app"), str(root)], capture_output=True, text=True, timeout=120)
    assert ran.returncode == 0, ran.stderr
    assert json.loads(ran.stdout)["top1_match"] is True


def test_pack_and_verify_commands(artifact, tmp_path):
    out = tmp_path / "cli.tar.gz"
    packed = run_cli("pack", artifact, "--output", out, "--json")
    assert packed.returncode == 0, packed.stderr
    assert json.loads(packed.stdout)["sha256"] == hashlib.sha256(out.read_bytes()).hexdigest()
    checked = run_cli("verify", out)
    assert checked.returncode == 0 and "match their sha256" in checked.stdout
    assert gzip.open(out).read(1)  # a real gzip stream


def test_the_radar_shows_the_final_model_against_fp32_on_what_was_measured(tmp_path):
    """Known measurements: half the latency, half the peak memory, the same accuracy; no board, so energy is
    a gap labelled as not measured rather than a zero."""
    from edgekit.bundle.report import plot, radar_axes

    def model(ms, memory):
        return {"latency_ms": {"p50": ms}, "peak_memory_bytes": memory, "size_bytes": 4096 * ms, "accuracy": 90.0,
                "agreement": None, "cosine": None}
    report = {"target": "x86-64", "fp32": model(10.0, 100 << 20), "final": model(5.0, 50 << 20)}
    assert radar_axes(report) == {"accuracy kept": 1.0, "speed-up": 2.0, "memory saved": 2.0, "energy saved": None}
    plot(report, tmp_path / "report.png")
    assert (tmp_path / "report.png").stat().st_size > 5000
