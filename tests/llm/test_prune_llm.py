"""Structured pruning of a causal LM (uniform MLP width, whole KV groups) and distillation recovery: the
pruned model is a smaller model of the same class the exporter takes, importance beats chance, and a short
distillation brings the student back toward the teacher."""

import numpy as np
import pytest
import torch

from llm_fixtures import python_docs, tiny_causal_lm


@pytest.fixture(scope="module")
def setting(tmp_path_factory):
    from edgekit.llm.corpus import corpus_splits, load_tokenizer

    root = tmp_path_factory.mktemp("prune-llm")
    model, _ = tiny_causal_lm(root / "m", "llama")
    (root / "docs.txt").write_text("\n\n".join(" ".join(d.split()) for d in python_docs()[:60]))
    splits = corpus_splits(root / "docs.txt", load_tokenizer(root / "m"), 64, (0.5, 0.25, 0.25))
    _train(model, splits["train"].ids)  # a teacher that has learnt the text, so pruning costs something
    model.save_pretrained(root / "m")
    return root, model, splits


def _train(model, blocks, steps: int = 120):
    torch.manual_seed(0)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    rng = np.random.default_rng(0)
    model.train()
    for _ in range(steps):
        ids = torch.from_numpy(blocks[rng.integers(0, len(blocks), 4)])
        model(ids, labels=ids).loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    model.eval()


def _kl(student, teacher, blocks) -> float:
    import torch.nn.functional as F

    with torch.no_grad():
        ids = torch.from_numpy(np.asarray(blocks, np.int64))
        t, s = F.log_softmax(teacher(ids).logits, -1), F.log_softmax(student(ids).logits, -1)
        return float((t.exp() * (t - s)).sum(-1).mean())


def _statistics(model, state, blocks):
    from edgekit.llm.blockwise import layer_statistics

    names = [n for n in state if n.endswith(("down_proj.weight", "o_proj.weight"))]
    return layer_statistics(model, blocks, names)[0]


@pytest.mark.parametrize("ratio, groups", [(0.25, 2), (0.35, 1)])  # 0.35: the MLP alone cannot give it
def test_pruning_removes_the_share_asked_and_stays_exportable(setting, tmp_path, ratio, groups):
    from edgekit.llm.blockwise import load_state
    from edgekit.llm.export import build_genai
    from edgekit.llm.folder import save_model
    from edgekit.llm.prune import build_pruned, count_params, plan

    root, model, splits = setting
    state = load_state(root / "m")
    chosen = plan(state, _statistics(model, state, splits["calib"].ids[:8]), model.config, ratio, tied=False)
    pruned = build_pruned(model, state, chosen)
    real = sum(p.numel() for p in pruned.parameters())
    assert real == chosen.params_after == count_params(pruned.config, tied=False)
    assert abs(1 - real / chosen.params_before - ratio) < 0.08  # widths in steps of 32 neurons, whole groups
    assert pruned.config.intermediate_size % 32 == 0 and pruned.config.num_key_value_heads == groups
    genai = build_genai(save_model(pruned, root / "m", tmp_path / "pruned"), tmp_path / "g", "fp32")
    from edgekit.llm.measure import quality

    assert quality(genai, pruned, splits["eval"].ids[:2])["kl_per_token"] < 1e-5  # the export is the pruned model


def test_a_share_the_model_cannot_give_is_refused(setting):
    from edgekit.errors import InputError
    from edgekit.llm.blockwise import load_state
    from edgekit.llm.prune import plan

    root, model, splits = setting
    state = load_state(root / "m")
    with pytest.raises(InputError, match="at most 0.40 of this model's parameters can go"):
        plan(state, _statistics(model, state, splits["calib"].ids[:2]), model.config, 0.55, tied=False)


