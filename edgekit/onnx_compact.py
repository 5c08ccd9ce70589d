"""Shorten node and tensor names in a deployable ONNX graph.

Exporter and quantizer names (`/model/features/features.1/conv1/conv1.0/
Conv_output_0_QuantizeLinear_Output`) were measured at a third of a small
INT8 model's bytes. Boards pay for that in flash and load time; the
readable graph stays in the export stage folder for debugging.
"""

from __future__ import annotations

from pathlib import Path


def compact_names(src: Path, dst: Path) -> Path:
    import onnx

    model = onnx.load(str(src))
    graph = model.graph
    keep = {v.name for v in graph.input} | {v.name for v in graph.output}
    mapping: dict[str, str] = {}

    def short(name: str) -> str:
        if not name or name in keep:
            return name
        if name not in mapping:
            mapping[name] = f"t{len(mapping)}"
        return mapping[name]

    for init in graph.initializer:
        init.name = short(init.name)
    for index, node in enumerate(graph.node):
        node.name = f"n{index}"
        node.input[:] = [short(n) for n in node.input]
        node.output[:] = [short(n) for n in node.output]
    for info in graph.value_info:
        info.name = short(info.name)
    onnx.checker.check_model(model)
    onnx.save(model, str(dst))
    return dst
