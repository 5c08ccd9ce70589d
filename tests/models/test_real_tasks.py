"""The task, not just the tensors: published models on real inputs, judged by what their users read off them
(the character detector's boxes, the echo-quality score), plain INT8 against edgekit's default run."""

import json

import numpy as np
import pytest

from conftest import run_cli
from real_data import captcha_pages, detection_f1, echo_scenes, espeak_available
from test_real_onnx import SHARED

pytestmark = pytest.mark.skipif(not SHARED.is_dir(), reason=f"no published models at {SHARED}")

QUICK_BENCH = "name: x86-64-quick\narch: x86_64\nruntime: onnxruntime\nquant_preset: ort-u8s8\nopset: 17\nort_format: false\n" \
              "bench:\n  warmup: 2\n  runs: 5\n"


def _outputs(path, feeds):
    import onnxruntime as ort

    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return [sess.run(None, feed)[0] for feed in feeds]


def _compress(tmp_path, model, data, out, *extra):
    target = tmp_path / "quick.yaml"
    target.write_text(QUICK_BENCH)
    result = run_cli("compress", "--model", SHARED / model, "--data", data, "--target", target, "--out",
                     tmp_path / out, *extra)
    assert result.returncode == 0, result.stderr
    return tmp_path / out / "x86-64-quick"


@pytest.mark.slow  # two full runs on a 20 MB detector: 40 s (benchmarks/run_slow_tests.sh)
def test_the_default_run_keeps_the_detections_that_plain_int8_loses(tmp_path):
    """Entropy ranges (the usual TensorRT calibrator) clip the detector's objectness; the floor sees it and
    the default run's measured range choice keeps F1 >= 0.95 against the FP32 boxes on unseen pages."""
    np.savez(tmp_path / "pages.npz", images=captcha_pages(20, seed=0))
    unseen = [{"images": page[None]} for page in captcha_pages(10, seed=1)]
    fp32 = [o[0] for o in _outputs(SHARED / "ddddocr_common_det.onnx", unseen)]

    plain = _compress(tmp_path, "ddddocr_common_det.onnx", tmp_path / "pages.npz", "plain", "--calib", "entropy",
                      "--min-sqnr", "0", "--min-decision-f1", "0")
    default = _compress(tmp_path, "ddddocr_common_det.onnx", tmp_path / "pages.npz", "default")
    plain_f1 = detection_f1(fp32, [o[0] for o in _outputs(plain / "model.onnx", unseen)])
    default_f1 = detection_f1(fp32, [o[0] for o in _outputs(default / "model.onnx", unseen)])
    assert plain_f1 < 0.8 and default_f1 >= 0.95, (plain_f1, default_f1)

    stages = {s["name"]: s["metrics"] for s in json.loads((default / "report.json").read_text())["stages"]}
    scores = stages["calibrate"]["method_scores"]
    assert scores["entropy"]["decision_f1"] < 0.8 and stages["calibrate"]["chosen_method"] != "entropy"
    assert stages["export"]["outputs"]["outputs"]["output"]["groups"] == 6  # [cx, cy, w, h, obj, cls]
    assert stages["export"]["integer_kernels"] > 200  # the floor held without falling back to FP32


@pytest.mark.skipif(not espeak_available(), reason="espeak-ng (Debian package) makes the speech")
def test_the_echo_score_survives_int8_with_its_recurrent_layers_float(tmp_path):
    """espeak-ng speech with a simulated echo, removed, partly removed or left in: the INT8 model grades the
    scenes as the FP32 one does (mean echo-MOS error under 0.1 on a 1-5 scale, same ranking)."""
    scenes = echo_scenes(tmp_path / "wav")
    np.savez(tmp_path / "scenes.npz", **scenes)
    feeds = [{"input": scenes["input"][i:i + 1], "h0": scenes["h0"][i]} for i in range(len(scenes["input"]))]
    out = _compress(tmp_path, "speechmos_aecmos_16k.onnx", tmp_path / "scenes.npz", "default")
    fp32 = np.array(_outputs(SHARED / "speechmos_aecmos_16k.onnx", feeds))[:, 0]
    int8 = np.array(_outputs(out / "model.onnx", feeds))[:, 0]
    assert fp32.max() - fp32.min() > 2  # the scenes span the scale: the echo is heard or not
    assert np.abs(fp32 - int8).mean() < 0.1 and np.corrcoef(fp32, int8)[0, 1] > 0.99
    export = next(s for s in json.loads((out / "report.json").read_text())["stages"] if s["name"] == "export")
    assert export["metrics"]["float_compute"]["GRU"]["count"] == 2
    assert export["metrics"]["outputs"]["worst_sqnr_db"] > 25
