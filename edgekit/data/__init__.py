"""Calibration, training and evaluation data: readers, splits and the ORT reader protocol."""

from .samples import SampleSet
from .readers import load_data
from .splits import Splits, make_splits

__all__ = ["SampleSet", "load_data", "Splits", "make_splits"]
