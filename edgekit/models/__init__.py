"""Loading students and teachers from the specs a user can give."""

from .loader import LoadedModel, load_model, rebuild_model

__all__ = ["LoadedModel", "load_model", "rebuild_model"]
