"""Loading students and teachers from the specs a user can give."""

from edgekit.models.loader import LoadedModel, load_model, rebuild_model

__all__ = ["LoadedModel", "load_model", "rebuild_model"]
