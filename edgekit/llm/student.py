"""How a language-model student is made for `distill`: a config built fresh (seeded), or a folder with weights,
optionally wrapped with LoRA adapters; the same way at the start, on --resume and when the best epoch is published."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from edgekit.errors import InputError


@dataclass
class StudentPlan:
    """How the student is made, the same way at the start, on --resume and when publishing the best epoch."""

    config: Any
    weights: Path | None  # a folder to load, or None: built fresh from the config
    lora_rank: int
    lora_alpha: float | None
    seed: int

    @classmethod
    def of(cls, cfg, vocab: int) -> "StudentPlan":
        config, weights = student_config(Path(cfg.student))
        if getattr(config, "vocab_size", None) != vocab:
            raise InputError(f"--student has a vocabulary of {getattr(config, 'vocab_size', None)} tokens and the "
                             f"teacher {vocab}; token-level distillation needs the teacher's vocabulary: set "
                             f"vocab_size {vocab} in the student's config")
        if cfg.lm.lora_rank and weights is None:
            raise InputError("--lora-rank adapts trained weights, and a student built from a config has none; drop "
                             "--lora-rank, or give a student folder with weights")
        return cls(config, weights, cfg.lm.lora_rank, cfg.lm.lora_alpha, cfg.seed)

    @property
    def kind(self) -> str:
        return "lora" if self.lora_rank else ("whole" if self.weights is not None else "fresh")

    def build(self):
        from transformers import AutoModelForCausalLM

        torch.manual_seed(self.seed)
        if self.weights is not None:
            model = AutoModelForCausalLM.from_pretrained(self.weights, local_files_only=True, dtype=torch.float32)
        else:
            model = AutoModelForCausalLM.from_config(self.config, dtype=torch.float32)
        if self.lora_rank:
            from edgekit.llm.lora import add_adapters

            model = add_adapters(model, self.lora_rank, self.lora_alpha)
        return model

    def trained_names(self, model) -> set[str] | None:
        """The parameters a checkpoint keeps: the adapters' under LoRA, else every one (None)."""
        return {n for n, p in model.named_parameters() if p.requires_grad} if self.lora_rank else None


def student_config(path: Path):
    """(config, folder with weights or None) from a config .json or a transformers folder."""
    from transformers import AutoConfig

    if path.is_file() and path.suffix == ".json":
        try:
            values = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise InputError(f"--student {path} is not a readable JSON config ({exc})") from exc
        if not isinstance(values, dict) or "model_type" not in values:
            raise InputError(f"--student {path} has no model_type; a transformers config names its model "
                             "(\"model_type\": \"llama\")")
        try:
            return AutoConfig.for_model(values.pop("model_type"), **values), None
        except (ValueError, KeyError) as exc:
            raise InputError(f"--student {path}: {' '.join(str(exc).split())[:160]}") from exc
    if not (path / "config.json").is_file():
        raise InputError(f"--student {path}: give a transformers config .json or a model folder (config.json)")
    config = AutoConfig.from_pretrained(path, local_files_only=True)
    has_weights = any(path.glob("*.safetensors")) or any(path.glob("*.bin"))
    return config, (path if has_weights else None)
