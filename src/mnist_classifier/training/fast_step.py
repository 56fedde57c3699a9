"""A hand-fused training step for the fully connected models, on the CPU.

At batch 32 the seed MLP's step is as much per-operator overhead (building the autograd
graph, dispatch, Python) as arithmetic. :class:`FusedMLPStep` does forward, cross-entropy
and backward by hand in a few large operators (``addmm``, ``threshold_backward``, ``mm``
into preallocated gradient buffers) without autograd; the optimizer, its state, the
schedule, checkpoints and resume are untouched (it only fills ``param.grad``).

It is the same training as the eager step: dropout masks are drawn exactly as torch's
CPU dropout draws them (``empty_like(x).bernoulli_(1 - p)`` from the global generator,
scaled by ``1 / (1 - p)``), so the random stream is the same, and the gradients are the
same up to floating-point summation order (tests/test_fast_step.py compares the weights
after a few steps). :func:`select_fast_step` applies it only where that holds: an
:class:`~mnist_classifier.models.mlp.MLP` without batch norm, on the CPU, in one process
(not under DDP, whose gradient hooks need autograd).

``TrainConfig.fast_step``: ``auto`` (the default) uses it where it applies, ``on`` asks
for it and is refused in one line where it does not, ``off`` keeps the eager step.
"""

from __future__ import annotations

import torch
from torch import nn

from ..errors import ConfigError

FAST_STEP_CHOICES = ("auto", "on", "off")


def _mlp_layers(model: nn.Module) -> list[tuple[nn.Linear, float]] | None:
    """The model's (linear layer, dropout after it) pairs, or None when it is not a plain
    Flatten/Linear/ReLU/Dropout stack ending in a Linear layer."""
    from ..models.mlp import MLP

    if type(model) is not MLP:
        return None
    modules = list(model.net)
    if not modules or type(modules[0]) is not nn.Flatten:
        return None
    layers: list[tuple[nn.Linear, float]] = []
    i = 1
    while i < len(modules):
        linear = modules[i]
        if type(linear) is not nn.Linear or linear.bias is None:
            return None
        i += 1
        if i == len(modules):  # the output layer
            layers.append((linear, 0.0))
            return layers
        if type(modules[i]) is not nn.ReLU:
            return None
        i += 1
        p = 0.0
        if i < len(modules) and type(modules[i]) is nn.Dropout:
            p = float(modules[i].p)  # type: ignore[arg-type]
            i += 1
        layers.append((linear, p))
    return None


def why_not(model: nn.Module, device: torch.device, world_size: int) -> str | None:
    """Why the fused step cannot train this model here, or None when it can."""
    if device.type != "cpu":
        return f"it runs on the CPU only (training device: {device.type})"
    if world_size > 1:
        return "it does not run under DDP (gradients are synchronised by autograd hooks)"
    if _mlp_layers(model) is None:
        return "it trains only the fully connected models without batch norm (mlp*)"
    if any(not p.requires_grad for p in model.parameters()):
        return "it trains every parameter; this model has frozen ones"
    return None


def select_fast_step(
    mode: str, model: nn.Module, device: torch.device, world_size: int, label_smoothing: float
) -> FusedMLPStep | None:
    """The fused step for ``mode`` (``auto``/``on``/``off``), or None for the eager step.
    ``on`` where it cannot apply raises :class:`ConfigError` naming the reason."""
    if mode == "off":
        return None
    reason = why_not(model, device, world_size)
    if reason is not None:
        if mode == "on":
            raise ConfigError(f"fast_step = on: {reason}")
        return None
    return FusedMLPStep(model, label_smoothing)


