"""Resolve a model spec to a module (or an ONNX file) without running code from checkpoints."""

from __future__ import annotations

import importlib
import pickle
import re
from pathlib import Path

from edgekit.errors import ModelLoadError
from edgekit.models.base import LoadedModel

# Specs served by packages built on this loader, named as entry points (module:function) and imported only
# when a spec uses them: the built-in examples load through here, so this module must not import them.
PREFIX_LOADERS = {"example:": "edgekit.examples.models:load_example"}
_FACTORY = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")


def load_model(spec: str, weights: str | Path | None = None) -> LoadedModel:
    """Load `example:NAME`, `pkg.module:factory`, a transformers folder, or a `.onnx` file."""
    spec = str(spec)
    if spec.startswith("memory:"):
        from edgekit.models.memory import load_memory_model

        return load_memory_model(spec)
    for prefix, entry in PREFIX_LOADERS.items():
        if spec.startswith(prefix):
            module, function = entry.split(":")
            return getattr(importlib.import_module(module), function)(spec, weights)
    path = Path(spec)
    if spec.endswith(".onnx"):
        return _load_onnx(path)
    if spec.endswith(".json") and path.is_file():
        return _load_hf_config(path, weights)
    if path.is_dir():
        return _load_hf(path, weights)
    if _FACTORY.match(spec) and not path.exists():
        return _load_factory(spec, weights)
    if path.exists():
        raise ModelLoadError(
            f"cannot load model {spec}: give a transformers folder, an .onnx file, "
            "or `package.module:factory` with --weights FILE"
        )
    raise ModelLoadError(f"model {spec} does not exist; check the path or spec")


def rebuild_model(spec: str, weights: str | Path | None = None) -> LoadedModel:
    """A fresh build of the source model, as every stage starts from."""
    return load_model(spec, weights)


def _load_onnx(path: Path) -> LoadedModel:
    import onnx

    if not path.is_file():
        raise ModelLoadError(f"ONNX model {path} does not exist; check the path")
    try:
        proto = onnx.load(str(path), load_external_data=False)
        onnx.checker.check_model(proto)
    except Exception as exc:  # onnx raises several unrelated types for bad files
        raise ModelLoadError(f"{path} is not a valid ONNX model ({_first_line(exc)}); re-export it") from exc
    initializers = {i.name for i in proto.graph.initializer}
    inputs = [i for i in proto.graph.input if i.name not in initializers]
    ranks = {i.name: len(i.type.tensor_type.shape.dim) for i in inputs if i.type.tensor_type.HasField("shape")}
    return LoadedModel(spec=str(path), kind="onnx", onnx_path=path, input_names=[i.name for i in inputs],
                       input_dtypes=input_dtypes(proto), input_ranks=ranks)


def input_dtypes(proto) -> dict[str, str]:
    """{input: numpy dtype name} as the graph declares them (weights listed as inputs left out)."""
    import onnx

    initializers = {i.name for i in proto.graph.initializer}
    return {i.name: onnx.helper.tensor_dtype_to_np_dtype(i.type.tensor_type.elem_type).name
            for i in proto.graph.input if i.name not in initializers and i.type.tensor_type.elem_type}


def _load_hf(path: Path, weights: str | Path | None) -> LoadedModel:
    import transformers

    from edgekit.data.text import tokenizer_folder

    transformers.utils.logging.disable_progress_bar()
    if not (path / "config.json").is_file():
        raise ModelLoadError(
            f"folder {path} has no config.json; give a transformers model folder "
            "(save_pretrained) or `package.module:factory --weights FILE`"
        )
    try:
        config = transformers.AutoConfig.from_pretrained(path, local_files_only=True)
        arch = (config.architectures or [None])[0]
        cls = getattr(transformers, arch) if arch else transformers.AutoModel
        model = cls.from_pretrained(path, local_files_only=True)
    except (OSError, ValueError, AttributeError, KeyError) as exc:
        raise ModelLoadError(f"cannot load transformers model from {path}: {_first_line(exc)}") from exc
    return _hf_loaded(str(path), model, weights, tokenizer_folder(path))


