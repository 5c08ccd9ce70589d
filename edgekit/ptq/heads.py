"""Concatenated output heads: a Concat that makes a graph output from branches on different scales (box
coordinates in pixels beside objectness in [0, 1]) gets one INT8 scale for all of them when it is quantized,
and the small branch is left a step or two. Kept out of quantization, the Concat joins its inputs in float
and each branch keeps the scale of its own tensor: separate scales, for the cost of one float Concat at the
graph's end."""

from __future__ import annotations

from pathlib import Path

PASS_THROUGH = ("Reshape", "Transpose", "Squeeze", "Unsqueeze", "Identity", "Flatten")


def concat_heads(fp32: Path) -> list[str]:
    """Names of the Concat nodes whose output reaches a graph output through shape-only ops."""
    import onnx

    graph = onnx.load(str(fp32), load_external_data=False).graph
    producer = {o: n for n in graph.node for o in n.output}
    found = []
    for output in graph.output:
        node = producer.get(output.name)
        while node is not None and node.op_type in PASS_THROUGH:
            node = producer.get(node.input[0])
        if node is not None and node.op_type == "Concat" and len(node.input) >= 2 and node.name:
            found.append(node.name)
    return sorted(set(found))
