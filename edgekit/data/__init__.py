"""Calibration, training and evaluation data: readers, splits and the ORT reader protocol."""

from edgekit.data.samples import SampleSet
from edgekit.data.readers import load_data, load_for
from edgekit.data.splits import Splits, make_splits

__all__ = ["SampleSet", "load_data", "load_for", "Splits", "make_splits"]
