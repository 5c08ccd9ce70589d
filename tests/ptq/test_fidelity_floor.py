"""The output-by-output comparison that sees a broken head, the floor static INT8 keeps, and --metric."""

import sys

import numpy as np
import pytest

from conftest import run_cli


def test_sqnr_and_decision_f1_on_known_numbers():
    from edgekit.measure.compare import NOISELESS_DB, decision_f1, sqnr_db

    signal = np.ones(1000)
    assert sqnr_db(signal, signal + 0.1) == pytest.approx(20.0)  # a 10% error is 20 dB
    assert sqnr_db(signal, signal + 0.01) == pytest.approx(40.0)
    assert sqnr_db(signal, signal) == NOISELESS_DB
    reference = np.array([0.9, 0.8, 0.1, 0.7, 0.2])
    assert decision_f1(reference, reference) == 1.0
    assert decision_f1(reference, np.array([0.9, 0.1, 0.1, 0.7, 0.6])) == pytest.approx(2 * 2 / (3 + 3))
    assert decision_f1(np.zeros(4), np.zeros(4)) == 1.0


def test_a_concatenated_head_whose_scores_broke_is_seen_where_one_cosine_is_not():
    """[boxes in pixels | objectness]: crushing the objectness column barely moves the whole output's
    cosine, but its group SQNR and decision F1 fall."""
    from edgekit.measure.compare import compare_outputs, group_axis
    from edgekit.measure.metrics import mean_cosine

    rng = np.random.default_rng(0)
    boxes = rng.uniform(0, 416, (20, 100, 4))
    scores = (rng.random((20, 100, 1)) > 0.9) * rng.uniform(0.6, 1.0, (20, 100, 1))
    reference = np.concatenate([boxes, scores], -1)
    broken = np.concatenate([boxes + rng.normal(0, 1, boxes.shape), np.minimum(scores, 0.3)], -1)
    assert group_axis((100, 5)) == 1 and group_axis((1000,)) is None and group_axis((8, 32, 32)) == 0
    assert mean_cosine(reference, broken) > 0.999
    record = compare_outputs({"out": reference}, {"out": broken})
    head = record["outputs"]["out"]
    assert head["groups"] == 5 and head["worst_group"] == 4 and head["group_axis"] == 2
    assert head["sqnr_db"] > 30 and record["worst_sqnr_db"] < 10 and record["decision_f1"] == 0.0


def test_every_output_is_compared_on_its_own():
    from edgekit.measure.compare import compare_outputs, shortfall

    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(10, 50)), rng.normal(size=(10, 50))
    record = compare_outputs({"a": a, "b": b}, {"a": a, "b": b + rng.normal(0, 1, b.shape)})
    assert record["outputs"]["a"]["sqnr_db"] == 120.0 and record["outputs"]["b"]["sqnr_db"] < 3
    assert record["worst_sqnr_db"] == record["outputs"]["b"]["worst_group_sqnr_db"]
    assert shortfall(record, 12.0, 0.9) == pytest.approx(12.0 - record["worst_sqnr_db"])


def test_per_step_class_distributions_are_held_to_top1_agreement():
    """A recognizer's [steps, characters] softmax: 3 of 40 steps, ambiguous between two characters, swap them.
    The whole
    output keeps over 12 dB and a decision F1 above 0.9, yet one step in thirteen reads another character;
    top-1 agreement (0.925) sees it, and the default floor (0.99) counts the gap."""
    from edgekit.measure.compare import compare_outputs, shortfall, top1_agreement

    rng = np.random.default_rng(2)
    logits = rng.normal(0, 1, (2, 20, 300))
    logits[..., 0] += 8  # a confident top class on every step
    flipped = ((0, 3), (0, 11), (1, 7))
    for sample, step in flipped:  # except three, where a second character comes close
        logits[sample, step, 1] = logits[sample, step, 0] - 0.2
    reference = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    swapped = reference.copy()
    for sample, step in flipped:
        row = swapped[sample, step]
        row[[0, 1]] = row[[1, 0]]
    record = compare_outputs({"chars": reference}, {"chars": swapped})
    assert record["worst_sqnr_db"] > 12 and record["decision_f1"] > 0.9
    assert record["top1_agreement"] == pytest.approx(37 / 40)
    assert shortfall(record, 12.0, 0.9, 0.99) == pytest.approx(100 * (0.99 - 37 / 40))
    assert top1_agreement(rng.normal(size=(4, 10)), rng.normal(size=(4, 10))) is None  # not distributions


def _noise(tmp_path):
    noise = np.random.default_rng(0).standard_normal((300, 1, 8, 8)).astype(np.float32)
    np.savez(tmp_path / "noise.npz", x=noise)
    return tmp_path / "noise.npz"


