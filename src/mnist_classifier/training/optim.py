"""Optimizers, learning-rate schedules and the weight average (EMA) named by a TrainConfig."""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn

from ..config import TrainConfig


def build_optimizer(cfg: TrainConfig, model: nn.Module) -> torch.optim.Optimizer:
    """The optimizer named by the config; weight decay is not applied to norms and biases
    of batch-norm layers for adamw/sgd, and to every parameter for adam (as the original projects do)."""
    params = [p for p in model.parameters() if p.requires_grad]
    betas = (cfg.beta1, cfg.beta2)
    if cfg.optimizer == "adam":
        return torch.optim.Adam(
            params, lr=cfg.lr, betas=betas, weight_decay=cfg.weight_decay, **_fast_kwargs()
        )
    decay = [p for p in params if p.ndim > 1]
    no_decay = [p for p in params if p.ndim <= 1]
    groups = [
        {"params": decay, "weight_decay": cfg.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=cfg.lr, betas=betas, **_fast_kwargs())
    return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.momentum > 0)


def _fast_kwargs() -> dict[str, Any]:
    # A fused optimizer step is one kernel per parameter group instead of several per tensor.
    return {"fused": True}


def build_scheduler(
    cfg: TrainConfig, optimizer: torch.optim.Optimizer, total_steps: int
) -> torch.optim.lr_scheduler.LRScheduler | None:
    """A per-step learning-rate schedule, or None for a constant rate."""
    if cfg.schedule == "onecycle":
        return torch.optim.lr_scheduler.OneCycleLR(
            optimizer,
            max_lr=cfg.lr,
            total_steps=total_steps,
            pct_start=0.25,
            anneal_strategy="linear",
            div_factor=10.0,
            final_div_factor=100.0,
            cycle_momentum=False,
        )
    if cfg.schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=total_steps)
    return None


class WeightAverage:
    """An exponential moving average of a model's parameters (buffers are copied)."""

    def __init__(self, model: nn.Module, decay: float) -> None:
        self.decay = decay
        self.model = create_shadow(model)
        self.updates = 0

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        self.updates += 1
        # Warm-up: average faster at the start, so early weights do not dominate.
        decay = min(self.decay, (1 + self.updates) / (10 + self.updates))
        shadow: list[torch.Tensor] = list(self.model.parameters())
        live: list[torch.Tensor] = [p.detach() for p in model.parameters()]
        torch._foreach_lerp_(shadow, live, 1.0 - decay)
        for b_shadow, b_live in zip(self.model.buffers(), model.buffers(), strict=True):
            b_shadow.copy_(b_live)

    def state_dict(self) -> dict[str, Any]:
        return {"model": self.model.state_dict(), "updates": self.updates}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.updates = int(state["updates"])


def create_shadow(model: nn.Module) -> nn.Module:
    shadow = copy.deepcopy(model).eval()
    for p in shadow.parameters():
        p.requires_grad_(False)
    return shadow
