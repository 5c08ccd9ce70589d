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
    from edgekit.llm.prune import build_pruned, count_params, plan, save_pruned

    root, model, splits = setting
    state = load_state(root / "m")
    chosen = plan(state, _statistics(model, state, splits["calib"].ids[:8]), model.config, ratio, tied=False)
    pruned = build_pruned(model, state, chosen)
    real = sum(p.numel() for p in pruned.parameters())
    assert real == chosen.params_after == count_params(pruned.config, tied=False)
    assert abs(1 - real / chosen.params_before - ratio) < 0.08  # widths in steps of 32 neurons, whole groups
    assert pruned.config.intermediate_size % 32 == 0 and pruned.config.num_key_value_heads == groups
    genai = build_genai(save_pruned(pruned, root / "m", tmp_path / "pruned"), tmp_path / "g", "fp32")
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
