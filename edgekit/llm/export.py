"""A causal LM as an ONNX Runtime GenAI folder: model.onnx (+ data) with a KV cache, genai_config.json and the
tokenizer, written by the ONNX Runtime GenAI model builder, offline.

The builder holds the whole model in memory while it writes: a large model is built in a child process
(`python -m onnxruntime_genai.models.builder`), whose memory goes back with it; a small one in this process,
its prints kept off our output (a child costs seconds of imports, most of a small build). The folder is written
to a temporary path and renamed into place, so a failed build leaves nothing behind.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

from edgekit.errors import InputError, StageError
from edgekit.llm.blockwise import mend_graph
from edgekit.models.causal_lm import causal_lm_info

PRECISIONS = {"fp32": "fp32", "fp16": "fp16", "int8": "int8", "int4": "int4"}  # the builder's -p values
GENAI_FILES = ("model.onnx", "genai_config.json")
IN_PROCESS_PARAMS = 400_000_000  # below this, the builder's copy of the weights is small beside ours
OFFLINE = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}


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
    options = [f"{k}={v}" for k, v in {"hf_token": "false", **(extra_options or {})}.items()]
    build = _build_here if info["params"] < IN_PROCESS_PARAMS else _build_in_child
    failure = build(model_dir, tmp, PRECISIONS[precision], execution, options)
    if failure is not None or not all((tmp / f).is_file() for f in GENAI_FILES):
        shutil.rmtree(tmp, ignore_errors=True)
        raise StageError(f"the ONNX Runtime GenAI builder could not export {model_dir} ({(failure or 'no model')[:200]})")
    shutil.rmtree(tmp / "_cache", ignore_errors=True)
    mend_graph(tmp, model_dir)
    tmp.rename(out)
    return out


def _build_here(model_dir: Path, out: Path, precision: str, execution: str, options: list[str]) -> str | None:
    """The builder's own two steps (as its command runs them), in this process; returns a failure or None."""
    os.environ.update(OFFLINE)
    from onnxruntime_genai.models.builder import create_model, parse_extra_options

    noise = io.StringIO()
    logging.disable(logging.INFO)  # its quantizer logs every layer at INFO through handlers of its own
    try:
        with contextlib.redirect_stdout(noise), contextlib.redirect_stderr(noise):
            prepared = parse_extra_options(None, str(model_dir), str(out), precision, execution, str(out / "_cache"),
                                           options)
            create_model(None, str(model_dir), str(out), precision, execution, str(out / "_cache"), **prepared)
    except Exception as exc:  # the builder raises what its parts raise; all mean the same to the user
        return " ".join(str(exc).split()) or type(exc).__name__
    finally:
        logging.disable(logging.NOTSET)
    return None


def _build_in_child(model_dir: Path, out: Path, precision: str, execution: str, options: list[str]) -> str | None:
    cmd = [sys.executable, "-m", "onnxruntime_genai.models.builder", "-i", str(model_dir), "-o", str(out),
           "-p", precision, "-e", execution, "-c", str(out / "_cache"), "--extra_options", *options]
    done = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, **OFFLINE})
    if done.returncode == 0:
        return None
    return next((line for line in reversed(done.stderr.strip().splitlines()) if line.strip()), "no output")


def greedy_tokens(genai_dir: str | Path, prompt_ids: list[int], new_tokens: int, model=None,
                  full_length: bool = False) -> list[int]:
    """The tokens the exported model generates greedily after `prompt_ids` (its KV cache in use); `full_length`
    holds off the end of text so that all `new_tokens` come."""
    import onnxruntime_genai as og

    model = model or og.Model(str(genai_dir))
    params = og.GeneratorParams(model)
    length = len(prompt_ids) + new_tokens
    params.set_search_options(max_length=length, do_sample=False, **({"min_length": length} if full_length else {}))
    generator = og.Generator(model, params)
    generator.append_tokens(prompt_ids)
    tokens = []
    while not generator.is_done():
        generator.generate_next_token()
        tokens.append(int(generator.get_next_tokens()[0]))
    return tokens
