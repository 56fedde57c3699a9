"""Fault drills: SIGTERM and SIGKILL at random points of a real training process, then resume
equal to an uninterrupted run; two trainings on one run folder; a full disk (a fake
``ENOSPC`` writer everywhere, and a real small tmpfs where this machine may mount one).

The training processes are tests/drill_child.py (two epochs of mlp-128 on 2,400 images).
"""

from __future__ import annotations

import errno
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import mnist_classifier
from drill_child import DRILL_CONFIG, drill_dataset
from mnist_classifier.errors import DiskFullError, RunFolderError, TrainingInterrupted
from mnist_classifier.models.checkpoint import load_checkpoint
from mnist_classifier.run_folder import RunFolder, lock_run_folder

CHILD = Path(__file__).with_name("drill_child.py")
STEPS_PER_EPOCH = 2400 // DRILL_CONFIG["batch_size"] + 1  # 38, the last batch partial


def child(spec: dict, *, wait: bool = True, timeout: float = 300):
    cmd = [
        sys.executable,
        str(CHILD),
        json.dumps({k: str(v) if isinstance(v, Path) else v for k, v in spec.items()}),
    ]
    if not wait:
        return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def straight(tmp_path_factory) -> Path:
    """The uninterrupted run every drill must end equal to."""
    out = tmp_path_factory.mktemp("straight") / "run"
    mnist_classifier.train(out=out, dataset=drill_dataset(), log=None, **DRILL_CONFIG)
    return out


def assert_same_weights(a: Path, b: Path) -> None:
    for which in ("best", "last"):
        wa = load_checkpoint(RunFolder(a).checkpoint(which))["state_dict"]
        wb = load_checkpoint(RunFolder(b).checkpoint(which))["state_dict"]
        assert wa.keys() == wb.keys()
        for key in wa:
            assert torch.equal(wa[key], wb[key]), (which, key)


def no_temporaries(run: Path) -> list[Path]:
    return [p for p in run.rglob("*") if p.name.endswith(".tmp")]


def resume_to_the_end(run: Path) -> None:
    """Resume (again, if a kill hit the resumed process too) until the run completes."""
    done = child({"out": run, "resume": True})
    assert done.returncode == 0, done.stderr
    assert (run / "metrics.json").is_file()


# The drill points are random, but drawn from a fixed seed so that a failure can be rerun.
_rng = random.Random(16)
_POINTS = [(epoch, _rng.randrange(STEPS_PER_EPOCH)) for epoch in (1, 2)]


@pytest.mark.slow
@pytest.mark.parametrize("at", _POINTS, ids=[f"epoch{e}-step{s}" for e, s in _POINTS])
def test_sigterm_saves_a_resumable_checkpoint_at_a_step_boundary(straight, tmp_path, at):
    run = tmp_path / "run"
    stopped = child({"out": run, "signal": "TERM", "at": list(at)})
    assert stopped.returncode == TrainingInterrupted.exit_code, stopped.stderr
    assert stopped.stderr.count("\n") == 1 and "--resume" in stopped.stderr
    state = load_checkpoint(RunFolder(run).last)["training"]
    assert (state["epochs_done"] + 1, state["step_in_epoch"]) == at
    assert not no_temporaries(run)
    resume_to_the_end(run)
    assert_same_weights(straight, run)


@pytest.mark.slow
@pytest.mark.parametrize("at", _POINTS[1:], ids=[f"epoch{e}-step{s}" for e, s in _POINTS[1:]])
def test_sigkill_at_a_step_then_resume_equals_uninterrupted(straight, tmp_path, at):
    run = tmp_path / "run"
    killed = child({"out": run, "signal": "KILL", "at": list(at)})
    assert killed.returncode == -signal.SIGKILL
    resume_to_the_end(run)
    assert_same_weights(straight, run)


@pytest.mark.slow
def test_sigkill_in_the_middle_of_a_save_leaves_a_temporary_that_resume_removes(straight, tmp_path):
    # Killed with best.pt's second version written but not yet renamed into place.
    target = ("best.pt", 2)
    run = tmp_path / "run"
    killed = child({"out": run, "kill_on_replace": list(target)})
    assert killed.returncode == -signal.SIGKILL
    stale = no_temporaries(run)
    assert [p.name.startswith(f".{target[0]}.") for p in stale] == [True]
    resume_to_the_end(run)
    assert not no_temporaries(run), "the stale temporary file was cleaned"
    assert_same_weights(straight, run)


