"""QAD prepare -> train -> convert: attach fake quant to Conv/Linear, then strip it again."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils import parametrize

from .fakequant import ActivationFakeQuant, WeightFakeQuant

QUANTIZED = (nn.Conv2d, nn.Conv1d, nn.Linear)


def conv_input_tensor_map(onnx_path, module_names: set[str]) -> dict[str, str]:
    """Module path -> name of the ONNX tensor feeding its Conv/Gemm/MatMul node.

    The TorchScript exporter names nodes after their module scopes
    (`/model/features/features.0/features.0.0/Conv`); scopes of container
    children repeat the parent's segment, so segments are resolved one by one
    against the real module names.
    """
    import onnx

    mapping = {}
    for node in onnx.load(str(onnx_path), load_external_data=False).graph.node:
        if node.op_type in ("Conv", "Gemm", "MatMul") and node.name.startswith("/"):
            module = _resolve_scope(node.name.strip("/").split("/")[:-1], module_names)
            if module is not None:
                mapping.setdefault(module, node.input[0])
    return mapping


def _resolve_scope(segments: list[str], names: set[str]) -> str | None:
    path: list[str] = []
    prev = None
    for seg in segments:
        rel = seg[len(prev) + 1:] if prev and seg.startswith(prev + ".") else seg
        for candidate in (".".join(path + [rel]), ".".join(path + [seg])):
            if candidate in names:
                path, prev = candidate.split("."), seg
                break
        else:
            return None
    return ".".join(path) if path else None


def prepare_qat(model: nn.Module, ranges: dict[str, list[float]], tensor_of: dict[str, str],
                prefix: str = "") -> list[str]:
    """Weight fake quant on every Conv/Linear; input fake quant where a range is known.

    Returns the module names whose inputs are fake-quantized.
    """
    covered = []
    for name, module in model.named_modules():
        if not isinstance(module, QUANTIZED):
            continue
        parametrize.register_parametrization(module, "weight", WeightFakeQuant())
        tensor = tensor_of.get(prefix + name)
        if tensor is not None and tensor in ranges:
            low, high = ranges[tensor]
            module.input_quant = ActivationFakeQuant(low, high)
            module._edgekit_hook = module.register_forward_pre_hook(_quantize_input)
            covered.append(name)
    return covered


def activation_quantizers(model: nn.Module) -> dict[str, ActivationFakeQuant]:
    return {name: m.input_quant for name, m in model.named_modules() if hasattr(m, "input_quant")}


def set_fake_quant(model: nn.Module, enabled: bool) -> None:
    """Switch rounding on or off everywhere; observers keep watching either way."""
    for module in model.modules():
        if isinstance(module, (WeightFakeQuant, ActivationFakeQuant)):
            module.enabled = enabled


def observe_ranges(model: nn.Module, samples, input_names: list[str], batch_size: int = 128) -> None:
    """Reset every activation range to the min/max seen over `samples` (a calibration pass)."""
    quantizers = list(activation_quantizers(model).values())
    hooks = []
    for q in quantizers:
        q.enabled = False
        hooks.append(q.register_forward_pre_hook(lambda m, a: _track(m, a[0])))
        q.seen = None
    model.eval()
    with torch.no_grad():
        for inputs, _ in samples.batches(batch_size):
            model(*(torch.from_numpy(inputs[n]) for n in input_names))
    for q, h in zip(quantizers, hooks):
        h.remove()
        if q.seen is not None:
            q.low.fill_(q.seen[0])
            q.high.fill_(q.seen[1])
        del q.seen
        q.enabled = True


def _track(quantizer: nn.Module, x: torch.Tensor) -> None:
    low, high = float(x.min()), float(x.max())
    seen = quantizer.seen
    quantizer.seen = (low, high) if seen is None else (min(seen[0], low), max(seen[1], high))


def freeze_observers(model: nn.Module) -> None:
    for quantizer in activation_quantizers(model).values():
        quantizer.observing = False


def _quantize_input(module: nn.Module, args: tuple) -> tuple:
    return (module.input_quant(args[0]), *args[1:])


def strip_qat(model: nn.Module) -> None:
    """Remove fake quant so the FP32 weights export cleanly (ORT re-quantizes identically)."""
    for module in model.modules():
        if isinstance(module, QUANTIZED) and parametrize.is_parametrized(module, "weight"):
            parametrize.remove_parametrizations(module, "weight", leave_parametrized=False)
        if hasattr(module, "input_quant"):
            module._edgekit_hook.remove()
            del module.input_quant, module._edgekit_hook


def freeze_batchnorm(model: nn.Module) -> None:
    """Training mode everywhere except BatchNorm, whose statistics stay fixed."""
    model.train()
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.eval()
