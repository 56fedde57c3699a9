"""``tune``: search spaces, a study end to end, exported configs, parallel workers on the
embedded storage and on PostgreSQL, a worker killed mid-trial, pruning, and trials kept
away from the test set."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

optuna = pytest.importorskip("optuna")

import mnist_classifier  # noqa: E402
from mnist_classifier.config import TrainConfig  # noqa: E402
from mnist_classifier.errors import ConfigError  # noqa: E402
from mnist_classifier.run_folder import RunFolder, read_history  # noqa: E402
from mnist_classifier.training.run import Run  # noqa: E402
from mnist_classifier.tuning.space import load_space, parse_space  # noqa: E402
from mnist_classifier.tuning.storage import open_storage, storage_url  # noqa: E402
from mnist_classifier.tuning.study import (  # noqa: E402
    export_best,
    format_params,
    leaderboard_lines,
    study_spec,
    summarize,
    to_toml,
    tune,
)
from mnist_classifier.tuning.worker import load_study  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SMALL_SPACE = """
[fixed]
model = "mlp"
[params."model.hidden"]
type = "layers"
depth = [1, 2]
widths = [16, 32]
[params.lr]
type = "float"
low = 1e-3
high = 1e-2
log = true
"""


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO / "src") + os.pathsep + env.get("PYTHONPATH", "")
    return env


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "mnist_classifier", "tune", *args]


def _check_trial_folder_has_no_test_results(run_dir: Path) -> None:
    import torch

    folder = RunFolder(run_dir)
    assert not folder.metrics.exists() and not folder.predictions.exists(), run_dir
    for path in (folder.best, folder.last):
        if path.exists():
            metrics = torch.load(path, weights_only=True).get("metrics") or {}
            assert "test" not in metrics, path


# ------------------------------------------------------------------ spaces (fast)


def test_presets_load_and_draw_settings_for_a_trial():
    space = load_space("mlp-architecture")
    study = optuna.create_study(direction="maximize")
    trial = study.ask()
    values, model_args = space.suggest(trial)
    assert values["model"] == "mlp" and 1e-4 <= values["lr"] <= 1e-2
    assert 1 <= len(model_args["hidden"]) <= 3 and 0 <= model_args["dropout"] <= 0.5
    assert trial.params["model.hidden.depth"] == len(model_args["hidden"])
    cfg = TrainConfig(**{**values, "model_kwargs": model_args}).validate()
    assert cfg.model_kwargs["hidden"] == model_args["hidden"]
    values, model_args = load_space("cnn").suggest(optuna.create_study().ask())
    assert values["model"] == "cnn" and model_args["width"] in (8, 16, 24, 32)


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        ("[params.lrate]\ntype='float'\nlow=1\nhigh=2", "not a config key"),
        ("[params.lr]\ntype='uniform'", "type must be one of"),
        ("[params.lr]\ntype='float'\nlow=2\nhigh=1", "low <= high"),
        ("[params.lr]\ntype='float'\nlow=0\nhigh=1\nlog=true", "log scale needs low > 0"),
        ("[params.batch_size]\ntype='categorical'\nchoices=[]", "choices must be"),
        ("[params.'model.hidden']\ntype='layers'\ndepth=[0,2]\nwidths=[8]", "depth must be"),
        ("[params.'model.hidden']\ntype='layers'\ndepth=[1,2]\nwidths=[8, -1]", "widths"),
        ("[params.lr]\ntype='float'\nlow=1\nhigh=2\nscale=3", "unknown field 'scale'"),
        ("[fixed]\nlr=1e-3", "[params] is empty"),
        (
            "[fixed]\nwings=2\n[params.lr]\ntype='float'\nlow=1\nhigh=2",
            "unknown config key 'wings'",
        ),
        ("[search]\n", "unknown table 'search'"),
    ],
)
def test_bad_spaces_are_one_line_errors_naming_the_key(tmp_path, toml, message):
    path = tmp_path / "space.toml"
    path.write_text(toml)
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")) as info:
        load_space(path)
    assert "\n" not in str(info.value)


def test_missing_space_file_and_bad_cli_values(tmp_path, capsys):
    from mnist_classifier.cli import main

    assert (
        main(["tune", "--study", "s", "--space", str(tmp_path / "no.toml"), "--out", str(tmp_path)])
        == 2
    )
    assert "search space not found" in capsys.readouterr().err
    assert main(["tune", "--study", "s", "--jobs", "0", "--out", str(tmp_path / "o")]) == 2
    assert "--jobs must be at least 1" in capsys.readouterr().err
    assert main(["tune", "--study", "s", "--storage", "nonsense", "--out", str(tmp_path)]) == 2
    assert "expected a database URL" in capsys.readouterr().err


def test_storage_urls_and_exported_toml(tmp_path):
    assert storage_url(None, tmp_path).startswith("sqlite:///") and storage_url(
        None, tmp_path
    ).endswith("/study.db")
    assert storage_url("postgresql://u:p@h/db", tmp_path) == "postgresql+psycopg://u:p@h/db"
    values = {
        "model": "mlp",
        "lr": 1e-05,
        "tta": False,
        "data_dir": None,
        "model_kwargs": {"hidden": [64, 32]},
    }
    import tomllib

    assert tomllib.loads(to_toml(values)) == {k: v for k, v in values.items() if v is not None}
    assert (
        format_params(
            {"model.hidden.depth": 2, "model.hidden.1": 64, "model.hidden.2": 32, "lr": 0.00123}
        )
        == "hidden=64,32 lr=0.00123"
    )
    parse_space(
        {"params": {"model.width": {"type": "int", "low": 8, "high": 32, "step": 8}}}, source="t"
    )


# ------------------------------------------------------------------ studies (real training)


@pytest.mark.slow
def test_a_study_end_to_end_and_the_exported_best_reproduces_its_trial(small_mnist, tmp_path):
    space = tmp_path / "space.toml"
    space.write_text(SMALL_SPACE)
    base = TrainConfig(epochs=1, limit_train=1000, threads=1)
    summary = tune(
        "e2e", base_config=base, space=str(space), n_trials=3, out=tmp_path / "study",
        dataset=small_mnist, log=lambda _m: None, pruner="none",
    )  # fmt: skip
    assert summary.counts == {"COMPLETE": 3}
    assert [r.number for r in summary.rows] != [] and summary.best is not None
    values = [r.value for r in summary.rows]
    assert values == sorted(values, reverse=True) and summary.best.value == values[0]
    assert 0 < summary.best_test["accuracy"] <= 1  # the best trial, scored on test once
    for row in summary.rows:
        run_dir = Path(row.run_dir)
        assert run_dir.parent == (tmp_path / "study").resolve()
        assert run_dir.name == f"trial-{row.number:04d}"
        run = Run.load(run_dir)  # an ordinary run folder: config, history, checkpoints
        assert run.config.model == "mlp" and len(run.history) == 1
        assert run.history[0]["val_acc"] == pytest.approx(row.value, abs=1e-6)
        _check_trial_folder_has_no_test_results(run_dir)
    lines = leaderboard_lines(summary)
    assert lines[0].split()[:3] == ["trial", "val", "acc"] and len(lines) == 4
    best_toml = export_best(summary, tmp_path / "best.toml")
    again = mnist_classifier.train(best_toml, out=tmp_path / "again", dataset=small_mnist, log=None)
    assert again.history[-1]["val_acc"] == pytest.approx(summary.best.value, abs=1e-6)
    assert again.metrics["val"]["accuracy"] == pytest.approx(summary.best.value, abs=1e-9)
    # Running the command again continues the study: two more trials, numbered on.
    more = tune(
        "e2e", base_config=base, space=str(space), n_trials=5, out=tmp_path / "study",
        dataset=small_mnist, log=lambda _m: None, evaluate_best=False,
    )  # fmt: skip
    assert sorted(r.number for r in more.rows) == [0, 1, 2, 3, 4]


@pytest.mark.slow
def test_the_report_page_is_self_contained(small_mnist, tmp_path):
    from mnist_classifier.tuning.report import write_study_report

    space = tmp_path / "space.toml"
    space.write_text(SMALL_SPACE)
    summary = tune(
        "rep", base_config=TrainConfig(epochs=1, limit_train=500, threads=1), space=str(space),
        n_trials=3, out=tmp_path / "s", dataset=small_mnist, log=lambda _m: None,
        evaluate_best=False,
    )  # fmt: skip
    study = optuna.load_study(study_name="rep", storage=open_storage(summary.storage))
    page = write_study_report(study, summary, study_dir=tmp_path / "s").read_text()
    assert page.count("data:image/png;base64,") >= 4
    assert "Parameter importances" in page and "Leaderboard" in page
    assert "http://" not in page and "https://" not in page and "<script" not in page


@pytest.mark.slow
def test_pruning_stops_a_clearly_worse_trial(small_mnist, tmp_path):
    space = tmp_path / "space.toml"
    space.write_text(
        '[fixed]\nmodel = "mlp-128"\n[params.lr]\ntype="float"\nlow=1e-7\nhigh=1e-2\nlog=true\n'
    )
    base = TrainConfig(epochs=3, limit_train=1000, threads=1)
    spec = study_spec("prune", base_config=base, space=str(space), n_trials=4, out=tmp_path / "s")
    study = load_study(spec)
    for lr in (3e-3, 4e-3, 5e-3, 1e-7):  # three good trials, then one that cannot learn
        study.enqueue_trial({"lr": lr})
    summary = tune(
        "prune", base_config=base, space=str(space), n_trials=4, out=tmp_path / "s",
        dataset=small_mnist, log=lambda _m: None, pruner="median", evaluate_best=False,
    )  # fmt: skip
    by_lr = {r.params["lr"]: r for r in summary.rows}
    bad = by_lr[1e-7]
    assert bad.state == "PRUNED" and bad.epochs == 1
    assert len(read_history(bad.run_dir)) == 1
    assert all(by_lr[lr].state == "COMPLETE" for lr in (3e-3, 4e-3, 5e-3))
    assert summary.pruned_seconds_saved > 0
    for row in summary.rows:
        _check_trial_folder_has_no_test_results(Path(row.run_dir))


def _check_no_lost_or_duplicated_trials(study, n_trials: int, jobs: int, out: Path) -> None:
    trials = study.get_trials()
    finished = [t for t in trials if t.state.name in ("COMPLETE", "PRUNED")]
    assert n_trials <= len(finished) <= n_trials + jobs - 1
    assert len({t.number for t in trials}) == len(trials)
    run_dirs = [t.user_attrs["run_dir"] for t in finished]
    assert len(set(run_dirs)) == len(run_dirs)
    assert sorted(p.name for p in out.glob("trial-*")) == sorted(Path(d).name for d in run_dirs)
    for d in run_dirs:
        assert len(read_history(d)) == 1
        _check_trial_folder_has_no_test_results(Path(d))
    assert len({t.user_attrs["worker"] for t in finished}) == jobs


def _two_workers(tmp_path: Path, storage: str | None, n_trials: int = 8) -> tuple[str, Path]:
    space = tmp_path / "space.toml"
    space.write_text(SMALL_SPACE)
    out = tmp_path / "study"
    args = [
        "--study", "pair", "--space", str(space), "--n-trials", str(n_trials), "--jobs", "2",
        "--epochs", "1", "--limit-train", "1000", "--val-fraction", "0.05", "--out", str(out),
        "--quiet-trials",
    ]  # fmt: skip
    if storage:
        args += ["--storage", storage]
    done = subprocess.run(
        _cli(*args), capture_output=True, text=True, env=_env(), timeout=600, cwd=tmp_path
    )
    text = done.stdout + done.stderr
    assert done.returncode == 0, text
    assert "database is locked" not in text and "Traceback" not in text, text
    return text, out


@pytest.mark.slow
def test_two_worker_processes_share_the_embedded_storage(tmp_path):
    n_trials = 8
    text, out = _two_workers(tmp_path, None, n_trials)
    study = optuna.load_study(study_name="pair", storage=open_storage(storage_url(None, out)))
    _check_no_lost_or_duplicated_trials(study, n_trials, 2, out)
    assert "best: trial" in text and "test accuracy" in text


def _in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() == "true"


@pytest.fixture
def postgres_url():
    """A fresh database on the local PostgreSQL server (dropped afterwards); skipped when no
    server answers, except on CI (CI=true), where .ci/run starts one and its absence fails."""
    psycopg = pytest.importorskip("psycopg")
    admin = os.environ.get(
        "MNIST_CLASSIFIER_TEST_POSTGRES", "postgresql:///postgres?host=/var/run/postgresql"
    )
    try:
        conn = psycopg.connect(
            admin.replace("postgresql+psycopg://", "postgresql://"),
            autocommit=True,
            connect_timeout=5,
        )
    except psycopg.Error as exc:
        reason = f"no PostgreSQL server at {admin} ({str(exc).strip().splitlines()[0]})"
        if _in_ci():
            pytest.fail(f"{reason} (CI=true: .ci/run starts one)", pytrace=False)
        pytest.skip(reason)
    name = f"mnist_tune_{uuid.uuid4().hex[:10]}"
    with conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    base, _, query = admin.partition("?")
    url = base.rsplit("/", 1)[0] + "/" + name + (f"?{query}" if query else "")
    try:
        yield url
    finally:
        with psycopg.connect(
            admin.replace("postgresql+psycopg://", "postgresql://"), autocommit=True
        ) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.mark.slow
def test_two_worker_processes_share_a_postgresql_study(tmp_path, postgres_url):
    n_trials = 6
    _text, out = _two_workers(tmp_path, postgres_url, n_trials)
    assert not (out / "study.db").exists()  # the study lives in the server
    study = optuna.load_study(
        study_name="pair", storage=open_storage(storage_url(postgres_url, out))
    )
    _check_no_lost_or_duplicated_trials(study, n_trials, 2, out)


@pytest.mark.slow
def test_a_worker_killed_mid_trial_is_retried_and_resumes_its_run_folder(tmp_path):
    space = tmp_path / "space.toml"
    space.write_text('[fixed]\nmodel = "mlp-128"\n[params.lr]\ntype="float"\nlow=1e-3\nhigh=3e-3\n')
    out = tmp_path / "study"
    args = _cli(
        "--study", "kill", "--space", str(space), "--n-trials", "2", "--epochs", "3",
        "--limit-train", "6000", "--heartbeat", "1", "--pruner", "none", "--out", str(out),
        "--threads", "1", "--val-fraction", "0.05",
    )  # fmt: skip
    first = subprocess.Popen(
        args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=_env(), cwd=tmp_path,
        start_new_session=True,
    )  # fmt: skip
    history = out / "trial-0000" / "history.csv"
    deadline = time.time() + 300
    try:
        while time.time() < deadline and first.poll() is None:
            if history.is_file() and len(history.read_text().splitlines()) >= 2:
                break  # epoch 1 of trial 0 is done and checkpointed: kill the worker now
            time.sleep(0.05)
        assert first.poll() is None, first.stdout.read().decode() if first.stdout else ""
        os.killpg(first.pid, signal.SIGKILL)
    finally:
        first.wait(timeout=60)
    killed_epochs = len(read_history(out / "trial-0000"))
    assert killed_epochs < 3
    # The same command again continues the study: trial 0's heartbeat has stopped, so it is
    # failed and retried, and the retry resumes trial-0000 from its last checkpoint.
    done = subprocess.run(
        args, capture_output=True, text=True, env=_env(), timeout=600, cwd=tmp_path
    )
    text = done.stdout + done.stderr
    assert done.returncode == 0, text
    study = optuna.load_study(study_name="kill", storage=open_storage(storage_url(None, out)))
    states = {t.number: t.state.name for t in study.trials}
    assert states[0] == "FAIL"
    retries = [t for t in study.trials if t.system_attrs.get("retry_history") == [0]]
    assert len(retries) == 1 and retries[0].state.name == "COMPLETE"
    retry = retries[0]
    assert retry.user_attrs["resumed"] is True
    assert Path(retry.user_attrs["run_dir"]).name == "trial-0000"
    assert retry.params == study.trials[0].params
    rows = read_history(out / "trial-0000")
    assert [r["epoch"] for r in rows] == [1, 2, 3]
    assert f"trial {retry.number}: resuming" in text
    finished = [t for t in study.trials if t.state.name == "COMPLETE"]
    assert len(finished) == 2
    summary = summarize("kill", storage_url=storage_url(None, out))
    assert any(r.retry_of == 0 for r in summary.rows)
    for t in finished:
        _check_trial_folder_has_no_test_results(Path(t.user_attrs["run_dir"]))


def test_report_and_export_of_a_missing_study_are_one_line_errors(tmp_path, capsys):
    from mnist_classifier.cli import main

    code = main(["tune", "--study", "nothing", "--report", "--out", str(tmp_path / "none")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "no study database here" in err and len(err.splitlines()) == 1
