"""Activation statistics for static INT8: one pass over the calibration samples with every float tensor
exposed, folded into streaming histograms, from which each range method takes its ranges."""

from __future__ import annotations

from pathlib import Path

from edgekit.backends.ort import session
from edgekit.data.ort_reader import SampleReader
from edgekit.data.samples import SampleSet
from edgekit.progress import bar
from edgekit.quant.calibrators import StreamingHistogram, compute_range


def calibrate(fp32: Path, samples: SampleSet, input_names: list[str], method: str,
              work: Path, report: dict | None = None) -> dict[str, list[float]]:
    """Activation ranges {tensor: [low, high]} of one method; see `calibrate_methods`."""
    return calibrate_methods(fp32, samples, input_names, (method,), work, report)[method]


def calibrate_methods(fp32: Path, samples: SampleSet, input_names: list[str], methods, work: Path,
                      report: dict | None = None) -> dict[str, dict[str, list[float]]]:
    """Activation ranges {tensor: [low, high]} with streaming statistics (bounded memory).

    `report`, when given, receives the sample count and how far the ranges
    still moved over the second half of the samples (a large drift means more
    calibration data would change the result).
    """
    halfway: dict[str, tuple[float, float]] = {}
    stats = collect_statistics(fp32, samples, input_names, work, snapshot_at=len(samples) // 2, snapshot=halfway)
    if report is not None:
        drift = [abs((h.seen_max - h.seen_min) - (hi - lo)) / max(h.seen_max - h.seen_min, 1e-12)
                 for name, h in stats.items() if (lo_hi := halfway.get(name)) for lo, hi in [lo_hi]]
        report.update({"samples": len(samples), "tensors": len(stats),
                       "range_drift_second_half": float(max(drift)) if drift else 0.0})
    return {method: {name: list(compute_range(hist, method)) for name, hist in sorted(stats.items())}
            for method in methods}


def collect_statistics(fp32: Path, samples: SampleSet, input_names: list[str], work: Path,
                       snapshot_at: int = 0, snapshot: dict | None = None):
    """Run the model once per sample with every float activation exposed; fold each into a histogram."""
    import onnx

    model = onnx.load(str(fp32))
    tensors = calibration_tensors(model)
    known = {o.name for o in model.graph.output}
    infos = {vi.name: vi for vi in list(model.graph.value_info) + list(model.graph.input)}
    model.graph.output.extend(infos[t] for t in tensors if t not in known and t in infos)
    augmented = Path(work) / "augmented.onnx"
    onnx.save(model, str(augmented))
    sess = session(augmented)
    names = [o.name for o in sess.get_outputs()]
    stats = {t: StreamingHistogram() for t in tensors}
    reader = SampleReader(samples, input_names)
    count = 0
    with bar("calibration statistics", len(samples)) as advance:
        while (feed := reader.get_next()) is not None:
            for name, value in zip(names, sess.run(None, feed)):
                if name in stats:
                    stats[name].update(value)
            count += 1
            advance(len(next(iter(feed.values()))) if samples.batchable else 1)
            if snapshot is not None and count == snapshot_at:
                snapshot.update({t: (h.seen_min, h.seen_max) for t, h in stats.items()})
    augmented.unlink(missing_ok=True)
    return stats


def calibration_tensors(model) -> list[str]:
    """Float, non-constant inputs and outputs of every node: what the QDQ quantizer may quantize
    (the same rule as ORT's calibrators)."""
    from onnx import TensorProto

    infos = {vi.name: vi for vi in list(model.graph.value_info) + list(model.graph.output)
             + list(model.graph.input)}
    constants = {i.name for i in model.graph.initializer}
    floats = {TensorProto.FLOAT, TensorProto.FLOAT16}
    chosen = []
    for node in model.graph.node:
        for name in list(node.input) + list(node.output):
            info = infos.get(name)
            if (info is not None and name not in constants and name not in chosen
                    and info.type.tensor_type.elem_type in floats):
                chosen.append(name)
    return chosen
