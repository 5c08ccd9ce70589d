"""`edgekit inspect`: params, MACs, layers and prunable channel groups of a model; for a causal language model,
its shape read from the config (models/causal_lm.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edgekit.errors import InputError
from edgekit.measure.metrics import onnx_params_and_macs
from edgekit.files import scratch_dir


def run_inspect(spec: str, weights: str | None, data: str | None,
                input_shape: list[int] | None = None) -> dict[str, Any]:
    from edgekit.models.causal_lm import causal_lm_info, is_causal_lm
    from edgekit.models import load_model

    if is_causal_lm(spec):
        return causal_lm_info(spec)
    model = load_model(spec, weights)
    if model.is_onnx:
        params, macs = onnx_params_and_macs(model.onnx_path)
        return {"model": spec, "format": "onnx", "params": params, "macs": macs, "inputs": model.input_names}
    example = _example(model, data, input_shape)
    with scratch_dir("inspect") as tmp:
        from edgekit.models.export import export_onnx

        path = export_onnx(model.module, example, model.input_names, Path(tmp) / "m.onnx")
        _, macs = onnx_params_and_macs(path, {n: tuple(t.shape) for n, t in zip(model.input_names, example)})
    from edgekit.measure.metrics import count_params

    return {"model": spec, "format": "torch", "params": count_params(model.module), "macs": macs,
            "inputs": {n: list(t.shape) for n, t in zip(model.input_names, example)},
            "layers": layers(model.module), "prunable_groups": prunable_groups(model.module, example)}


def _example(model, data: str | None, input_shape: list[int] | None):
    import torch

    if data:
        inputs, _ = next(model.data(data).batches(1))
        return tuple(torch.from_numpy(inputs[n]) for n in model.input_names)
    if input_shape:
        return (torch.randn(*input_shape),)
    if model.kind == "example":
        return (torch.zeros(1, 1, 28, 28),)
    config = getattr(getattr(model.module, "model", None), "config", None)
    if config is not None and hasattr(config, "image_size"):
        size = config.image_size
        return (torch.zeros(1, getattr(config, "num_channels", 3), size, size),)
    if config is not None and model.input_names[0] == "input_ids":
        return (torch.ones(1, 16, dtype=torch.long), torch.ones(1, 16, dtype=torch.long))
    raise InputError(f"cannot tell the input shape of {model.spec}; pass --data FILE or --input-shape 1,3,224,224")


def layers(module) -> list[dict[str, Any]]:
    from torch import nn

    rows = []
    for name, m in module.named_modules():
        if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Linear)):
            rows.append({"name": name, "type": type(m).__name__,
                         "in": getattr(m, "in_channels", getattr(m, "in_features", None)),
                         "out": getattr(m, "out_channels", getattr(m, "out_features", None)),
                         "groups": getattr(m, "groups", 1),
                         "params": int(sum(p.numel() for p in m.parameters(recurse=False)))})
    return rows


def prunable_groups(module, example) -> list[dict[str, Any]]:
    """Channel groups that must be pruned together (torch-pruning's dependency graph)."""
    import torch_pruning as tp
    from torch import nn

    names = {m: n for n, m in module.named_modules()}
    last = [m for m in module.modules() if isinstance(m, (nn.Linear, nn.Conv2d))][-1:]
    graph = tp.DependencyGraph().build_dependency(module, example_inputs=list(example), verbose=False)
    groups = []
    for group in graph.get_all_groups(ignored_layers=last, root_module_types=[nn.Conv2d, nn.Linear]):
        members = sorted({names[dep.target.module] for dep, _ in group
                          if dep.target.module in names and isinstance(dep.target.module, (nn.Conv2d, nn.Linear))})
        root = group[0].dep.target.module
        groups.append({"root": names.get(root, "?"), "channels": len(group[0].idxs), "layers": members})
    return groups
