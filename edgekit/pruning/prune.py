"""Structured channel pruning: channels physically removed, coupled groups kept consistent.

Torch-Pruning's dependency graph decides which channels must go together
(residual adds, BN, depthwise/grouped convs, concat, attention heads); we
choose the ratio, importance, protection and rounding, and return the result
as a replayable JSON plan. No pipeline here: the prune stage, the scan and the
budget search all call these.
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import torch
from torch import nn

from edgekit.errors import StageError
from edgekit.pruning.attention import head_counts, sync_attention_attributes
from edgekit.pruning.channel_split import find_channel_splits, split_blocks
from edgekit.pruning.importance import accumulate_taylor_gradients, make_importance
from edgekit.pruning.policy import default_protected, ignored_layers, named_ratios, ratio_caps
from edgekit.settings import PruneSettings


def prune_model(model: nn.Module, example: tuple[torch.Tensor, ...], settings: PruneSettings,
                batches=None, teacher: nn.Module | None = None, head_share: float | None = None) -> dict[str, Any]:
    """Prune in place; return the replayable plan (history, heads, channel counts, settings).

    `head_share` is the fraction of attention heads to remove (default: the channel ratio); iterative
    pruning removes the whole run's heads in its first step, as one head is too coarse to split."""
    import torch_pruning as tp

    splits = find_channel_splits(model, example)
    split_blocks(model, splits)
    protect = settings.protect if settings.protect is not None else default_protected(model)
    heads = head_counts(model)
    ratios = named_ratios(model, settings.layer_ratios or {})
    for module, cap in ratio_caps(model, 1.0, settings.min_channels, settings.max_layer_ratio).items():
        wanted = ratios.get(module, settings.ratio)
        if cap < wanted:  # only binding floors: a dict entry per layer would defeat global ranking
            ratios[module] = cap
    pruner = tp.pruner.MetaPruner(
        model, list(example), importance=make_importance(settings.importance),
        global_pruning=settings.global_ranking, pruning_ratio=settings.ratio,
        pruning_ratio_dict=ratios or None,
        max_pruning_ratio=settings.max_layer_ratio, ignored_layers=ignored_layers(model, protect),
        round_to=settings.round_to if settings.round_to > 1 else None,
        num_heads=heads, prune_num_heads=bool(heads), prune_head_dims=False,
        head_pruning_ratio=head_ratio(settings.ratio if head_share is None else head_share, heads),
    )
    if batches is not None:
        accumulate_taylor_gradients(model, batches, teacher)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            pruner.step()
    except Exception as exc:  # the graph tracer raises many types on unsupported models
        raise StageError(f"pruning failed on this model ({' '.join(str(exc).split())[:160]}); "
                         "try --protect on the layer named, or --prune 0") from exc
    model.zero_grad(set_to_none=True)
    head_map = sync_attention_attributes(model)
    _check_runs(model, example, protect)
    history = [[name, bool(out), [int(i) for i in idx]] for name, out, idx in pruner.pruning_history()]
    return {**settings.plan_record(), "protect": protect, "history": history, "heads": head_map,
            "channel_splits": splits, "channels": channel_counts(model)}


class FixedWidthError(StageError):
    """The pruned model no longer runs: its code fixes a width that pruning changed (a reshape to a
    constant, as a pitch CNN's `x.reshape(-1, self.in_features)` before its classifier does)."""

    def __init__(self, message: str, protect: list[str]):
        super().__init__(message)
        self.protect = protect


def _check_runs(model: nn.Module, example, protect: list[str]) -> None:
    try:
        with torch.no_grad():
            model.eval()(*example)
    except Exception as exc:  # the user's forward: any type
        feeders = [n for n in flatten_feeders(model, example) if n not in protect]
        hint = f"--protect {','.join(feeders)}" if feeders else "--protect on the layer feeding it"
        raise FixedWidthError(f"the pruned model does not run ({' '.join(str(exc).split())[:120]}): its code fixes "
                              f"a width that pruning changed; keep that layer whole with {hint}", feeders) from exc


def flatten_feeders(model: nn.Module, example) -> list[str]:
    """Convolutions whose output reaches a Linear flattened (its in_features a multiple of their channels):
    where a model's code most often fixes the width it expects. Layers in the order they run; those a failing
    forward did not reach follow in the order the model declares them."""
    layers = [(n, m) for n, m in model.named_modules() if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Linear))]
    order: list[tuple[str, nn.Module]] = []
    hooks = [m.register_forward_pre_hook(lambda mod, _args, name=name: order.append((name, mod))) for name, m in layers]
    try:
        with torch.no_grad():
            model.eval()(*example)
    except Exception:  # noqa: BLE001 - the order up to the failure is what is wanted
        pass
    finally:
        for hook in hooks:
            hook.remove()
    reached = {name for name, _ in order}
    order += [(n, m) for n, m in layers if n not in reached]
    feeders = []
    for (name, module), (_, following) in zip(order, order[1:]):
        if isinstance(module, (nn.Conv1d, nn.Conv2d)) and isinstance(following, nn.Linear):
            if following.in_features % module.out_channels == 0 and following.in_features > module.out_channels:
                feeders.append(name)
    return sorted(set(feeders))


def head_ratio(ratio: float, heads: dict) -> float:
    """The head share to give torch-pruning, which removes ceil(share × heads) per layer: at most the
    requested share (2 heads at 0.25 keep both rather than lose half), and none when that rounds to 0."""
    if not heads:
        return 0.0
    fewest = min(heads.values())
    removed = math.floor(ratio * fewest + 1e-9)
    return 0.0 if removed == 0 else (removed - 1e-6) / fewest


def prune_l1(model: nn.Module, example: tuple[torch.Tensor, ...], ratio: float, round_to: int,
             protect: list[str] | None = None) -> list:
    """L1 pruning with default policy; returns the history (used by tests and scripts)."""
    return prune_model(model, example, PruneSettings(ratio=ratio, round_to=round_to, protect=protect))["history"]


def recalibrate_batchnorm(model: nn.Module, samples, input_names: list[str], limit: int = 2048) -> None:
    """Re-estimate BatchNorm statistics after channels were removed.

    The surviving channels' inputs changed, so the stored running means and
    variances no longer describe them; a no-grad pass over training data fixes
    that at almost no cost.
    """
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not bns:
        return
    for bn in bns:
        bn.reset_running_stats()
        bn.momentum = None  # cumulative average over the pass
    model.train()
    seen = 0
    with torch.no_grad():
        for inputs, _ in samples.batches(128):
            model(*(torch.from_numpy(inputs[n]) for n in input_names))
            seen += len(next(iter(inputs.values())))
            if seen >= limit:
                break
    for bn in bns:
        bn.momentum = 0.1
    model.eval()


def channel_counts(model: nn.Module) -> dict[str, list[int]]:
    counts = {}
    for name, m in model.named_modules():
        if isinstance(m, nn.Conv2d):
            counts[name] = [m.in_channels, m.out_channels]
        elif isinstance(m, nn.Linear):
            counts[name] = [m.in_features, m.out_features]
    return counts
