"""The fake-quant torch model must round like the exported INT8 graph does in ORT."""

import numpy as np
import onnx
import pytest
import torch
from onnx import numpy_helper

from conftest import digits_arrays
from edgekit.backends import ort as ort_backend
from edgekit.ptq.qdq import quantize_qdq, quantized_activations
from edgekit.ptq.statistics import calibrate
from edgekit.target import SCHEMES
from edgekit.data.samples import SampleSet
from edgekit.models import load_model
from edgekit.quant.bn_fold import fold_batchnorm
from edgekit.quant.fakequant import ActivationFakeQuant
from edgekit.quant.prepare import (attach_output_quant, fold_batchnorm_under_qat, graph_tensor_maps, prepare_qat,
                                   simulated_tensors, strip_qat)

EXAMPLE = (torch.zeros(1, 1, 8, 8),)


def _quantized(tmp_path, fp32, preset="ort-u8s8"):
    x, _ = digits_arrays()
    ranges = calibrate(fp32, SampleSet("digits", arrays={"x": x[:400]}), ["x"], "minmax", tmp_path)
    int8 = quantize_qdq(fp32, tmp_path / "int8.onnx", ranges, "minmax", SCHEMES[preset])
    return ranges, int8


def _fake_quant_model(weights, fp32, ranges, int8, preset="ort-u8s8"):
    model = load_model("tiny_models:resnet_tiny", weights).module.eval()
    maps = graph_tensor_maps(fp32, {n for n, _ in model.named_modules()})
    fold_batchnorm(model, EXAMPLE)
    prepare_qat(model, ranges, maps, quantized_activations(int8), signed=SCHEMES[preset].signed_activations,
                symmetric=SCHEMES[preset].symmetric_activations)
    attach_output_quant(model, maps)
    return model.eval(), maps


def _output_scale(int8) -> float:
    graph = onnx.load(str(int8)).graph
    inits = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    q = next(n for n in graph.node if n.op_type == "QuantizeLinear" and n.output[0].startswith(graph.output[0].name))
    return float(inits[q.input[1]])


@pytest.mark.parametrize("preset", ["ort-u8s8", "ort-s8s8"])
def test_onnx_in_ort_matches_the_fake_quant_model_within_one_output_step(tmp_path, tiny_weights, tiny_fp32_onnx,
                                                                         preset):
    ranges, int8 = _quantized(tmp_path, tiny_fp32_onnx, preset)
    model, _ = _fake_quant_model(tiny_weights, tiny_fp32_onnx, ranges, int8, preset)
    quantized = quantized_activations(int8)
    assert simulated_tensors(model) == quantized  # every rounding the runtime does, torch does too

    x, _ = digits_arrays()
    ort_out = ort_backend.session(int8).run(None, {"x": x[1000:]})[0]
    with torch.no_grad():
        fake = model(torch.from_numpy(x[1000:])).numpy()
        strip_qat(model)
        plain = model(torch.from_numpy(x[1000:])).numpy()
    step = _output_scale(int8)
    # Integer accumulation and requantization may differ by one step of the output's scale, no more.
    assert np.abs(fake - ort_out).max() <= step * 1.01
    assert np.abs(plain - ort_out).max() > 3 * step  # without simulation the gap is real


def test_tensorrt_preset_rounds_symmetric_int8_like_ort(tmp_path, tiny_weights, tiny_fp32_onnx):
    from onnxruntime.quantization.quant_utils import compute_scale_zp

    zp, scale = compute_scale_zp(np.float32(-0.7), np.float32(5.3), np.int8(-127), np.int8(127), symmetric=True)
    s, z = ActivationFakeQuant(-0.7, 5.3, symmetric=True).qparams()
    assert abs(float(s) - float(scale)) < 1e-7 and float(z) == float(zp) == 0.0

    ranges, int8 = _quantized(tmp_path, tiny_fp32_onnx, "trt-s8s8")
    model, _ = _fake_quant_model(tiny_weights, tiny_fp32_onnx, ranges, int8, "trt-s8s8")
    missing = quantized_activations(int8) - simulated_tensors(model)
    # TensorRT also quantizes residual-add outputs, made by functional code inside a block.
    assert missing and all(t.endswith("Add_output_0") for t in missing)


def test_learnable_range_gets_gradient_and_export_reads_it():
    quant = ActivationFakeQuant(-1.0, 1.0, learnable=True).train()
    x = torch.linspace(-3, 3, 100)
    loss = ((quant(x) - x) ** 2).mean()  # clipping error pulls the range outwards
    loss.backward()
    assert quant.low.grad > 0 and quant.high.grad < 0
    torch.optim.SGD(quant.parameters(), lr=10.0).step()
    low, high = quant.range()
    assert low < -1.0 and high > 1.0


def test_bn_folded_under_fake_quant_keeps_outputs_and_activation_hooks(tmp_path, tiny_weights, tiny_fp32_onnx):
    ranges, int8 = _quantized(tmp_path, tiny_fp32_onnx)
    model = load_model("tiny_models:resnet_tiny", tiny_weights).module.eval()
    maps = graph_tensor_maps(tiny_fp32_onnx, {n for n, _ in model.named_modules()})
    prepare_qat(model, ranges, maps, quantized_activations(int8))
    x = torch.from_numpy(digits_arrays()[0][1000:])
    with torch.no_grad():
        live = model.eval()(x)
    hooked = simulated_tensors(model)
    fold_batchnorm_under_qat(model, EXAMPLE)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())
    assert simulated_tensors(model) == hooked
    with torch.no_grad():
        folded = model.eval()(x)
    # Per-channel weight rounding commutes with the BN scale, so folding changes almost nothing.
    assert (live.argmax(1) == folded.argmax(1)).float().mean() > 0.99
    assert (live - folded).abs().mean() < 0.02


def test_feature_kd_projects_a_pruned_width_and_learns():
    from edgekit.distill.feature import FeatureKD, parse_pairs
    from edgekit.distill.loop import TrainSettings, distill
    from tiny_models import TinyResNet

    torch.manual_seed(0)
    teacher, student = TinyResNet(width=16).eval(), TinyResNet(width=8)
    x, y = digits_arrays()
    x, y = torch.from_numpy(x[:256]), torch.from_numpy(y[:256])
    kd = FeatureKD(parse_pairs(["block2"]), weight=1.0)
    history = distill(student, teacher, lambda e: [((x,), y)], TrainSettings(epochs=8, lr=1e-2), aux_losses=[kd])
    assert isinstance(kd.projections[0], torch.nn.Conv2d) and kd.projections[0].weight.shape[:2] == (32, 16)
    assert history[-1]["feature"] < history[0]["feature"]
    assert not student.block2._forward_hooks  # detached after training


def test_feature_kd_rejects_unknown_layer_and_mismatched_resolution():
    from edgekit.errors import InputError
    from edgekit.distill.feature import FeatureKD, parse_pairs
    from tiny_models import TinyResNet

    a, b = TinyResNet(8), TinyResNet(16)
    with pytest.raises(InputError, match="no single layer 'nope'"):
        FeatureKD(parse_pairs(["nope"])).attach(a, b, EXAMPLE)
    with pytest.raises(InputError, match="differ beyond the channel axis"):
        FeatureKD(parse_pairs(["block1:block2"])).attach(a, b, EXAMPLE)
