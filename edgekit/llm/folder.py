"""A model edgekit changed, saved as a transformers folder the exporters and `from_pretrained` read."""

from __future__ import annotations

import json
import shutil
from pathlib import Path


def save_model(model, tokenizer_dir: Path, out: Path) -> Path:
    """`model` as a transformers folder with the tokenizer files of `tokenizer_dir` (a model edgekit changed: pruned,
    rotated), written beside `out` and renamed into place."""
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
