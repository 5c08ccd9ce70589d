"""Hidden-size pruning of a causal LM: channels of the residual stream removed everywhere they are read or
written (the embeddings and head, every projection's input or output, every norm), the same channels in every
layer, so the pruned model is the same class at a smaller hidden size.

Importance is measured on calibration text (as NVIDIA's Minitron does): a channel's share of each norm's output
energy, summed over the model's norms. A norm divides by the root mean square of the channels it sees; with
fewer channels that mean changes, so each norm's weight is rescaled by what its input's measured energy says
the kept channels' mean square becomes (without it, every norm's output would grow by sqrt(hidden / kept)).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from edgekit.errors import InputError
from edgekit.llm.prune.shape import (MIN_KEEP, MULTIPLE, check_ratio, copy_config, count_params, floor_width,
                                     shape)

STAT_BLOCKS = 16  # calibration blocks the norms' statistics come from
READS = ("embed_tokens.weight", "lm_head.weight", "q_proj.weight", "k_proj.weight", "v_proj.weight",
         "gate_proj.weight", "up_proj.weight")  # [*, hidden]: the hidden channel is axis 1
WRITES = ("o_proj.weight", "down_proj.weight", "o_proj.bias", "down_proj.bias")  # [hidden, *]: axis 0
NORMS = ("input_layernorm.weight", "post_attention_layernorm.weight", "model.norm.weight")
OTHER = ("q_proj.bias", "k_proj.bias", "v_proj.bias", "gate_proj.bias", "up_proj.bias", "q_norm.weight",
         "k_norm.weight", "rotary_emb.inv_freq")  # no hidden axis


@dataclass
class HiddenPlan:
    """Which residual channels stay, and each norm weight's compensating factor."""

    channels: np.ndarray  # kept hidden channels (sorted)
    norm_scales: dict[str, float]  # by norm weight name
    params_before: int
    params_after: int

    def config(self, old):
        new = copy_config(old)
        new.head_dim = shape(old)["head_dim"]  # no longer hidden / heads
        new.hidden_size = len(self.channels)
        return new

    def state(self, state: dict[str, np.ndarray], old) -> dict[str, np.ndarray]:
        pruned = {}
        for name, value in state.items():
            if name.endswith(READS):
                value = value[:, self.channels]
            elif name.endswith(WRITES):
                value = value[self.channels]
            elif name.endswith(NORMS):
                value = value[self.channels] * np.float32(self.norm_scales[name])
            pruned[name] = np.ascontiguousarray(value)
        return pruned

    def describe(self) -> dict:
        return {"axis": "hidden", "hidden_size": len(self.channels),
                "norm_scale_range": [round(min(self.norm_scales.values()), 4),
                                     round(max(self.norm_scales.values()), 4)],
                "kept": f"hidden size {len(self.channels)}"}


def check_layout(state: dict[str, np.ndarray], config) -> None:
    """Refuse a model with a tensor whose hidden axis these rules do not know, or that scales by the width."""
    if str(getattr(config, "model_type", "")).startswith("gemma"):
        raise InputError("--prune-axis hidden: this model scales its embeddings by sqrt(hidden size), which "
                         "pruning would change; use --prune-axis width or depth")
    hidden = config.hidden_size
    unknown = [n for n, v in state.items()
               if not n.endswith(READS + WRITES + NORMS + OTHER) and hidden in np.shape(v)]
    if unknown:
        raise InputError(f"--prune-axis hidden does not know where {unknown[0]} reads the hidden size; use "
                         "--prune-axis width or depth")


def kept_width(config, ratio: float, tied: bool) -> int:
    """The hidden size, in whole weight blocks, that removes at least `ratio` of the parameters."""
    check_ratio(ratio)
    hidden = config.hidden_size
    per_channel = count_params(config, tied) / hidden  # every term of the count is linear in the hidden size
    width = (hidden - int(np.ceil(count_params(config, tied) * ratio / per_channel))) // MULTIPLE * MULTIPLE
    if width < floor_width(hidden):
        most = (hidden - floor_width(hidden)) / hidden
        raise InputError(f"--prune {ratio} --prune-axis hidden: at most {most:.2f} of this model's parameters can "
                         f"go (hidden size down to {MIN_KEEP:.0%}); give a smaller share")
    return width


def plan(model, state: dict[str, np.ndarray], calib: np.ndarray, ratio: float, tied: bool) -> HiddenPlan:
    check_layout(state, model.config)
    width = kept_width(model.config, ratio, tied)
    inputs, outputs = norm_energy(model, [n for n in state if n.endswith(NORMS)], calib[:STAT_BLOCKS])
    score = sum(out / out.sum() for out in outputs.values())
    kept = np.sort(np.argsort(-score)[:width])
    hidden = model.config.hidden_size
    scales = {name: float(np.sqrt(hidden / width * energy[kept].sum() / energy.sum()))
              for name, energy in inputs.items()}
    chosen = HiddenPlan(kept, scales, count_params(model.config, tied), 0)
    chosen.params_after = count_params(chosen.config(model.config), tied)
    return chosen


def norm_energy(model, names: list[str], blocks: np.ndarray) -> tuple[dict, dict]:
    """Per norm weight name: (sum over tokens of each input channel's square, the same of the output)."""
    modules = dict(model.named_modules())
    inputs: dict[str, np.ndarray] = {}
    outputs: dict[str, np.ndarray] = {}

    def hook(name):
        def record(_module, args, output):
            for store, tensor in ((inputs, args[0]), (outputs, output)):
                energy = tensor.detach().double().pow(2).reshape(-1, tensor.shape[-1]).sum(0).numpy()
                store[name] = store[name] + energy if name in store else energy
        return record
    handles = [modules[n.removesuffix(".weight")].register_forward_hook(hook(n)) for n in names]
    try:
        with torch.no_grad():
            for block in blocks:
                model(torch.from_numpy(np.asarray(block, np.int64))[None])
    finally:
        for handle in handles:
            handle.remove()
    return inputs, outputs