class FusedMLPStep:
    """``step(x, labels) -> (logits, mean loss)``: forward, loss and backward of an MLP,
    leaving the gradients in ``param.grad`` (the optimizer's step comes next, as usual).
    The module must be in training mode for dropout to apply (as with the eager step)."""

    def __init__(self, model: nn.Module, label_smoothing: float = 0.0) -> None:
        layers = _mlp_layers(model)
        if layers is None:
            raise ConfigError("the fused step trains only the mlp models without batch norm")
        self.model = model
        self.label_smoothing = float(label_smoothing)
        # Views of the live parameters (the optimizer updates them in place).
        self.weights = [linear.weight.detach() for linear, _ in layers]
        self.biases = [linear.bias.detach() for linear, _ in layers]
        self.dropout = [p for _, p in layers]
        self._params = [(linear.weight, linear.bias) for linear, _ in layers]
        self._rows: torch.Tensor | None = None
        self._minus_one = torch.tensor(-1.0)
        self._minus_target = torch.tensor(-(1.0 - self.label_smoothing))

    def _grad_buffers(self) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """The parameters' gradient tensors, created once and reused: each step writes them
        in full (``zero_grad(set_to_none=True)`` elsewhere makes new ones)."""
        grads = []
        for weight, bias in self._params:
            if weight.grad is None:
                weight.grad = torch.empty_like(weight)
            if bias.grad is None:
                bias.grad = torch.empty_like(bias)
            grads.append((weight.grad, bias.grad))
        return grads

    @torch.no_grad()
    def __call__(self, x: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        n = x.shape[0]
        training = self.model.training
        h = x.reshape(n, -1)
        inputs = []  # the input of each linear layer
        relu_out = []  # each hidden layer's ReLU output (its mask for the backward pass)
        noises: list[torch.Tensor | None] = []
        last = len(self.weights) - 1
        for i, (weight, bias) in enumerate(zip(self.weights, self.biases, strict=True)):
            inputs.append(h)
            z = torch.addmm(bias, h, weight.t())
            if i == last:
                h = z
                break
            z.relu_()
            relu_out.append(z)
            p = self.dropout[i]
            if training and p > 0:
                # As torch's CPU dropout: the same draws from the global generator.
                noise = torch.empty_like(z).bernoulli_(1 - p)
                if p == 1:
                    noise.zero_()
                else:
                    noise.div_(1 - p)
                noises.append(noise)
                h = z * noise
            else:
                noises.append(None)
                h = z
        logits = h
        # Cross-entropy (mean over the batch, optional label smoothing) and its gradient.
        log_probs = torch.log_softmax(logits, 1)
        if self._rows is None or self._rows.shape[0] < n:
            self._rows = torch.arange(max(n, 1), device=x.device)
        rows = self._rows[:n]
        picked = log_probs[rows, labels]
        eps = self.label_smoothing
        grad = log_probs.exp()
        if eps > 0:
            k = logits.shape[1]
            loss = -((1 - eps) * picked.sum() + (eps / k) * log_probs.sum()) / n
            grad.sub_(eps / k)
            grad.index_put_((rows, labels), self._minus_target, accumulate=True)
        else:
            loss = picked.sum().neg_().div_(n)
            grad.index_put_((rows, labels), self._minus_one, accumulate=True)
        grad.div_(n)
        # Backward, from the output layer down, into the gradient buffers.
        grads = self._grad_buffers()
        for i in range(last, -1, -1):
            weight_grad, bias_grad = grads[i]
            torch.mm(grad.t(), inputs[i], out=weight_grad)
            torch.sum(grad, 0, out=bias_grad)
            if i == 0:
                break
            upstream = torch.mm(grad, self.weights[i])
            mask = noises[i - 1]
            if mask is not None:
                upstream.mul_(mask)
            grad = torch.ops.aten.threshold_backward(upstream, relu_out[i - 1], 0)
        return logits, loss


class DirectAdamStep:
    """``torch.optim.Adam(fused=True).step()`` without its per-call Python bookkeeping.

    At batch 32 the optimizer's ``step()`` spends longer grouping tensors, checking
    options and running hooks than its one fused kernel takes. This calls the same
    kernels (``_foreach_add_`` on the step counts, then ``_fused_adam_``) with the
    optimizer's own state tensors, so the update, ``state_dict()`` and resume are exactly
    those of ``optimizer.step()``; it falls back to ``optimizer.step()`` for the first
    step (which creates the state), whenever a parameter has no state or gradient, and
    when ``optimizer.step`` has been replaced since.
    :meth:`applies` says whether the optimizer is one it can step (plain fused Adam, no
    amsgrad/maximize/capturable/differentiable, no hooks)."""

    def __init__(self, optimizer: torch.optim.Optimizer) -> None:
        self.optimizer = optimizer
        # A ``step`` replaced on the instance after this point (a wrapper, a test's probe)
        # is honoured: every call then goes through it.
        self._step_attribute = optimizer.__dict__.get("step")

    @staticmethod
    def applies(optimizer: torch.optim.Optimizer) -> bool:
        from torch.optim import optimizer as optim_module

        if type(optimizer) is not torch.optim.Adam:
            return False
        if optimizer._optimizer_step_pre_hooks or optimizer._optimizer_step_post_hooks:
            return False
        if optim_module._global_optimizer_pre_hooks or optim_module._global_optimizer_post_hooks:
            return False
        for group in optimizer.param_groups:
            if not group.get("fused") or isinstance(group["lr"], torch.Tensor):
                return False
            if any(
                group.get(flag)
                for flag in (
                    "amsgrad",
                    "maximize",
                    "capturable",
                    "differentiable",
                    "decoupled_weight_decay",
                )
            ):
                return False
        return True

    def __call__(self) -> None:
        optimizer = self.optimizer
        if optimizer.__dict__.get("step") is not self._step_attribute:
            optimizer.step()
            return
        state = optimizer.state
        batches = []
        for group in optimizer.param_groups:
            params = group["params"]
            grads, exp_avgs, exp_avg_sqs, steps = [], [], [], []
            for p in params:
                s = state.get(p)
                if p.grad is None or not s or p.grad.is_sparse:
                    optimizer.step()  # creates the state (the first step), or handles it
                    return
                grads.append(p.grad)
                exp_avgs.append(s["exp_avg"])
                exp_avg_sqs.append(s["exp_avg_sq"])
                steps.append(s["step"])
            batches.append((group, params, grads, exp_avgs, exp_avg_sqs, steps))
        with torch.no_grad():
            for group, params, grads, exp_avgs, exp_avg_sqs, steps in batches:
                if not params:
                    continue
                beta1, beta2 = group["betas"]
                torch._foreach_add_(steps, 1)
                torch._fused_adam_(
                    params,
                    grads,
                    exp_avgs,
                    exp_avg_sqs,
                    [],
                    steps,
                    amsgrad=False,
                    lr=group["lr"],
                    beta1=float(beta1),
                    beta2=float(beta2),
                    weight_decay=group["weight_decay"],
                    eps=group["eps"],
                    maximize=False,
                    grad_scale=None,
                    found_inf=None,
                )
