"""Calibration, training and evaluation data: readers, splits and the ORT reader protocol."""

from .samples import SampleSet
from .readers import load_data, load_for
from .splits import Splits, make_splits

__all__ = ["SampleSet", "load_data", "load_for", "Splits", "make_splits"]