@pytest.mark.slow
def test_sigterm_from_outside_at_a_random_moment(straight, tmp_path):
    # Whenever it lands (a step, a validation, a save, the final evaluation), the run
    # either finishes or stops resumable, and ends equal to the uninterrupted one.
    run = tmp_path / "run"
    proc = child({"out": run}, wait=False)
    deadline = time.monotonic() + 120
    while not RunFolder(run).last.exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(random.Random(7).uniform(0.0, 0.5))
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=300)
    if proc.returncode == -signal.SIGTERM:  # it came after training, as the process ended
        assert (run / "metrics.json").is_file()
    else:
        assert proc.returncode in (0, TrainingInterrupted.exit_code), err
    assert not no_temporaries(run)
    if proc.returncode == TrainingInterrupted.exit_code:  # stopped resumable: finish it
        resume_to_the_end(run)
    assert_same_weights(straight, run)


# ----------------------------------------------------------------- one training per folder


def test_a_held_run_folder_refuses_a_second_training_and_resume(small_mnist, tmp_path):
    run = RunFolder(tmp_path / "run")
    with lock_run_folder(run):
        with pytest.raises(
            RunFolderError, match="another training is using this run folder"
        ) as info:
            mnist_classifier.train(out=run.root, dataset=small_mnist, log=None, model="mlp-128")
        assert str(run.root) in str(info.value) and f"process {os.getpid()}" in str(info.value)
    # released: the folder can be taken again (it was left empty, so it was removed)
    with lock_run_folder(run):
        pass


@pytest.mark.slow
@pytest.mark.parametrize("second", ["train", "resume"])
def test_two_trainings_on_one_run_folder(tmp_path, second):
    run = tmp_path / "run"
    if second == "resume":  # a run to resume, stopped in its first epoch
        assert child({"out": run, "signal": "TERM", "at": [1, 5]}).returncode == 130
    first = child(
        {
            "out": run,
            "resume": second == "resume",
            "ready": tmp_path / "ready",
            "go": tmp_path / "go",
        },
        wait=False,
    )
    deadline = time.monotonic() + 120
    while not (tmp_path / "ready").exists() and time.monotonic() < deadline:
        assert first.poll() is None, first.communicate()
        time.sleep(0.02)
    other = child({"out": run, "resume": second == "resume"})
    (tmp_path / "go").touch()
    _, err = first.communicate(timeout=300)
    assert other.returncode == 1, other.stderr
    assert other.stderr.count("\n") == 1
    assert f"{run}: another training is using this run folder" in other.stderr
    assert first.returncode == 0, err
    assert (run / "metrics.json").is_file()


# ----------------------------------------------------------------- a full disk


def _full_disk(monkeypatch):
    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)


def _full_disk(monkeypatch, after: int = 0) -> None:
    """Every file write fails with ENOSPC (at its sync) once ``after`` syncs have passed."""
    real_fsync, calls = os.fsync, []

    def fsync(fd):
        calls.append(fd)
        if len(calls) > after:
            raise OSError(errno.ENOSPC, "No space left on device")
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)


def _writers(tmp_path, trained_run):
    """(name, destination, write) for every kind of file the package writes."""
    import numpy as np

    from mnist_classifier import run_folder
    from mnist_classifier.cli.predict import write_csv
    from mnist_classifier.data.idx import write_idx
    from mnist_classifier.evaluation.plots import new_figure, save_figure
    from mnist_classifier.inference.onnx import export_onnx, export_torchscript
    from mnist_classifier.inference.predictor import Prediction
    from mnist_classifier.models.checkpoint import save_checkpoint

    run = RunFolder(tmp_path / "run")
    ckpt = load_checkpoint(RunFolder(trained_run).best)
    ckpt.pop("path")
    probs = np.full((3, 10), 0.1, np.float32)
    ok = Prediction.failed("x.png", "unreadable")
    return [
        ("config", run.config, lambda: run_folder.write_config(run, {"a": 1})),
        ("history", run.history, lambda: run_folder.write_history(run, [])),
        ("metrics", run.metrics, lambda: run_folder.write_metrics(run, {"a": 1})),
        (
            "predictions",
            run.predictions,
            lambda: run_folder.write_predictions(run, probs, np.arange(3)),
        ),
        ("report", run.report, lambda: run_folder.write_report_text(run, "<html>")),
        ("checkpoint", run.best, lambda: save_checkpoint(run.best, ckpt)),
        ("plot", run.plots / "a.png", lambda: save_figure(new_figure(1, 1), run.plots / "a.png")),
        ("csv", tmp_path / "p.csv", lambda: write_csv(tmp_path / "p.csv", [ok])),
        ("idx", tmp_path / "x.idx", lambda: write_idx(tmp_path / "x.idx", np.zeros(3, np.uint8))),
        (
            "torchscript",
            tmp_path / "m.pt",
            lambda: export_torchscript(trained_run, tmp_path / "m.pt"),
        ),
        ("onnx", tmp_path / "m.onnx", lambda: export_onnx(trained_run, tmp_path / "m.onnx")),
    ]


