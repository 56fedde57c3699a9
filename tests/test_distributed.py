"""Data-parallel training under torchrun: gloo on loopback, world size 2, small real data.

Every run here trains the same short job (a dropout-free MLP on 1,024 images, 3 epochs of 16
steps of a global batch of 64), so each distributed run can be compared with the
single-process run and with the uninterrupted world-2 run.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

import mnist_classifier
from mnist_classifier.cli import main as cli_main
from mnist_classifier.data.batches import Split, train_val_split
from mnist_classifier.evaluation.metrics import split_metrics
from mnist_classifier.evaluation.scoring import evaluate_split
from mnist_classifier.models.checkpoint import load_checkpoint
from mnist_classifier.models.registry import create_model
from mnist_classifier.training.calibrate import calibrate_final
from mnist_classifier.training.distributed import DistContext

pytestmark = pytest.mark.slow

WORKER = Path(__file__).with_name("distributed_worker.py")
TIMEOUT = 420  # seconds for one torchrun job on a loaded machine; a hang fails the test
JOB = {"model": "mlp-128", "epochs": 3, "limit_train": 1024, "batch_size": 64, "threads": 1}
JOB_ARGS = [
    "train", "--model", "mlp-128", "--epochs", "3", "--limit-train", "1024",
    "--batch-size", "64", "--threads", "1", "--no-report",
]  # fmt: skip


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def torchrun(*launcher: str) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", *launcher]


def run_job(
    cmd: list[str], audit: Path | None = None, fault: str | None = None
) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, OMP_NUM_THREADS="1", OMP_WAIT_POLICY="PASSIVE")
    env.pop("DIST_FAULT", None)
    if audit is not None:
        audit.mkdir(parents=True, exist_ok=True)
        env["DIST_AUDIT_DIR"] = str(audit)
    if fault is not None:
        env["DIST_FAULT"] = fault
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=TIMEOUT)


def standalone(nproc: int, *args: str, max_restarts: int = 0) -> list[str]:
    return torchrun(
        "--standalone", f"--nproc-per-node={nproc}", f"--max-restarts={max_restarts}",
        "--monitor-interval=0.2", str(WORKER), *args,
    )  # fmt: skip


def weights(run: Path, which: str = "last") -> dict[str, torch.Tensor]:
    return load_checkpoint(run / "checkpoints" / f"{which}.pt")["state_dict"]


def max_difference(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    assert a.keys() == b.keys()
    return max(float((a[k].double() - b[k].double()).abs().max()) for k in a)


def files_in(run: Path) -> set[str]:
    return {str(p.relative_to(run)) for p in run.rglob("*") if p.is_file()}


def without_time(history: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: v for k, v in row.items() if k != "seconds"} for row in history]


@pytest.fixture(scope="module")
def single(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The job in one process, no torchrun."""
    out = tmp_path_factory.mktemp("single") / "run"
    mnist_classifier.train(out=out, log=None, **JOB)
    return out