def test_a_floor_plain_int8_misses_is_met_by_falling_back(tmp_path, tiny_fp32_onnx):
    from edgekit.api import compress

    data = _noise(tmp_path)
    common = dict(model=str(tiny_fp32_onnx), data=str(data), target="x86-64", calib="minmax")
    plain = compress(**common, out=tmp_path / "plain", min_sqnr=0.0)
    export = next(s for s in plain["stages"] if s["name"] == "export")["metrics"]
    achieved = export["outputs"]["worst_sqnr_db"]
    assert export["fallback"]["fallback"] == [] and 10 < achieved < 60
    strict = compress(**common, out=tmp_path / "strict", min_sqnr=achieved + 6)
    export = next(s for s in strict["stages"] if s["name"] == "export")["metrics"]
    fallback = export["fallback"]
    assert fallback["steps"][0]["excess"] > 0 and fallback["within_budget"] and fallback["fallback"]
    assert export["outputs"]["worst_sqnr_db"] > achieved
    assert fallback["latency_ms_all_int8"] > 0 and fallback["latency_ms_with_fallback"] > 0


METRIC_MODULE = '''
import numpy as np

def top1(reference, candidate):
    """Share of samples whose top class the INT8 graph keeps."""
    (ref,), (cand,) = reference.values(), candidate.values()
    return float((np.asarray(ref).argmax(-1) == np.asarray(cand).argmax(-1)).mean())

def broken(reference, candidate):
    raise RuntimeError("no such output")
'''


def test_a_user_metric_steers_the_choice_and_is_reported(tmp_path, tiny_fp32_onnx, monkeypatch):
    (tmp_path / "mytask_metrics.py").write_text(METRIC_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    sys.modules.pop("mytask_metrics", None)
    from edgekit.api import compress

    report = compress(model=str(tiny_fp32_onnx), data=str(_noise(tmp_path)), target="x86-64",
                      out=tmp_path / "o", metric="mytask_metrics:top1", min_metric=1.0)
    stages = {s["name"]: s["metrics"] for s in report["stages"]}
    scores = stages["calibrate"]["method_scores"]
    assert all(0 <= s["metric"] <= 1 for s in scores.values())
    assert scores[stages["calibrate"]["chosen_method"]]["metric"] == max(s["metric"] for s in scores.values())
    floor = stages["export"]["fallback"]
    assert floor["floor"] == {"metric": "mytask_metrics:top1", "min_metric": 1.0}
    assert stages["export"]["outputs"]["metric"] <= 1.0 and floor["steps"][-1]["excess"] == 0
    # the kept graph meets the floor on the calibration samples; on held-out ones the metric is reported, not promised
    assert floor["within_budget"] and floor["excess"] <= 0 and stages["export"]["outputs"]["metric"] >= 0


@pytest.mark.parametrize("spec, expected", [("mytask_metrics", "must be package.module:function"),
                                            ("no_such_module_here:f1", "cannot be imported"),
                                            ("mytask_metrics:broken", "failed on the model's outputs")])
def test_a_metric_that_cannot_be_used_is_one_line(tmp_path, tiny_fp32_onnx, spec, expected):
    (tmp_path / "mytask_metrics.py").write_text(METRIC_MODULE)
    result = run_cli("compress", "--model", tiny_fp32_onnx, "--data", _noise(tmp_path), "--target", "x86-64",
                     "--out", tmp_path / "o", "--metric", spec, cwd=tmp_path)
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and expected in lines[-1] and "Traceback" not in result.stderr
    assert not (tmp_path / "o" / "x86-64").exists()


def test_the_report_says_what_int8_kept_and_what_fell_back(tmp_path, tiny_fp32_onnx):
    from edgekit.api import compress

    data = _noise(tmp_path)
    plain = compress(model=str(tiny_fp32_onnx), data=str(data), target="x86-64", calib="minmax", out=tmp_path / "p")
    achieved = next(s for s in plain["stages"] if s["name"] == "export")["metrics"]["outputs"]["worst_sqnr_db"]
    compress(model=str(tiny_fp32_onnx), data=str(data), target="x86-64", calib="minmax", out=tmp_path / "o",
             min_sqnr=achieved + 6)
    text = (tmp_path / "o" / "x86-64" / "report.md").read_text()
    assert "## INT8 against its FP32 graph" in text and "| logits |" in text and "10 (axis 1)" in text
    assert f"min_sqnr_db {achieved + 6}" in text and "Kept in FP32 to hold it" in text
    assert "Learned weight rounding: " in text and "top-1 agreement" in text  # tried: nearest missed the floor
    assert "### Per-node sensitivity" in text and (tmp_path / "o" / "x86-64" / "sensitivity.png").stat().st_size > 1000
