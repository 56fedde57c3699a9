"""``train --tensorboard``: event files written through a trainer callback and read back with
TensorBoard's own event reader; without the extra, one line naming it."""

import builtins

import pytest

import mnist_classifier
from mnist_classifier.cli import main

pytest.importorskip("tensorboard")

import contextlib

from tensorboard.backend.event_processing.event_multiplexer import (
    EventMultiplexer,
)

from mnist_classifier.training.tensorboard import STEP_EVERY, TensorBoardLogger


def _read(log_dir):
    mux = EventMultiplexer(size_guidance={"images": 0, "scalars": 0, "tensors": 0})
    mux.AddRunsFromDirectory(str(log_dir))
    mux.Reload()
    return mux


@pytest.mark.slow
def test_event_files_hold_steps_epochs_hparams_and_the_confusion_matrix(small_mnist, tmp_path):
    run = mnist_classifier.train(
        out=tmp_path / "r", dataset=small_mnist, model="mlp", model_kwargs={"hidden": [32, 16]},
        epochs=2, limit_train=500, batch_size=25, callbacks=[TensorBoardLogger()], log=None,
        threads=1,
    )  # fmt: skip
    mux = _read(tmp_path / "r" / "tensorboard")
    acc = mux.GetAccumulator(".")
    tags = acc.Tags()
    steps = [e.step for e in acc.Scalars("step/loss")]
    assert steps == list(range(STEP_EVERY, 2 * 20 + 1, STEP_EVERY))  # 20 steps per epoch
    assert all(e.value > 0 for e in acc.Scalars("step/loss"))
    assert [e.value for e in acc.Scalars("step/lr")] == pytest.approx([1e-3] * len(steps))
    val_acc = [(e.step, e.value) for e in acc.Scalars("epoch/val_acc")]
    assert val_acc == [(r["epoch"], pytest.approx(r["val_acc"])) for r in run.history]
    assert "epoch/train_loss" in tags["scalars"]
    assert "confusion_matrix/test" in tags["images"]
    image = acc.Images("confusion_matrix/test")[0]
    assert image.width > 100 and image.height > 100
    # The hyper-parameters with the final metrics: TensorBoard's hparams plugin data.
    hparams = {}
    final = {}
    for name in mux.Runs():
        accumulator = mux.GetAccumulator(name)
        with contextlib.suppress(KeyError):
            hparams.update(accumulator.PluginTagToContent("hparams"))
        for tag in accumulator.Tags()["scalars"]:
            if tag.startswith("final/"):
                final[tag] = accumulator.Scalars(tag)[-1].value
    assert hparams  # experiment and session records
    session = b"".join(hparams.values())
    assert b"model.hidden" in session and b"lr" in session
    assert final["final/test_accuracy"] == pytest.approx(run.metrics["test"]["accuracy"])
    assert final["final/val_accuracy"] == pytest.approx(run.metrics["val"]["accuracy"])


@pytest.mark.slow
def test_cli_flag_writes_into_the_run_folder_or_a_given_dir(tmp_path):
    args = ["train", "--model", "mlp-128", "--epochs", "1", "--limit-train", "200", "--threads", "1", "--no-report"]  # fmt: skip
    assert main([*args, "--out", str(tmp_path / "a"), "--tensorboard"]) == 0
    assert list((tmp_path / "a" / "tensorboard").glob("events.out.tfevents.*"))
    assert main([*args, "--out", str(tmp_path / "b"), "--tensorboard", str(tmp_path / "tb")]) == 0
    assert list((tmp_path / "tb").glob("events.out.tfevents.*"))


def test_without_the_extra_the_flag_names_it_in_one_line(tmp_path, monkeypatch, capsys):
    real_import = builtins.__import__

    def no_tensorboard(name, *args, **kwargs):
        if name == "tensorboard" or name.startswith("tensorboard."):
            raise ImportError(f"No module named {name!r}")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_tensorboard)
    code = main(["train", "--epochs", "1", "--out", str(tmp_path / "r"), "--tensorboard"])
    err = capsys.readouterr().err.strip()
    assert code == 1 and len(err.splitlines()) == 1
    assert "pip install 'mnist-classifier[tensorboard]'" in err
    assert not (tmp_path / "r").exists()
