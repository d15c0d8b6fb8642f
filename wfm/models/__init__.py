"""Models: the CSI masked autoencoder (``mae``) and the model registry."""

from wfm.models.registry import create_model, list_models, register_model

__all__ = ["create_model", "list_models", "register_model"]
