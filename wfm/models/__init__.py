"""Models: the CSI masked autoencoder (``mae``), the causal forecaster (``causal``) and the registry."""

from wfm.models.registry import create_model, list_models, register_model

# Importing the model modules runs their @register_model decorators (timm's layout: the registry
# itself imports no model).
from wfm.models import causal, mae  # noqa: E402,F401  isort: skip

__all__ = ["create_model", "list_models", "register_model"]
