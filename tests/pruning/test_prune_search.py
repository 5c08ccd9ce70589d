"""Iterative pruning and the accuracy-budget search, end to end through `compress`."""

import json
from pathlib import Path

from edgekit.api import compress

TINY = "tiny_models:resnet_tiny"


def test_iterative_pruning_replays_and_shrinks(tmp_path, digits_npz, tiny_weights):
    report = compress(model=TINY, weights=str(tiny_weights), data=str(digits_npz), target="x86-64",
                      out=tmp_path / "it", prune=0.5, prune_steps=2, finetune_epochs=1, quant="none")
    plan = json.loads((tmp_path / "it" / "work" / "02-prune" / "plan.json").read_text())
    assert plan["steps"] == 2 and plan["channels"]["model.block2.conv1"][1] < 32
    prune = next(s for s in report["stages"] if s["name"] == "prune")["metrics"]
    assert prune["params_ratio"] < 0.6
    # the compiled model was rebuilt from plan + weights in later stages and agrees with the pruned one
    assert abs(report["final"]["agreement"] - prune["agreement"]) < 0.02


def test_budget_search_picks_the_fastest_candidate_within_budget(tmp_path, digits_npz, tiny_weights):
    compress(model=TINY, weights=str(tiny_weights), data=str(digits_npz), target="x86-64",
             out=tmp_path / "bud", max_accuracy_drop=3.0, finetune_epochs=1, quant="none")
    search = json.loads((tmp_path / "bud" / "work" / "02-prune" / "search.json").read_text())
    labels = [c["candidate"] for c in search["candidates"]]
    assert "uniform 50%" in labels and any(label.startswith("scan") for label in labels)
    within = [c for c in search["candidates"] if c["within_budget"]]
    for c in search["candidates"]:
        assert c["within_budget"] == (c["drop"] <= 3.0)
    plan = json.loads((tmp_path / "bud" / "work" / "02-prune" / "plan.json").read_text())
    if within:
        fastest = min(within, key=lambda c: c["latency_ms"])
        assert fastest["candidate"] in search["verdict"] or "uniform 50% was the fastest" in search["verdict"]
        assert sum(len(idx) for _, _, idx in plan["history"]) > 0
    else:
        assert "left unpruned" in search["verdict"]


def test_final_model_over_budget_is_not_published(tmp_path, tiny_weights):
    """The last check before publishing, on a real run's measurements: plain static INT8 on unlabeled noise
    (top-1 ties everywhere) flips predictions, which a budget of 0 refuses. (A run given that budget would
    meet it: static INT8 puts nodes back in FP32 until the budget holds.)"""
    import glob

    import numpy as np
    import pytest

    from edgekit.artifact import Artifact
    from edgekit.errors import BudgetExceededError
    from edgekit.runs.compress import check_budget
    from edgekit.settings import CompressConfig

    noise = np.random.default_rng(0).standard_normal((400, 1, 8, 8)).astype(np.float32)
    np.savez(tmp_path / "noise.npz", x=noise)
    options = dict(model=TINY, weights=str(tiny_weights), data=str(tmp_path / "noise.npz"), target="x86-64",
                   quant="static", calib="minmax", min_sqnr=0.0, min_decision_f1=0.0)
    report = compress(**options, out=tmp_path / "plain")
    assert report["final"]["agreement"] < 1.0
    final = Artifact.load(Path(sorted(glob.glob(str(tmp_path / "plain" / "work" / "*-bench")))[0]))
    strict = CompressConfig(**options, out=tmp_path / "plain", max_accuracy_drop=0.0, prune=0.0)
    with pytest.raises(BudgetExceededError, match="nothing was published"):
        check_budget(strict, final, tmp_path / "plain" / "work")

