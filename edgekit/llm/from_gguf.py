"""A GGUF file (llama.cpp's format) as a transformers folder, so that every later step reads one kind of input.

transformers reads GGUF itself (with the `gguf` package) and dequantizes its blocks to float: those float weights
are the model a user shipped, and the reference everything else is measured against. The loaded config keeps a
note that the weights came quantized; it is dropped and the weights saved into a plain model of the same class,
which the exporter takes like any other folder.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

from edgekit.errors import InputError

MARK = "edgekit-gguf-source.json"


def _identity(gguf: Path) -> dict:
    stat = gguf.stat()
    return {"file": str(gguf.resolve()), "bytes": stat.st_size, "mtime_ns": stat.st_mtime_ns}


def gguf_to_folder(gguf: str | Path, out: str | Path) -> Path:
    """Write the GGUF model at `gguf` as a transformers folder `out` (kept while the file is unchanged)."""
    gguf, out = Path(gguf), Path(out)
    mark = out / MARK
    if mark.is_file() and json.loads(mark.read_text()) == _identity(gguf):
        return out
    model, tokenizer = _load(gguf)
    tmp = out.with_name(f".{out.name}.writing")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp, safe_serialization=True)
    tokenizer.save_pretrained(tmp)
    (tmp / MARK).write_text(json.dumps(_identity(gguf)))
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    return out


def _load(gguf: Path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    for package in ("gguf", "accelerate"):
        try:
            __import__(package)
        except ImportError as exc:
            raise InputError(f"{gguf}: reading GGUF needs the {package!r} package; pip install 'edgekit[llm]'") from exc
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
        loaded = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype="float32")
    except (ValueError, KeyError, OSError, RuntimeError) as exc:
        raise InputError(f"{gguf}: transformers cannot read this GGUF file ({str(exc).splitlines()[0][:160]}); "
                         "give the model as a transformers folder instead") from exc
    config = loaded.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    model = type(loaded)(config)
    model.load_state_dict(loaded.state_dict())
    return model.eval(), tokenizer


def folder_name(gguf: str | Path) -> str:
    """A work folder name unique to the GGUF file's path."""
    path = Path(gguf).resolve()
    return f"{path.stem}-{hashlib.sha256(str(path).encode()).hexdigest()[:8]}"
