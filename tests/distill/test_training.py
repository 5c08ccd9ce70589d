"""The distillation loop: loss parts, alpha schedule, early stopping that keeps the best epoch."""

import pytest
import torch
from torch import nn

from edgekit.distill.loop import TrainSettings, alpha_at, distill, kd_loss


def test_kd_loss_parts_and_temperature_scaling():
    student, teacher = torch.tensor([[2.0, 0.0]]), torch.tensor([[0.0, 2.0]])
    parts = kd_loss(student, teacher, torch.tensor([1]), temperature=2.0, alpha=0.25)
    assert set(parts) == {"kd", "task", "total"}
    assert parts["total"] == pytest.approx(0.75 * parts["kd"] + 0.25 * parts["task"])
    same = kd_loss(teacher, teacher, None, temperature=4.0, alpha=0.5)
    assert float(same["kd"]) == pytest.approx(0.0, abs=1e-6) and "task" not in same


def test_alpha_ramps_linearly_over_the_epochs():
    cfg = TrainSettings(epochs=5, alpha=0.8, alpha_end=0.0)
    assert [round(alpha_at(cfg, e), 3) for e in range(5)] == [0.8, 0.6, 0.4, 0.2, 0.0]
    assert alpha_at(TrainSettings(epochs=5, alpha=0.3), 4) == 0.3


def test_early_stop_restores_the_best_epoch():
    torch.manual_seed(0)
    model = nn.Linear(4, 3)
    x, y = torch.randn(64, 4), torch.randint(0, 3, (64,))
    scores = iter([0.5, 0.9, 0.7, 0.6, 0.95])
    weights_at = []

    def validate():
        weights_at.append(model.weight.detach().clone())
        return next(scores)

    history = distill(model, None, lambda e: [((x,), y)], TrainSettings(epochs=5, lr=0.1, patience=2),
                      validate=validate)
    assert len(history) == 4  # epochs 3 and 4 did not beat epoch 2: stopped
    assert torch.equal(model.weight, weights_at[1])
    assert [h["validation"] for h in history] == [0.5, 0.9, 0.7, 0.6]


def test_kd_loss_on_dense_outputs_is_mean_squared_error():
    import torch

    from edgekit.distill.loop import kd_loss

    student, teacher = torch.zeros(2, 15, 8, 8), torch.ones(2, 15, 8, 8)
    parts = kd_loss(student, teacher, None, temperature=4.0, alpha=0.5)
    assert float(parts["total"]) == 1.0 and set(parts) == {"kd", "total"}


def test_kd_loss_reads_probability_outputs_as_what_they_are():
    """A forward ending in sigmoid (a pitch model's 360 bins): per-bin Bernoulli KL, known in closed form; one
    ending in softmax: the categorical KL of its logs, equal to that of the logits it came from."""
    import math

    from edgekit.distill.loop import output_kind

    teacher, student = torch.tensor([[0.9, 0.2]]), torch.tensor([[0.6, 0.2]])
    assert output_kind(teacher) == "independent" and output_kind(torch.tensor([[3.0, -1.0]])) == "logits"
    expected = 0.9 * math.log(0.9 / 0.6) + 0.1 * math.log(0.1 / 0.4)  # the second bin agrees: 0
    assert float(kd_loss(student, teacher, None, temperature=4.0, alpha=0.5)["kd"]) == pytest.approx(expected, rel=1e-4)
    logits_s, logits_t = torch.tensor([[2.0, 0.0, -1.0]]), torch.tensor([[0.0, 1.0, -0.5]])
    probs_s, probs_t = logits_s.softmax(-1), logits_t.softmax(-1)
    assert output_kind(probs_t) == "distribution"
    assert float(kd_loss(probs_s, probs_t, None, 2.0, 0.0)["kd"]) == pytest.approx(
        float(kd_loss(logits_s, logits_t, None, 2.0, 0.0)["kd"]), rel=1e-4)
