"""--calibrator nncf: NNCF's statistics and bias correction, edgekit's Q/DQ placement."""

import shutil

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from conftest import digits_arrays
from edgekit.ptq.qdq import quantize_qdq
from edgekit.ptq.statistics import calibrate
from edgekit.target import SCHEMES
from edgekit.data.samples import SampleSet

pytest.importorskip("nncf")


def _scales(path) -> dict[str, float]:
    graph = onnx.load(str(path)).graph
    inits = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    return {n.input[0]: float(inits[n.input[1]]) for n in graph.node
            if n.op_type == "QuantizeLinear" and n.input[0] not in inits}


def test_nncf_ranges_keep_nncf_scales_under_the_ort_preset(tmp_path, tiny_fp32_onnx):
    from edgekit.backends.nncf_ptq import nncf_calibrate

    fp32 = shutil.copyfile(tiny_fp32_onnx, tmp_path / "fp32.onnx")
    before = {i.name: numpy_helper.to_array(i) for i in onnx.load(str(fp32)).graph.initializer}
    x, _ = digits_arrays()
    ranges, report = nncf_calibrate(fp32, SampleSet("digits", arrays={"x": x[:200]}), ["x"], subset_size=200)
    after = {i.name: numpy_helper.to_array(i) for i in onnx.load(str(fp32)).graph.initializer}
    changed = [k for k in before if not np.array_equal(before[k], after[k])]
    assert report["bias_corrected"] == len(changed) > 0 and all(after[k].ndim == 1 for k in changed)

    # NNCF's own graph, for its scales: the ORT preset must reproduce each one from the range.
    import nncf

    theirs = nncf.quantize(onnx.load(str(tiny_fp32_onnx)),
                           nncf.Dataset([{"x": x[i:i + 1]} for i in range(200)]), subset_size=200)
    onnx.save(theirs, str(tmp_path / "nncf.onnx"))
    full = calibrate(fp32, SampleSet("digits", arrays={"x": x[:200]}), ["x"], "minmax", tmp_path)
    ours = quantize_qdq(fp32, tmp_path / "ours.onnx", {**full, **ranges}, "minmax", SCHEMES["ort-u8s8"])
    nncf_scales, our_scales = _scales(tmp_path / "nncf.onnx"), _scales(ours)
    shared = set(nncf_scales) & set(our_scales)
    assert len(shared) >= len(nncf_scales) - 1
    for t in shared:
        assert abs(our_scales[t] - nncf_scales[t]) <= 1e-6 * max(nncf_scales[t], 1.0)


def test_compress_with_nncf_calibrator_fuses_like_edgekit(tmp_path, digits_npz, tiny_weights):
    from edgekit.api import compress

    def run(name, **extra):
        report = compress(model="tiny_models:resnet_tiny", weights=str(tiny_weights), data=str(digits_npz),
                          target="x86-64", out=tmp_path / name, quant="static", **extra)
        return {s["name"]: s["metrics"] for s in report["stages"]}

    plain, with_nncf = run("plain"), run("nncf", calibrator="nncf")
    assert with_nncf["calibrate"]["calibrator"] == "nncf" and with_nncf["calibrate"]["bias_corrected"] > 0
    assert with_nncf["export"]["integer_kernels"] == plain["export"]["integer_kernels"]
    assert with_nncf["export"]["agreement"] >= 0.95
