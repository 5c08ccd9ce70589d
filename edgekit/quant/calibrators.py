"""Streaming activation-range calibrators: memory stays bounded whatever the calibration-set size.

Each tensor keeps a running min/max and a fixed-size histogram whose range
grows (with re-binning) as new data arrives, so samples are folded in one at
a time and dropped. ORT's own calibrators keep every intermediate output
until the end, which exhausts memory on large sets.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

METHODS = ("minmax", "percentile", "entropy", "mse")
BINS = 2048


@dataclass
class StreamingHistogram:
    bins: int = BINS
    low: float = 0.0
    high: float = 0.0
    counts: np.ndarray = field(default_factory=lambda: np.zeros(BINS))
    seen_min: float = np.inf
    seen_max: float = -np.inf
    samples: int = 0

    def update(self, values: np.ndarray) -> None:
        values = np.asarray(values, dtype=np.float32).ravel()
        values = values[np.isfinite(values)]
        if values.size == 0:
            return
        vmin, vmax = float(values.min()), float(values.max())
        self.seen_min, self.seen_max = min(self.seen_min, vmin), max(self.seen_max, vmax)
        self.samples += 1
        if self.counts.sum() == 0:
            self.low, self.high = min(vmin, 0.0), max(vmax, 0.0)
            if self.high == self.low:
                self.high = self.low + 1e-6
        elif vmin < self.low or vmax > self.high:
            self._grow(min(vmin, self.low), max(vmax, self.high))
        hist, _ = np.histogram(values, bins=self.bins, range=(self.low, self.high))
        self.counts += hist

    def _grow(self, low: float, high: float) -> None:
        """Widen the range (with headroom, so re-binning stays rare) and redistribute counts."""
        span = high - low
        low, high = low - 0.25 * span * (low < self.low), high + 0.25 * span * (high > self.high)
        old_edges = np.linspace(self.low, self.high, self.bins + 1)
        new_edges = np.linspace(low, high, self.bins + 1)
        cdf = np.concatenate([[0.0], np.cumsum(self.counts)])
        self.counts = np.diff(np.interp(new_edges, old_edges, cdf))
        self.low, self.high = low, high

    @property
    def edges(self) -> np.ndarray:
        return np.linspace(self.low, self.high, self.bins + 1)


def compute_range(hist: StreamingHistogram, method: str, percentile: float = 99.99,
                  symmetric: bool = False, qmax: int = 255) -> tuple[float, float]:
    """The [low, high] to quantize with, from one tensor's statistics."""
    if method == "minmax" or hist.counts.sum() == 0:
        return _with_zero(hist.seen_min, hist.seen_max)
    if method == "percentile":
        return _percentile(hist, percentile)
    if method == "entropy":
        return _entropy(hist)
    if method == "mse":
        return _mse(hist, qmax)
    raise ValueError(method)


def _with_zero(low: float, high: float) -> tuple[float, float]:
    return float(min(low, 0.0)), float(max(high, 0.0))


def _quantile(hist: StreamingHistogram, q: float) -> float:
    cdf = np.cumsum(hist.counts) / hist.counts.sum()
    centers = (hist.edges[:-1] + hist.edges[1:]) / 2
    return float(centers[min(np.searchsorted(cdf, q), hist.bins - 1)])


def _percentile(hist: StreamingHistogram, p: float) -> tuple[float, float]:
    low = _quantile(hist, 1 - p / 100) if hist.seen_min < 0 else hist.seen_min
    high = _quantile(hist, p / 100)
    return _with_zero(max(low, hist.seen_min), min(high, hist.seen_max))


def _candidates(hist: StreamingHistogram, count: int = 64) -> list[tuple[float, float]]:
    """Clip ranges shrinking from the full observed range toward zero."""
    return [_with_zero(hist.seen_min * s, hist.seen_max * s) for s in np.linspace(1.0, 0.2, count)]


def _mse(hist: StreamingHistogram, qmax: int) -> tuple[float, float]:
    centers = (hist.edges[:-1] + hist.edges[1:]) / 2
    best, best_err = _with_zero(hist.seen_min, hist.seen_max), np.inf
    for low, high in _candidates(hist):
        scale = max(high - low, 1e-12) / qmax
        zero = np.round(-low / scale)
        q = np.clip(np.round(centers / scale) + zero, 0, qmax)
        err = float(np.sum(hist.counts * (centers - (q - zero) * scale) ** 2))
        if err < best_err:
            best, best_err = (low, high), err
    return best


def _entropy(hist: StreamingHistogram, levels: int = 128) -> tuple[float, float]:
    """Range whose quantized distribution is closest (KL) to the observed one."""
    centers = (hist.edges[:-1] + hist.edges[1:]) / 2
    p_full = hist.counts / hist.counts.sum()
    best, best_kl = _with_zero(hist.seen_min, hist.seen_max), np.inf
    for low, high in _candidates(hist, 48):
        inside = (centers >= low) & (centers <= high)
        p = p_full.copy()
        # mass outside the range is clipped onto the edge bins
        p_in = np.where(inside, p, 0.0)
        idx = np.flatnonzero(inside)
        if idx.size < 2:
            continue
        p_in[idx[0]] += p[centers < low].sum()
        p_in[idx[-1]] += p[centers > high].sum()
        chunks = np.array_split(idx, min(levels, idx.size))
        q = np.zeros_like(p)
        for chunk in chunks:
            nonzero = chunk[p_in[chunk] > 0]
            if nonzero.size:
                q[nonzero] = p_in[chunk].sum() / nonzero.size
        mask = p_in > 0
        kl = float(np.sum(p_in[mask] * np.log(p_in[mask] / np.maximum(q[mask], 1e-12))))
        if kl < best_kl:
            best, best_kl = (low, high), kl
    return best
