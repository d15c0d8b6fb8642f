"""Environments that use the foundation models (gymnasium)."""
