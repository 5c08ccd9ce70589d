"""Pruning holds on real architectures: forward works, ONNX shrinks, ORT runs it, ratio 0 is a no-op."""

import numpy as np
import pytest
import torch

from arch_zoo import ZOO, build
from edgekit.models.export import export_onnx
from edgekit.pruning.attention import attention_modules
from edgekit.pruning.prune import PruneSettings, prune_model
from edgekit.stages._torch import apply_plan


def _prune(model, example, ratio):
    return prune_model(model, example, PruneSettings(ratio=ratio, round_to=8))


@pytest.mark.parametrize("name", sorted(ZOO))
def test_ratio_zero_leaves_outputs_unchanged(name):
    model, example = build(name)
    with torch.no_grad():
        before = model(*example)
    plan = _prune(model, example, 0.0)
    assert all(len(idx) == 0 for _, _, idx in plan["history"])
    with torch.no_grad():
        assert torch.equal(model(*example), before)


@pytest.mark.parametrize("name", sorted(ZOO))
def test_half_pruned_model_runs_exports_smaller_and_runs_in_ort(name, tmp_path):
    import onnxruntime as ort

    model, example = build(name)
    names = model.input_names
    full = export_onnx(model, example, names, tmp_path / "full.onnx")
    params = sum(p.numel() for p in model.parameters())
    plan = _prune(model, example, 0.5)
    with torch.no_grad():
        expected = model(*example).numpy()
    assert sum(p.numel() for p in model.parameters()) < 0.8 * params
    pruned = export_onnx(model, example, names, tmp_path / "pruned.onnx")
    assert pruned.stat().st_size < 0.8 * full.stat().st_size
    session = ort.InferenceSession(str(pruned), providers=["CPUExecutionProvider"])
    got = session.run(None, {n: t.numpy() for n, t in zip(names, example)})[0]
    np.testing.assert_allclose(got, expected, rtol=1e-3, atol=1e-4)
    for module, kind in attention_modules(model):  # whole heads removed, attributes kept consistent
        assert getattr(module, kind.heads) == 2
        assert getattr(module, kind.q).out_features % 2 == 0
    assert plan["channels"]


@pytest.mark.parametrize("name", sorted(ZOO))
def test_plan_replayed_on_a_fresh_build_gives_identical_outputs(name):
    model, example = build(name)
    plan = _prune(model, example, 0.5)
    with torch.no_grad():
        expected = model(*example)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    fresh, _ = build(name)
    apply_plan(fresh, plan, example)
    fresh.load_state_dict(state)
    with torch.no_grad():
        assert torch.equal(fresh.eval()(*example), expected)


def test_channel_split_in_forward_becomes_separate_convolutions():
    """C2f's `cv1(x).chunk(2, 1)`: each half gets its own conv, pruned on its own, same function."""
    model, example = build("yolo-c2f")
    with torch.no_grad():
        before = model(*example)
    plan = prune_model(model, example, PruneSettings(ratio=0.0, round_to=8,
                                                  layer_ratios={"model.c2.cv1.parts.0.0": 0.5}))
    assert plan["channel_splits"]["model.c2.cv1"] == [16, 16]
    assert plan["channels"]["model.c2.cv1.parts.0.0"][1] == 8 and plan["channels"]["model.c2.cv1.parts.1.0"][1] == 16
    with torch.no_grad():
        after = model(*example)
    assert after.shape == before.shape and not torch.allclose(after, before)


@pytest.mark.parametrize("ratio, heads, removed", [(0.25, 2, 0), (0.5, 2, 1), (0.25, 4, 1), (0.3, 4, 1), (0.5, 12, 6)])
def test_head_pruning_never_removes_more_than_the_ratio(ratio, heads, removed):
    """torch-pruning removes ceil(share × heads); the share edgekit passes removes floor(ratio × heads)."""
    import math

    from edgekit.pruning.prune import head_ratio

    share = head_ratio(ratio, {"layer": heads})
    assert (math.ceil(share * heads) if share > 0 else 0) == removed
