"""The one place that measures: accuracy, agreement and cosine, fidelity drops, latency, reference outputs."""
