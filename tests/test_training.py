import json

import numpy as np
import pytest
import torch

import mnist_classifier
from mnist_classifier.errors import ConfigError, TrainingError, TrainingInterrupted
from mnist_classifier.models.checkpoint import load_checkpoint
from mnist_classifier.models.registry import list_models

QUIET = {"log": None, "threads": 2}


@pytest.mark.slow
@pytest.mark.parametrize("name", list_models())
def test_each_model_learns_a_small_real_subset(name, small_mnist, tmp_path):
    # ~190 steps on 2,400 real images; chance is 10%.
    run = mnist_classifier.train(
        out=tmp_path / name, dataset=small_mnist, model=name, epochs=3, batch_size=32,
        schedule="onecycle", lr=3e-3 if name.startswith("cnn") else 1e-3, **QUIET,
    )  # fmt: skip
    assert run.metrics["test"]["accuracy"] > 0.75, run.metrics["test"]["accuracy"]


def test_run_folder_contract(small_mnist, tmp_path):
    run = mnist_classifier.train(
        out=tmp_path / "run", dataset=small_mnist, model="mlp-128", epochs=2, **QUIET
    )
    root = tmp_path / "run"
    for name in ("config.json", "history.csv", "metrics.json", "predictions.npz"):
        assert (root / name).is_file(), name
    metrics = json.loads((root / "metrics.json").read_text())
    test = metrics["test"]
    assert 0.0 <= test["accuracy"] <= 1.0 and test["loss"] > 0
    assert np.array(test["confusion_matrix"]).sum() == 1000
    assert set(test["per_class"]) == {str(d) for d in range(10)}
    assert metrics["val"]["confusion_matrix"] and metrics["train_seconds"] > 0
    assert len(run.history) == 2 and run.history[-1]["epoch"] == 2
    preds = np.load(root / "predictions.npz")
    assert preds["probs"].shape == (1000, 10) and preds["labels"].shape == (1000,)
    np.testing.assert_allclose(preds["probs"].sum(1), 1.0, atol=1e-4)
    # The checkpoint alone is enough to predict.
    ckpt = torch.load(run.best_checkpoint, weights_only=True)
    assert ckpt["model"]["name"] == "mlp-128"
    assert ckpt["normalization"] == {"mean": small_mnist.mean, "std": small_mnist.std}
    assert ckpt["metrics"]["test"]["accuracy"] == test["accuracy"]
    assert ckpt["package_version"] == mnist_classifier.__version__
    assert ckpt["config"]["epochs"] == 2


def test_evaluate_matches_training_metrics(small_mnist, tmp_path, monkeypatch):
    run = mnist_classifier.train(
        out=tmp_path / "run", dataset=small_mnist, model="mlp-128", epochs=1, **QUIET
    )
    # evaluate() loads the dataset named by the config: point it at the same small subset.
    monkeypatch.setattr(
        "mnist_classifier.evaluation.scoring.load_dataset", lambda data_dir=None: small_mnist
    )
    result = mnist_classifier.evaluate(run.best_checkpoint)
    assert result["accuracy"] == pytest.approx(run.metrics["test"]["accuracy"])
    assert result["loss"] == pytest.approx(run.metrics["test"]["loss"], rel=1e-5)


def _final_weights(path):
    return load_checkpoint(path)["state_dict"]


@pytest.mark.parametrize("interrupt_at", [(1, 40), (2, 0)], ids=["mid-epoch", "epoch-boundary"])
def test_resume_after_interruption_equals_uninterrupted_run(small_mnist, tmp_path, interrupt_at):
    cfg = dict(
        dataset=small_mnist, model="mlp-128-64-dropout", epochs=2, schedule="onecycle",
        ema=0.9, label_smoothing=0.1, augment="light", **QUIET,
    )  # fmt: skip
    straight = mnist_classifier.train(out=tmp_path / "straight", **cfg)

    def interrupt(epoch, step):
        if (epoch, step) == interrupt_at:
            raise KeyboardInterrupt

    with pytest.raises(TrainingInterrupted, match="--resume"):
        mnist_classifier.train(out=tmp_path / "resumed", step_hook=interrupt, **cfg)
    state = load_checkpoint(tmp_path / "resumed" / "checkpoints" / "last.pt")["training"]
    assert (state["epochs_done"] + 1, state["step_in_epoch"]) == interrupt_at
    assert not (tmp_path / "resumed" / "metrics.json").exists()

    resumed = mnist_classifier.train(resume=tmp_path / "resumed", dataset=small_mnist, log=None)
    for which in ("last", "best"):
        a = _final_weights(tmp_path / "straight" / "checkpoints" / f"{which}.pt")
        b = _final_weights(tmp_path / "resumed" / "checkpoints" / f"{which}.pt")
        assert a.keys() == b.keys()
        for key in a:
            assert torch.equal(a[key], b[key]), (which, key)

    def without_time(history):
        return [{k: v for k, v in row.items() if k != "seconds"} for row in history]

    assert without_time(resumed.history) == without_time(straight.history)
    assert resumed.metrics["test"]["accuracy"] == straight.metrics["test"]["accuracy"]


