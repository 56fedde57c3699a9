"""Models: a registry of nn.Modules that return logits."""

from .registry import count_parameters, create_model, list_models, register_model

__all__ = ["count_parameters", "create_model", "list_models", "register_model"]
