"""An ensemble of networks that is one model: one checkpoint, one ONNX file.

:class:`Ensemble` holds ``members`` copies of a registered model (each with its own random
initialisation) and returns, in evaluation mode, the log of the members' *mean
probabilities*. Since ``softmax(log p) == p`` for a probability vector ``p``, everything
downstream that applies a softmax to a model's "logits" (:class:`~.deployed.DeployedModel`,
evaluation, the exports) gets exactly the averaged probabilities of the members.

In training mode it returns the mean of the members' log-probabilities instead. The
cross-entropy of that output is the members' mean cross-entropy minus a term that is zero
when the members agree (``-logsumexp`` of the mean log-probabilities, never negative), so
each member is trained on the labels much as if it were trained alone, in the same steps.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .registry import check_width, create_model, register_model


class Ensemble(nn.Module):
    """``members`` networks; (B, 1, 28, 28) normalised images -> (B, 10) "logits" whose
    softmax is the members' mean probabilities (evaluation mode)."""

    def __init__(self, members: list[nn.Module]) -> None:
        super().__init__()
        if not members:
            raise ValueError("an ensemble needs at least one member")
        self.members = nn.ModuleList(members)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        log_probs = torch.stack([F.log_softmax(m(x).float(), dim=1) for m in self.members])
        if self.training:
            return log_probs.mean(0)
        # log(mean_i p_i), computed stably: logsumexp over members minus log(count).
        return torch.logsumexp(log_probs, dim=0) - math.log(len(self.members))


@register_model(
    "ensemble", "several copies of a model (cnn-tiny by default), probabilities averaged"
)
def ensemble(model: str = "cnn-tiny", members: int = 3, width: int = 0) -> Ensemble:
    """``model``: the members' registered model; ``members``: how many; ``width``: the
    members' ``width`` argument (0: the model's default)."""
    if not isinstance(model, str) or model == "ensemble":
        raise ValueError(f"model must name a registered model other than 'ensemble', got {model!r}")
    count = check_width("members", members)
    kwargs = {} if width == 0 else {"width": check_width("width", width)}
    return Ensemble([create_model(model, **kwargs) for _ in range(count)])
