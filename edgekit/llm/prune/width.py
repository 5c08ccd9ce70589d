"""Width pruning of a causal LM, uniform across layers so the exporters take the result: MLP neurons, and
whole KV groups of attention heads (a key/value head with the query heads that read it, so grouped-query
attention stays consistent). Width is physically removed: the pruned model is a smaller model of the same
class, saved with a config that says so.

Importance is measured on calibration text (activation-based, as NVIDIA's Minitron does): a neuron's, or a
head's, share of its layer's output energy, sum over tokens of x_j^2 * ||W[:, j]||^2 for the input channels
j of the down and output projections. Those sums come from the same input statistics GPTQ uses
(blockwise.layer_statistics: diag(X^T X)). A uniform width keeps, in every layer, the neurons (and groups)
that layer ranks highest.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edgekit.errors import InputError
from edgekit.llm.prune.shape import MIN_KEEP, MULTIPLE, check_ratio, copy_config, count_params, floor_width, shape

@dataclass
class PrunePlan:
    """How wide the pruned model is, and which neurons and KV groups each layer keeps."""

    intermediate: int
    kv_groups: int
    neurons: list[np.ndarray]  # per layer, kept MLP neuron indices (sorted)
    groups: list[np.ndarray]  # per layer, kept KV group indices (sorted)
    params_before: int
    params_after: int

    def config(self, old):
        return pruned_config(old, self)

    def state(self, state: dict[str, np.ndarray], old) -> dict[str, np.ndarray]:
        return prune_state(state, old, self)

    def describe(self) -> dict:
        return {"axis": "width", "intermediate_size": self.intermediate, "kv_heads": self.kv_groups,
                "kept": f"MLP width {self.intermediate}, {self.kv_groups} KV heads"}


def importance(state: dict[str, np.ndarray], hessians: dict[str, np.ndarray], config) -> tuple[list, list]:
    """Per layer: (MLP neuron scores [intermediate], KV group scores [kv groups])."""
    s = shape(config)
    neurons, groups = [], []
    for i in range(s["layers"]):
        base = f"model.layers.{i}"
        down = state[f"{base}.mlp.down_proj.weight"]
        neurons.append(np.diag(hessians[f"{base}.mlp.down_proj.weight"]) * np.sum(down.astype(np.float64) ** 2, axis=0))
        out = state[f"{base}.self_attn.o_proj.weight"]
        channel = np.diag(hessians[f"{base}.self_attn.o_proj.weight"]) * np.sum(out.astype(np.float64) ** 2, axis=0)
        groups.append(channel.reshape(s["kv"], -1).sum(axis=1))
    return neurons, groups


def check_share(config, ratio: float, tied: bool) -> None:
    """Refuse, from the config alone (before any work), a share the model cannot give."""
    check_ratio(ratio)
    s = shape(config)
    before = count_params(config, tied)
    floor = floor_width(s["intermediate"])
    most = ((s["intermediate"] - floor) * 3 * s["hidden"] * s["layers"]
            + (s["kv"] - 1) * s["hidden"] * s["head_dim"] * (2 * s["per_group"] + 2) * s["layers"])
    if before * ratio > most:
        raise InputError(f"--prune {ratio}: at most {most / before:.2f} of this model's parameters can go (MLP "
                         f"neurons down to {MIN_KEEP:.0%}, KV groups down to one; the embeddings stay); give a "
                         "smaller share")


def plan(state: dict[str, np.ndarray], hessians: dict[str, np.ndarray], config, ratio: float,
         tied: bool) -> PrunePlan:
    """The widths that remove `ratio` of all parameters (MLP neurons first; KV groups where the MLP alone
    cannot), and each layer's most important neurons and groups at those widths."""
    check_share(config, ratio, tied)
    s = shape(config)
    before = count_params(config, tied)
    goal = before * ratio
    per_neuron = 3 * s["hidden"] * s["layers"]
    per_group = s["hidden"] * s["head_dim"] * (2 * s["per_group"] + 2) * s["layers"]
    floor = floor_width(s["intermediate"])
    keep, kv_groups = floor, 1
    for groups in range(s["kv"], 0, -1):  # the MLP first; a KV group goes only where the MLP alone cannot
        left = goal - (s["kv"] - groups) * per_group
        width = (s["intermediate"] - int(np.ceil(max(left, 0) / per_neuron))) // MULTIPLE * MULTIPLE
        if width >= floor:
            keep, kv_groups = width, groups
            break
    neuron_scores, group_scores = importance(state, hessians, config)
    neurons = [np.sort(np.argsort(-n)[:keep]) for n in neuron_scores]
    groups = [np.sort(np.argsort(-g)[:kv_groups]) for g in group_scores]
    after = before - (s["intermediate"] - keep) * per_neuron - (s["kv"] - kv_groups) * per_group
    return PrunePlan(keep, kv_groups, neurons, groups, before, after)


def prune_state(state: dict[str, np.ndarray], config, chosen: PrunePlan) -> dict[str, np.ndarray]:
    """The state with only the kept neurons and KV groups (rows and columns physically removed)."""
    s = shape(config)
    pruned = dict(state)
    hd, per = s["head_dim"], s["per_group"]
    for i in range(s["layers"]):
        base = f"model.layers.{i}"
        keep = chosen.neurons[i]
        for part in ("gate_proj", "up_proj"):
            for kind in ("weight", "bias"):
                if f"{base}.mlp.{part}.{kind}" in state:
                    pruned[f"{base}.mlp.{part}.{kind}"] = state[f"{base}.mlp.{part}.{kind}"][keep]
        pruned[f"{base}.mlp.down_proj.weight"] = state[f"{base}.mlp.down_proj.weight"][:, keep]
        kv_rows = np.concatenate([np.arange(g * hd, (g + 1) * hd) for g in chosen.groups[i]])
        q_rows = np.concatenate([np.arange((g * per + h) * hd, (g * per + h + 1) * hd)
                                 for g in chosen.groups[i] for h in range(per)])
        for part, rows in (("q_proj", q_rows), ("k_proj", kv_rows), ("v_proj", kv_rows)):
            for kind in ("weight", "bias"):
                if f"{base}.self_attn.{part}.{kind}" in state:
                    pruned[f"{base}.self_attn.{part}.{kind}"] = state[f"{base}.self_attn.{part}.{kind}"][rows]
        pruned[f"{base}.self_attn.o_proj.weight"] = state[f"{base}.self_attn.o_proj.weight"][:, q_rows]
    return {k: np.ascontiguousarray(v) for k, v in pruned.items()}


def pruned_config(config, chosen: PrunePlan):
    s = shape(config)
    new = copy_config(config)
    new.intermediate_size = chosen.intermediate
    new.num_key_value_heads = chosen.kv_groups
    new.num_attention_heads = chosen.kv_groups * s["per_group"]
    new.head_dim = s["head_dim"]  # no longer hidden / heads once heads go
    return new
