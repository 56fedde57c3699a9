"""The trainer's callback interface: order of the hooks, their arguments, stopping early,
abandoning a run from a callback, and runs kept away from the test set."""

import io

import pytest

import mnist_classifier
from mnist_classifier.run_folder import RunFolder, read_history
from mnist_classifier.training.callbacks import Callback, ProgressBar, StopAfter

QUIET = {"log": None, "threads": 2}


class Recorder(Callback):
    def __init__(self):
        self.events = []
        self.steps = 0

    def on_train_start(self, trainer):
        self.events.append("start")

    def on_epoch_start(self, trainer, epoch):
        self.events.append(f"epoch-start {epoch}")

    def on_step(self, trainer, epoch, step, loss):
        self.steps += 1
        assert loss.ndim == 0 and 1 <= step <= trainer.steps_per_epoch

    def on_epoch_end(self, trainer, epoch, row):
        # history.csv is already written when callbacks see the epoch.
        assert read_history(trainer.run.root)[-1]["epoch"] == epoch == row["epoch"]
        self.events.append(f"epoch-end {epoch} {row['val_acc']:.3f}")

    def on_train_end(self, trainer, metrics):
        self.events.append(f"end {metrics['epochs_run']}")

    def on_exit(self, trainer):
        self.events.append("exit")


def test_hooks_are_called_in_order_with_the_history_rows(small_mnist, tmp_path):
    rec = Recorder()
    run = mnist_classifier.train(
        out=tmp_path / "r", dataset=small_mnist, model="mlp-128", epochs=2, limit_train=500,
        batch_size=100, callbacks=[rec], **QUIET,
    )  # fmt: skip
    rows = run.history
    assert rec.events == [
        "start",
        "epoch-start 1",
        f"epoch-end 1 {rows[0]['val_acc']:.3f}",
        "epoch-start 2",
        f"epoch-end 2 {rows[1]['val_acc']:.3f}",
        "end 2",
        "exit",
    ]
    assert rec.steps == 2 * 5


def test_a_callback_stops_training_and_the_run_finishes(small_mnist, tmp_path):
    run = mnist_classifier.train(
        out=tmp_path / "r", dataset=small_mnist, model="mlp-128", epochs=5, limit_train=300,
        callbacks=[StopAfter(2)], **QUIET,
    )  # fmt: skip
    assert run.metrics["epochs_run"] == 2 and len(run.history) == 2
    assert run.metrics["test"]["accuracy"] > 0


class Abandon(Exception):
    pass


class AbandonAfterFirstEpoch(Callback):
    def on_epoch_end(self, trainer, epoch, row):
        raise Abandon


def test_an_exception_from_a_callback_leaves_a_resumable_run(small_mnist, tmp_path):
    rec = Recorder()
    with pytest.raises(Abandon):
        mnist_classifier.train(
            out=tmp_path / "r", dataset=small_mnist, model="mlp-128", epochs=2,
            limit_train=300, callbacks=[AbandonAfterFirstEpoch(), rec], **QUIET,
        )  # fmt: skip
    assert rec.events[-1] == "exit"  # on_exit runs even then
    assert len(read_history(tmp_path / "r")) == 1
    run = mnist_classifier.train(resume=tmp_path / "r", dataset=small_mnist, log=None)
    assert run.metrics["epochs_run"] == 2


def test_without_the_test_set_no_test_metrics_are_written(small_mnist, tmp_path):
    import torch

    run = mnist_classifier.train(
        out=tmp_path / "r", dataset=small_mnist, model="mlp-128", epochs=1, limit_train=300,
        evaluate_test=False, **QUIET,
    )  # fmt: skip
    folder = RunFolder(tmp_path / "r")
    assert not folder.metrics.exists() and not folder.predictions.exists()
    assert run.metrics == {} and len(run.history) == 1
    for path in (folder.best, folder.last):
        metrics = torch.load(path, weights_only=True)["metrics"]
        assert "test" not in metrics and metrics["val"]["accuracy"] > 0


class FakeTty(io.StringIO):
    def isatty(self):
        return True


def test_the_progress_bar_is_a_callback_drawing_on_a_terminal(small_mnist, tmp_path, monkeypatch):
    stream = FakeTty()
    from mnist_classifier import progress_bar
    from mnist_classifier.config import TrainConfig
    from mnist_classifier.training.loop import Trainer

    # tqdm redraws at most every 0.1 s; an epoch here can be quicker than that.
    new_bar = progress_bar.new_bar
    monkeypatch.setattr(progress_bar, "new_bar", lambda **kw: new_bar(mininterval=0, **kw))

    cfg = TrainConfig(model="mlp-128", epochs=1, limit_train=500, batch_size=10, threads=2)
    trainer = Trainer(cfg, tmp_path / "r", dataset=small_mnist, log=lambda _m: None, stream=stream)
    assert any(isinstance(cb, ProgressBar) for cb in trainer.callbacks.callbacks)
    trainer.fit()
    text = stream.getvalue()
    assert "epoch 1/1" in text and "/50 [" in text and "loss" in text
