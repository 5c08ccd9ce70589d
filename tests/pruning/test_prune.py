import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from torch import nn

from edgekit.models import load_model
from edgekit.pruning.prune import channel_counts, prune_l1
from edgekit.stages._torch import apply_plan


def _example():
    return (torch.randn(2, 1, 8, 8),)


def test_prune_removes_channels_keeps_residuals_and_rounds(tiny_weights):
    model = load_model("tiny_models:resnet_tiny", tiny_weights).module
    before = sum(p.numel() for p in model.parameters())
    prune_l1(model, _example(), 0.5, 8, protect=["model.head"])
    counts = channel_counts(model)
    inner = counts["model.block1.conv1"]
    assert inner[1] == 8, counts
    # residual add: block1 output channels equal its input channels
    assert counts["model.block1.conv2"][1] == counts["model.stem.0"][1]
    assert all(out % 8 == 0 for name, (_, out) in counts.items() if name != "model.head")
    assert counts["model.head"][1] == 10
    assert sum(p.numel() for p in model.parameters()) < 0.4 * before
    assert model(*_example()).shape == (2, 10)


def test_default_policy_protects_first_and_last_layer(tiny_weights):
    model = load_model("tiny_models:resnet_tiny", tiny_weights).module
    prune_l1(model, _example(), 0.5, 8)
    counts = channel_counts(model)
    assert counts["model.stem.0"][1] == 16 and counts["model.block1.conv2"][1] == 16  # coupled by the add
    assert counts["model.block1.conv1"][1] == 8 and counts["model.head"][1] == 10


def test_ratio_zero_changes_nothing(tiny_weights):
    model = load_model("tiny_models:resnet_tiny", tiny_weights).module
    x = _example()
    ref = model(*x)
    history = prune_l1(model, x, 0.0, 8, [])
    assert all(len(idx) == 0 for _, _, idx in history)
    assert torch.equal(model(*x), ref)


def test_protected_layer_keeps_its_channels(tiny_weights):
    model = load_model("tiny_models:resnet_tiny", tiny_weights).module
    prune_l1(model, _example(), 0.5, 8, ["model.down.0"])
    assert channel_counts(model)["model.down.0"][1] == 32


def test_saved_plan_reloads_identically_in_a_fresh_process(tmp_path, tiny_weights):
    from safetensors.torch import save_file

    model = load_model("tiny_models:resnet_tiny", tiny_weights).module
    x = _example()
    history = prune_l1(model, x, 0.5, 8, [])
    (tmp_path / "plan.json").write_text(json.dumps({"history": history}))
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(tmp_path / "w.safetensors"))
    np.save(tmp_path / "x.npy", x[0].numpy())
    np.save(tmp_path / "ref.npy", model(*x).detach().numpy())
    script = f"""
import json, numpy as np, torch
from edgekit.models import load_model
from edgekit.models.loader import load_weights_into
from edgekit.stages._torch import apply_plan
m = load_model('tiny_models:resnet_tiny', {str(tiny_weights)!r}).module
x = torch.from_numpy(np.load({str(tmp_path / 'x.npy')!r}))
apply_plan(m, json.load(open({str(tmp_path / 'plan.json')!r})), (x,))
load_weights_into(m, {str(tmp_path / 'w.safetensors')!r})
out = m.eval()(x).detach().numpy()
print(np.array_equal(out, np.load({str(tmp_path / 'ref.npy')!r})))
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert result.stdout.strip().endswith("True")


def test_apply_plan_is_what_prune_did(tiny_weights):
    a = load_model("tiny_models:resnet_tiny", tiny_weights).module
    b = load_model("tiny_models:resnet_tiny", tiny_weights).module
    history = prune_l1(a, _example(), 0.5, 8, [])
    apply_plan(b, {"history": history}, _example())
    assert channel_counts(a) == channel_counts(b)
    assert all(isinstance(m, nn.Module) for m in b.modules())


@pytest.mark.parametrize("importance", ["l1", "l2", "bn-scale", "taylor"])
def test_each_importance_criterion_prunes_and_they_disagree(importance, tiny_weights, digits_npz):
    from edgekit.pruning.prune import PruneSettings, prune_model

    model = load_model("tiny_models:resnet_tiny", tiny_weights).module
    arrays = np.load(digits_npz)
    batches = None
    if importance == "taylor":
        batches = [((torch.from_numpy(arrays["x"][i:i + 64]),), torch.from_numpy(arrays["y"][i:i + 64]))
                   for i in range(0, 256, 64)]
    plan = prune_model(model, _example(), PruneSettings(ratio=0.5, importance=importance), batches=batches)
    kept = {name: idx for name, out, idx in plan["history"] if out}
    assert plan["importance"] == importance and kept
    assert model(*_example()).shape == (2, 10)
    KEPT[importance] = json.dumps(kept, sort_keys=True)


KEPT: dict[str, str] = {}


def test_criteria_choose_different_channels():
    if len(KEPT) < 4:
        pytest.skip("runs after the per-criterion tests")
    assert len(set(KEPT.values())) >= 3


def test_global_ranking_prunes_layers_unevenly(tiny_weights):
    from edgekit.pruning.prune import PruneSettings, prune_model

    model = load_model("tiny_models:resnet_tiny", tiny_weights).module
    plan = prune_model(model, _example(), PruneSettings(ratio=0.5, global_ranking=True, round_to=1, min_channels=1))
    ratios = {name: out / {"model.block1.conv1": 16, "model.down.0": 32, "model.block2.conv1": 32}[name]
              for name, (_, out) in plan["channels"].items()
              if name in ("model.block1.conv1", "model.down.0", "model.block2.conv1")}
    assert len({round(r, 3) for r in ratios.values()}) > 1


def test_floor_keeps_small_layers_from_collapsing(tiny_weights):
    from edgekit.pruning.prune import PruneSettings, prune_model

    model = load_model("tiny_models:resnet_tiny", tiny_weights).module
    plan = prune_model(model, _example(), PruneSettings(ratio=0.8, round_to=1, min_channels=12))
    assert plan["channels"]["model.block1.conv1"][1] >= 12
