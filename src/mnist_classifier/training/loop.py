"""The trainer: in-memory permutation-slice epochs, validation, checkpoints, resume, Ctrl-C.

:meth:`Trainer.fit` trains a model from a :class:`~mnist_classifier.config.TrainConfig`
into a run folder (written through :mod:`mnist_classifier.run_folder`). The state
needed to continue exactly where it stopped (weights, optimizer, schedule, RNG
states, position in the epoch: :mod:`.state`) is saved in the last checkpoint after
every epoch and on Ctrl-C or SIGTERM, so a resumed run ends with the same weights as an
uninterrupted one. Optimizers and schedules are built by :mod:`.optim`; validation
and test scores come from :mod:`mnist_classifier.evaluation.scoring`. Under torchrun the
same trainer runs on every rank; :mod:`.distributed` shards the batches and evaluation,
agrees on when to stop, and leaves writing and printing to rank 0.
"""

from __future__ import annotations

import contextlib
import math
import signal
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, TextIO

import torch
from torch import nn

from .. import __version__
from ..config import TrainConfig
from ..data.batches import Split, normalize, train_val_split
from ..data.sources import Dataset, load_dataset
from ..errors import ConfigError, DataError, TrainingError, TrainingInterrupted
from ..evaluation.calibration import summary_line as calibration_summary
from ..evaluation.metrics import percent, split_metrics
from ..models.channels_last import as_model_input, is_channels_last, prepare_for_cpu
from ..models.checkpoint import build_checkpoint, load_checkpoint, save_checkpoint, set_calibration
from ..models.registry import count_parameters, create_model, uses_convolutions
from ..run_folder import RunFolder, write_config, write_metrics, write_predictions
from ..runtime import resolve_device, set_threads, training_threads
from . import distributed
from .calibrate import calibrate_final
from .callbacks import Callback, CallbackList, HistoryWriter, ProgressBar
from .distributed import DistContext
from .fast_step import DirectAdamStep, select_fast_step
from .optim import WeightAverage, build_optimizer, build_scheduler
from .state import Progress, Stateful, restore_state, save_state

StepHook = Callable[[int, int], None]  # (epoch, step) -> None, called before each step


