"""Intermediate tensors of a graph, sample by sample: the graph is saved with them as extra outputs and run.

Node sensitivity (fallback) and the input means of bias correction both read activations this way.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import numpy as np

from edgekit.files import scratch_dir


def exposed_values(path: Path, tensors: list[str], samples, names: list[str],
                   limit: int) -> Iterator[dict[str, np.ndarray]]:
    """{tensor: value} for each of the first `limit` samples (batch 1); graph inputs among `tensors` come
    from the feed, tensors the graph does not compute are left out."""
    import onnx
    from onnx import TensorProto, helper

    from edgekit.backends import ort as ort_backend

    model = onnx.load(str(path))
    present = {o for n in model.graph.node for o in n.output}
    existing = {o.name for o in model.graph.output}
    model.graph.output.extend(helper.make_tensor_value_info(t, TensorProto.FLOAT, None)
                              for t in tensors if t in present and t not in existing)
    wanted = set(tensors)
    with scratch_dir("exposed") as tmp:
        augmented = Path(tmp) / "augmented.onnx"
        onnx.save(model, str(augmented))
        sess = ort_backend.session(augmented)
        outputs = [o.name for o in sess.get_outputs()]
        for count, (inputs, _) in enumerate(samples.batches(1)):
            if count >= limit:
                break
            feed = {n: inputs[n] for n in names}
            values = {k: v for k, v in zip(outputs, sess.run(None, feed)) if k in wanted}
            values.update({k: v for k, v in feed.items() if k in wanted})
            yield values
