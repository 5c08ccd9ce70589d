"""Output-by-output fidelity of a quantized graph against its FP32 graph, in units that see a broken task.

One cosine over a whole output hides what INT8 breaks: a detector head that concatenates box offsets with
objectness scores kept a cosine of 0.92 while its objectness column lost every detection. So each output is
compared on its own, and inside an output each group that lives on its own scale (the columns of a
concatenated head, the channels of a regression map, the values of a small regression output) gets a
scale-free error, the signal-to-quantization-noise ratio in dB. Groups of probabilities also get a decision
measure: the F1 of the values above 0.5 against the FP32 graph's. An output whose rows are class distributions
(a classifier's softmax, a CTC recognizer's per-step softmax over thousands of characters) also gets its top-1
agreement: on an OCR recognizer, INT8 kept 12 dB and a decision F1 of 0.92 while one line in six read the same.
"""

from __future__ import annotations

import math

import numpy as np

from edgekit.measure.metrics import Outputs

MAX_GROUPS = 64  # more columns than this are one kind of value (class scores, pitch bins), not a concatenation
NOISELESS_DB = 120.0  # the SQNR reported where INT8 left a group exactly as it was


def group_axis(sample_shape: tuple[int, ...]) -> int | None:
    """The axis of one sample's output whose entries live on different scales, or None.

    The last axis of a [rows, columns] head with few columns (box coordinates beside scores), the channel
    axis of a [channels, height, width] map with few channels, the values of a short regression vector."""
    if len(sample_shape) >= 2 and 2 <= sample_shape[-1] <= MAX_GROUPS // 4:
        return len(sample_shape) - 1
    if len(sample_shape) == 3 and 2 <= sample_shape[0] <= MAX_GROUPS:
        return 0
    if len(sample_shape) == 1 and 2 <= sample_shape[0] <= MAX_GROUPS // 4:
        return 0
    return None


def _groups(outputs: Outputs, axis: int | None) -> list[np.ndarray]:
    """Each group's values over all samples, flattened."""
    samples = [np.asarray(o, np.float64) for o in (outputs if isinstance(outputs, list) else list(outputs))]
    if axis is None:
        return [np.concatenate([s.ravel() for s in samples])]
    count = samples[0].shape[axis]
    return [np.concatenate([np.take(s, g, axis=axis).ravel() for s in samples]) for g in range(count)]


def sqnr_db(reference: np.ndarray, candidate: np.ndarray) -> float:
    """10 log10(signal energy / error energy): 20 dB is a 10% RMS error, 40 dB 1%."""
    noise = float(np.sum((reference - candidate) ** 2))
    signal = float(np.sum(reference ** 2))
    if noise == 0:
        return NOISELESS_DB
    if signal == 0:
        return 0.0
    return min(NOISELESS_DB, 10 * math.log10(signal / noise))


def decision_f1(reference: np.ndarray, candidate: np.ndarray, threshold: float = 0.5) -> float:
    """F1 of the candidate's values above `threshold` against the reference's; 1.0 where neither has any."""
    ref, cand = reference > threshold, candidate > threshold
    hits, total = int(np.sum(ref & cand)), int(np.sum(ref) + np.sum(cand))
    return 1.0 if total == 0 else 2 * hits / total


def _is_probability(values: np.ndarray) -> bool:
    return values.size > 0 and float(values.min()) >= 0.0 and float(values.max()) <= 1.0 and values.std() > 0


def _rows(outputs: Outputs) -> np.ndarray | None:
    """All samples' rows along the last axis, as one [rows, classes] array; None where samples differ in it
    (a map whose width follows the input's is not a set of class scores)."""
    samples = outputs if isinstance(outputs, list) else list(outputs)
    if len({np.shape(s)[-1] for s in samples}) != 1:
        return None
    return np.concatenate([np.asarray(s, np.float64).reshape(-1, np.shape(s)[-1]) for s in samples])


def is_distribution(rows: np.ndarray) -> bool:
    """Rows of at least two values in [0, 1] that each sum to one: class probabilities."""
    return (rows.ndim == 2 and rows.shape[1] >= 2 and rows.size > 0 and float(rows.min()) >= 0.0
            and float(rows.max()) <= 1.0 and bool(np.all(np.abs(rows.sum(axis=1) - 1.0) < 0.02)))


def top1_agreement(reference: Outputs, candidate: Outputs) -> float | None:
    """Share of rows whose most likely class is the reference's; None where the rows are not distributions."""
    if np.ndim(reference[0]) == 0:
        return None
    ref, cand = _rows(reference), _rows(candidate)
    if ref is None or cand is None or ref.shape != cand.shape or not is_distribution(ref):
        return None
    return float(np.mean(ref.argmax(axis=1) == cand.argmax(axis=1)))


def compare_output(reference: Outputs, candidate: Outputs) -> dict:
    """SQNR of the whole output and of its worst group, and the worst decision F1 where it holds probabilities."""
    axis = group_axis(np.shape(reference[0]))  # one sample's shape, from an array or a per-sample list
    ref_groups, cand_groups = _groups(reference, axis), _groups(candidate, axis)
    whole_ref, whole_cand = np.concatenate(ref_groups), np.concatenate(cand_groups)
    group_sqnr = [sqnr_db(r, c) for r, c in zip(ref_groups, cand_groups)]
    decisions = [decision_f1(r, c) for r, c in zip(ref_groups, cand_groups) if _is_probability(r)]
    worst = int(np.argmin(group_sqnr))
    record = {"sqnr_db": round(sqnr_db(whole_ref, whole_cand), 2), "worst_group_sqnr_db": round(group_sqnr[worst], 2),
              "groups": len(group_sqnr), "group_axis": None if axis is None else axis + 1, "worst_group": worst,
              "decision_f1": round(min(decisions), 4) if decisions else None}
    agreement = top1_agreement(reference, candidate)
    record["top1_agreement"] = None if agreement is None else round(agreement, 4)
    return record


def compare_outputs(reference: dict[str, Outputs], candidate: dict[str, Outputs]) -> dict:
    """Every output compared on its own; the summary is the worst of them (what a floor is checked against)."""
    per = {name: compare_output(reference[name], candidate[name]) for name in reference if name in candidate}

    def worst(key: str) -> float | None:
        values = [r[key] for r in per.values() if r[key] is not None]
        return min(values) if values else None
    return {"worst_sqnr_db": min((r["worst_group_sqnr_db"] for r in per.values()), default=NOISELESS_DB),
            "decision_f1": worst("decision_f1"), "top1_agreement": worst("top1_agreement"), "outputs": per}


def shortfall(record: dict, min_sqnr_db: float, min_decision_f1: float, min_agreement: float = 0.0) -> float:
    """How far a comparison falls below the floors, in dB (one point of F1 or agreement counts as one dB);
    0 where it holds."""
    gap = max(0.0, min_sqnr_db - record["worst_sqnr_db"])
    for key, floor in (("decision_f1", min_decision_f1), ("top1_agreement", min_agreement)):
        if record.get(key) is not None:
            gap = max(gap, 100 * (floor - record[key]))
    return gap