WRITERS = [
    "config",
    "history",
    "metrics",
    "predictions",
    "report",
    "checkpoint",
    "plot",
    "csv",
    "idx",
]
EXPORTS = ["torchscript", "onnx"]  # an export takes seconds: slow


@pytest.mark.parametrize(
    "name", [*WRITERS, *(pytest.param(n, marks=pytest.mark.slow) for n in EXPORTS)]
)
def test_every_writer_on_a_full_disk_is_one_line_and_leaves_no_temporary(
    tmp_path, trained_run, monkeypatch, name
):
    (path, write) = next((p, w) for n, p, w in _writers(tmp_path, trained_run) if n == name)
    write()  # a good copy of the file first
    before = path.read_bytes()
    _full_disk(monkeypatch)
    with pytest.raises((DiskFullError, RunFolderError)) as info:
        write()
    message = str(info.value)
    assert "\n" not in message and str(path) in message and "no space left" in message
    assert path.read_bytes() == before, "the old file was kept"
    assert not no_temporaries(tmp_path)


def test_train_on_a_full_disk_keeps_its_checkpoints_and_says_so_in_one_line(
    tmp_path, monkeypatch, capsys
):
    from mnist_classifier.cli import main

    out = tmp_path / "run"
    # config.json and the first last.pt are written, then the disk is full at the first epoch.
    _full_disk(monkeypatch, after=2)
    code = main(
        [
            "train",
            "--model",
            "mlp-128",
            "--epochs",
            "2",
            "--limit-train",
            "300",
            "--out",
            str(out),
            "--no-report",
        ]
    )
    err = capsys.readouterr().err
    assert code == 1
    assert err.count("\n") == 1 and "no space left on device" in err and str(out) in err
    assert not no_temporaries(out)
    monkeypatch.undo()
    state = load_checkpoint(RunFolder(out).last)["training"]  # still a valid, resumable file
    assert state["epochs_done"] == 0


def _tmpfs_available(where: Path) -> bool:
    if shutil.which("unshare") is None:
        return False
    probe = subprocess.run(
        ["unshare", "--mount", "sh", "-c", f"mount -t tmpfs -o size=64k tmpfs '{where}'"],
        capture_output=True,
    )
    return probe.returncode == 0


@pytest.mark.slow
def test_a_real_full_file_system(tmp_path, trained_run):
    """A 900 kB tmpfs in a private mount namespace: training fills it at its first epoch's
    checkpoints, an export finds it full. Skipped where mounting is not allowed."""
    disk, copy = tmp_path / "disk", tmp_path / "copy"
    disk.mkdir()
    if not _tmpfs_available(disk):
        pytest.skip("cannot mount a tmpfs here (needs unshare and mount rights)")
    cli = f"'{sys.executable}' -m mnist_classifier"
    script = f"""
        set -u
        mount -t tmpfs -o size=900k tmpfs '{disk}'
        {cli} train --model mlp-128 --epochs 2 --limit-train 500 --out '{disk}/run' --no-report \
            >'{tmp_path}/train.out' 2>'{tmp_path}/train.err'; echo $? >'{tmp_path}/train.rc'
        {cli} export '{trained_run}' --format torchscript --out '{disk}/model.pt' \
            >'{tmp_path}/export.out' 2>'{tmp_path}/export.err'; echo $? >'{tmp_path}/export.rc'
        cp -a '{disk}' '{copy}'
    """
    subprocess.run(["unshare", "--mount", "sh", "-c", script], check=True, timeout=600)
    for step in ("train", "export"):
        err = (tmp_path / f"{step}.err").read_text()
        assert (tmp_path / f"{step}.rc").read_text().strip() == "1", err
        assert err.count("\n") == 1 and "no space left on device" in err, err
    assert not no_temporaries(copy)
    assert not (copy / "model.pt").exists()
    last = load_checkpoint(copy / "run" / "checkpoints" / "last.pt")  # still valid
    assert last["training"] is not None
