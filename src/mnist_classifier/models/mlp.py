"""Fully connected networks: the general ``mlp`` and the original projects' models as presets."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from ..data.format import IMAGE_SIDE
from .registry import check_fraction, register_model

MAX_HIDDEN_LAYERS = 4


class MLP(nn.Module):
    """784 -> hidden... -> 10 with ReLU, optional batch norm and dropout after each hidden layer."""

    def __init__(
        self, hidden: Sequence[int] = (128, 64), dropout: float = 0.0, batch_norm: bool = False
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Flatten()]
        width = IMAGE_SIDE * IMAGE_SIDE
        for size in hidden:
            layers.append(nn.Linear(width, size, bias=not batch_norm))
            if batch_norm:
                layers.append(nn.BatchNorm1d(size))
            layers.append(nn.ReLU(inplace=True))
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
            width = size
        layers.append(nn.Linear(width, 10))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # x: (B, 1, 28, 28) -> logits (B, 10)
        return self.net(x)


def _check_hidden(hidden: Any) -> tuple[int, ...]:
    """``hidden``: one width or a list of 1 to 4 widths (positive whole numbers)."""
    widths = [hidden] if isinstance(hidden, int) and not isinstance(hidden, bool) else hidden
    if (
        not isinstance(widths, (list, tuple))
        or not 1 <= len(widths) <= MAX_HIDDEN_LAYERS
        or not all(isinstance(w, int) and not isinstance(w, bool) and w >= 1 for w in widths)
    ):
        raise ValueError(
            f"hidden must be 1 to {MAX_HIDDEN_LAYERS} layer widths (positive whole numbers, "
            f"such as 256,128), got {hidden!r}"
        )
    return tuple(int(w) for w in widths)


def _check_flag(key: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"{key} must be true or false, got {value!r}")
    return value


@register_model("mlp", "784-hidden...-10, ReLU: hidden (1-4 widths), dropout, batch_norm")
def mlp(
    hidden: Sequence[int] | int = (128, 64), dropout: float = 0.0, batch_norm: bool = False
) -> MLP:
    return MLP(
        hidden=_check_hidden(hidden),
        dropout=check_fraction("dropout", dropout),
        batch_norm=_check_flag("batch_norm", batch_norm),
    )


# The original projects' networks: presets of the general mlp.


@register_model("mlp-128", "784-128-10, ReLU")
def mlp_128(dropout: float = 0.0) -> MLP:
    return mlp(hidden=(128,), dropout=dropout)


@register_model("mlp-128-64", "784-128-64-10, ReLU")
def mlp_128_64(dropout: float = 0.0) -> MLP:
    return mlp(hidden=(128, 64), dropout=dropout)


@register_model("mlp-128-64-dropout", "784-128-64-10, ReLU, dropout 0.2 (the seed recipe)")
def mlp_128_64_dropout(dropout: float = 0.2) -> MLP:
    return mlp(hidden=(128, 64), dropout=dropout)


@register_model("mlp-128-64-bn", "784-128-64-10, batch norm + ReLU")
def mlp_128_64_bn(dropout: float = 0.0) -> MLP:
    return mlp(hidden=(128, 64), dropout=dropout, batch_norm=True)
