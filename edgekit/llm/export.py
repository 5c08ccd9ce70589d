"""A causal LM as an ONNX Runtime GenAI folder: model.onnx (+ data) with a KV cache, genai_config.json and the
tokenizer, written by the ONNX Runtime GenAI model builder, offline.

The builder is run as its own command (`python -m onnxruntime_genai.models.builder`) in a child process: it
prints progress bars of its own and holds the whole model in memory, which then goes back with the process.
The folder is written to a temporary path and renamed into place, so a failed build leaves nothing behind.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from edgekit.errors import InputError, StageError
from edgekit.llm.info import causal_lm_info

PRECISIONS = {"fp32": "fp32", "int8": "int8", "int4": "int4"}  # the builder's -p values
GENAI_FILES = ("model.onnx", "genai_config.json")


def build_genai(model_dir: str | Path, out: str | Path, precision: str = "fp32", execution: str = "cpu",
                extra_options: dict[str, str] | None = None) -> Path:
    """Write the GenAI folder for `model_dir` at `out` (which must not exist); returns `out`."""
    model_dir, out = Path(model_dir), Path(out)
    info = causal_lm_info(model_dir)
    if info["exporter"].startswith("not exported"):
        raise InputError(f"{model_dir}: {info['exporter']}; supported: Llama, Mistral, Qwen2/3, Phi, Gemma, Granite, "
                         "OLMo, Nemotron, SmolLM3")
    if not info["tokenizer"]:
        raise InputError(f"{model_dir} has no tokenizer (tokenizer.json or tokenizer.model); save it in the model "
                         "folder with tokenizer.save_pretrained(folder)")
    if precision not in PRECISIONS:
        raise InputError(f"precision {precision!r}: choose one of {', '.join(PRECISIONS)}")
    tmp = out.with_name(f".{out.name}.building")
    shutil.rmtree(tmp, ignore_errors=True)
    options = {"hf_token": "false", **(extra_options or {})}
    cmd = [sys.executable, "-m", "onnxruntime_genai.models.builder", "-i", str(model_dir), "-o", str(tmp),
           "-p", PRECISIONS[precision], "-e", execution, "-c", str(tmp / "_cache"),
           "--extra_options", *[f"{k}={v}" for k, v in options.items()]]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    done = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if done.returncode != 0 or not all((tmp / f).is_file() for f in GENAI_FILES):
        shutil.rmtree(tmp, ignore_errors=True)
        last = next((line for line in reversed(done.stderr.strip().splitlines()) if line.strip()), "no output")
        raise StageError(f"the ONNX Runtime GenAI builder could not export {model_dir} ({last[:200]})")
    shutil.rmtree(tmp / "_cache", ignore_errors=True)
    tmp.rename(out)
    return out


def greedy_tokens(genai_dir: str | Path, prompt_ids: list[int], new_tokens: int) -> list[int]:
    """The tokens the exported model generates greedily after `prompt_ids` (its KV cache in use)."""
    import onnxruntime_genai as og

    model = og.Model(str(genai_dir))
    params = og.GeneratorParams(model)
    params.set_search_options(max_length=len(prompt_ids) + new_tokens, do_sample=False)
    generator = og.Generator(model, params)
    generator.append_tokens(prompt_ids)
    tokens = []
    while not generator.is_done():
        generator.generate_next_token()
        tokens.append(int(generator.get_next_tokens()[0]))
    return tokens
