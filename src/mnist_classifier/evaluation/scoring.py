"""Scoring a model on a labelled split, through the deployed model.

Validation during training, the final test metrics and :func:`evaluate` all score
with :class:`~mnist_classifier.models.deployed.DeployedModel`: the same
normalisation, softmax and test-time augmentation as ``predict``, ``serve`` and
the exports, so the accuracy in a run's metrics is the accuracy users get.

Like :mod:`.metrics`, this module is a leaf that training may use: it imports
only the data and model layers.
"""

from __future__ import annotations

import os
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..data.batches import Split
from ..data.sources import load_dataset
from ..models.channels_last import as_model_input, is_channels_last, prepare_for_cpu
from ..models.checkpoint import load_checkpoint, resolve_checkpoint_path
from ..models.deployed import DeployedModel, deployed_from_checkpoint
from ..runtime import resolve_device
from .metrics import split_metrics


@torch.inference_mode()
def predict_log_probs(
    deployed: DeployedModel, images: torch.Tensor, *, batch_size: int = 1000
) -> torch.Tensor:
    """Log-probabilities (N, 10) float32 on the CPU for uint8 ``images`` (N, 28, 28)."""
    deployed.eval()
    device = deployed.scale.device
    channels_last = is_channels_last(deployed.net)
    out = []
    for start in range(0, images.shape[0], batch_size):
        pixels = images[start : start + batch_size].to(device, non_blocking=True)
        pixels = pixels.to(torch.float32).unsqueeze(1)  # (B, 1, 28, 28) in [0, 255]
        pixels = as_model_input(channels_last, pixels)
        out.append(deployed.log_probabilities(pixels).cpu())
    return torch.cat(out) if out else torch.empty(0, 10)


@torch.inference_mode()
def predict_view_logits(
    deployed: DeployedModel, images: torch.Tensor, *, batch_size: int = 1000
) -> torch.Tensor:
    """The network's logits (V, N, 10) float32 on the CPU for uint8 ``images`` (N, 28, 28), one
    row per view (V = 5 with TTA, else 1), before the temperature: what calibration fits on."""
    deployed.eval()
    device = deployed.scale.device
    channels_last = is_channels_last(deployed.net)
    views = 5 if deployed.tta else 1
    out = []
    for start in range(0, images.shape[0], batch_size):
        pixels = images[start : start + batch_size].to(device, non_blocking=True)
        pixels = as_model_input(channels_last, pixels.to(torch.float32).unsqueeze(1))
        out.append(deployed.view_logits(pixels).cpu())
    return torch.cat(out, dim=1) if out else torch.empty(views, 0, 10)


def evaluate_split(
    model: nn.Module,
    split: Split,
    mean: float,
    std: float,
    batch_size: int,
    tta: bool = False,
    temperature: float = 1.0,
) -> tuple[float, float, torch.Tensor]:
    """(mean cross-entropy, accuracy, log-probabilities) of the network ``model`` on ``split``,
    deployed with normalisation ``mean``/``std``, ``tta`` and ``temperature``."""
    deployed = DeployedModel(model, mean, std, tta, temperature).to(split.images.device)
    return score_deployed(deployed, split, batch_size)


def score_deployed(
    deployed: DeployedModel, split: Split, batch_size: int
) -> tuple[float, float, torch.Tensor]:
    """(mean cross-entropy, accuracy, log-probabilities) of ``deployed`` on ``split``."""
    log_probs = predict_log_probs(deployed, split.images, batch_size=batch_size)
    loss, acc = loss_and_accuracy(log_probs, split.labels.cpu())
    return loss, acc, log_probs


def loss_and_accuracy(log_probs: torch.Tensor, labels: torch.Tensor) -> tuple[float, float]:
    """(mean cross-entropy, accuracy) of log-probabilities (N, 10) against ``labels`` (N,)."""
    loss = F.nll_loss(log_probs, labels).item()
    acc = (log_probs.argmax(1) == labels).float().mean().item()
    return loss, acc


def evaluate(
    checkpoint: str | os.PathLike[str],
    *,
    data_dir: str | os.PathLike[str] | None = None,
    device: str = "auto",
    batch_size: int = 1000,
    tta: bool | None = None,
) -> dict[str, Any]:
    """Test-set metrics of a checkpoint (or a run folder's best checkpoint).

    Returns the metrics block a run folder stores for its test split: accuracy,
    loss, confusion matrix, per-class precision/recall/F1 and their averages, plus
    the checkpoint path. ``tta`` None keeps the checkpoint's own setting.
    """
    path = resolve_checkpoint_path(checkpoint)
    ckpt = load_checkpoint(path)
    deployed = deployed_from_checkpoint(ckpt, resolve_device(device))
    prepare_for_cpu(deployed.net)
    if tta is not None:
        deployed.tta = bool(tta)
    data_dir = data_dir if data_dir is not None else (ckpt.get("config") or {}).get("data_dir")
    dataset = load_dataset(data_dir)
    split = Split(dataset.test_images, dataset.test_labels)
    loss, _, log_probs = score_deployed(deployed, split, batch_size)
    block = split_metrics(split.labels.numpy(), log_probs.exp().numpy(), loss)
    return {
        "checkpoint": str(path),
        "model": ckpt["model"]["name"],
        "data": dataset.source,
        **block,
    }