def test_resume_refuses_finished_runs_and_changed_settings(small_mnist, tmp_path):
    mnist_classifier.train(
        out=tmp_path / "r", dataset=small_mnist, model="mlp-128", epochs=1, **QUIET
    )
    with pytest.raises(ConfigError, match="already complete"):
        mnist_classifier.train(resume=tmp_path / "r", dataset=small_mnist, log=None)
    with pytest.raises(ConfigError, match="nothing to resume"):
        mnist_classifier.train(resume=tmp_path / "missing", log=None)
    with pytest.raises(ConfigError, match="already holds a run"):
        mnist_classifier.train(out=tmp_path / "r", dataset=small_mnist, **QUIET)


def test_non_finite_loss_stops_with_epoch_and_step(small_mnist, tmp_path):
    with pytest.raises(TrainingError, match=r"epoch 1, step \d+"):
        mnist_classifier.train(
            out=tmp_path / "r", dataset=small_mnist, model="mlp-128", epochs=1,
            optimizer="sgd", lr=1e12, **QUIET,
        )  # fmt: skip
    assert not (tmp_path / "r" / "metrics.json").exists()


def test_early_stopping(small_mnist, tmp_path):
    # 300 training images overfit within a few epochs, so the validation loss turns up.
    run = mnist_classifier.train(
        out=tmp_path / "r", dataset=small_mnist, model="mlp-128", epochs=30, patience=1,
        limit_train=300, **QUIET,
    )  # fmt: skip
    assert run.metrics["epochs_run"] < 30
    assert len(run.history) == run.metrics["epochs_run"]


def test_written_files_get_the_usual_permissions(tmp_path):
    import os

    from mnist_classifier.fileio import atomic_write_text

    atomic_write_text(tmp_path / "a.txt", "x")
    mask = os.umask(0)
    os.umask(mask)
    assert (tmp_path / "a.txt").stat().st_mode & 0o777 == 0o666 & ~mask


def test_a_run_killed_in_its_first_epoch_can_be_resumed(small_mnist, tmp_path):
    # A kill gives no chance to save: only what fit() wrote before the first step remains.
    state = {}

    def kill(epoch, step):
        if step == 10:
            state["last"] = (tmp_path / "r" / "checkpoints" / "last.pt").read_bytes()
            raise SystemExit("killed")

    with pytest.raises(SystemExit):
        mnist_classifier.train(
            out=tmp_path / "r", dataset=small_mnist, model="mlp-128", epochs=1, step_hook=kill,
            **QUIET,
        )  # fmt: skip
    (tmp_path / "r" / "checkpoints" / "last.pt").write_bytes(state["last"])
    run = mnist_classifier.train(resume=tmp_path / "r", dataset=small_mnist, log=None)
    assert run.metrics["epochs_run"] == 1


def test_batch_norm_model_with_a_lone_last_sample(small_mnist, tmp_path):
    # 2,400 training images at batch 7 leave one image over: it is dropped, not a crash.
    run = mnist_classifier.train(
        out=tmp_path / "r", dataset=small_mnist, model="mlp-128-64-bn", epochs=1, batch_size=7,
        **QUIET,
    )  # fmt: skip
    assert run.metrics["epochs_run"] == 1


def test_recipe_model_arguments_do_not_follow_another_model():
    from mnist_classifier.training.api import make_config

    assert make_config(recipe="cnn-best").model_kwargs == {"width": 24}
    assert make_config(recipe="cnn-best", model="mlp-128").model_kwargs == {}
    with pytest.raises(ConfigError, match=r"dropout must be a number in \[0, 1\)"):
        make_config(model="mlp-128-64-dropout", model_kwargs={"dropout": 2.0})


def test_a_second_signal_inside_a_step_keeps_the_last_whole_step_checkpoint(small_mnist, tmp_path):
    """The first Ctrl-C is a request for the next step boundary; a second one, arriving inside
    a step, interrupts at once, and what it leaves behind is never saved as a resumable state."""
    import os
    import signal

    from mnist_classifier.config import TrainConfig
    from mnist_classifier.training.loop import Trainer

    cfg = TrainConfig(model="mlp-128", epochs=1, limit_train=640, batch_size=32, threads=1)
    trainer = Trainer(cfg, tmp_path / "r", dataset=small_mnist, log=lambda _m: None)
    step = trainer.optimizer.step
    calls = {"n": 0}

    def step_then_two_signals(*args, **kwargs):
        result = step(*args, **kwargs)
        calls["n"] += 1
        if calls["n"] == 4:  # inside step 4, after its update: both signals at once
            os.kill(os.getpid(), signal.SIGINT)
            os.kill(os.getpid(), signal.SIGINT)
        return result

    trainer.optimizer.step = step_then_two_signals
    with pytest.raises(KeyboardInterrupt):
        trainer.fit()
    state = load_checkpoint(tmp_path / "r" / "checkpoints" / "last.pt")["training"]
    # Only the state written before training started: nothing claims step 3 or 4 is whole.
    assert state["step_in_epoch"] == 0 and state["epochs_done"] == 0
