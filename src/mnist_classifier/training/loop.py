"""The training loop: in-memory batches, optimizer and schedule, validation, checkpoints, resume.

One call of :func:`train_run` trains a model from a :class:`~mnist_classifier.config.TrainConfig`
into a run folder (the contract in docs/ARCHITECTURE.md). The state needed to continue
exactly where it stopped (weights, optimizer, schedule, RNG states, position in the
epoch) is saved in ``checkpoints/last.pt`` after every epoch and on Ctrl-C, so a
resumed run ends with the same weights as an uninterrupted one.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import math
import signal
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .. import __version__
from ..config import TrainConfig
from ..data.batches import Split, normalize, train_val_split
from ..data.sources import Dataset, load_dataset
from ..errors import ConfigError, TrainingError, TrainingInterrupted
from ..evaluation.metrics import percent, split_metrics
from ..fileio import atomic_path, atomic_write_text
from ..models.registry import count_parameters, create_model, uses_convolutions
from ..runtime import resolve_device, set_threads
from ..models.checkpoint import build_checkpoint, load_checkpoint, save_checkpoint
from .progress import EpochProgress

HISTORY_FIELDS = ("epoch", "train_loss", "train_acc", "val_loss", "val_acc", "lr", "seconds")
StepHook = Callable[[int, int], None]  # (epoch, step) -> None, called before each step


# ----------------------------------------------------------------------------- building blocks


def build_optimizer(cfg: TrainConfig, model: nn.Module) -> torch.optim.Optimizer:
    """The optimizer named by the config; weight decay is not applied to norms and biases
    of batch-norm layers for adamw/sgd, and to every parameter for adam (as the original projects do)."""
    params = [p for p in model.parameters() if p.requires_grad]
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay, **_fast_kwargs())
    decay = [p for p in params if p.ndim > 1]
    no_decay = [p for p in params if p.ndim <= 1]
    groups = [
        {"params": decay, "weight_decay": cfg.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=cfg.lr, **_fast_kwargs())
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
    import copy

    shadow = copy.deepcopy(model).eval()
    for p in shadow.parameters():
        p.requires_grad_(False)
    return shadow


def _shift_views(images: torch.Tensor) -> list[torch.Tensor]:
    """The image and four 1-pixel shifts (MNIST borders are empty, so rolling is safe)."""
    return [images] + [torch.roll(images, s, dims=d) for d in (1, 2) for s in (-1, 1)]


def prepare_for_cpu(model: nn.Module) -> nn.Module:
    """Convolutional models run faster channels-last on a CPU (measured: about 1.6x for cnn-small)."""
    if next(model.parameters()).device.type == "cpu" and uses_convolutions(model):
        model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    return model


def as_model_input(model_is_channels_last: bool, x: torch.Tensor) -> torch.Tensor:
    return x.contiguous(memory_format=torch.channels_last) if model_is_channels_last else x


def is_channels_last(model: nn.Module) -> bool:
    return any(
        p.dim() == 4
        and p.is_contiguous(memory_format=torch.channels_last)
        and not p.is_contiguous()
        for p in model.parameters()
    )


@torch.inference_mode()
def predict_log_probs(
    model: nn.Module,
    images: torch.Tensor,
    mean: float,
    std: float,
    *,
    batch_size: int = 1000,
    tta: bool = False,
) -> torch.Tensor:
    """Log-probabilities (N, 10) float32 on the CPU for uint8 ``images`` (N, 28, 28)."""
    model.eval()
    device = next(model.parameters()).device
    cl = is_channels_last(model)

    def forward(images_u8: torch.Tensor) -> torch.Tensor:
        return model(as_model_input(cl, normalize(images_u8, mean, std))).float()

    out = []
    for start in range(0, images.shape[0], batch_size):
        batch = images[start : start + batch_size].to(device, non_blocking=True)
        if tta:
            probs = torch.stack([F.softmax(forward(v), 1) for v in _shift_views(batch)]).mean(0)
            out.append(probs.clamp_min(1e-12).log().cpu())
        else:
            out.append(F.log_softmax(forward(batch), 1).cpu())
    return torch.cat(out) if out else torch.empty(0, 10)


def evaluate_split(
    model: nn.Module, split: Split, mean: float, std: float, batch_size: int, tta: bool = False
) -> tuple[float, float, torch.Tensor]:
    """(mean cross-entropy, accuracy, log-probabilities) of ``model`` on ``split``."""
    log_probs = predict_log_probs(model, split.images, mean, std, batch_size=batch_size, tta=tta)
    labels = split.labels.cpu()
    loss = F.nll_loss(log_probs, labels).item()
    acc = (log_probs.argmax(1) == labels).float().mean().item()
    return loss, acc, log_probs


# ----------------------------------------------------------------------------- the run


@dataclass
class RunPaths:
    root: Path

    @property
    def config(self) -> Path:
        return self.root / "config.json"

    @property
    def history(self) -> Path:
        return self.root / "history.csv"

    @property
    def metrics(self) -> Path:
        return self.root / "metrics.json"

    @property
    def predictions(self) -> Path:
        return self.root / "predictions.npz"

    @property
    def best(self) -> Path:
        return self.root / "checkpoints" / "best.pt"

    @property
    def last(self) -> Path:
        return self.root / "checkpoints" / "last.pt"


def write_history(path: Path, history: list[dict[str, float]]) -> None:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=HISTORY_FIELDS, lineterminator="\n")
    writer.writeheader()
    for row in history:
        writer.writerow({k: row[k] for k in HISTORY_FIELDS})
    atomic_write_text(path, buffer.getvalue())


def _augmenter(cfg: TrainConfig) -> Callable[[torch.Tensor, torch.Generator], torch.Tensor] | None:
    """A function (float images in [0,1] (B,1,28,28), generator) -> augmented images, or None."""
    if cfg.augment == "none":
        return None
    from ..data import augment

    return augment.make_augmenter(cfg.augment)


class Trainer:
    """Holds the state of one run; :meth:`fit` trains it to the end."""

    def __init__(
        self,
        cfg: TrainConfig,
        out: Path,
        *,
        dataset: Dataset | None = None,
        log: Callable[[str], None] = print,
        stream: TextIO | None = None,
        step_hook: StepHook | None = None,
    ) -> None:
        self.cfg = cfg.validate()
        self.paths = RunPaths(Path(out))
        self.log = log
        self.stream = stream
        self.step_hook = step_hook
        self.device = resolve_device(cfg.device)
        self.dataset = dataset if dataset is not None else load_dataset(cfg.data_dir)
        self.mean, self.std = self.dataset.mean, self.dataset.std
        train, val = train_val_split(
            self.dataset.train_images, self.dataset.train_labels, cfg.val_fraction, cfg.seed
        )
        if cfg.limit_train:
            train = train.subset(cfg.limit_train)
        self.train_split = train.to(self.device)
        self.val_split = val.to(self.device)
        self.test_split = Split(self.dataset.test_images, self.dataset.test_labels).to(self.device)

        torch.manual_seed(cfg.seed)
        self.model = prepare_for_cpu(create_model(cfg.model, **cfg.model_kwargs).to(self.device))
        self.threads = cfg.threads
        if not cfg.threads and self.device.type == "cpu" and not uses_convolutions(self.model):
            # Fully connected nets at these sizes run fastest on one thread: with sleeping
            # OpenMP waiters (see cli/__init__.py) a second thread made the seed recipe 3x slower.
            self.threads = 1
        self.channels_last = is_channels_last(self.model)
        self.optimizer = build_optimizer(cfg, self.model)
        n_train = len(self.train_split)
        if n_train < 2:
            raise ConfigError(f"the training split holds {n_train} image(s); at least 2 are needed")
        # A last batch of one image is dropped: batch norm cannot train on a single sample.
        self.steps_per_epoch = (
            n_train // cfg.batch_size
            if n_train % cfg.batch_size == 1
            else -(-n_train // cfg.batch_size)
        )
        self.scheduler = build_scheduler(cfg, self.optimizer, self.steps_per_epoch * cfg.epochs)
        self.ema = WeightAverage(self.model, cfg.ema) if cfg.ema > 0 else None
        self.augment = _augmenter(cfg)
        self.generator = torch.Generator().manual_seed(cfg.seed)

        # Position and bookkeeping (all restored on resume).
        self.epochs_done = 0
        self.step_in_epoch = 0
        self.epoch_generator_state = self.generator.get_state()
        self.partial = {"loss_sum": 0.0, "correct": 0, "seen": 0}
        self.history: list[dict[str, float]] = []
        self.best = {"val_acc": -1.0, "val_loss": math.inf, "epoch": 0}
        self.best_val_loss_for_patience = math.inf
        self.bad_epochs = 0
        self.train_seconds = 0.0
        self.restored_generator_state: torch.Tensor | None = None
        self.interrupt_requested = False

    # -------------------------------------------------------------- checkpoints

    def _eval_model(self) -> nn.Module:
        return self.ema.model if self.ema is not None else self.model

    def _checkpoint(self, *, with_state: bool, metrics: dict[str, Any] | None) -> dict[str, Any]:
        state = None
        if with_state:
            state = {
                "epochs_done": self.epochs_done,
                "step_in_epoch": self.step_in_epoch,
                "epoch_generator_state": self.epoch_generator_state,
                "generator_state": self.generator.get_state(),
                "torch_rng_state": torch.get_rng_state(),
                "cuda_rng_states": torch.cuda.get_rng_state_all()
                if self.device.type == "cuda"
                else [],
                "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict() if self.scheduler is not None else None,
                "ema": self.ema.state_dict() if self.ema is not None else None,
                "partial": dict(self.partial),
                "history": [dict(row) for row in self.history],
                "best": dict(self.best),
                "best_val_loss_for_patience": self.best_val_loss_for_patience,
                "bad_epochs": self.bad_epochs,
                "train_seconds": self.train_seconds,
            }
        model = self.model if with_state else self._eval_model()
        return build_checkpoint(
            model,
            model_name=self.cfg.model,
            model_kwargs=self.cfg.model_kwargs,
            mean=self.mean,
            std=self.std,
            config=self.cfg.to_dict(),
            metrics=metrics,
            training_state=state,
        )

    def save_last(self, metrics: dict[str, Any] | None = None) -> None:
        save_checkpoint(self.paths.last, self._checkpoint(with_state=True, metrics=metrics))

    def restore(self, ckpt: dict[str, Any]) -> None:
        """Continue from a ``last.pt`` checkpoint written by :meth:`save_last`."""
        state = ckpt.get("training")
        if not state:
            raise ConfigError(f"{ckpt.get('path')}: holds no training state to resume from")
        self.model.load_state_dict(ckpt["state_dict"])
        self.optimizer.load_state_dict(state["optimizer"])
        if self.scheduler is not None and state["scheduler"] is not None:
            self.scheduler.load_state_dict(state["scheduler"])
        if self.ema is not None and state["ema"] is not None:
            self.ema.load_state_dict(state["ema"])
        self.epochs_done = int(state["epochs_done"])
        self.step_in_epoch = int(state["step_in_epoch"])
        self.epoch_generator_state = state["epoch_generator_state"]
        self.restored_generator_state = state["generator_state"]
        torch.set_rng_state(state["torch_rng_state"])
        if self.device.type == "cuda" and state["cuda_rng_states"]:
            torch.cuda.set_rng_state_all(state["cuda_rng_states"])
        self.partial = dict(state["partial"])
        self.history = [dict(row) for row in state["history"]]
        self.best = dict(state["best"])
        self.best_val_loss_for_patience = float(state["best_val_loss_for_patience"])
        self.bad_epochs = int(state["bad_epochs"])
        self.train_seconds = float(state["train_seconds"])

    # -------------------------------------------------------------- training

    def _epoch_batches(self) -> tuple[torch.Tensor, torch.Tensor]:
        """This epoch's permuted images and labels (recreated identically on resume)."""
        self.generator.set_state(self.epoch_generator_state)
        order = torch.randperm(len(self.train_split), generator=self.generator)
        order = order.to(self.device)
        return self.train_split.images[order], self.train_split.labels[order]

    def _train_epoch(self, epoch: int) -> tuple[float, float]:
        cfg = self.cfg
        model, optimizer, scheduler = self.model, self.optimizer, self.scheduler
        images, labels = self._epoch_batches()
        if self.step_in_epoch and self.restored_generator_state is not None:
            # Resuming mid-epoch: the generator continues from where it was interrupted.
            self.generator.set_state(self.restored_generator_state)
        self.restored_generator_state = None
        model.train()
        check_every = 1 if self.device.type == "cpu" else 25
        loss_sum = torch.zeros((), device=self.device, dtype=torch.float64)
        correct = torch.zeros((), device=self.device, dtype=torch.int64)
        progress = EpochProgress(epoch, cfg.epochs, self.steps_per_epoch, self.stream)
        n = len(self.train_split)
        start_step = self.step_in_epoch
        try:
            for step in range(start_step, self.steps_per_epoch):
                if self.step_hook is not None:
                    try:
                        self.step_hook(epoch, step)
                    except KeyboardInterrupt:  # raised between two steps: a clean boundary
                        self.interrupt_requested = True
                if self.interrupt_requested:
                    raise KeyboardInterrupt
                xb = images[step * cfg.batch_size : (step + 1) * cfg.batch_size]
                yb = labels[step * cfg.batch_size : (step + 1) * cfg.batch_size]
                if self.augment is not None:
                    x01 = xb.to(torch.float32).unsqueeze(1).div_(255.0)
                    x = (self.augment(x01, self.generator) - self.mean) / self.std
                else:
                    x = normalize(xb, self.mean, self.std)
                logits = model(as_model_input(self.channels_last, x))
                loss = F.cross_entropy(logits, yb, label_smoothing=cfg.label_smoothing)
                if (step + 1) % check_every == 0 or step + 1 == self.steps_per_epoch:
                    value = loss.item()
                    if not math.isfinite(value):
                        raise TrainingError(
                            f"loss became {value} at epoch {epoch}, step {step + 1}; training "
                            f"stopped, the last good checkpoint is {self.paths.last}"
                        )
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                if scheduler is not None:
                    scheduler.step()
                if self.ema is not None:
                    self.ema.update(model)
                loss_sum += loss.detach() * yb.shape[0]
                correct += (logits.detach().argmax(1) == yb).sum()
                self.step_in_epoch = step + 1
                if progress.wants_updates and step % 20 == 0:
                    seen = (
                        self.partial["seen"]
                        + min((step + 1) * cfg.batch_size, n)
                        - min(start_step * cfg.batch_size, n)
                    )
                    progress.update(step + 1, (self.partial["loss_sum"] + loss_sum.item()) / seen)
        except KeyboardInterrupt:
            self._fold_partial(loss_sum, correct, start_step)
            raise
        finally:
            progress.close()
        self._fold_partial(loss_sum, correct, start_step)
        seen = self.partial["seen"]
        return self.partial["loss_sum"] / max(seen, 1), self.partial["correct"] / max(seen, 1)

    def _fold_partial(self, loss_sum: torch.Tensor, correct: torch.Tensor, start_step: int) -> None:
        """Add this stretch of steps to the epoch's running totals."""
        steps = self.step_in_epoch - start_step
        seen = min(self.step_in_epoch * self.cfg.batch_size, len(self.train_split)) - min(
            start_step * self.cfg.batch_size, len(self.train_split)
        )
        if steps > 0:
            self.partial["loss_sum"] += float(loss_sum.item())
            self.partial["correct"] += int(correct.item())
            self.partial["seen"] += seen

    def fit(self) -> dict[str, Any]:
        """Train to the configured number of epochs (or early stop); return the final metrics."""
        previous_threads = torch.get_num_threads()
        set_threads(self.threads)
        try:
            return self._fit()
        finally:
            torch.set_num_threads(previous_threads)

    def _fit(self) -> dict[str, Any]:
        cfg = self.cfg
        self.paths.root.mkdir(parents=True, exist_ok=True)
        atomic_write_text(self.paths.config, json.dumps(cfg.to_dict(), indent=2) + "\n")
        params = count_parameters(self.model)
        if self.epochs_done == 0 and self.step_in_epoch == 0:
            self.log(
                f"training {cfg.model} ({params:,} parameters) on {self.device.type}: "
                f"{len(self.train_split):,} train / {len(self.val_split):,} validation images, "
                f"{cfg.epochs} epochs of {self.steps_per_epoch} steps (batch {cfg.batch_size})"
            )
        if self.epochs_done == 0 and self.step_in_epoch == 0:
            self.save_last()  # a run killed in its first epoch can still be resumed
        stopped_early = False
        with self._sigint_at_step_boundary():
            while self.epochs_done < cfg.epochs and not stopped_early:
                stopped_early = self._run_epoch()
            try:
                return self.finish(params)
            except KeyboardInterrupt:
                raise TrainingInterrupted(
                    f"interrupted during the final evaluation; finish it with: "
                    f"mnist-classifier train --resume {self.paths.root}"
                ) from None

    @contextlib.contextmanager
    def _sigint_at_step_boundary(self) -> Iterator[None]:
        """Turn the first Ctrl-C into a request honoured between two steps (a second one
        interrupts at once), so the saved state is always that of a whole step."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return

        def handler(signum: int, frame: Any) -> None:
            self.interrupt_requested = True
            signal.signal(signal.SIGINT, previous)

        previous = signal.signal(signal.SIGINT, handler)
        try:
            yield
        finally:
            signal.signal(signal.SIGINT, previous)

    def _run_epoch(self) -> bool:
        """Train and validate one epoch, save checkpoints; True when early stopping triggers."""
        cfg = self.cfg
        stopped_early = False
        epoch = self.epochs_done + 1
        started = time.perf_counter()
        try:
            train_loss, train_acc = self._train_epoch(epoch)
        except KeyboardInterrupt:
            if not self.interrupt_requested:
                # Interrupted inside a step (a second Ctrl-C): that state is not a whole step,
                # so the last checkpoint written stays the one to resume from.
                raise
            self.train_seconds += time.perf_counter() - started
            self.save_last()
            raise TrainingInterrupted(
                f"interrupted at epoch {epoch}, step {self.step_in_epoch}; state saved to "
                f"{self.paths.last}; continue with: mnist-classifier train --resume {self.paths.root}"
            ) from None
        val_loss, val_acc, _ = evaluate_split(
            self._eval_model(), self.val_split, self.mean, self.std, cfg.eval_batch_size
        )
        self.train_seconds += time.perf_counter() - started
        lr = self.optimizer.param_groups[0]["lr"]
        self.history.append(
            {
                "epoch": epoch,
                "train_loss": round(train_loss, 6),
                "train_acc": round(train_acc, 6),
                "val_loss": round(val_loss, 6),
                "val_acc": round(val_acc, 6),
                "lr": lr,
                "seconds": round(self.train_seconds, 3),
            }
        )
        self.epochs_done = epoch
        self.step_in_epoch = 0
        self.epoch_generator_state = self.generator.get_state()
        self.partial = {"loss_sum": 0.0, "correct": 0, "seen": 0}
        improved = val_acc > self.best["val_acc"] or (
            val_acc == self.best["val_acc"] and val_loss < self.best["val_loss"]
        )
        if improved:
            self.best = {"val_acc": val_acc, "val_loss": val_loss, "epoch": epoch}
            save_checkpoint(
                self.paths.best,
                self._checkpoint(
                    with_state=False,
                    metrics={"val": {"accuracy": val_acc, "loss": val_loss}, "epoch": epoch},
                ),
            )
        if cfg.patience:
            if val_loss < self.best_val_loss_for_patience:
                self.best_val_loss_for_patience = val_loss
                self.bad_epochs = 0
            else:
                self.bad_epochs += 1
                stopped_early = self.bad_epochs >= cfg.patience
        self.save_last()
        write_history(self.paths.history, self.history)
        self.log(
            f"epoch {epoch:>3}/{cfg.epochs}  train loss {train_loss:.4f} acc {percent(train_acc)}  "
            f"val loss {val_loss:.4f} acc {percent(val_acc)}  "
            f"[{self.train_seconds:.1f}s]{'  *' if improved else ''}"
        )
        if stopped_early:
            self.log(f"early stop: validation loss has not improved for {cfg.patience} epochs")
        return stopped_early

    def finish(self, params: int) -> dict[str, Any]:
        """Evaluate the best checkpoint on validation and test; write metrics and predictions."""
        cfg = self.cfg
        best = load_checkpoint(self.paths.best)
        eval_model = create_model(cfg.model, **cfg.model_kwargs).to(self.device)
        eval_model.load_state_dict(best["state_dict"])
        prepare_for_cpu(eval_model)
        val_loss, _, val_lp = evaluate_split(
            eval_model, self.val_split, self.mean, self.std, cfg.eval_batch_size, cfg.tta
        )
        test_loss, _, test_lp = evaluate_split(
            eval_model, self.test_split, self.mean, self.std, cfg.eval_batch_size, cfg.tta
        )
        test_probs = test_lp.exp().numpy()
        metrics: dict[str, Any] = {
            "model": cfg.model,
            "parameters": params,
            "epochs_run": self.epochs_done,
            "best_epoch": int(self.best["epoch"]),
            "train_seconds": round(self.train_seconds, 3),
            "device": self.device.type,
            "package_version": __version__,
            "test": split_metrics(self.test_split.labels.cpu().numpy(), test_probs, test_loss),
            "val": split_metrics(
                self.val_split.labels.cpu().numpy(), val_lp.exp().numpy(), val_loss
            ),
        }
        best["metrics"] = metrics
        best.pop("path", None)
        save_checkpoint(self.paths.best, best)
        self.save_last(metrics)
        with atomic_path(self.paths.predictions) as tmp, open(tmp, "wb") as fh:
            np.savez_compressed(
                fh, probs=test_probs.astype(np.float32), labels=self.test_split.labels.cpu().numpy()
            )
        atomic_write_text(self.paths.metrics, json.dumps(metrics, indent=2) + "\n")
        self.log(
            f"test accuracy {percent(metrics['test']['accuracy'])}  loss {test_loss:.4f}  "
            f"(best epoch {self.best['epoch']}, validation {percent(metrics['val']['accuracy'])}, "
            f"{self.train_seconds:.1f}s of training)"
        )
        return metrics
