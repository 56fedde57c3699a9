"""Fully connected networks: the models of the original projects."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from ..data.format import IMAGE_SIDE
from .registry import register_model


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


@register_model("mlp-128", "784-128-10, ReLU")
def mlp_128(dropout: float = 0.0) -> MLP:
    return MLP(hidden=(128,), dropout=dropout)


@register_model("mlp-128-64", "784-128-64-10, ReLU")
def mlp_128_64(dropout: float = 0.0) -> MLP:
    return MLP(hidden=(128, 64), dropout=dropout)


@register_model("mlp-128-64-dropout", "784-128-64-10, ReLU, dropout 0.2 (the seed recipe)")
def mlp_128_64_dropout(dropout: float = 0.2) -> MLP:
    return MLP(hidden=(128, 64), dropout=dropout)


@register_model("mlp-128-64-bn", "784-128-64-10, batch norm + ReLU")
def mlp_128_64_bn(dropout: float = 0.0) -> MLP:
    return MLP(hidden=(128, 64), dropout=dropout, batch_norm=True)
