"""QAD prepare -> train -> convert: fake quant where the runtime rounds, then stripped again.

The torch model rounds exactly the tensors that the exported INT8 graph
quantizes: per-channel weights of every Conv/Linear, and each activation the
quantizer puts a QuantizeLinear on, found in the ONNX graph and mapped back
to a module's input (Conv/Gemm/MatMul) or a module's returned tensor (residual
adds, pooled features, logits). Tensors made by functional code at no module
boundary cannot be hooked and are reported as not simulated.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn.utils import parametrize

from edgekit.quant.bn_fold import fold_batchnorm
from edgekit.quant.fakequant import ActivationFakeQuant, WeightFakeQuant

QUANTIZED = (nn.Conv2d, nn.Conv1d, nn.Linear)
_CONSUMERS = ("Conv", "Gemm", "MatMul")


@dataclass
class TensorMaps:
    """Module path -> ONNX tensor name, for the tensor a module consumes or returns."""

    inputs: dict[str, str]
    outputs: dict[str, str]


def graph_tensor_maps(onnx_path, module_names: set[str]) -> TensorMaps:
    """Map modules to graph tensors by the scopes the TorchScript exporter names nodes after.

    Inputs: the first input of each Conv/Gemm/MatMul node. Outputs: a tensor
    made inside a module's scope and used outside it (or a graph output).
    """
    import onnx

    graph = onnx.load(str(onnx_path), load_external_data=False).graph
    scope = {n.name: _resolve_scope(n.name.strip("/").split("/")[:-1], module_names)
             for n in graph.node if n.name.startswith("/")}
    users: dict[str, list[str | None]] = {}
    for node in graph.node:
        for t in node.input:
            users.setdefault(t, []).append(scope.get(node.name))
    graph_outputs = {o.name for o in graph.output}
    inputs: dict[str, str] = {}
    outputs: dict[str, str] = {}
    for node in graph.node:
        module = scope.get(node.name)
        if module is None:
            continue
        if node.op_type in _CONSUMERS:
            inputs.setdefault(module, node.input[0])
        for t in node.output:
            if t in graph_outputs or any(not _within(u, module) for u in users.get(t, [])):
                outputs[module] = t
    return TensorMaps(inputs, outputs)


def _within(user: str | None, module: str) -> bool:
    return user is not None and (user == module or user.startswith(module + "."))


def _resolve_scope(segments: list[str], names: set[str]) -> str | None:
    """Scopes of container children repeat the parent's segment
    (`/features/features.0/features.0.0/Conv`): resolve them one by one against real names."""
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


def prepare_qat(model: nn.Module, ranges: dict[str, list[float]], maps: TensorMaps,
                quantized: set[str] | None = None, symmetric: bool = False,
                learnable: bool = False, signed: bool = False) -> dict[str, ActivationFakeQuant]:
    """Weight fake quant on every Conv/Linear; input fake quant on Conv/Linear inputs that the
    graph quantizes. Output quantizers are made here and hooked by `attach_output_quant`
    (after BatchNorm is folded, since a conv's returned tensor changes with folding).

    Returns tensor name -> quantizer; they live in `model.edgekit_quant` until `strip_qat`.
    """
    _quantize_weights(model)
    wanted = set(ranges) if quantized is None else set(ranges) & set(quantized)
    modules = dict(model.named_modules())
    names = [t for t in dict.fromkeys([*maps.inputs.values(), *maps.outputs.values()]) if t in wanted]
    quantizers = {t: ActivationFakeQuant(*ranges[t], symmetric=symmetric, learnable=learnable, tensor=t, signed=signed)
                  for t in names}
    model.edgekit_quant = nn.ModuleList(quantizers.values())
    for name, tensor in maps.inputs.items():
        if tensor in quantizers and isinstance(modules.get(name), QUANTIZED):
            modules[name].register_forward_pre_hook(_input_hook(quantizers[tensor]))
    return quantizers


def attach_output_quant(model: nn.Module, maps: TensorMaps) -> None:
    """Hook each quantized tensor that a module returns and no Conv/Linear input hook covers."""
    quantizers = activation_quantizers(model)
    modules = dict(model.named_modules())
    hooked_inputs = {t for name, t in maps.inputs.items() if isinstance(modules.get(name), QUANTIZED)}
    for name, tensor in maps.outputs.items():
        if tensor in quantizers and tensor not in hooked_inputs and name in modules:
            modules[name].register_forward_hook(_output_hook(quantizers[tensor]))


def simulated_tensors(model: nn.Module) -> set[str]:
    """Graph tensors whose rounding the torch model reproduces."""
    seen = set()
    for module in model.modules():
        for hook in [*module._forward_pre_hooks.values(), *module._forward_hooks.values()]:
            if getattr(hook, "edgekit_tensor", None):
                seen.add(hook.edgekit_tensor)
    return seen


def fold_batchnorm_under_qat(model: nn.Module, example: tuple[torch.Tensor, ...]) -> None:
    """Fold BN into the FP32 weights (not the rounded ones), then round the folded weights.

    Folding copies each conv; the activation hooks are closures, so the copies keep them.
    """
    _remove_weight_quant(model)
    fold_batchnorm(model, example)
    _quantize_weights(model)


def activation_quantizers(model: nn.Module) -> dict[str, ActivationFakeQuant]:
    return {q.tensor: q for q in getattr(model, "edgekit_quant", [])}


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


def strip_qat(model: nn.Module) -> None:
    """Remove fake quant so the FP32 weights export cleanly (ORT re-quantizes identically)."""
    _remove_weight_quant(model)
    for module in model.modules():
        for hooks in (module._forward_pre_hooks, module._forward_hooks):
            for key in [k for k, h in hooks.items() if getattr(h, "edgekit_tensor", None)]:
                del hooks[key]
    if hasattr(model, "edgekit_quant"):
        del model.edgekit_quant


def freeze_batchnorm(model: nn.Module) -> None:
    """Training mode everywhere except BatchNorm, whose statistics stay fixed."""
    model.train()
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.eval()


def _quantize_weights(model: nn.Module) -> None:
    for module in model.modules():
        if isinstance(module, QUANTIZED) and not parametrize.is_parametrized(module, "weight"):
            parametrize.register_parametrization(module, "weight", WeightFakeQuant())


def _remove_weight_quant(model: nn.Module) -> None:
    for module in model.modules():
        if isinstance(module, QUANTIZED) and parametrize.is_parametrized(module, "weight"):
            parametrize.remove_parametrizations(module, "weight", leave_parametrized=False)


def _input_hook(quantizer: ActivationFakeQuant):
    def hook(module: nn.Module, args: tuple) -> tuple:
        return (quantizer(args[0]), *args[1:])
    hook.edgekit_tensor = quantizer.tensor
    return hook


def _output_hook(quantizer: ActivationFakeQuant):
    def hook(module: nn.Module, args: tuple, output):
        return quantizer(output) if isinstance(output, torch.Tensor) else output
    hook.edgekit_tensor = quantizer.tensor
    return hook
