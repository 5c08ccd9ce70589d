"""Fake quant must round exactly as ORT's quantizer does, and pass gradients straight through."""

import numpy as np
import pytest
import onnx
import torch
from onnx import helper, numpy_helper

from edgekit.quant.fakequant import ActivationFakeQuant, WeightFakeQuant, fake_quant


def test_ste_passes_gradient_inside_range_and_blocks_outside():
    x = torch.tensor([0.1, 0.49, 3.0, -2.0], requires_grad=True)
    y = fake_quant(x, torch.tensor(0.01), torch.tensor(0.0), 0, 255)
    y.sum().backward()
    assert x.grad.tolist() == [1.0, 1.0, 0.0, 0.0]
    assert torch.allclose(y.detach(), torch.tensor([0.1, 0.49, 2.55, 0.0]))


def test_weight_fake_quant_matches_ort_per_channel_int8(tmp_path):
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static

    w = torch.randn(4, 3, 3, 3) * torch.tensor([0.1, 1.0, 5.0, 0.01]).view(4, 1, 1, 1)
    graph = helper.make_graph(
        [helper.make_node("Conv", ["x", "w"], ["y"], pads=[1, 1, 1, 1])], "g",
        [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 3, 5, 5])],
        [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1, 4, 5, 5])],
        [numpy_helper.from_array(w.numpy(), "w")])
    src, dst = tmp_path / "c.onnx", tmp_path / "q.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), src)

    class Reader:
        def __init__(self):
            self.items = iter([{"x": np.random.rand(1, 3, 5, 5).astype(np.float32)}])

        def get_next(self):
            return next(self.items, None)

    quantize_static(str(src), str(dst), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
    inits = {i.name: numpy_helper.to_array(i) for i in onnx.load(dst).graph.initializer}
    q = next(v for k, v in inits.items() if v.dtype == np.int8 and v.ndim == 4)
    scale = next(v for k, v in inits.items() if v.dtype == np.float32 and v.shape == (4,))
    ort_dequant = q.astype(np.float32) * scale.reshape(4, 1, 1, 1)
    ours = WeightFakeQuant()(w).numpy()
    np.testing.assert_allclose(ours, ort_dequant, rtol=0, atol=1e-6)


def test_activation_fake_quant_matches_ort_scale_and_zero_point():
    from onnxruntime.quantization.quant_utils import compute_scale_zp

    low, high = -0.7, 5.3
    zp, scale = compute_scale_zp(np.float32(low), np.float32(high), np.uint8(0), np.uint8(255))
    quant = ActivationFakeQuant(low, high)
    s, z = quant.qparams()
    assert abs(float(s) - float(scale)) < 1e-7 and float(z) == float(zp)


def test_observer_moves_range_only_while_observing():
    quant = ActivationFakeQuant(0.0, 1.0, momentum=0.5).train()
    quant(torch.tensor([0.0, 3.0]))
    assert quant.range() == [0.0, 2.0]
    quant.observing = False
    quant(torch.tensor([0.0, 9.0]))
    assert quant.range() == [0.0, 2.0]


def test_metrics_take_outputs_of_different_sizes():
    """A list of per-sample outputs (inputs that vary in size) is scored sample by sample."""
    from edgekit.measure.metrics import accuracy, mean_cosine, score, top1_agreement

    rng = np.random.default_rng(0)
    maps = [rng.random((1, 1, h, 32)) for h in (32, 64, 96)]
    noisy = [m + 0.1 * rng.random(m.shape) for m in maps]
    expected = np.mean([np.dot(a.ravel(), b.ravel()) / np.linalg.norm(a) / np.linalg.norm(b)
                        for a, b in zip(maps, noisy)])
    assert mean_cosine(maps, noisy) == pytest.approx(expected) and mean_cosine(maps, maps) == pytest.approx(1.0)
    assert top1_agreement(maps, noisy) is None and accuracy(maps, np.zeros(3)) is None
    rows = [rng.random((1, 5)) for _ in range(4)]
    labels = np.array([r.argmax() for r in rows])
    assert accuracy(rows, labels) == 100.0 and top1_agreement(rows, np.concatenate(rows)) == 1.0
    assert score(np.concatenate(rows), labels, np.concatenate(rows))["agreement"] == 1.0
