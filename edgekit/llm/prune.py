"""Structured pruning of a causal LM, uniform across layers so the exporters take the result: MLP neurons, and
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

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgekit.errors import InputError

MULTIPLE = 32  # kept MLP width stays a multiple of the weight-block size
MIN_KEEP = 0.25  # at most three quarters of the MLP neurons go


@dataclass
class PrunePlan:
    """How wide the pruned model is, and which neurons and KV groups each layer keeps."""

    intermediate: int
    kv_groups: int
    neurons: list[np.ndarray]  # per layer, kept MLP neuron indices (sorted)
    groups: list[np.ndarray]  # per layer, kept KV group indices (sorted)
    params_before: int
    params_after: int


def _shape(config) -> dict[str, int]:
    heads = config.num_attention_heads
    kv = getattr(config, "num_key_value_heads", None) or heads
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // heads
    return {"hidden": config.hidden_size, "heads": heads, "kv": kv, "head_dim": head_dim,
            "per_group": heads // kv, "layers": config.num_hidden_layers, "intermediate": config.intermediate_size}


def importance(state: dict[str, np.ndarray], hessians: dict[str, np.ndarray], config) -> tuple[list, list]:
    """Per layer: (MLP neuron scores [intermediate], KV group scores [kv groups])."""
    shape = _shape(config)
    neurons, groups = [], []
    for i in range(shape["layers"]):
        base = f"model.layers.{i}"
        down = state[f"{base}.mlp.down_proj.weight"]
        neurons.append(np.diag(hessians[f"{base}.mlp.down_proj.weight"]) * np.sum(down.astype(np.float64) ** 2, axis=0))
        out = state[f"{base}.self_attn.o_proj.weight"]
        channel = np.diag(hessians[f"{base}.self_attn.o_proj.weight"]) * np.sum(out.astype(np.float64) ** 2, axis=0)
        groups.append(channel.reshape(shape["kv"], -1).sum(axis=1))
    return neurons, groups


def count_params(config, tied: bool) -> int:
    s = _shape(config)
    attention = s["hidden"] * s["head_dim"] * (2 * s["heads"] + 2 * s["kv"])
    mlp = 3 * s["hidden"] * s["intermediate"]
    embeddings = config.vocab_size * s["hidden"] * (1 if tied else 2)
    return s["layers"] * (attention + mlp + 2 * s["hidden"]) + embeddings + s["hidden"]


def check_share(config, ratio: float, tied: bool) -> None:
    """Refuse, from the config alone (before any work), a share the model cannot give."""
    if not 0 < ratio < 0.9:
        raise InputError(f"--prune {ratio}: give a share of the parameters between 0 and 0.9")
    s = _shape(config)
    before = count_params(config, tied)
    floor = max(MULTIPLE, int(s["intermediate"] * MIN_KEEP) // MULTIPLE * MULTIPLE)
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
    s = _shape(config)
    before = count_params(config, tied)
    goal = before * ratio
    per_neuron = 3 * s["hidden"] * s["layers"]
    per_group = s["hidden"] * s["head_dim"] * (2 * s["per_group"] + 2) * s["layers"]
    floor = max(MULTIPLE, int(s["intermediate"] * MIN_KEEP) // MULTIPLE * MULTIPLE)
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
    s = _shape(config)
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
    s = _shape(config)
    new = config.__class__.from_dict(config.to_dict())
    new.intermediate_size = chosen.intermediate
    new.num_key_value_heads = chosen.kv_groups
    new.num_attention_heads = chosen.kv_groups * s["per_group"]
    new.head_dim = s["head_dim"]  # no longer hidden / heads once heads go
    return new


def build_pruned(model, state: dict[str, np.ndarray], chosen: PrunePlan):
    """A new model of the same class at the pruned widths, holding the kept weights."""
    import torch

    config = pruned_config(model.config, chosen)
    pruned = type(model)(config)
    tensors = {k: torch.from_numpy(v) for k, v in prune_state(state, model.config, chosen).items()}
    missing, unexpected = pruned.load_state_dict(tensors, strict=False)
    if unexpected or [m for m in missing if not m.endswith("lm_head.weight")]:
        raise InputError(f"pruning does not know this model's layout (missing {missing[:2]}, unexpected "
                         f"{unexpected[:2]}); give a Llama- or Qwen2-style model, or drop --prune")
    if getattr(config, "tie_word_embeddings", False):
        pruned.tie_weights()
    return pruned.eval()


def save_pruned(model, tokenizer_dir: Path, out: Path) -> Path:
    """The pruned model as a transformers folder with the source's tokenizer files."""
    tmp = out.with_name(f".{out.name}.writing")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp, safe_serialization=True)
    for file in Path(tokenizer_dir).iterdir():
        if file.is_file() and (file.name.startswith(("tokenizer", "special_tokens", "vocab", "merges", "chat_template"))
                               or file.name == "generation_config.json"):
            shutil.copy2(file, tmp / file.name)
    config = json.loads((tmp / "config.json").read_text())
    config.pop("quantization_config", None)
    (tmp / "config.json").write_text(json.dumps(config, indent=1))
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    return out


def prune_and_distill(model_dir: Path, reference, calib: np.ndarray, train: np.ndarray, ratio: float,
                      minutes: float, lr: float, seed: int, work: Path):
    """The model pruned to a uniform width by measured importance, distilled from the unpruned one on the
    training text, saved (work/pruned) and exported FP32 (work/pruned-fp32). Returns (student, its folder,
    what was done)."""
    from edgekit.llm import blockwise as bw
    from edgekit.llm.export import build_genai
    from edgekit.llm.recover import distill
    from edgekit.progress import console

    state = bw.load_state(model_dir)
    names = [n for n in state if n.endswith(("mlp.down_proj.weight", "self_attn.o_proj.weight"))]
    hessians = bw.layer_statistics(reference, calib, names)[0]
    chosen = plan(state, hessians, reference.config, ratio, tied=bw.HEAD not in state)
    console.log(f"  pruned to MLP width {chosen.intermediate} and {chosen.kv_groups} KV groups: "
                f"{chosen.params_after:,} of {chosen.params_before:,} parameters; distilling for {minutes:g} min …")
    student = build_pruned(reference, state, chosen)
    log = distill(student, reference, train, minutes, lr, seed=seed)
    for name in ("pruned", "pruned-fp32"):
        shutil.rmtree(work / name, ignore_errors=True)
    folder = save_pruned(student, model_dir, work / "pruned")
    build_genai(folder, work / "pruned-fp32", "fp32")
    done = {"ratio": ratio, "intermediate_size": chosen.intermediate, "kv_heads": chosen.kv_groups,
            "params_before": chosen.params_before, "params_after": chosen.params_after,
            "recovery": {"steps": log.steps, "tokens": log.tokens, "seconds": round(log.seconds, 1),
                         "first_loss": log.losses[0] if log.losses else None,
                         "last_loss": log.losses[-1] if log.losses else None}}
    return student, folder, done
