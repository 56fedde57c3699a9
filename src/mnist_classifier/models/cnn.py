"""Convolutional networks with batch norm."""

from __future__ import annotations

import torch
from torch import nn

from .registry import check_fraction, check_width, register_model


def conv_bn(c_in: int, c_out: int, stride: int = 1) -> nn.Sequential:
    """3x3 convolution (no bias), batch norm, ReLU; spatial size kept (or divided by ``stride``)."""
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, kernel_size=3, stride=stride, padding=1, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
    )


class TinyCNN(nn.Module):
    """Three stride-2 conv-bn blocks and a linear classifier: no pooling, few pixels per layer,
    so it trains several times faster than :class:`SmallCNN` on a CPU."""

    def __init__(self, width: int = 16) -> None:
        super().__init__()
        w = width
        self.features = nn.Sequential(
            conv_bn(1, w, stride=2),  # (B, w, 14, 14)
            conv_bn(w, 2 * w, stride=2),  # (B, 2w, 7, 7)
            conv_bn(2 * w, 4 * w, stride=2),  # (B, 4w, 4, 4)
        )
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(4 * w * 16, 10))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # x: (B, 1, 28, 28) -> logits (B, 10)
        return self.head(self.features(x))


class SmallCNN(nn.Module):
    """Three conv-bn-relu blocks with pooling, then a linear classifier. Fast on a CPU."""

    def __init__(self, width: int = 16) -> None:
        super().__init__()
        w = width
        self.features = nn.Sequential(
            conv_bn(1, w),  # (B, w, 28, 28)
            nn.MaxPool2d(2),  # (B, w, 14, 14)
            conv_bn(w, 2 * w),  # (B, 2w, 14, 14)
            nn.MaxPool2d(2),  # (B, 2w, 7, 7)
            conv_bn(2 * w, 4 * w),  # (B, 4w, 7, 7)
            nn.MaxPool2d(2),  # (B, 4w, 3, 3)
        )
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(4 * w * 9, 10))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # x: (B, 1, 28, 28) -> logits (B, 10)
        return self.head(self.features(x))


class CNN(nn.Module):
    """Two conv-bn-relu pairs per stage over three stages, global pooling, dropout, linear."""

    def __init__(self, width: int = 32, dropout: float = 0.1) -> None:
        super().__init__()
        w = width
        self.features = nn.Sequential(
            conv_bn(1, w),  # (B, w, 28, 28)
            conv_bn(w, w),
            nn.MaxPool2d(2),  # (B, w, 14, 14)
            conv_bn(w, 2 * w),
            conv_bn(2 * w, 2 * w),
            nn.MaxPool2d(2),  # (B, 2w, 7, 7)
            conv_bn(2 * w, 4 * w),  # (B, 4w, 7, 7)
            nn.AdaptiveMaxPool2d(1),  # (B, 4w, 1, 1)
        )
        self.head = nn.Sequential(nn.Flatten(), nn.Dropout(dropout), nn.Linear(4 * w, 10))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # x: (B, 1, 28, 28) -> logits (B, 10)
        return self.head(self.features(x))


@register_model("cnn-tiny", "3 stride-2 conv-bn blocks (16-32-64 channels), linear")
def cnn_tiny(width: int = 16) -> TinyCNN:
    return TinyCNN(width=check_width("width", width))


@register_model("cnn-small", "3 conv-bn blocks (16-32-64 channels), max pooling, linear")
def cnn_small(width: int = 16) -> SmallCNN:
    return SmallCNN(width=check_width("width", width))


@register_model("cnn", "5 conv-bn layers (32-32-64-64-128), global max pooling, dropout, linear")
def cnn(width: int = 32, dropout: float = 0.1) -> CNN:
    """``width``: channels of the first stage (the others use 2x and 4x)."""
    return CNN(width=check_width("width", width), dropout=check_fraction("dropout", dropout))
