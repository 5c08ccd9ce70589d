"""`--metric package.module:function`: the user's own measure of an INT8 graph against the FP32 one."""

from __future__ import annotations

import importlib
from typing import Callable

from edgekit.errors import InputError

MetricFn = Callable[[dict, dict], float]


def load_metric(spec: str) -> MetricFn:
    """The function named by `spec`; refused in one line, before anything runs, where it cannot be used."""
    module_name, _, function = spec.partition(":")
    if not module_name or not function:
        raise InputError(f"--metric {spec} must be package.module:function, e.g. mytask.metrics:f1")
    try:
        found = getattr(importlib.import_module(module_name), function)
    except (ImportError, AttributeError) as exc:
        raise InputError(f"--metric {spec} cannot be imported ({' '.join(str(exc).split())[:120]}); "
                         "check that the module is on PYTHONPATH") from exc
    if not callable(found):
        raise InputError(f"--metric {spec} is a {type(found).__name__}, not a function; name a function that "
                         "takes (fp32_outputs, int8_outputs) and returns a number")
    return found


def call_metric(metric: MetricFn, spec: str, reference: dict, candidate: dict) -> float:
    """The metric's score as a float; a metric that raises or returns something else is one line."""
    try:
        value = metric(reference, candidate)
        return float(value)
    except Exception as exc:  # the user's own code: any type
        raise InputError(f"--metric {spec} failed on the model's outputs ({type(exc).__name__}: "
                         f"{' '.join(str(exc).split())[:120]}); it is called with two dicts of arrays by "
                         "output name and must return a number") from exc
