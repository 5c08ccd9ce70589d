"""Streaming calibration: same ranges as ORT's MinMax, every method, bounded memory, a stability report."""

import tracemalloc

import numpy as np
import pytest

from edgekit.ptq.statistics import calibrate
from edgekit.data import load_data
from edgekit.quant.calibrators import StreamingHistogram, compute_range


@pytest.fixture(scope="module")
def model_and_data(tiny_fp32_onnx, digits_npz):
    return tiny_fp32_onnx.parent, load_data(digits_npz).bind(["x"])


def test_minmax_matches_onnxruntimes_calibrator(model_and_data):
    from onnxruntime.quantization.calibrate import CalibrationMethod, create_calibrator

    from edgekit.data.ort_reader import SampleReader

    root, data = model_and_data
    samples = data.subset(np.arange(40))
    ours = calibrate(root / "fp32.onnx", samples, ["x"], "minmax", root)
    theirs = create_calibrator(root / "fp32.onnx", augmented_model_path=str(root / "aug.onnx"),
                               calibrate_method=CalibrationMethod.MinMax)
    theirs.collect_data(SampleReader(samples, ["x"]))
    reference = {k: v.range_value for k, v in theirs.compute_data().items()}
    assert set(ours) == set(reference)
    for name, (low, high) in ours.items():
        ref_low, ref_high = (float(np.asarray(v).ravel()[0]) for v in reference[name])
        assert low == pytest.approx(min(ref_low, 0.0), abs=1e-5) and high == pytest.approx(max(ref_high, 0.0), abs=1e-5)


def test_methods_differ_and_stay_inside_the_observed_range(model_and_data):
    root, data = model_and_data
    samples = data.subset(np.arange(100))
    results = {m: calibrate(root / "fp32.onnx", samples, ["x"], m, root) for m in ("minmax", "percentile", "entropy", "mse")}
    for method, ranges in results.items():
        for name, (low, high) in ranges.items():
            ref_low, ref_high = results["minmax"][name]
            assert ref_low - 1e-6 <= low <= 0 <= high <= ref_high + 1e-6, (method, name)
    assert results["entropy"] != results["minmax"]


@pytest.mark.slow  # 9 s
def test_memory_does_not_grow_with_the_calibration_set(model_and_data):
    root, data = model_and_data

    def peak(n: int) -> int:
        samples = data.subset(np.arange(n))  # the data itself is the caller's; measure calibration only
        tracemalloc.start()
        calibrate(root / "fp32.onnx", samples, ["x"], "entropy", root)
        _, top = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        return top

    small, large = peak(100), peak(1000)
    assert large < 1.3 * small


def test_report_counts_samples_and_range_drift(model_and_data):
    root, data = model_and_data
    report = {}
    calibrate(root / "fp32.onnx", data.subset(np.arange(64)), ["x"], "minmax", root, report=report)
    assert report["samples"] == 64 and report["tensors"] > 5 and 0 <= report["range_drift_second_half"] < 1


def test_histogram_growth_keeps_every_count():
    hist = StreamingHistogram()
    rng = np.random.default_rng(0)
    chunks = [rng.standard_normal(500) * scale for scale in (0.1, 1, 10)]
    for chunk in chunks:
        hist.update(chunk)
    assert hist.counts.sum() == pytest.approx(1500)
    everything = np.concatenate(chunks)
    low, high = compute_range(hist, "minmax")
    assert low == pytest.approx(everything.min(), rel=1e-6) and high == pytest.approx(everything.max(), rel=1e-6)


def test_auto_calibration_keeps_the_most_faithful_method(tmp_path, tiny_fp32_onnx):
    from conftest import digits_arrays
    from edgekit.data.samples import SampleSet
    from edgekit.ptq.auto import METHODS, choose_ranges
    from edgekit.target import SCHEMES

    x, _ = digits_arrays()
    report: dict = {}
    method, ranges = choose_ranges(tiny_fp32_onnx, SampleSet("digits", arrays={"x": x[:300]}), ["x"],
                                   SCHEMES["ort-u8s8"], tmp_path, report)
    scores = report["method_scores"]
    assert set(scores) == set(METHODS) and report["chosen_method"] == method
    from edgekit.measure.compare import shortfall

    key = lambda m: (-shortfall(scores[m], 12.0, 0.9), scores[m]["worst_sqnr_db"])  # noqa: E731
    assert all(key(method) >= key(m) for m in METHODS)
    assert len({scores[m]["worst_sqnr_db"] for m in METHODS}) > 1  # the methods measured apart
    assert ranges and report["samples"] == 300