@pytest.fixture(scope="module")
def world2(
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[Path, Path, subprocess.CompletedProcess[str]]:
    """The job on two processes under torchrun: (run folder, audit folder, the finished job)."""
    root = tmp_path_factory.mktemp("world2")
    done = run_job(standalone(2, *JOB_ARGS, "--out", str(root / "run")), audit=root / "audit")
    assert done.returncode == 0, done.stderr[-3000:]
    return root / "run", root / "audit", done


def test_world_two_trains_the_single_process_model(single, world2):
    run, _, done = world2
    for which in ("last", "best"):
        assert max_difference(weights(run, which), weights(single, which)) < 1e-5
    two, one = mnist_classifier.Run.load(run), mnist_classifier.Run.load(single)
    assert [r["val_acc"] for r in two.history] == [r["val_acc"] for r in one.history]
    for a, b in zip(two.history, one.history, strict=True):
        assert a["train_loss"] == pytest.approx(b["train_loss"], abs=1e-5)
        assert a["val_loss"] == pytest.approx(b["val_loss"], abs=1e-5)
    for split in ("val", "test"):
        assert two.metrics[split]["accuracy"] == one.metrics[split]["accuracy"]
        assert two.metrics[split]["confusion_matrix"] == one.metrics[split]["confusion_matrix"]
    assert two.metrics["world_size"] == 2 and one.metrics["world_size"] == 1
    assert load_checkpoint(run / "checkpoints" / "last.pt")["training"]["world_size"] == 2
    # Log lines are printed once, by rank 0.
    assert done.stdout.count("training mlp-128") == 1
    assert done.stdout.count("epoch   3/3") == 1
    assert "= 2 processes x 32" in done.stdout


def test_sharded_evaluation_equals_one_process_exactly(world2, mnist):
    """The validation and test metrics a DDP run stores are what one process computes from
    its best checkpoint, to the last bit."""
    run, _, _ = world2
    best = load_checkpoint(run / "checkpoints" / "best.pt")
    model = create_model("mlp-128")
    model.load_state_dict(best["state_dict"])
    _, val = train_val_split(mnist.train_images, mnist.train_labels, 0.2, 0)
    loss, _, log_probs = evaluate_split(model, val, mnist.mean, mnist.std, 1000)
    stored = json.loads((run / "metrics.json").read_text())
    one_process = split_metrics(val.labels.numpy(), log_probs.exp().numpy(), loss)
    assert stored["val"]["loss_uncalibrated"] == one_process["loss"]
    assert stored["val"]["confusion_matrix"] == one_process["confusion_matrix"]
    # The temperature and the calibrated scores: what one process fits and computes.
    test = Split(mnist.test_images, mnist.test_labels)
    final = calibrate_final(
        DistContext(), model, mnist.mean, mnist.std, 1000, False, (val, log_probs, loss), test
    )
    assert stored["temperature"] == final.temperature
    assert stored["val"] == json.loads(json.dumps(final.val))
    assert stored["test"] == json.loads(json.dumps(final.test))
    # `evaluate` and `predict` load the checkpoint without torch.distributed.
    result = mnist_classifier.evaluate(run)
    assert result["loss"] == stored["test"]["loss"]
    assert result["accuracy"] == stored["test"]["accuracy"]
    assert not torch.distributed.is_initialized()
    predictor = mnist_classifier.load_predictor(run, device="cpu")
    probs = predictor.predict_mnist(mnist.test_images[:50].numpy())
    assert (probs.argmax(1) == best_labels(run, 50)).all()


def best_labels(run: Path, n: int) -> np.ndarray:
    with np.load(run / "predictions.npz") as data:
        return data["probs"][:n].argmax(1)


def test_evaluate_command_reads_a_ddp_checkpoint(world2, capsys):
    run, _, _ = world2
    assert cli_main(["evaluate", str(run), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["accuracy"] > 0.7


def test_only_rank_zero_writes_and_the_folder_is_the_usual_one(single, world2):
    run, audit, _ = world2
    writes = {p.name: json.loads(p.read_text()) for p in audit.glob("rank-*.json")}
    assert set(writes) == {"rank-0-restart-0.json", "rank-1-restart-0.json"}
    inside = str(run.resolve())

    def in_run(paths: list[str]) -> list[str]:
        return [p for p in paths if os.path.realpath(p).startswith(inside)]

    assert in_run(writes["rank-1-restart-0.json"]) == []
    assert in_run(writes["rank-0-restart-0.json"])  # the probe does see rank 0's writes
    assert files_in(run) == files_in(single)
    mnist_classifier.Run.load(run)  # every file passes the checked readers


def test_a_killed_worker_is_restarted_and_the_run_ends_as_if_uninterrupted(world2, tmp_path):
    reference, _, _ = world2
    out = tmp_path / "run"
    done = run_job(
        standalone(2, *JOB_ARGS, "--out", str(out), max_restarts=1),
        audit=tmp_path / "audit",
        fault="2:6:1:KILL",  # rank 1 dies before step 6 of epoch 2
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "restart 1 of the worker group: resuming" in done.stdout
    assert (tmp_path / "audit" / "rank-1-restart-1.json").exists()  # a new worker group ran
    for which in ("last", "best"):
        assert max_difference(weights(out, which), weights(reference, which)) == 0.0
    a, b = mnist_classifier.Run.load(out), mnist_classifier.Run.load(reference)
    assert without_time(a.history) == without_time(b.history)
    assert a.metrics["test"]["accuracy"] == b.metrics["test"]["accuracy"]


def test_sigterm_on_one_rank_stops_all_at_one_step_and_resume_finishes(world2, tmp_path):
    reference, _, _ = world2
    out = tmp_path / "run"
    done = run_job(standalone(2, *JOB_ARGS, "--out", str(out)), fault="2:5:1:TERM")
    assert done.returncode != 0  # the job was interrupted
    assert "interrupted at epoch 2, step 5" in done.stderr
    state = load_checkpoint(out / "checkpoints" / "last.pt")["training"]
    # Rank 0 was never signalled, yet saved the state of the step rank 1 stopped at.
    assert (state["epochs_done"], state["step_in_epoch"]) == (1, 5)
    assert not (out / "metrics.json").exists()
    # A checkpoint of 2 processes resumes in one: the global batch is the same.
    alone = tmp_path / "alone"
    shutil.copytree(out, alone)
    mnist_classifier.train(resume=alone, log=None)
    for which in ("last", "best"):
        assert max_difference(weights(alone, which), weights(reference, which)) < 1e-5
    # Resumed through the one-machine launcher (torch's elastic launch API).
    resumed = run_job([sys.executable, "-m", "mnist_classifier", "train", "--nproc", "2",
                       "--resume", str(out), "--no-report"])  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert resumed.stdout.count("resuming") == 1
    for which in ("last", "best"):
        assert max_difference(weights(out, which), weights(reference, which)) == 0.0


def test_a_restarted_group_does_not_take_over_a_run_it_did_not_start(tmp_path):
    out = tmp_path / "run"
    first = run_job(standalone(2, *JOB_ARGS, "--out", str(out)), fault="2:5:1:TERM")
    assert first.returncode != 0 and "interrupted at epoch 2, step 5" in first.stderr
    before = (out / "checkpoints" / "last.pt").read_bytes()
    # Another job on that folder is refused; torchrun restarts it, and the restart must be
    # refused too instead of quietly continuing the first job's run.
    second = run_job(standalone(2, *JOB_ARGS, "--out", str(out), max_restarts=1))
    assert second.returncode != 0
    assert "already holds a run" in second.stderr
    assert "resuming" not in second.stdout
    assert (out / "checkpoints" / "last.pt").read_bytes() == before


def test_two_nodes_on_loopback_train_one_model(world2, tmp_path):
    reference, _, _ = world2
    port = free_port()
    out = tmp_path / "run"

    def node() -> list[str]:
        return torchrun(
            "--nnodes=2", "--nproc-per-node=1", "--rdzv-backend=c10d",
            f"--rdzv-endpoint=127.0.0.1:{port}", "--rdzv-id=two-nodes", "--monitor-interval=0.2",
            str(WORKER), *JOB_ARGS, "--out", str(out),
        )  # fmt: skip

    env = dict(os.environ, OMP_NUM_THREADS="1", OMP_WAIT_POLICY="PASSIVE")
    nodes = [
        subprocess.Popen(node(), env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    outputs = []
    try:
        for proc in nodes:
            outputs.append(proc.communicate(timeout=TIMEOUT))
    finally:
        for proc in nodes:
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
                proc.wait()
    assert [p.returncode for p in nodes] == [0, 0], [e[-2000:] for _, e in outputs]
    stdout = "".join(o for o, _ in outputs)
    assert stdout.count("training mlp-128") == 1  # one job, one rank 0
    assert max_difference(weights(out), weights(reference)) < 1e-6


def test_a_global_batch_that_does_not_divide_is_refused_in_one_line(tmp_path):
    done = run_job([sys.executable, "-m", "mnist_classifier", "train", "--nproc", "2",
                    "--batch-size", "33", "--out", str(tmp_path / "run")])  # fmt: skip
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "--batch-size 33" in lines[0] and "2 processes" in lines[0]
    assert not (tmp_path / "run").exists()


def test_sync_bn_off_cuda_is_refused_in_one_line(tmp_path):
    done = run_job([sys.executable, "-m", "mnist_classifier", "train", "--nproc", "2",
                    "--sync-bn", "--device", "cpu", "--out", str(tmp_path / "run")])  # fmt: skip
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "--sync-bn needs CUDA" in lines[0]
