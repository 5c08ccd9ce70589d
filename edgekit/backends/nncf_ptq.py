"""NNCF post-training quantization as a calibrator, with edgekit's runtime preset placing Q/DQ.

NNCF's ONNX PTQ places quantizers the OpenVINO way, which ORT fuses into few
integer kernels (MobileNetV2 ran slower than FP32). What users want from it
is its statistics and its fast bias correction, so edgekit runs it, then
keeps only those: the corrected biases go back into the FP32 graph and each
tensor's range is read off NNCF's scale and zero point. The export stage then
quantizes that graph with the target's preset, so the result still fuses.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np

from edgekit.data.ort_reader import SampleReader
from edgekit.data.samples import SampleSet
from edgekit.errors import InputError

_LEVELS = {np.dtype(np.int8): (-128, 127), np.dtype(np.uint8): (0, 255)}


def _nncf():
    try:
        import nncf
    except ImportError as exc:
        raise InputError("--calibrator nncf needs NNCF; install it with: pip install 'edgekit[nncf]'") from exc
    return nncf


def nncf_calibrate(fp32: Path, samples: SampleSet, input_names: list[str], subset_size: int = 300,
                   bias_correction: bool = True) -> tuple[dict[str, list[float]], dict]:
    """Run NNCF PTQ on `fp32`, write its corrected biases into `fp32` in place, and return
    ({tensor: [low, high]} for every activation NNCF quantized, a report)."""
    import onnx

    nncf = _nncf()
    model = onnx.load(str(fp32))
    reader = SampleReader(samples, input_names, limit=subset_size)
    feeds = list(iter(reader.get_next, None))
    quantized = nncf.quantize(model, nncf.Dataset(feeds), subset_size=len(feeds),
                              fast_bias_correction=bias_correction)
    ranges = _ranges(quantized)
    corrected = _copy_biases(quantized, model)
    tmp = fp32.with_suffix(".nncf-tmp")
    onnx.save(model, str(tmp))
    shutil.move(tmp, fp32)
    return ranges, {"calibrator": "nncf", "nncf_samples": len(feeds), "nncf_ranges": len(ranges),
                    "bias_corrected": corrected}


def _ranges(model) -> dict[str, list[float]]:
    """Real interval each activation QuantizeLinear covers: [(qmin - zp)·s, (qmax - zp)·s]."""
    from onnx import numpy_helper

    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    ranges = {}
    for node in model.graph.node:
        if node.op_type != "QuantizeLinear" or node.input[0] in inits:
            continue
        scale, zp = inits.get(node.input[1]), inits.get(node.input[2]) if len(node.input) > 2 else None
        if scale is None or scale.size != 1 or zp is None or zp.dtype not in _LEVELS:
            continue
        qmin, qmax = _LEVELS[zp.dtype]
        s, z = float(scale.reshape(())), int(zp.reshape(()))
        if np.isfinite(s) and 0 < s < 1e30:  # masks built from -inf/finfo.min get absurd scales
            ranges[node.input[0]] = [(qmin - z) * s, (qmax - z) * s]
    return ranges


def _copy_biases(quantized, model) -> int:
    """Biases that bias correction changed, copied into the FP32 graph by initializer name."""
    from onnx import numpy_helper

    new = {i.name: numpy_helper.to_array(i) for i in quantized.graph.initializer}
    count = 0
    for i, init in enumerate(model.graph.initializer):
        old = numpy_helper.to_array(init)
        value = new.get(init.name)
        if value is not None and value.shape == old.shape and value.dtype == old.dtype and old.ndim == 1 \
                and not np.array_equal(value, old):
            model.graph.initializer[i].CopyFrom(numpy_helper.from_array(value, init.name))
            count += 1
    return count