def test_measured_importance_beats_a_random_choice(setting):
    from edgekit.llm.blockwise import load_state
    from edgekit.llm.prune import build_pruned, plan

    root, model, splits = setting
    state = load_state(root / "m")
    chosen = plan(state, _statistics(model, state, splits["calib"].ids[:8]), model.config, 0.25, tied=False)
    rng = np.random.default_rng(1)
    random_kl = []
    for _ in range(3):
        chance = type(chosen)(chosen.intermediate, chosen.kv_groups,
                              [np.sort(rng.permutation(len(n) * 0 + model.config.intermediate_size)[:chosen.intermediate])
                               for n in chosen.neurons],
                              [np.sort(rng.permutation(model.config.num_key_value_heads)[:chosen.kv_groups])
                               for _ in chosen.groups], chosen.params_before, chosen.params_after)
        random_kl.append(_kl(build_pruned(model, state, chance), model, splits["eval"].ids[:4]))
    assert _kl(build_pruned(model, state, chosen), model, splits["eval"].ids[:4]) < min(random_kl)


def test_distillation_brings_the_pruned_student_back_toward_the_teacher(setting):
    from edgekit.llm.blockwise import load_state
    from edgekit.llm.prune import build_pruned, plan
    from edgekit.llm.recover import distill

    root, model, splits = setting
    state = load_state(root / "m")
    chosen = plan(state, _statistics(model, state, splits["calib"].ids[:8]), model.config, 0.25, tied=False)
    student = build_pruned(model, state, chosen)
    before = _kl(student, model, splits["eval"].ids[:8])
    log = distill(student, model, splits["train"].ids, minutes=0.15, lr=3e-3, alpha=0.0, batch=4)
    after = _kl(student, model, splits["eval"].ids[:8])
    assert log.steps >= 5 and log.seconds < 40
    assert after < 0.7 * before, (before, after)


@pytest.fixture(scope="module")
def deeper(tmp_path_factory, setting):
    """A trained 4-layer model of hidden size 128: room to drop a layer, and hidden widths in weight blocks."""
    from edgekit.llm.corpus import corpus_splits, load_tokenizer

    root = tmp_path_factory.mktemp("prune-axes")
    model, _ = tiny_causal_lm(root / "m", "qwen2", layers=4, hidden=128)
    splits = corpus_splits(setting[0] / "docs.txt", load_tokenizer(root / "m"), 64, (0.5, 0.25, 0.25))
    _train(model, splits["train"].ids)
    model.save_pretrained(root / "m")
    return root, model, splits


def _unbiased(model) -> int:
    """Parameters as the pruning plans count them (Qwen2's query, key and value biases aside)."""
    return sum(p.numel() for name, p in model.named_parameters() if not name.endswith("bias"))


def _exported_matches(model, folder, tmp_path, blocks) -> float:
    from edgekit.llm.export import build_genai
    from edgekit.llm.measure import quality
    from edgekit.llm.folder import save_model

    genai = build_genai(save_model(model, folder, tmp_path / "pruned"), tmp_path / "g", "fp32")
    return quality(genai, model, blocks)["kl_per_token"]


def test_depth_pruning_drops_the_least_missed_layer_and_renumbers_the_rest(deeper, tmp_path):
    from edgekit.llm.prune import build_pruned, choose, count_params
    from edgekit.llm.prune.depth import SCORE_BLOCKS, _kl_without

    root, model, splits = deeper
    calib = splits["calib"].ids[:SCORE_BLOCKS]
    state, chosen = choose("depth", root / "m", model, calib, 0.25)
    pruned = build_pruned(model, state, chosen)
    assert pruned.config.num_hidden_layers == 3 == len(pruned.model.layers) and len(chosen.dropped) == 1
    assert _unbiased(pruned) == chosen.params_after == count_params(pruned.config, tied=False)
    # the renumbered model is the full one with that layer passed through: the KL the plan measured
    assert abs(_kl(pruned, model, calib) - chosen.kl_after[0]) < 1e-4 * max(1.0, chosen.kl_after[0])
    ids = torch.from_numpy(np.asarray(splits["eval"].ids[:8], np.int64))
    with torch.no_grad():
        reference = torch.log_softmax(model(ids).logits, -1)
    held_out = [_kl_without(model, model.model.layers, ids, reference, [i]) for i in range(4)]
    assert held_out[chosen.dropped[0]] <= sorted(held_out)[1], held_out  # among the two least missed
    assert _exported_matches(pruned, root / "m", tmp_path, splits["eval"].ids[:2]) < 1e-5


