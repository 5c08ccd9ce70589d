"""Measuring a language-model artifact the way its users do: quality against the FP model on held-out text
(perplexity, mean KL divergence per token, top-1 next-token agreement, greedy continuations that match) and
speed through ONNX Runtime GenAI (prefill and decode tokens per second, time to first token).

Quality reads the exported model's own logits: one prefill of a held-out block returns the logits of every
position, which are compared with the FP model's for the same block, one block at a time (a block's
[positions, vocabulary] logits are the largest thing held, whatever the corpus size).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


def genai_block_logits(genai_dir: str | Path, block: np.ndarray, model=None) -> np.ndarray:
    """[positions, vocab] logits of the exported model over one block (a single prefill)."""
    import onnxruntime_genai as og

    model = model or og.Model(str(genai_dir))
    params = og.GeneratorParams(model)
    params.set_search_options(max_length=len(block) + 1)
    generator = og.Generator(model, params)
    generator.append_tokens([int(t) for t in block])
    return np.asarray(generator.get_output("logits"), np.float32)[0]


def reference_block_logits(model, block: np.ndarray) -> np.ndarray:
    """[positions, vocab] logits of a transformers causal LM over one block."""
    import torch

    with torch.no_grad():
        return model(torch.from_numpy(np.asarray(block, np.int64))[None]).logits[0].float().numpy()


def _log_softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def compare_logits(candidate: np.ndarray, reference: np.ndarray, block: np.ndarray) -> dict[str, float]:
    """Sums over one block's next-token predictions (positions 0..n-2 predict tokens 1..n-1)."""
    cand, ref = _log_softmax(candidate[:-1].astype(np.float64)), _log_softmax(reference[:-1].astype(np.float64))
    targets = np.asarray(block[1:], np.int64)
    rows = np.arange(len(targets))
    kl = np.sum(np.exp(ref) * (ref - cand), axis=-1)
    return {"tokens": float(len(targets)), "nll": float(-cand[rows, targets].sum()),
            "reference_nll": float(-ref[rows, targets].sum()), "kl": float(kl.sum()),
            "agree": float(np.sum(cand.argmax(-1) == ref.argmax(-1)))}


def quality(genai_dir: str | Path, reference_model, blocks: np.ndarray) -> dict[str, float]:
    """Perplexity of the artifact and of the FP model, mean KL(FP || artifact) per token, top-1 agreement."""
    import onnxruntime_genai as og

    model = og.Model(str(genai_dir))
    total: dict[str, float] = {}
    for block in blocks:
        part = compare_logits(genai_block_logits(genai_dir, block, model), reference_block_logits(reference_model, block),
                              block)
        for key, value in part.items():
            total[key] = total.get(key, 0.0) + value
    tokens = total["tokens"]
    return {"perplexity": float(np.exp(total["nll"] / tokens)),
            "reference_perplexity": float(np.exp(total["reference_nll"] / tokens)),
            "kl_per_token": total["kl"] / tokens, "top1_agreement": total["agree"] / tokens, "tokens": int(tokens)}


def speed(genai_dir: str | Path, prompt: list[int], new_tokens: int, repeats: int = 3) -> dict[str, float]:
    """Time to first token, prefill and decode tokens/s of greedy generation (measure/latency.py times it)."""
    import onnxruntime_genai as og

    from edgekit.measure.latency import time_generation

    model = og.Model(str(genai_dir))
    return {**time_generation(lambda: _greedy_generator(model, len(prompt), new_tokens), prompt, repeats),
            "prompt_tokens": len(prompt), "new_tokens": new_tokens}


def _greedy_generator(model, prompt_tokens: int, new_tokens: int):
    """A GenAI generator that makes exactly `new_tokens` greedy tokens after a prompt of `prompt_tokens`."""
    import onnxruntime_genai as og

    params = og.GeneratorParams(model)
    params.set_search_options(max_length=prompt_tokens + new_tokens, min_length=prompt_tokens + new_tokens,
                              do_sample=False)
    return og.Generator(model, params)


class _Decoding:
    """A GenAI generator that has taken its prompt and made its first token, holding its model alive."""

    def __init__(self, folder: str | Path, prompt: list[int], new_tokens: int):
        import onnxruntime_genai as og

        self.model = og.Model(str(folder))
        self.generator = _greedy_generator(self.model, len(prompt), new_tokens)
        self.generator.append_tokens([int(t) for t in prompt])
        self.generator.generate_next_token()

    def is_done(self) -> bool:
        return self.generator.is_done()

    def generate_next_token(self) -> None:
        self.generator.generate_next_token()


def decode_side_by_side(folders: dict[str, str | Path], prompt: list[int], new_tokens: int,
                        rounds: int = 3) -> dict[str, float]:
    """Decode tokens/s of artifacts compared in one run: 1 / the median time of one token, every artifact
    stepped in turn (measure/latency.py says why). Their ratios hold where timing each alone, seconds apart,
    has moved by 10-15% between runs on a shared machine."""
    from edgekit.measure.latency import decode_rates_side_by_side

    starts = {label: (lambda folder=folder: _Decoding(folder, prompt, new_tokens))
              for label, folder in folders.items()}
    return decode_rates_side_by_side(starts, rounds)


def speeds_side_by_side(folders: dict[str, str | Path], prompt: list[int], new_tokens: int,
                        rounds: int = 3) -> dict[str, dict[str, float]]:
    """`speed` of each artifact (time to first token, prefill), its decode measured side by side."""
    decode = decode_side_by_side(folders, prompt, new_tokens, rounds)
    return {label: {**speed(folder, prompt, 1), "new_tokens": new_tokens, "decode_tok_s": decode[label]}
            for label, folder in folders.items()}


def greedy_match(genai_dir: str | Path, reference_model, prompts: list[list[int]], new_tokens: int) -> dict[str, float]:
    """Greedy continuations of the artifact against the FP model's, `new_tokens` each (end of text held off in
    both, so every continuation has the full length): the share identical, and the mean share of tokens
    before the first difference."""
    import onnxruntime_genai as og
    import torch

    from edgekit.llm.export import greedy_tokens

    model = og.Model(str(genai_dir))
    exact, prefix = 0, 0.0
    for prompt in prompts:
        ours = greedy_tokens(genai_dir, prompt, new_tokens, model, full_length=True)
        with torch.no_grad():
            theirs = reference_model.generate(torch.tensor([prompt]), max_new_tokens=new_tokens,
                                              min_new_tokens=new_tokens, do_sample=False)[0, len(prompt):].tolist()
        same = next((i for i, (a, b) in enumerate(zip(ours, theirs)) if a != b), min(len(ours), len(theirs)))
        exact += int(ours == theirs)
        prefix += same / new_tokens
    return {"greedy_exact_match": exact / len(prompts), "greedy_matched_prefix": prefix / len(prompts)}


def peak_memory_mib(genai_dir: str | Path, prompt_tokens: int, new_tokens: int) -> float:
    """Peak resident memory of a fresh process that loads the artifact and generates: what a board must hold."""
    import subprocess
    import sys

    from edgekit.errors import StageError

    done = subprocess.run([sys.executable, "-m", "edgekit.llm.memory", str(genai_dir), str(prompt_tokens),
                           str(new_tokens)], capture_output=True, text=True, timeout=1800)
    if done.returncode != 0:
        raise StageError(f"generation with {genai_dir} failed ({done.stderr.strip().splitlines()[-1][:200]})")
    return float(done.stdout.strip().splitlines()[-1])
