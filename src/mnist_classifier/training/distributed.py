"""Data-parallel training on ``torch.distributed``: one model trained by many processes.

Under ``torchrun`` (which sets ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``) every process is a
*rank*: it builds the same model from the same seed, draws the same permutation of the
training split, and trains on its own shard of each global batch inside
:class:`~torch.nn.parallel.DistributedDataParallel`, which averages the gradients. The loss
of a shard is scaled so that the averaged gradient is the gradient of the whole global
batch: a run at any world size follows the single-process run with the same
``batch_size`` (up to floating-point summation order).

:class:`DistContext` is the one place that knows whether the process is one of many.
Without ``torchrun`` it is disabled and every helper here returns its input untouched,
without importing or initialising anything: a single process trains exactly as it
always did. Rank 0 alone writes files and prints (``is_main``); the other ranks receive
what rank 0 read (a checkpoint to resume, the best weights) by broadcast, so they need no
access to the run folder.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import torch
import torch.nn.functional as F
from torch import nn

from ..config import TrainConfig
from ..data.batches import Split
from ..errors import ConfigError, MnistClassifierError

T = TypeVar("T")

# The backends a user may name with --dist-backend (torch also accepts "cpu:gloo,cuda:nccl").
BACKENDS = ("gloo", "nccl", "cpu:gloo,cuda:nccl")


def launched_by_torchrun() -> bool:
    """True inside a worker started by torchrun (or the elastic launch API)."""
    return "TORCHELASTIC_RUN_ID" in os.environ or (
        "LOCAL_RANK" in os.environ and "WORLD_SIZE" in os.environ
    )


def job_token() -> str:
    """Names the torchrun job this worker belongs to, unchanged when torchrun restarts the
    worker group: the rendezvous id, or (with the default id "none" of a single-machine
    torchrun) that id with the host and the launcher's process id. Empty without torchrun."""
    if not launched_by_torchrun():
        return ""
    run_id = os.environ.get("TORCHELASTIC_RUN_ID", "")
    if run_id in ("", "none"):
        import socket

        return f"{run_id or 'none'}/{socket.gethostname()}/{os.getppid()}"
    return run_id


def is_main_process() -> bool:
    """True unless this process is a rank other than 0 (read from torchrun's environment)."""
    return int(os.environ.get("RANK", "0")) == 0


