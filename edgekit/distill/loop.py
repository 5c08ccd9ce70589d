"""Knowledge-distillation loss and a small, seeded training loop shared by distillation and QAD."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Iterable, Protocol, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from edgekit.data.text import trim_padding
from edgekit.progress import bar
from edgekit.settings import TrainSettings
from edgekit.distill.distributed import Runtime, autocast, current, mean_over_processes, no_sync, shard, wrap


def kd_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, labels: torch.Tensor | None,
            temperature: float, alpha: float) -> dict[str, torch.Tensor]:
    """KL(teacher || student) at temperature T scaled by T², plus alpha × task loss; for outputs
    that are not (samples, classes), mean squared error to the teacher's outputs.

    Returned as parts so logs and tests see each one; `total` is what to minimise.
    """
    if student_logits.dim() != 2:
        # Dense outputs (detection maps, regression): a softmax over their last axis means
        # nothing, so the student matches the teacher's values directly.
        kd = F.mse_loss(student_logits, teacher_logits)
        return {"kd": kd, "total": kd}
    t = temperature
    kind = output_kind(teacher_logits)
    if kind == "independent":
        kd = bernoulli_kd(student_logits, teacher_logits)
        return {"kd": kd, "total": kd}
    if kind == "distribution":  # a forward that ends in softmax: its log is the logits, up to a constant
        student_logits, teacher_logits = torch.log(student_logits.clamp_min(EPS)), torch.log(teacher_logits.clamp_min(EPS))
    kd = F.kl_div(
        F.log_softmax(student_logits / t, dim=-1),
        F.log_softmax(teacher_logits / t, dim=-1),
        reduction="batchmean",
        log_target=True,
    ) * (t * t)
    parts = {"kd": kd}
    total = kd
    if labels is not None and alpha > 0:
        task = F.cross_entropy(student_logits, labels)
        parts["task"] = task
        total = (1 - alpha) * kd + alpha * task
    parts["total"] = total
    return parts


EPS = 1e-6


def output_kind(teacher: torch.Tensor) -> str:
    """"logits", "distribution" (rows of probabilities summing to one: a forward ending in softmax) or
    "independent" (probabilities that do not: a forward ending in sigmoid, as a pitch model's 360 bins).
    A softmax at temperature over probabilities would flatten them toward uniform and teach almost nothing."""
    if float(teacher.min()) < 0 or float(teacher.max()) > 1:
        return "logits"
    return "distribution" if bool(torch.all((teacher.sum(-1) - 1).abs() < 1e-3)) else "independent"


def bernoulli_kd(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """Per-output KL between independent Bernoulli probabilities, summed over outputs and averaged over samples
    like the categorical KD. No temperature: softened on the logit scale, the many near-zero outputs (bins far
    from the pitch) dominated, and a fake-quantized output of exactly 0 then cost more than a wrong peak."""
    p = student.clamp(EPS, 1 - EPS)
    q = teacher.clamp(EPS, 1 - EPS)
    return (q * torch.log(q / p) + (1 - q) * torch.log((1 - q) / (1 - p))).sum(-1).mean()


def alpha_at(cfg: TrainSettings, epoch: int) -> float:
    """The task-loss weight of this epoch: constant, or a linear ramp to `alpha_end`."""
    if cfg.alpha_end is None or cfg.epochs < 2:
        return cfg.alpha
    return cfg.alpha + (cfg.alpha_end - cfg.alpha) * epoch / (cfg.epochs - 1)


Batch = tuple[tuple[torch.Tensor, ...], torch.Tensor | None]


@dataclass
class Resume:
    """What an interrupted `distill` needs besides the student's weights: `state` is what `checkpoint`
    was given (optimizer, random-number state, auxiliary-loss weights such as feature projections)."""

    state: dict
    best_score: float = -float("inf")
    best_state: dict | None = None
    since_best: int = 0


class AuxLoss(Protocol):
    """An extra distillation term on hooked layers (feature maps, attention maps)."""

    name: str
    weight: float

    def attach(self, student: nn.Module, teacher: nn.Module, inputs: tuple[torch.Tensor, ...]) -> None: ...
    def loss(self) -> torch.Tensor: ...
    def detach(self) -> None: ...


def build_aux_losses(feature_kd: Sequence[str] | None, feature_weight: float, attention_kd: float) -> list:
    """The extra terms `distill` and QAD both take: feature pairs and attention-map transfer."""
    aux = []
    if feature_kd:
        from edgekit.distill.feature import FeatureKD, parse_pairs

        aux.append(FeatureKD(parse_pairs(list(feature_kd)), feature_weight))
    if attention_kd > 0:
        from edgekit.distill.attention import AttentionKD

        aux.append(AttentionKD(attention_kd))
    return aux


def check_aux_losses(aux: list, student: nn.Module, teacher: nn.Module | None,
                     inputs: tuple[torch.Tensor, ...]) -> None:
    """Layer names, shapes and attention outputs checked on one sample before anything is written."""
    for term in aux:
        try:
            term.attach(student, teacher, inputs)
            with torch.no_grad():
                student(*inputs)
                teacher(*inputs)
            term.loss()
        finally:
            term.detach()


class _Trainee(nn.Module):
    """The student with the auxiliary losses' trainable parts, so one optimizer and one DDP wrapper hold both."""

    def __init__(self, student: nn.Module, aux: list):
        super().__init__()
        self.student = student
        self.aux = nn.ModuleList(a for a in aux if isinstance(a, nn.Module))

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        return self.student(*inputs)


def distill(student: nn.Module, teacher: nn.Module | None, batches: Callable[[int], Iterable[Batch]],
            cfg: TrainSettings, on_epoch: Callable[[int, dict[str, float]], None] | None = None,
            train_mode: Callable[[nn.Module], None] | None = None,
            validate: Callable[[], float] | None = None, aux_losses: Sequence[AuxLoss] = (),
            epochs: range | None = None, resume: "Resume | None" = None,
            checkpoint: Callable[[int, dict[str, float], dict], None] | None = None,
            runtime: Runtime | None = None) -> list[dict[str, float]]:
    """Train `student` against `teacher` (or labels only when teacher is None).

    `batches(epoch)` yields (inputs, labels) so the caller owns shuffling and
    seeding; `train_mode` lets QAD keep BatchNorm frozen while training.
    With `validate` (higher is better, e.g. agreement on held-out data) the
    best epoch's weights are kept, and training stops after `cfg.patience`
    epochs without improvement. `aux_losses` add their terms (feature or attention
    maps of chosen layers). `epochs` runs part of the schedule (learning rate and
    alpha follow all `cfg.epochs`), so a caller can change the model between parts.
    `checkpoint` is called after every epoch with the training state; `resume`
    restores it and the best epoch so far, so an interrupted run continues where it
    stopped. Under torchrun each process trains on its slice of every batch (DDP).
    """
    runtime = runtime or current()
    torch.manual_seed(cfg.seed)
    student.to(runtime.device)
    if teacher is not None:
        teacher.to(runtime.device).eval()
    aux = list(aux_losses)
    for term in aux:
        term.attach(student, teacher, tuple(t.to(runtime.device) for t in next(iter(batches(0)))[0]))
    trainee = _Trainee(student, aux).to(runtime.device)
    opt = torch.optim.Adam([p for p in trainee.parameters() if p.requires_grad], lr=cfg.lr)
    history = []
    best_score, best_state, since_best = -float("inf"), None, 0
    if resume is not None:
        _restore_state(opt, trainee.aux, resume.state)
        best_score, best_state, since_best = resume.best_score, resume.best_state, resume.since_best
    model = wrap(trainee, runtime)
    for epoch in epochs if epochs is not None else range(cfg.epochs):
        alpha = alpha_at(cfg, epoch)
        for group in opt.param_groups:  # cosine annealing over the whole schedule
            group["lr"] = cfg.lr * 0.5 * (1 + math.cos(math.pi * epoch / max(cfg.epochs, 1)))
        (train_mode or (lambda m: m.train()))(student)
        this_epoch = list(batches(epoch))
        with bar(f"epoch {epoch + 1}/{cfg.epochs}", len(this_epoch)) as advance:
            record = _train_epoch(model, teacher, this_epoch, opt, cfg, alpha, aux, runtime,
                                  advance if runtime.main else None)
        student.eval()
        stop = False
        if validate is not None:
            record["validation"] = score = float(validate())
            if score > best_score:
                best_score, since_best = score, 0
                best_state = {k: v.detach().clone() for k, v in student.state_dict().items()}
            else:
                since_best += 1
                stop = cfg.patience > 0 and since_best >= cfg.patience
        history.append(record)
        if on_epoch:
            on_epoch(epoch, record)
        if checkpoint:
            checkpoint(epoch, record, {"optimizer": opt.state_dict(), "rng": torch.get_rng_state(),
                                       "aux": [a.state_dict() for a in trainee.aux]})
        if stop:
            break
    for term in aux:
        term.detach()
    if best_state is not None:
        student.load_state_dict(best_state)
    student.eval()
    return history


def _restore_state(opt: torch.optim.Optimizer, aux: nn.ModuleList, state: dict) -> None:
    opt.load_state_dict(state["optimizer"])
    for module, weights in zip(aux, state.get("aux", [])):
        module.load_state_dict(weights)
    if "rng" in state:
        torch.set_rng_state(state["rng"])


def _train_epoch(model: nn.Module, teacher: nn.Module | None, batches: list[Batch], opt, cfg: TrainSettings,
                 alpha: float, aux: list, runtime: Runtime, advance=None) -> dict[str, float]:
    """One pass; with `cfg.accumulate` > 1 each optimizer step sums the gradients of that many batches."""
    batches = [b for b in batches if len(b[0][0]) >= runtime.world]  # every process needs a sample
    sizes = [len(b[0][0]) for b in batches]
    sums: dict[str, float] = {}
    opt.zero_grad(set_to_none=True)
    for i, (inputs, labels) in enumerate(batches):
        group_start = i - i % cfg.accumulate
        group = sizes[group_start:group_start + cfg.accumulate]
        steps = i - group_start + 1 == len(group)
        with no_sync(model, not steps):
            parts = _losses(model, teacher, shard(inputs, runtime),
                            None if labels is None else shard((labels,), runtime)[0], cfg, alpha, aux, runtime)
            # each batch's mean weighted by its share of the group: the step is the mean over the group's samples
            (parts["total"] * (sizes[i] / sum(group))).backward()
        if steps:
            opt.step()
            opt.zero_grad(set_to_none=True)
        for key, value in parts.items():
            sums[key] = sums.get(key, 0.0) + float(value.detach()) * sizes[i]
        if advance is not None:
            advance(1)
    record = mean_over_processes({k: v / max(sum(sizes), 1) for k, v in sums.items()}, runtime)
    record["alpha"] = alpha
    return record


def _losses(model, teacher, inputs, labels, cfg: TrainSettings, alpha: float, aux: list,
            runtime: Runtime) -> dict[str, torch.Tensor]:
    with autocast(runtime, cfg.precision):
        logits = model(*inputs)
        target = None
        if teacher is not None:
            with torch.no_grad():
                target = teacher(*inputs)
    if target is None:
        task = F.cross_entropy(logits.float(), labels)
        return {"task": task, "total": task}
    parts = kd_loss(logits.float(), target.float(), labels, cfg.temperature, alpha)
    for term in aux:
        parts[term.name] = term.loss()
        parts["total"] = parts["total"] + term.weight * parts[term.name]
    return parts


def epoch_batches(samples, names: list[str], batch_size: int, seed: int,
                  pool: Callable[[int], np.ndarray] | None = None) -> Callable[[int], Iterable[Batch]]:
    """`batches(epoch)` over a SampleSet (or the indices `pool(epoch)` picks): reshuffled each epoch
    from `seed`, as torch tensors."""
    import numpy as np

    labels_ok = samples.labels is not None

    def batches(epoch: int):
        keep = pool(epoch) if pool is not None else np.arange(len(samples))
        order = keep[np.random.default_rng(seed + 1000 + epoch).permutation(len(keep))]
        for inputs, labels in samples.batches(batch_size, order):
            inputs = trim_padding(inputs)
            tensors = tuple(torch.from_numpy(inputs[n]) for n in names)
            yield tensors, (torch.from_numpy(labels) if labels_ok else None)
    return batches
