"""reference.npz: a few real inputs and the host's outputs for them, shipped with every artifact.

An app developer or `edgekit profile` runs these inputs on the board and compares: the only way to
know the board computes what the host measured. Keys are in_<i> and out_<j> in the manifest's
input and output order (tensor names may hold characters a zip entry should not).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

REFERENCE = "reference.npz"
COUNT = 8


def write_reference(path: Path, model: Path, samples, input_names: list[str], count: int = COUNT) -> None:
    from edgekit.backends import ort as ort_backend

    sess = ort_backend.session(model)
    ins: list[list[np.ndarray]] = [[] for _ in input_names]
    outs: list[list[np.ndarray]] = []
    first_shapes = None
    for inputs, _ in samples.batches(1):
        if len(outs) and len(outs[0]) == count:
            break
        feed = {n: np.asarray(inputs[n]) for n in input_names}
        shapes = [feed[n].shape for n in input_names]
        if first_shapes not in (None, shapes):  # varying-shape samples: keep those shaped like the first
            continue
        first_shapes = shapes
        result = sess.run(None, feed)
        outs = outs or [[] for _ in result]
        for i, name in enumerate(input_names):
            ins[i].append(feed[name])
        for j, value in enumerate(result):
            outs[j].append(value)
    arrays = {f"in_{i}": np.concatenate(a) for i, a in enumerate(ins)}
    arrays.update({f"out_{j}": np.concatenate(a) for j, a in enumerate(outs)})
    save_npz(path, arrays)


def save_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """np.savez with fixed zip timestamps, so the same arrays always give the same bytes."""
    import zipfile

    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name in sorted(arrays):
            info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            with zf.open(info, "w", force_zip64=True) as f:
                np.lib.format.write_array(f, np.ascontiguousarray(arrays[name]), allow_pickle=False)
