"""The end of a run: the best checkpoint's temperature, fitted on validation, and its scores.

:func:`calibrate_final` is what :meth:`Trainer.finish <.loop.Trainer.finish>` calls once
the best checkpoint has been scored on validation and test at temperature 1: rank 0 fits
the temperature on the validation split (:mod:`mnist_classifier.evaluation.calibration`),
every rank gets it, and the calibrated log-probabilities are derived (without test-time
augmentation a division of the log-probabilities, exact; with it, one more pass through
the deployed model). Accuracy does not change; the loss becomes the calibrated NLL.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..data.batches import Split
from ..evaluation import calibration
from ..evaluation.scoring import loss_and_accuracy, predict_view_logits
from ..models.deployed import DeployedModel
from . import distributed
from .distributed import DistContext


@dataclass
class FinalScores:
    """The calibrated scores of the best checkpoint (see :func:`calibrate_final`)."""

    temperature: float
    val: dict[str, Any]  # metrics blocks with ece / ece_uncalibrated / loss_uncalibrated
    test: dict[str, Any] | None
    test_probs: Any  # calibrated test probabilities (N, 10) float32 numpy, or None
    block: dict[str, Any] | None  # metrics.json's "calibration" entry (needs the test set)
    checkpoint_details: dict[str, Any]  # stored beside the temperature in the checkpoint


def calibrate_final(
    ctx: DistContext,
    model: nn.Module,
    mean: float,
    std: float,
    batch_size: int,
    tta: bool,
    val: tuple[Split, torch.Tensor, float],
    test: tuple[Split, torch.Tensor, float] | None,
) -> FinalScores:
    """Fit the temperature on ``val`` = (split, log-probabilities at T = 1, loss) and score
    ``val`` and ``test`` (the same triple, or None) calibrated."""
    val_split, val_lp, val_loss = val

    def fit() -> float:
        if tta:  # the views' own logits: log of averaged probabilities is not one softmax
            deployed = DeployedModel(model, mean, std, tta).to(val_split.images.device)
            logits = predict_view_logits(deployed, val_split.images, batch_size=batch_size)
        else:  # log-softmax differs from the logits by a shift per row: the same fit
            logits = val_lp
        return calibration.fit_temperature(logits, val_split.labels.cpu())

    temperature = float(ctx.run_on_main(fit))

    def calibrated(split: Split, log_probs: torch.Tensor) -> tuple[torch.Tensor, float]:
        if temperature == 1.0:
            out = log_probs
        elif not tta:
            out = F.log_softmax(log_probs / temperature, dim=1)
        else:
            out = distributed.evaluate_split(
                ctx, model, split, mean, std, batch_size, tta, temperature
            )[2]
        return out, loss_and_accuracy(out, split.labels.cpu())[0]

    def block(split: Split, log_probs: torch.Tensor, loss: float) -> tuple[dict[str, Any], Any]:
        after, after_loss = calibrated(split, log_probs)
        probs = after.exp().numpy()
        labels = split.labels.cpu().numpy()
        scores = calibration.calibrated_split_metrics(
            labels, log_probs.exp().numpy(), probs, loss, after_loss
        )
        return scores, probs

    val_block, _ = block(val_split, val_lp, val_loss)
    details = {
        "fitted_on": "validation",
        "val_nll_uncalibrated": float(val_loss),
        "val_nll": float(val_block["loss"]),
    }
    if test is None:
        return FinalScores(temperature, val_block, None, None, None, details)
    test_split, test_lp, test_loss = test
    test_block, test_probs = block(test_split, test_lp, test_loss)
    summary = calibration.calibration_block(
        temperature,
        (val_loss, float(val_block["loss"])),
        test_split.labels.cpu().numpy(),
        test_lp.exp().numpy(),
        test_probs,
    )
    return FinalScores(temperature, val_block, test_block, test_probs, summary, details)
