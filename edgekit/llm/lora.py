"""LoRA adapters (the `peft` library) for students too large to train whole: every linear of the decoder gets a
low-rank update, the rest stays frozen, and the update is merged into the weights before the student is saved, so
what `compress` reads is a plain transformers model."""

from __future__ import annotations

from edgekit.errors import InputError


def add_adapters(model, rank: int, alpha: float | None):
    try:
        from peft import LoraConfig, get_peft_model
    except ImportError as exc:
        raise InputError("--lora-rank needs the peft package: pip install 'edgekit[llm]'") from exc
    config = LoraConfig(r=rank, lora_alpha=alpha or 2 * rank, target_modules="all-linear", lora_dropout=0.0,
                        bias="none")
    return get_peft_model(model, config)


def merged(model):
    """The plain model with its adapters folded into the weights."""
    return model.merge_and_unload() if hasattr(model, "merge_and_unload") else model
