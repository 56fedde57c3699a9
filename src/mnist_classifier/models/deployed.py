"""The model as it is deployed: raw pixels in, probabilities out.

A checkpoint's network takes *normalised* images and returns logits. Everything
that serves predictions (the PyTorch predictor, the ONNX and TorchScript exports)
wraps it in one :class:`DeployedModel`, so the normalisation stored in the
checkpoint, the checkpoint's temperature (calibration: logits are divided by it
before every softmax), the softmax and the checkpoint's test-time augmentation are
applied in exactly one place and travel inside exported files.

This module imports torch; the ONNX Runtime path never imports it.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .checkpoint import checkpoint_temperature, model_from_checkpoint

INPUT_NAME = "pixels"  # float32 (N, 1, 28, 28), values 0..255, white ink on black
OUTPUT_NAME = "probabilities"  # float32 (N, 10), softmax over the class names


class DeployedModel(nn.Module):
    """``pixels`` (N, 1, 28, 28) float32 in [0, 255] -> probabilities (N, 10) float32.

    Applies ``(pixels / 255 - mean) / std``, the network, a division of the logits by
    ``temperature`` (1 leaves them as they are) and a softmax; with ``tta`` it averages
    the probabilities of the image and its four 1-pixel shifts, each view divided by
    the same temperature. The temperature is a buffer, so exports hold it. Training's
    validation and test scores, ``evaluate``, the predictor and both exports all go
    through this class, so they cannot disagree.
    """

    scale: torch.Tensor
    shift: torch.Tensor
    temperature: torch.Tensor

    def __init__(
        self, net: nn.Module, mean: float, std: float, tta: bool = False, temperature: float = 1.0
    ) -> None:
        super().__init__()
        self.net = net
        # (x/255 - mean)/std == x * scale + shift
        self.register_buffer("scale", torch.tensor(1.0 / (255.0 * std), dtype=torch.float32))
        self.register_buffer("shift", torch.tensor(-mean / std, dtype=torch.float32))
        self.register_buffer("temperature", torch.tensor(float(temperature), dtype=torch.float32))
        self.tta = bool(tta)

    def set_temperature(self, temperature: float) -> None:
        """Divide the logits by ``temperature`` (> 0) from now on."""
        self.temperature.fill_(float(temperature))

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        views = self._softmax_views(pixels)
        return views[0] if len(views) == 1 else torch.stack(views).mean(0)

    def log_probabilities(self, pixels: torch.Tensor) -> torch.Tensor:
        """Log of :meth:`forward`'s probabilities (N, 10) float32, as evaluation scores them.

        Without TTA this is the network's log-softmax (exact for a confident model);
        with TTA it is the log of the averaged probabilities.
        """
        if not self.tta:
            return F.log_softmax(self._scaled(self.net(self._normalise(pixels))), dim=1)
        return torch.stack(self._softmax_views(pixels)).mean(0).clamp_min(1e-12).log()

    def view_logits(self, pixels: torch.Tensor) -> torch.Tensor:
        """The network's raw logits (V, N, 10) float32 for each view (V = 5 with TTA, else 1),
        before the temperature: what calibration fits the temperature on."""
        return torch.stack([self.net(v).float() for v in self._views(pixels)])

    def _scaled(self, logits: torch.Tensor) -> torch.Tensor:
        return logits.float() / self.temperature

    def _normalise(self, pixels: torch.Tensor) -> torch.Tensor:
        return pixels * self.scale + self.shift  # (N, 1, 28, 28) normalised

    def _softmax_views(self, pixels: torch.Tensor) -> list[torch.Tensor]:
        """Softmax (N, 10) of each view: the image alone, or with TTA also its four 1-pixel
        shifts (MNIST's borders are empty, so rolling loses no ink)."""
        return [F.softmax(self._scaled(self.net(v)), dim=1) for v in self._views(pixels)]

    def _views(self, pixels: torch.Tensor) -> list[torch.Tensor]:
        x = self._normalise(pixels)
        views = [x]
        if self.tta:
            views += [torch.roll(x, s, dims=d) for d in (2, 3) for s in (-1, 1)]
        return views


def deployed_from_checkpoint(
    ckpt: dict[str, Any], device: torch.device | str = "cpu"
) -> DeployedModel:
    """The checkpoint's network with its normalisation, TTA setting and temperature (1 for a
    checkpoint that was never calibrated), in eval mode."""
    net = model_from_checkpoint(ckpt, device)
    norm = ckpt["normalization"]
    tta = bool((ckpt.get("config") or {}).get("tta", False))
    temperature = checkpoint_temperature(ckpt)
    deployed = DeployedModel(net, float(norm["mean"]), float(norm["std"]), tta, temperature)
    return deployed.to(device).eval()
