"""The Raspberry Pi 5 artifact on a real aarch64 ONNX Runtime (qemu user mode): same outputs as x86."""

import json
import tarfile

import numpy as np
import pytest

import aarch64_env

pytestmark = pytest.mark.skipif(aarch64_env.unavailable() is not None,
                                reason=f"no emulated aarch64: {aarch64_env.unavailable()}")


@pytest.fixture(scope="module")
def unpacked_bundle(tmp_path_factory, digits_npz, tiny_weights):
    from edgekit.api import compress, pack

    out = tmp_path_factory.mktemp("pi5") / "build"
    compress(model="tiny_models:resnet_tiny", weights=str(tiny_weights), data=str(digits_npz),
             target="raspberry-pi-5", out=out, quant="static", prune=0)
    bundle = pack(out / "raspberry-pi-5")["bundle"]
    with tarfile.open(bundle) as tar:
        tar.extractall(out.parent / "unpacked", filter="data")
    return out.parent / "unpacked" / "raspberry-pi-5"


@pytest.mark.parametrize("model", ["model.ort", "model.onnx"])
def test_pi5_artifact_on_aarch64_onnxruntime_matches_x86(unpacked_bundle, model):
    root = aarch64_env.ensure_root()
    ran = aarch64_env.run_python(root, ["apps/python/run_onnxruntime.py", "--model", model, "--json",
                                        "--runs", "3", "--warmup", "1"], cwd=unpacked_bundle)
    assert ran.returncode == 0, ran.stderr[-2000:]
    result = json.loads(ran.stdout.strip().splitlines()[-1])
    assert result["machine"] == "aarch64" and result["model"] == model
    reference = np.load(unpacked_bundle / "reference.npz")  # made by x86 ONNX Runtime at compress time
    assert result["agreement"]["samples"] == reference["out_0"].shape[0]
    assert result["agreement"]["top1_agreement"] == 1.0
    assert result["agreement"]["max_abs_diff"] <= 1e-5, result["agreement"]