def _silent(_message: str) -> None:
    """The log of ranks other than 0: each line is printed once, by rank 0."""


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
        callbacks: Sequence[Callback] = (),
        evaluate_test: bool = True,
        dist: DistContext | None = None,
    ) -> None:
        """``callbacks`` follow training (:mod:`.callbacks`); ``history.csv`` and the progress
        bar are written by callbacks of their own, always first. ``evaluate_test=False`` keeps
        the test set out of the run entirely (tuning trials): no test metrics, no predictions
        and no ``metrics.json`` are written; the best checkpoint carries validation metrics."""
        self.cfg = cfg.validate()
        self.run = RunFolder(Path(out))
        # One process, or one rank of a torchrun job: only rank 0 prints and writes files.
        self.dist = dist if dist is not None else DistContext()
        self.dist.check_batch_size(cfg.batch_size)
        self.log = log if self.dist.is_main else _silent
        self.stream = stream if self.dist.is_main else None
        self.step_hook = step_hook
        # Callbacks write files and draw the bar: rank 0 only (a stop one of them asks for
        # is agreed by every rank at the end of the epoch).
        self.callbacks = CallbackList(
            [HistoryWriter(), ProgressBar(stream), *callbacks] if self.dist.is_main else []
        )
        self.evaluate_test = evaluate_test
        self.stop_reason: str | None = None
        self.device = self.dist.device(resolve_device(cfg.device))
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
        if len(self.test_split) == 0:
            raise DataError(
                f"{self.dataset.source}: the test split is empty; training needs test images"
            )

        torch.manual_seed(cfg.seed)
        self.model = prepare_for_cpu(create_model(cfg.model, **cfg.model_kwargs).to(self.device))
        self.threads = training_threads(cfg.threads, self.device, uses_convolutions(self.model))
        self.channels_last = is_channels_last(self.model)
        # The module the steps call: the model itself, or the model inside DDP.
        self.train_model = self.dist.wrap(self.model, self.device, cfg.sync_bn)
        self.optimizer = build_optimizer(cfg, self.model)
        # The hand-fused step where it applies (an mlp on the CPU, one process), else None.
        self.fast_step = select_fast_step(
            cfg.fast_step, self.model, self.device, self.dist.world_size, cfg.label_smoothing
        )
        n_train = len(self.train_split)
        if n_train < 2:
            raise ConfigError(f"the training split holds {n_train} image(s); at least 2 are needed")
        # A last batch of one image (per rank) is dropped: batch norm cannot train on it.
        self.steps_per_epoch = distributed.steps_per_epoch(
            n_train, cfg.batch_size, self.dist.world_size
        )
        self.scheduler = build_scheduler(cfg, self.optimizer, self.steps_per_epoch * cfg.epochs)
        # After the schedule (which wraps optimizer.step): Adam's kernels called directly.
        self.optimizer_step: Callable[[], object] = (
            DirectAdamStep(self.optimizer)
            if cfg.fast_step != "off" and DirectAdamStep.applies(self.optimizer)
            else self.optimizer.step
        )
        self.ema = WeightAverage(self.model, cfg.ema) if cfg.ema > 0 else None
        self.augment = _augmenter(cfg)
        self.generator = torch.Generator().manual_seed(cfg.seed)

        self.progress = Progress(epoch_generator_state=self.generator.get_state())
        self.restored_generator_state: torch.Tensor | None = None
        self.interrupt_requested = False
        self.stopped_at_boundary = False  # the interrupt was honoured between two steps

    def request_stop(self, reason: str) -> None:
        """Finish the run after the current epoch (for callbacks: a budget, a plateau)."""
        self.stop_reason = reason

    # -------------------------------------------------------------- checkpoints

    def _eval_model(self) -> nn.Module:
        return self.ema.model if self.ema is not None else self.model

    def _stateful_parts(self) -> dict[str, Stateful]:
        """Every part of training whose state a resumable checkpoint carries, beside the
        :class:`Progress`; each is listed here once, for saving and for restoring."""

        def put_scheduler(state: Any) -> None:
            if self.scheduler is not None and state is not None:
                self.scheduler.load_state_dict(state)

        def put_ema(state: Any) -> None:
            if self.ema is not None and state is not None:
                self.ema.load_state_dict(state)

        def put_generator(state: torch.Tensor) -> None:
            # Applied when the interrupted epoch's permutation has been drawn again.
            self.restored_generator_state = state

        def put_cuda_rng(states: list[torch.Tensor]) -> None:
            if self.device.type == "cuda" and states:
                torch.cuda.set_rng_state_all(states)

        on_cuda = self.device.type == "cuda"
        return {
            "optimizer": Stateful(self.optimizer.state_dict, self.optimizer.load_state_dict),
            "scheduler": Stateful(
                lambda: self.scheduler.state_dict() if self.scheduler is not None else None,
                put_scheduler,
            ),
            "ema": Stateful(
                lambda: self.ema.state_dict() if self.ema is not None else None, put_ema
            ),
            "generator_state": Stateful(self.generator.get_state, put_generator),
            "torch_rng_state": Stateful(torch.get_rng_state, torch.set_rng_state),
            "cuda_rng_states": Stateful(
                lambda: torch.cuda.get_rng_state_all() if on_cuda else [], put_cuda_rng
            ),
        }

    def _checkpoint(self, *, with_state: bool, metrics: dict[str, Any] | None) -> dict[str, Any]:
        state = save_state(self.progress, self._stateful_parts()) if with_state else None
        if state is not None:
            state["world_size"] = self.dist.world_size  # a record; resuming at another size works
            state["job"] = self.dist.job  # a restarted worker group continues only its own run
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

    def _write(self, write: Callable[[], object]) -> None:
        """Every file of the run is written through here: by rank 0 alone under torchrun."""
        if self.dist.is_main:
            write()

    def save_last(self, metrics: dict[str, Any] | None = None) -> None:
        self._write(
            lambda: save_checkpoint(
                self.run.last, self._checkpoint(with_state=True, metrics=metrics)
            )
        )

    def restore(self, ckpt: dict[str, Any]) -> None:
        """Continue from a resumable checkpoint written by :meth:`save_last`."""
        state = ckpt.get("training")
        if not state:
            raise ConfigError(f"{ckpt.get('path')}: holds no training state to resume from")
        self.model.load_state_dict(ckpt["state_dict"])
        try:
            self.progress = restore_state(state, self._stateful_parts())
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(
                f"{ckpt.get('path')}: training state is incomplete or damaged ({exc})"
            ) from None

    # -------------------------------------------------------------- training

    def _epoch_batches(self) -> tuple[torch.Tensor, torch.Tensor]:
        """This epoch's permuted images and labels (recreated identically on resume)."""
        if self.progress.epoch_generator_state is not None:
            self.generator.set_state(self.progress.epoch_generator_state)
        order = torch.randperm(len(self.train_split), generator=self.generator)
        order = order.to(self.device)
        return self.train_split.images[order], self.train_split.labels[order]

    def _train_epoch(self, epoch: int) -> tuple[float, float]:
        cfg = self.cfg
        model, optimizer, scheduler = self.train_model, self.optimizer, self.scheduler
        images, labels = self._epoch_batches()
        if self.progress.step_in_epoch and self.restored_generator_state is not None:
            # Resuming mid-epoch: the generator continues from where it was interrupted.
            self.generator.set_state(self.restored_generator_state)
        self.restored_generator_state = None
        model.train()
        check_every = 1 if self.device.type == "cpu" else 25
        loss_sum = torch.zeros((), device=self.device, dtype=torch.float64)
        correct = torch.zeros((), device=self.device, dtype=torch.int64)
        callbacks = self.callbacks
        start_step = self.progress.step_in_epoch
        try:
            for step in range(start_step, self.steps_per_epoch):
                if self.step_hook is not None:
                    try:
                        self.step_hook(epoch, step)
                    except KeyboardInterrupt:  # raised between two steps: a clean boundary
                        self.interrupt_requested = True
                if self.dist.agree_stop(self.interrupt_requested):  # every rank stops here
                    self.interrupt_requested = True
                    self.stopped_at_boundary = True
                    raise KeyboardInterrupt
                xb = images[step * cfg.batch_size : (step + 1) * cfg.batch_size]
                yb = labels[step * cfg.batch_size : (step + 1) * cfg.batch_size]
                n_batch = yb.shape[0]
                if self.augment is not None:
                    x01 = xb.to(torch.float32).unsqueeze(1).div_(255.0)
                    x = (self.augment(x01, self.generator) - self.mean) / self.std
                else:
                    x = normalize(xb, self.mean, self.std)
                # Under torchrun each rank takes its part of the (identically drawn) batch.
                x, yb = self.dist.shard(x, yb)
                if self.fast_step is not None:  # forward and backward: the gradients are set
                    logits, loss = self.fast_step(x, yb)
                    batch_loss_sum = loss * n_batch
                else:
                    logits = model(as_model_input(self.channels_last, x))
                    loss, batch_loss_sum = distributed.batch_loss(
                        self.dist, logits, yb, n_batch, cfg.label_smoothing
                    )
                if (step + 1) % check_every == 0 or step + 1 == self.steps_per_epoch:
                    value = loss.item()
                    # Agreed by every rank (each sees only its shard's loss), so none goes on
                    # alone into the next collective.
                    if self.dist.agree_stop(not math.isfinite(value)):
                        error = TrainingError(
                            f"loss became non-finite ({value} in this process) at epoch {epoch}, "
                            f"step {step + 1}; training stopped, the last good checkpoint is "
                            f"{self.run.last}"
                        )
                        error.shared_from_main = True  # type: ignore[attr-defined]
                        raise error
                if self.fast_step is None:
                    optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                self.optimizer_step()
                if scheduler is not None:
                    scheduler.step()
                if self.ema is not None:
                    self.ema.update(model)
                loss_sum += batch_loss_sum
                correct += (logits.detach().argmax(1) == yb).sum()
                self.progress.step_in_epoch = step + 1
                callbacks.on_step(self, epoch, step + 1, loss)
        except KeyboardInterrupt:
            if self.stopped_at_boundary:  # a stop every rank agreed on: totals can be summed
                self._fold_partial(loss_sum, correct, start_step)
            raise
        self._fold_partial(loss_sum, correct, start_step)
        seen = self.progress.partial["seen"]
        return self.progress.partial["loss_sum"] / max(seen, 1), self.progress.partial[
            "correct"
        ] / max(seen, 1)

    def _fold_partial(self, loss_sum: torch.Tensor, correct: torch.Tensor, start_step: int) -> None:
        """Add this stretch of steps to the epoch's running totals."""
        steps = self.progress.step_in_epoch - start_step
        seen = min(self.progress.step_in_epoch * self.cfg.batch_size, len(self.train_split)) - min(
            start_step * self.cfg.batch_size, len(self.train_split)
        )
        if steps > 0:
            loss_sum, correct = self.dist.sum_over_ranks(loss_sum, correct)
            self.progress.partial["loss_sum"] += float(loss_sum.item())
            self.progress.partial["correct"] += int(correct.item())
            self.progress.partial["seen"] += seen

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
        self._write(lambda: write_config(self.run, cfg.to_dict()))
        params = count_parameters(self.model)
        if self.progress.at_start:
            self.log(
                f"training {cfg.model} ({params:,} parameters) on {self.device.type}: "
                f"{len(self.train_split):,} train / {len(self.val_split):,} validation images, "
                f"{cfg.epochs} epochs of {self.steps_per_epoch} steps "
                f"(batch {self.dist.describe_batch(cfg.batch_size)})"
            )
        stopped_early = False
        try:
            with self._sigint_at_step_boundary():
                if self.progress.at_start:
                    self.save_last()  # a run killed in its first epoch can still be resumed
                self.callbacks.on_train_start(self)
                while self.progress.epochs_done < cfg.epochs and not stopped_early:
                    stopped_early = self._run_epoch()
                try:
                    metrics = self.finish(params)
                except KeyboardInterrupt:
                    raise TrainingInterrupted(
                        f"interrupted during the final evaluation; finish it with: "
                        f"mnist-classifier train --resume {self.run.root}"
                    ) from None
                self.callbacks.on_train_end(self, metrics)
                return metrics
        finally:
            self.callbacks.on_exit(self)

    @contextlib.contextmanager
    def _sigint_at_step_boundary(self) -> Iterator[None]:
        """Turn the first Ctrl-C or SIGTERM into a request honoured between two steps (a
        second one interrupts at once), so the saved state is always that of a whole step."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return

        def handler(signum: int, frame: Any) -> None:
            self.interrupt_requested = True
            # Under torchrun a Ctrl-C reaches a worker twice (from the terminal, then from
            # the launcher): it stays a request, and the launcher kills what does not stop.
            # In one process a second signal interrupts at once.
            if not distributed.launched_by_torchrun():
                for sig, before in previous.items():
                    signal.signal(sig, before)

        previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for sig, before in previous.items():
                signal.signal(sig, before)

    def _run_epoch(self) -> bool:
        """Train and validate one epoch, save checkpoints; True when early stopping triggers."""
        cfg = self.cfg
        stopped_early = False
        epoch = self.progress.epochs_done + 1
        started = time.perf_counter()
        self.callbacks.on_epoch_start(self, epoch)
        try:
            train_loss, train_acc = self._train_epoch(epoch)
        except KeyboardInterrupt:
            if not self.stopped_at_boundary:
                # Interrupted inside a step (a second Ctrl-C): that state is not a whole step,
                # so the last checkpoint written stays the one to resume from.
                raise
            self.progress.train_seconds += time.perf_counter() - started
            self.save_last()
            raise TrainingInterrupted(
                f"interrupted at epoch {epoch}, step {self.progress.step_in_epoch}; state saved to "
                f"{self.run.last}; continue with: mnist-classifier train --resume {self.run.root}"
            ) from None
        val_loss, val_acc, _ = distributed.evaluate_split(
            self.dist, self._eval_model(), self.val_split, self.mean, self.std, cfg.eval_batch_size
        )
        self.progress.train_seconds += time.perf_counter() - started
        lr = self.optimizer.param_groups[0]["lr"]
        row = {
            "epoch": epoch,
            "train_loss": round(train_loss, 6),
            "train_acc": round(train_acc, 6),
            "val_loss": round(val_loss, 6),
            "val_acc": round(val_acc, 6),
            "lr": lr,
            "seconds": round(self.progress.train_seconds, 3),
        }
        self.progress.history.append(row)
        self.progress.epochs_done = epoch
        self.progress.start_epoch(self.generator.get_state())
        improved = val_acc > self.progress.best["val_acc"] or (
            val_acc == self.progress.best["val_acc"] and val_loss < self.progress.best["val_loss"]
        )
        if improved:
            self.progress.best = {"val_acc": val_acc, "val_loss": val_loss, "epoch": epoch}
            best_metrics = {"val": {"accuracy": val_acc, "loss": val_loss}, "epoch": epoch}
            self._write(
                lambda: save_checkpoint(
                    self.run.best, self._checkpoint(with_state=False, metrics=best_metrics)
                )
            )
        if cfg.patience:
            if val_loss < self.progress.best_val_loss_for_patience:
                self.progress.best_val_loss_for_patience = val_loss
                self.progress.bad_epochs = 0
            else:
                self.progress.bad_epochs += 1
                stopped_early = self.progress.bad_epochs >= cfg.patience
        self.save_last()
        self.log(
            f"epoch {epoch:>3}/{cfg.epochs}  train loss {train_loss:.4f} acc {percent(train_acc)}  "
            f"val loss {val_loss:.4f} acc {percent(val_acc)}  "
            f"[{self.progress.train_seconds:.1f}s]{'  *' if improved else ''}"
        )
        if stopped_early:
            self.log(f"early stop: validation loss has not improved for {cfg.patience} epochs")
        self.callbacks.on_epoch_end(self, epoch, dict(row))
        if self.dist.agree_stop(self.stop_reason is not None) and not stopped_early:
            self.log(self.stop_reason or "stopped by a callback")
            stopped_early = True
        return stopped_early

    def _summary(self, params: int) -> dict[str, Any]:
        return {
            "model": self.cfg.model,
            "parameters": params,
            "epochs_run": self.progress.epochs_done,
            "best_epoch": int(self.progress.best["epoch"]),
            "train_seconds": round(self.progress.train_seconds, 3),
            "device": self.device.type,
            "threads": torch.get_num_threads(),
            "world_size": self.dist.world_size,
            "package_version": __version__,
        }

    def _finish_without_test(
        self, best: dict[str, Any], params: int, val_loss: float, val_lp: torch.Tensor
    ) -> dict[str, Any]:
        """The end of a run kept away from the test set: validation metrics in the checkpoints."""
        metrics = self._summary(params)
        metrics["val"] = split_metrics(
            self.val_split.labels.cpu().numpy(), val_lp.exp().numpy(), val_loss
        )
        best["metrics"] = metrics
        best.pop("path", None)
        self._write(lambda: save_checkpoint(self.run.best, best))
        self.save_last(metrics)
        self.log(
            f"validation accuracy {percent(metrics['val']['accuracy'])}  loss {val_loss:.4f}  "
            f"(best epoch {self.progress.best['epoch']}, {self.progress.train_seconds:.1f}s of "
            "training; the test set was not used)"
        )
        return metrics

    def finish(self, params: int) -> dict[str, Any]:
        """Evaluate the best checkpoint on validation and test; write metrics and predictions."""
        cfg = self.cfg
        started = time.perf_counter()
        best = self.dist.run_on_main(lambda: load_checkpoint(self.run.best))
        eval_model = create_model(cfg.model, **cfg.model_kwargs).to(self.device)
        eval_model.load_state_dict(best["state_dict"])
        prepare_for_cpu(eval_model)
        val_loss, _, val_lp = distributed.evaluate_split(
            self.dist, eval_model, self.val_split, self.mean, self.std, cfg.eval_batch_size, cfg.tta
        )
        if not self.evaluate_test:
            return self._finish_without_test(best, params, val_loss, val_lp)
        # The temperature, fitted on validation; the scores below are the calibrated ones.
        final = calibrate_final(
            self.dist,
            eval_model,
            self.mean,
            self.std,
            cfg.eval_batch_size,
            cfg.tta,
            (self.val_split, val_lp, val_loss),
            self.test_split,
        )
        test_probs = final.test_probs
        metrics: dict[str, Any] = {
            **self._summary(params),
            # The best checkpoint scored on validation and test once more, at the end.
            "final_eval_seconds": round(time.perf_counter() - started, 3),
            "test": final.test,
            "val": final.val,
            "temperature": final.temperature,
            "calibration": final.block,
        }
        set_calibration(best, final.temperature, **final.checkpoint_details)
        best["metrics"] = metrics
        best.pop("path", None)
        self._write(lambda: save_checkpoint(self.run.best, best))
        self.save_last(metrics)
        self._write(
            lambda: write_predictions(self.run, test_probs, self.test_split.labels.cpu().numpy())
        )
        self._write(lambda: write_metrics(self.run, metrics))
        self.log(calibration_summary(final.temperature, metrics))
        self.log(
            f"test accuracy {percent(metrics['test']['accuracy'])}  loss {metrics['test']['loss']:.4f}  "
            f"(best epoch {self.progress.best['epoch']}, validation {percent(metrics['val']['accuracy'])}, "
            f"{self.progress.train_seconds:.1f}s of training)"
        )
        return metrics
