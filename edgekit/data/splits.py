"""Seeded, disjoint train / calibration / evaluation splits."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edgekit.errors import InputError
from edgekit.progress import console
from edgekit.data.samples import SampleSet


@dataclass
class Splits:
    train: SampleSet
    calib: SampleSet
    eval: SampleSet

    def summary(self) -> dict:
        return {name: len(getattr(self, name)) for name in ("train", "calib", "eval")}


def parse_fractions(text: str) -> tuple[float, float, float]:
    try:
        parts = tuple(float(p) for p in text.split(","))
    except ValueError:
        parts = ()
    if len(parts) != 3 or any(p < 0 for p in parts) or not 0.99 <= sum(parts) <= 1.01:
        raise InputError(f"--split '{text}' must be three fractions train,calib,eval summing to 1, e.g. 0.7,0.1,0.2")
    return parts  # type: ignore[return-value]


def make_splits(data: SampleSet, fractions: tuple[float, float, float], seed: int,
                eval_data: SampleSet | None = None, max_calib: int = 512, announce_cap: bool = True) -> Splits:
    """Shuffle once with `seed` and cut consecutive slices, so splits never overlap.

    With separate eval data, the eval fraction of `data` goes to training (to calibration where the train
    fraction is 0: nothing trains). `announce_cap` says so when
    calibration takes fewer samples than its fraction asks for (not for a split the user did not choose).
    """
    n = len(data)
    order = np.random.default_rng(seed).permutation(n)
    f_train, f_calib, f_eval = fractions
    if eval_data is not None:  # the eval share goes to training, or to calibration where nothing trains
        f_train, f_calib, f_eval = (f_train + f_eval, f_calib, 0.0) if f_train > 0 else (0.0, f_calib + f_eval, 0.0)
    asked = max(1, int(round(n * f_calib)))
    n_calib = min(asked, max_calib)
    n_eval = int(round(n * f_eval))
    if eval_data is None and f_eval == 0:
        raise InputError(f"--split {','.join(f'{f:g}' for f in fractions)} leaves no evaluation samples; give an "
                         "eval fraction above 0, or --eval-data FILE")
    if n - asked - n_eval < 0 or (eval_data is None and n_eval < 1):
        raise InputError(
            f"data {data.source} has only {n} samples, too few for split {fractions}; give more data"
        )
    rest = order[n_calib + n_eval:]
    if asked > n_calib and announce_cap:
        where = "go to training" if f_train > 0 else "are not used (the train fraction is 0)"
        console.log(f"calibration uses {n_calib} of the {asked} samples its split asks for (a cap that bounds "
                    f"its memory); the other {asked - n_calib} {where}")
    calib = data.subset(order[:n_calib])
    evals = eval_data if eval_data is not None else data.subset(order[n_calib:n_calib + n_eval])
    train = data.subset(rest if f_train > 0 else rest[:0])
    return Splits(train=train, calib=calib, eval=evals)