def _load_hf_config(path: Path, weights: str | Path | None) -> LoadedModel:
    """A fresh transformers model from a config.json alone (a student to distil); the tokenizer beside it, if any."""
    import json

    import torch
    import transformers

    from edgekit.data.text import tokenizer_folder

    torch.manual_seed(0)  # a fresh model is the same model on every run
    try:
        options = json.loads(path.read_text())
        config = transformers.AutoConfig.for_model(**options)
        arch = (config.architectures or [None])[0]
        model = getattr(transformers, arch)(config) if arch else transformers.AutoModel.from_config(config)
    except (ValueError, AttributeError, KeyError, TypeError) as exc:
        raise ModelLoadError(f"cannot build a transformers model from {path}: {_first_line(exc)}; give a "
                             "config.json with model_type and architectures") from exc
    return _hf_loaded(str(path), model, weights, tokenizer_folder(path.parent))


def _hf_loaded(spec: str, model, weights, tokenizer: Path | None) -> LoadedModel:
    from edgekit.models.wrappers import LogitsOnly, transformers_input_names

    names = transformers_input_names(model)
    wrapped = LogitsOnly(model, names).eval()
    if weights is not None:
        load_weights_into(wrapped.model, weights)
    return LoadedModel(spec=spec, kind="hf", module=wrapped, input_names=names,
                       weights=Path(weights) if weights else None, tokenizer=tokenizer,
                       label2id=_label2id(model))


def _label2id(model) -> dict[str, int] | None:
    config = getattr(model, "config", None)
    mapping = getattr(config, "label2id", None)
    return {str(k): int(v) for k, v in mapping.items()} if mapping else None


def _load_factory(spec: str, weights: str | Path | None) -> LoadedModel:
    from torch import nn

    from edgekit.models.wrappers import LogitsOnly, forward_input_names

    module_name, func_name = spec.split(":")
    try:
        factory = getattr(importlib.import_module(module_name), func_name)
    except (ImportError, AttributeError) as exc:
        raise ModelLoadError(
            f"cannot import {spec}: {_first_line(exc)}; check that the module is on PYTHONPATH"
        ) from exc
    try:
        model = factory()
    except Exception as exc:  # the user's own code: any type
        raise ModelLoadError(f"{spec}() raised {type(exc).__name__}: {_first_line(exc)}; give a factory that "
                             "builds the model with no arguments") from exc
    if not isinstance(model, nn.Module):
        raise ModelLoadError(f"{spec}() returned {type(model).__name__}, not a torch.nn.Module; give a factory "
                             "that returns the model")
    if weights is not None:
        load_weights_into(model, weights)
    names = forward_input_names(model)
    wrapped = LogitsOnly(model, names).eval()
    return LoadedModel(spec=spec, kind="factory", module=wrapped, input_names=names,
                       weights=Path(weights) if weights else None, label2id=_label2id(model))


def read_state_dict(path: str | Path) -> dict:
    """Read tensors from safetensors, or a .pt state dict with weights_only=True (no pickle code)."""
    import torch

    path = Path(path)
    if not path.is_file():
        raise ModelLoadError(f"weights file {path} does not exist; check --weights")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(str(path))
        state = torch.load(str(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:  # what weights_only=True raises for anything but tensors
        raise ModelLoadError(
            f"weights file {path} holds pickled Python objects, which edgekit never loads (unpickling can run "
            "code); save only the tensors: safetensors.torch.save_file(model.state_dict(), 'weights.safetensors')"
        ) from exc
    except Exception as exc:  # corrupt files raise many types
        raise ModelLoadError(
            f"weights file {path} is corrupt or not a tensor file ({_first_line(exc)}); "
            "save it with safetensors.torch.save_file"
        ) from exc
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise ModelLoadError(f"weights file {path} holds no state dict; save model.state_dict()")
    return state


def load_weights_into(model, weights: str | Path) -> None:
    state = read_state_dict(weights)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise ModelLoadError(
            f"weights {weights} do not fit the model ({_first_line(exc)}); "
            "check that --weights belongs to this architecture"
        ) from exc


def _first_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text[:240] if text else type(exc).__name__