@dataclass
class DistContext:
    """Where this process stands among the ranks of one training job."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    restart_count: int = 0  # torchrun's TORCHELASTIC_RESTART_COUNT: restarts of the worker group
    max_restarts: int = 0  # torchrun's TORCHELASTIC_MAX_RESTARTS
    job: str = ""  # which torchrun job this is, the same across its restarts (job_token)
    collective_device: str = "cpu"  # where small tensors go for collectives ("cuda" under nccl)

    @property
    def enabled(self) -> bool:
        """True when several processes train together (world size above 1)."""
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0: the one process that writes files and prints."""
        return self.rank == 0

    @classmethod
    def from_env(cls) -> DistContext:
        """The context torchrun describes in the environment (single process without it)."""
        env = os.environ
        try:
            ctx = cls(
                rank=int(env.get("RANK", "0")),
                world_size=int(env.get("WORLD_SIZE", "1")),
                local_rank=int(env.get("LOCAL_RANK", "0")),
                restart_count=int(env.get("TORCHELASTIC_RESTART_COUNT", "0")),
                max_restarts=int(env.get("TORCHELASTIC_MAX_RESTARTS", "0")),
                job=job_token(),
            )
        except ValueError as exc:
            raise ConfigError(f"torchrun environment is not understood ({exc})") from None
        if ctx.world_size > 1 and "MASTER_ADDR" not in env:
            raise ConfigError(
                f"WORLD_SIZE is {ctx.world_size} but this is not a torchrun worker (no "
                "MASTER_ADDR); unset WORLD_SIZE, or start with torchrun or train --nproc"
            )
        return ctx

    # ------------------------------------------------------------------ set-up

    def device(self, resolved: torch.device) -> torch.device:
        """This rank's device: ``cuda:LOCAL_RANK`` when training on CUDA, else ``resolved``."""
        if self.enabled and resolved.type == "cuda":
            return torch.device("cuda", self.local_rank)
        return resolved

    def describe_batch(self, batch_size: int) -> str:
        """The global batch as log lines show it: ``64``, or ``64 = 2 processes x 32``."""
        if not self.enabled:
            return str(batch_size)
        return f"{batch_size} = {self.world_size} processes x {batch_size // self.world_size}"

    def check_batch_size(self, batch_size: int) -> None:
        """Refuse a global batch that does not split evenly over the ranks."""
        check_batch_divides(batch_size, self.world_size)

    def wrap(self, model: nn.Module, device: torch.device, sync_bn: bool) -> nn.Module:
        """The module the training steps call: ``model`` itself in one process, else
        ``model`` inside DistributedDataParallel (batch norms synchronised with ``sync_bn``).
        ``model`` keeps its parameters, so checkpoints and the weight average read it as usual."""
        if not self.enabled:
            return model
        from torch.nn.parallel import DistributedDataParallel

        if sync_bn:
            if device.type != "cuda":
                raise ConfigError(
                    "--sync-bn needs CUDA devices (torch's SyncBatchNorm does not run on the CPU)"
                )
            model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
        ids = [device.index] if device.type == "cuda" else None
        return DistributedDataParallel(model, device_ids=ids)

    # ------------------------------------------------------------------ per step

    def shard(
        self, images: torch.Tensor, labels: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """This rank's contiguous part of a global batch (all of it in one process)."""
        if not self.enabled:
            return images, labels
        return (
            images.tensor_split(self.world_size)[self.rank],
            labels.tensor_split(self.world_size)[self.rank],
        )

    def agree_stop(self, local_stop: bool) -> bool:
        """True on every rank when any rank was asked to stop (Ctrl-C, SIGTERM): called by
        every rank before every step, so all stop at the same step and none waits alone
        in a collective. In one process, ``local_stop`` itself."""
        if not self.enabled:
            return local_stop
        import torch.distributed as dist

        flag = torch.tensor([int(local_stop)], dtype=torch.int32, device=self.collective_device)
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        return bool(flag.item())

    def sum_over_ranks(self, *values: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """The element-wise sums of ``values`` over all ranks (the values in one process)."""
        if not self.enabled:
            return values
        import torch.distributed as dist

        summed = []
        for value in values:
            total = value.detach().to(self.collective_device, copy=True)
            dist.all_reduce(total, op=dist.ReduceOp.SUM)
            summed.append(total.to(value.device))
        return tuple(summed)

    # ------------------------------------------------------------------ sharing

    def share_buffers(self, module: nn.Module) -> None:
        """Give every rank rank 0's buffers (batch-norm statistics, which each rank updates
        from its own shard) so that all ranks evaluate, and save, the same model."""
        if not self.enabled:
            return
        import torch.distributed as dist

        for buffer in module.buffers():
            dist.broadcast(buffer.data, src=0)

    def run_on_main(self, fn: Callable[[], T]) -> T:
        """``fn()`` computed by rank 0 and handed to every rank (checks of the run folder,
        a checkpoint read from it). An error rank 0 meets is raised on every rank, marked
        ``shared_from_main`` so that only rank 0 reports it."""
        if not self.enabled:
            return fn()
        import torch.distributed as dist

        payload: list[Any] = [None]
        failure: BaseException | None = None
        if self.is_main:
            try:
                payload[0] = ("ok", fn())
            except MnistClassifierError as exc:  # rank 0 reports it; the others exit with it
                failure, payload[0] = exc, ("error", (str(exc), exc.exit_code))
            except Exception as exc:  # unforeseen: still no rank may wait for an answer
                failure, payload[0] = exc, ("error", (f"{type(exc).__name__}: {exc}", 1))
        dist.broadcast_object_list(payload, src=0)
        kind, value = payload[0]
        if kind == "error":
            if failure is not None:
                raise failure
            message, exit_code = value
            error = MnistClassifierError(message)
            error.exit_code = exit_code
            error.shared_from_main = True  # type: ignore[attr-defined]
            raise error
        return value

    def barrier(self) -> None:
        """Wait until every rank gets here."""
        if self.enabled:
            import torch.distributed as dist

            dist.barrier()


def check_world(cfg: TrainConfig, world_size: int) -> None:
    """Refuse, in one line, a config that ``world_size`` processes cannot train: a global
    batch that does not divide, or ``sync_bn`` off CUDA."""
    check_batch_divides(cfg.batch_size, world_size)
    if world_size > 1 and cfg.sync_bn:
        from ..runtime import resolve_device

        if resolve_device(cfg.device).type != "cuda":
            raise ConfigError(
                "--sync-bn needs CUDA devices (torch's SyncBatchNorm does not run on the CPU)"
            )


def check_batch_divides(batch_size: int, world_size: int) -> None:
    """Refuse a global batch of ``batch_size`` that ``world_size`` ranks cannot share evenly."""
    if world_size > 1 and batch_size % world_size:
        raise ConfigError(
            f"--batch-size {batch_size} is the global batch and must divide evenly over "
            f"{world_size} processes (per process: batch / world size); choose a multiple "
            f"of {world_size}"
        )


def steps_per_epoch(n_train: int, batch_size: int, world_size: int) -> int:
    """Steps of one epoch: a last partial batch is dropped when it cannot give every rank
    two images (batch norm cannot train on one); in one process, a last batch of one."""
    full, rest = divmod(n_train, batch_size)
    return full + (1 if rest >= 2 * world_size else 0)


def batch_loss(
    ctx: DistContext,
    logits: torch.Tensor,
    labels: torch.Tensor,
    global_count: int,
    label_smoothing: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(loss to back-propagate, this rank's summed loss for the epoch's totals).

    In one process the loss is the batch mean, as always. On ``world_size`` ranks a
    shard's summed loss is scaled by ``world_size / global_count``: DDP averages the ranks'
    gradients, so the step follows the mean loss of the whole global batch, even when the
    last batch of an epoch splits unevenly."""
    if not ctx.enabled:
        loss = F.cross_entropy(logits, labels, label_smoothing=label_smoothing)
        return loss, loss.detach() * labels.shape[0]
    summed = F.cross_entropy(logits, labels, reduction="sum", label_smoothing=label_smoothing)
    return summed * (ctx.world_size / global_count), summed.detach()


def evaluate_split(
    ctx: DistContext,
    model: nn.Module,
    split: Split,
    mean: float,
    std: float,
    batch_size: int,
    tta: bool = False,
    temperature: float = 1.0,
) -> tuple[float, float, torch.Tensor]:
    """(mean cross-entropy, accuracy, log-probabilities) of ``model`` on ``split`` (logits
    divided by ``temperature``): in one
    process :func:`~mnist_classifier.evaluation.scoring.evaluate_split` itself; on several
    ranks the evaluation batches are dealt out (rank r scores batches r, r + world, ...),
    the log-probabilities assembled on every rank, and the scores computed from them as
    one process does, so the metrics are the single-process metrics exactly."""
    from ..evaluation import scoring

    if not ctx.enabled:
        return scoring.evaluate_split(model, split, mean, std, batch_size, tta, temperature)
    import torch.distributed as dist

    from ..models.deployed import DeployedModel

    ctx.share_buffers(model)
    deployed = DeployedModel(model, mean, std, tta, temperature).to(split.images.device)
    n = len(split)
    # Each row is filled by one rank and zero on the others, so the sum is exact.
    log_probs = torch.zeros(n, 10, dtype=torch.float32, device=ctx.collective_device)
    starts = range(ctx.rank * batch_size, n, ctx.world_size * batch_size)
    for start in starts:
        part = scoring.predict_log_probs(
            deployed, split.images[start : start + batch_size], batch_size=batch_size
        )
        log_probs[start : start + part.shape[0]] = part.to(log_probs.device)
    dist.all_reduce(log_probs, op=dist.ReduceOp.SUM)
    log_probs = log_probs.cpu()
    loss, acc = scoring.loss_and_accuracy(log_probs, split.labels.cpu())
    return loss, acc, log_probs


@contextlib.contextmanager
def process_group(ctx: DistContext, backend: str | None, device_kind: str) -> Iterator[None]:
    """Join torchrun's process group for the duration (nothing at all in one process).

    ``backend`` None chooses gloo, plus nccl for CUDA tensors when training on CUDA.
    ``device_kind`` is the device the user asked for (``auto``, ``cuda``, ``cpu``, ...)."""
    if not ctx.enabled:
        yield
        return
    import torch.distributed as dist

    on_cuda = torch.cuda.is_available() and device_kind in ("auto", "cuda")
    if backend is None:
        backend = "cpu:gloo,cuda:nccl" if on_cuda else "gloo"
    if backend not in BACKENDS:
        raise ConfigError(
            f"unknown --dist-backend {backend!r}; choose one of: {', '.join(BACKENDS)}"
        )
    if "nccl" in backend and not torch.cuda.is_available():
        raise ConfigError(f"--dist-backend {backend} needs CUDA, and no CUDA device is available")
    if on_cuda and ctx.local_rank < torch.cuda.device_count():
        torch.cuda.set_device(ctx.local_rank)
    store = _attempt_store(ctx)
    if store is None:
        dist.init_process_group(backend=backend)
    else:
        dist.init_process_group(
            backend=backend, store=store, rank=ctx.rank, world_size=ctx.world_size
        )
    # nccl reduces CUDA tensors only; gloo (and the CPU half of a mixed backend) CPU tensors.
    ctx.collective_device = "cuda" if backend == "nccl" else "cpu"
    try:
        yield
    finally:
        dist.destroy_process_group()


def _attempt_store(ctx: DistContext) -> Any:
    """The key-value store of this worker group, when torchrun shares its own store with the
    workers (its default): the keys of earlier worker groups stay in that store, and a group
    restarted after a failure would read the dead group's addresses and fail to connect
    (pytorch/pytorch#135712), so each attempt gets a prefix of its own. None otherwise
    (``TORCH_DISABLE_SHARE_RDZV_TCP_STORE=1``, or a launcher without a shared store)."""
    if os.environ.get("TORCHELASTIC_USE_AGENT_STORE") != str(True):
        return None
    import torch.distributed as dist

    shared = dist.TCPStore(
        os.environ["MASTER_ADDR"],
        int(os.environ["MASTER_PORT"]),
        ctx.world_size,
        is_master=False,
    )
    return dist.PrefixStore(f"mnist-classifier/attempt-{ctx.restart_count}", shared)


def launch_local(
    nproc: int, argv: list[str], *, max_restarts: int = 0, threads_per_process: int | None = None
) -> int:
    """Run ``mnist-classifier ARGV`` as ``nproc`` processes on this machine through torch's
    elastic launcher (what ``torchrun --standalone --nproc-per-node N`` does); return the
    exit code (rank 0's when a worker failed: the workers have reported their errors)."""
    import sys
    import uuid

    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    if nproc < 1:
        raise ConfigError(f"--nproc must be at least 1, got {nproc}")
    # Rank 0 of each worker group hosts a fresh store (see _attempt_store for the reason).
    os.environ.setdefault("TORCH_DISABLE_SHARE_RDZV_TCP_STORE", "1")
    if "OMP_NUM_THREADS" not in os.environ:
        # As torchrun does: the processes share the cores instead of each taking all of them.
        cores = os.cpu_count() or 1
        os.environ["OMP_NUM_THREADS"] = str(threads_per_process or max(1, cores // nproc))
    config = LaunchConfig(
        min_nodes=1,
        max_nodes=1,
        nproc_per_node=nproc,
        run_id=str(uuid.uuid4()),
        rdzv_backend="c10d",
        rdzv_endpoint="localhost:0",
        max_restarts=max_restarts,
        monitor_interval=0.2,
    )
    try:
        elastic_launch(config, sys.executable)("-m", "mnist_classifier", *argv)
    except ChildFailedError as exc:
        failures = exc.failures
        first = failures.get(0) or next(iter(failures.values()))
        return int(first.exitcode) if first.exitcode and first.exitcode > 0 else 1
    except SignalException:
        return 130
    return 0
