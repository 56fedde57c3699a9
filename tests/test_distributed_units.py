"""The distributed helpers in one process: pass-throughs, the global-batch rules."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from mnist_classifier.errors import ConfigError
from mnist_classifier.training.distributed import (
    DistContext,
    batch_loss,
    check_batch_divides,
    steps_per_epoch,
)


def test_without_torchrun_the_context_is_one_process(monkeypatch):
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "TORCHELASTIC_RESTART_COUNT"):
        monkeypatch.delenv(name, raising=False)
    ctx = DistContext.from_env()
    assert (ctx.enabled, ctx.is_main, ctx.world_size) == (False, True, 1)
    x, y = torch.randn(6, 1, 28, 28), torch.arange(6)
    assert ctx.shard(x, y) == (x, y)
    assert ctx.agree_stop(True) is True and ctx.agree_stop(False) is False
    assert ctx.run_on_main(lambda: 7) == 7


def test_torchrun_environment_is_read(monkeypatch):
    env = {"RANK": "3", "WORLD_SIZE": "4", "LOCAL_RANK": "1", "TORCHELASTIC_RESTART_COUNT": "2"}
    env["MASTER_ADDR"] = "127.0.0.1"
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    ctx = DistContext.from_env()
    assert (ctx.rank, ctx.world_size, ctx.local_rank, ctx.restart_count) == (3, 4, 1, 2)
    assert ctx.enabled and not ctx.is_main
    x, y = torch.arange(8 * 4).reshape(8, 4), torch.arange(8)
    xs, ys = ctx.shard(x, y)
    assert ys.tolist() == [6, 7] and torch.equal(xs, x[6:8])


@pytest.mark.parametrize("n", [2, 63, 64, 65, 66, 1000, 1001])
@pytest.mark.parametrize("batch", [1, 2, 32, 64])
def test_one_process_keeps_its_steps_per_epoch(n, batch):
    # The rule before data-parallel training: only a last batch of one image is dropped.
    before = n // batch if n % batch == 1 else -(-n // batch)
    assert steps_per_epoch(n, batch, 1) == before


def test_a_last_batch_too_small_for_every_rank_is_dropped():
    assert steps_per_epoch(100, 32, 2) == 4  # 4 left: 2 per rank
    assert steps_per_epoch(99, 32, 2) == 3  # 3 left: a rank would get one
    assert steps_per_epoch(96, 32, 4) == 3


def test_the_global_batch_must_divide_over_the_ranks():
    check_batch_divides(64, 2)
    check_batch_divides(33, 1)
    with pytest.raises(ConfigError, match=r"--batch-size 33 .* 2 processes"):
        check_batch_divides(33, 2)


def test_one_process_loss_is_the_batch_mean_as_before():
    logits, labels = torch.randn(10, 10), torch.randint(0, 10, (10,))
    loss, summed = batch_loss(DistContext(), logits, labels, 10, 0.1)
    assert torch.equal(loss, F.cross_entropy(logits, labels, label_smoothing=0.1))
    assert torch.allclose(summed, loss * 10)


def test_a_shard_loss_is_scaled_to_the_global_batch():
    logits, labels = torch.randn(10, 10), torch.randint(0, 10, (10,))
    mean = F.cross_entropy(logits, labels)
    # Two ranks, shards of 4 and 6 images: the average of their losses is the global mean.
    parts = [
        batch_loss(DistContext(rank=r, world_size=2), lg, lb, 10, 0.0)[0]
        for r, (lg, lb) in enumerate(((logits[:4], labels[:4]), (logits[4:], labels[4:])))
    ]
    assert torch.allclose((parts[0] + parts[1]) / 2, mean)


def test_a_world_size_without_torchrun_is_one_line(monkeypatch):
    from mnist_classifier.errors import ConfigError
    from mnist_classifier.training.distributed import DistContext

    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.delenv("MASTER_ADDR", raising=False)
    with pytest.raises(ConfigError, match="not a torchrun worker"):
        DistContext.from_env()


def test_max_restarts_without_nproc_is_refused(tmp_path, capsys):
    from mnist_classifier.cli import main

    assert main(["train", "--max-restarts", "1", "--out", str(tmp_path / "r")]) == 2
    assert "--max-restarts needs --nproc" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()