def test_later_depth_rounds_weigh_only_the_first_rounds_shortlist(deeper, monkeypatch):
    from edgekit.llm.prune import count_params, depth

    _, model, splits = deeper
    calib = splits["calib"].ids[:depth.SCORE_BLOCKS]
    ids = torch.from_numpy(np.asarray(calib, np.int64))
    with torch.no_grad():
        reference = torch.log_softmax(model(ids).logits.float(), -1)
    first = [depth._kl_without(model, model.model.layers, ids, reference, [i]) for i in range(4)]
    monkeypatch.setattr(depth, "SHORTLIST_SPARE", 0)  # the shortlist: the two the full model missed least
    ratio = 2 * depth.per_layer(model.config) / count_params(model.config, tied=False)
    chosen = depth.plan(model, calib, ratio, tied=False)
    assert set(chosen.dropped) == set(np.argsort(first)[:2].tolist()) and chosen.dropped[0] == int(np.argmin(first))
    both = depth._kl_without(model, model.model.layers, ids, reference, chosen.dropped)
    assert abs(chosen.kl_after[1] - both) < 1e-6 and chosen.kl_after[1] > chosen.kl_after[0]


def test_hidden_pruning_keeps_the_busiest_channels_and_rescales_the_norms(deeper, tmp_path):
    from edgekit.llm.prune import build_pruned, choose, count_params

    root, model, splits = deeper
    state, chosen = choose("hidden", root / "m", model, splits["calib"].ids[:8], 0.2)
    pruned = build_pruned(model, state, chosen)
    assert pruned.config.hidden_size == 96 and pruned.model.embed_tokens.weight.shape[1] == 96
    assert _unbiased(pruned) == chosen.params_after == count_params(pruned.config, tied=False)
    evals = splits["eval"].ids[:8]
    kept = _kl(pruned, model, evals)
    plain = type(chosen)(chosen.channels, {k: 1.0 for k in chosen.norm_scales}, 0, 0)
    assert kept < _kl(build_pruned(model, state, plain), model, evals), "the norm rescaling should help"
    rng = np.random.default_rng(2)
    chance = [_kl(build_pruned(model, state, type(chosen)(np.sort(rng.permutation(128)[:96]), chosen.norm_scales,
                                                            0, 0)), model, evals) for _ in range(3)]
    assert kept < min(chance), (kept, chance)
    assert _exported_matches(pruned, root / "m", tmp_path, splits["eval"].ids[:2]) < 1e-5


@pytest.mark.parametrize("axis, ratio, expected", [("depth", 0.85, "at most 0.60 of this model's parameters"),
                                                   ("hidden", 0.8, "at most 0.75 of this model's parameters")])
def test_a_share_an_axis_cannot_give_is_refused_from_the_config(deeper, axis, ratio, expected):
    from edgekit.errors import InputError
    from edgekit.llm.prune import check_share

    with pytest.raises(InputError, match=expected):
        check_share(deeper[1].config, ratio, False, axis)


def test_hidden_pruning_refuses_a_tensor_it_cannot_place(deeper):
    from edgekit.errors import InputError
    from edgekit.llm.prune.hidden import check_layout

    with pytest.raises(InputError, match="does not know where model.extra.weight reads the hidden size"):
        check_layout({"model.extra.weight": np.zeros((5, 128), np.float32)}, deeper[1].config)
