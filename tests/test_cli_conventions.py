"""Command-line conventions: JSON outputs, -q, progress switches, completion, exit codes."""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from mnist_classifier import progress_bar
from mnist_classifier.cli import COMMAND_MODULES, build_parser, main
from mnist_classifier.cli.completion import completion_script
from mnist_classifier.training.progress import EpochProgress


class Tty(io.StringIO):
    """A stream that says it is a terminal."""

    def isatty(self) -> bool:
        return True


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture
def tiny_data(make_idx_dataset) -> Path:
    """A generated MNIST-format dataset small enough to train on in a moment."""
    return make_idx_dataset(n_train=80, n_test=20)


def train_args(out: Path, data: Path, *extra: str) -> list[str]:
    return [
        "train",
        "--model",
        "mlp-128",
        "--epochs",
        "1",
        "--batch-size",
        "8",
        "--data-dir",
        str(data),
        "--out",
        str(out),
        "--no-report",
        *extra,
    ]


# ---------------------------------------------------------------------------- exit codes


def test_exit_codes_are_documented_once_in_help(capsys) -> None:
    code, out, _ = run_cli(capsys, "--help")
    assert code == 0
    assert out.count("exit codes:") == 1
    for line in ("0    success", "1    an error", "2    a usage error", "130  interrupted"):
        assert line in out, line
    code, out, _ = run_cli(capsys, "predict", "--help")
    assert code == 0 and "exit codes:" not in out  # once, at the top level


# ---------------------------------------------------------------------------- JSON outputs


def test_predict_json_is_one_object_per_image(trained_run: Path, mnist, tmp_path, capsys) -> None:
    images = []
    for i in range(3):
        path = tmp_path / f"d{i}.png"
        Image.fromarray(mnist.test_images[i].numpy()).save(path)
        images.append(str(path))
    missing = str(tmp_path / "missing.png")
    code, out, err = run_cli(
        capsys, "predict", str(trained_run), *images, missing, "--json", "--top-k", "2"
    )
    assert code == 1  # one input failed
    records = [json.loads(line) for line in out.splitlines()]
    assert [r["name"] for r in records] == [*images, missing]
    for record, label in zip(records[:3], mnist.test_labels[:3].tolist(), strict=True):
        assert record["error"] is None
        assert record["digit"] == label
        assert abs(sum(record["probabilities"]) - 1) < 1e-4
        assert record["top_k"][0]["digit"] == label and len(record["top_k"]) == 2
        assert record["confidence"] == max(record["probabilities"])
    assert records[3]["digit"] is None and "no such file" in records[3]["error"]
    assert "4 images" in err  # the summary still goes to stderr


def test_predict_quiet_prints_only_results_and_errors(trained_run: Path, mnist, tmp_path, capsys):
    path = tmp_path / "d.png"
    Image.fromarray(mnist.test_images[0].numpy()).save(path)
    missing = str(tmp_path / "missing.png")
    code, out, err = run_cli(capsys, "predict", str(trained_run), str(path), missing, "-q")
    assert code == 1
    assert len(out.splitlines()) == 1 and str(path) in out
    assert err.splitlines() == [f"error: {missing}: no such file or folder"]


def test_models_json_lists_every_registered_model(capsys) -> None:
    from mnist_classifier.models.registry import count_parameters, create_model, list_models

    code, out, _ = run_cli(capsys, "models", "--json")
    assert code == 0
    rows = json.loads(out)
    assert [r["name"] for r in rows] == list_models()
    for row in rows:
        assert row["parameters"] == count_parameters(create_model(row["name"]))
        assert row["description"] and row["provider"] is None


def test_recipes_json_carries_each_recipes_settings(capsys) -> None:
    from mnist_classifier.training.recipes import RECIPES

    code, out, _ = run_cli(capsys, "recipes", "--json")
    assert code == 0
    rows = json.loads(out)
    assert {r["name"]: (r["description"], r["settings"]) for r in rows} == {
        name: (description, settings) for name, (description, settings) in RECIPES.items()
    }


def test_train_json_summary_is_all_of_stdout(tiny_data: Path, tmp_path, capsys) -> None:
    out_dir = tmp_path / "run"
    code, out, err = run_cli(capsys, *train_args(out_dir, tiny_data, "--json"))
    assert code == 0, err
    summary = json.loads(out)  # nothing but the JSON on stdout
    metrics = json.loads((out_dir / "metrics.json").read_text())
    assert summary["run"] == str(out_dir)
    assert Path(summary["best_checkpoint"]).is_file()
    assert summary["report"] is None  # --no-report
    assert summary["test"]["accuracy"] == metrics["test"]["accuracy"]
    assert summary["val"]["loss"] == metrics["val"]["loss"]
    assert summary["epochs_run"] == 1 and summary["model"] == "mlp-128"
    assert "epoch   1/1" in err  # the per-epoch lines moved to stderr


def test_train_ends_with_where_the_time_went(tiny_data: Path, tmp_path, capsys) -> None:
    out_dir = tmp_path / "run"
    code, out, err = run_cli(capsys, *train_args(out_dir, tiny_data))
    assert code == 0, err
    *_, folder_line, phases_line = out.strip().splitlines()  # the time last (make demo)
    assert folder_line == f"run folder: {out_dir}"
    assert phases_line.startswith("time: ") and "s training and validation" in phases_line
    assert "s final evaluation" in phases_line and "s plots and report" in phases_line
    assert "s in all" in phases_line  # the process's own start time is known on Linux

    code, out, err = run_cli(capsys, *train_args(tmp_path / "json", tiny_data, "--json"))
    phases = json.loads(out)["phases"]
    metrics = json.loads((tmp_path / "json" / "metrics.json").read_text())
    assert phases["training"] == metrics["train_seconds"]
    assert phases["final_evaluation"] == metrics["final_eval_seconds"] > 0
    parts = ("training", "final_evaluation", "plots_and_report", "start_up_data_and_checkpoints")
    assert sum(phases[k] for k in parts) == pytest.approx(phases["total"], abs=0.01)


def test_train_quiet_prints_only_the_run_folder(tiny_data: Path, tmp_path, capsys) -> None:
    out_dir = tmp_path / "run"
    code, out, err = run_cli(capsys, *train_args(out_dir, tiny_data, "-q"))
    assert code == 0, err
    assert out == f"run folder: {out_dir}\n"
    assert err == ""


# ---------------------------------------------------------------------------- progress


def test_epoch_bar_shows_eta_on_a_terminal(monkeypatch) -> None:
    monkeypatch.delenv("TQDM_DISABLE", raising=False)
    stream = Tty()
    bar = EpochProgress(2, 5, total=100, stream=stream)
    assert bar.wants_updates
    bar.update(50, 0.25)
    bar._bar.refresh()
    bar.close()
    text = stream.getvalue()
    assert "epoch 2/5" in text and "50/100" in text and "loss 0.2500" in text
    assert "<" in text  # tqdm's [elapsed<remaining]: the ETA


@pytest.mark.parametrize("how", ["env", "context", "not-a-terminal"])
def test_epoch_bar_switched_off(how, monkeypatch) -> None:
    monkeypatch.delenv("TQDM_DISABLE", raising=False)
    stream: io.StringIO = Tty()
    if how == "env":
        monkeypatch.setenv("TQDM_DISABLE", "1")
    elif how == "not-a-terminal":
        stream = io.StringIO()
    with progress_bar.disabled(how == "context"):
        bar = EpochProgress(1, 1, total=10, stream=stream)
        bar.update(10, 0.5)
        bar.close()
    assert not bar.wants_updates and stream.getvalue() == ""


def test_bars_are_drawn_in_a_notebook_kernel(monkeypatch) -> None:
    import types

    monkeypatch.delenv("TQDM_DISABLE", raising=False)
    assert not progress_bar.wanted(io.StringIO())
    monkeypatch.setitem(sys.modules, "ipykernel", types.ModuleType("ipykernel"))
    assert progress_bar.wanted(io.StringIO())  # a kernel's stderr is no tty, yet renders
    monkeypatch.setenv("TQDM_DISABLE", "true")
    assert not progress_bar.wanted(io.StringIO())


@pytest.mark.parametrize("flag", [None, "--no-progress", "-q"])
def test_train_progress_switches(flag, tiny_data: Path, tmp_path, monkeypatch) -> None:
    monkeypatch.delenv("TQDM_DISABLE", raising=False)
    terminal = Tty()
    monkeypatch.setattr(sys, "stderr", terminal)
    extra = [flag] if flag else []
    assert main(train_args(tmp_path / "run", tiny_data, *extra)) == 0
    drawn = "epoch 1/1" in terminal.getvalue() and "step" in terminal.getvalue()
    assert drawn == (flag is None), terminal.getvalue()


# ---------------------------------------------------------------------------- completion


def test_every_command_module_registers_completion() -> None:
    assert "mnist_classifier.cli.completion" in COMMAND_MODULES


@pytest.mark.parametrize("shell", ["bash", "zsh"])
def test_completion_command_prints_the_script(shell, capsys) -> None:
    code, out, _ = run_cli(capsys, "completion", shell)
    assert code == 0
    assert out.strip() == completion_script(shell).strip()
    commands = build_parser()._subparsers._group_actions[0].choices  # type: ignore[union-attr]
    for command in commands:
        assert command in out, command
    assert "--backend" in out and "--min-confidence" in out
    if shell == "zsh":
        assert out.startswith("#compdef mnist-classifier")


def test_completion_unknown_shell_is_a_usage_error(capsys) -> None:
    code, _, err = run_cli(capsys, "completion", "fish")
    assert code == 2 and "invalid choice: 'fish'" in err


def _bash_complete(script: Path, *words: str) -> list[str]:
    """What bash offers for the command line ``words`` (the last one being completed)."""
    line = " ".join(f"'{w}'" for w in words)
    program = (
        f"source {script}\n"
        f'COMP_WORDS=({line}); COMP_CWORD={len(words) - 1}; COMP_LINE="{" ".join(words)}"\n'
        f"COMP_POINT=${{#COMP_LINE}}\n"
        "_shtab_mnist_classifier mnist-classifier\n"
        'printf "%s\\n" "${COMPREPLY[@]}"\n'
    )
    done = subprocess.run(
        ["bash", "--norc", "--noprofile", "-c", program],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.split()


def require_shell(name: str) -> None:
    """Skip without the shell, except on CI (CI=true), which installs it (.ci/run)."""
    if shutil.which(name) is None:
        if os.environ.get("CI", "").strip().lower() == "true":
            pytest.fail(f"{name} is not installed (CI=true: the completion tests must run)")
        pytest.skip(f"{name} is not installed")


def test_bash_completion_completes_commands_options_and_choices(tmp_path) -> None:
    require_shell("bash")
    script = tmp_path / "mnist-classifier.bash"
    script.write_text(completion_script("bash"))
    check = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
    assert check.returncode == 0, check.stderr
    assert _bash_complete(script, "mnist-classifier", "pre") == ["predict"]
    assert "--backend" in _bash_complete(script, "mnist-classifier", "predict", "--ba")
    assert _bash_complete(script, "mnist-classifier", "serve", "x", "--backend", "o") == ["onnx"]
    assert _bash_complete(script, "mnist-classifier", "completion", "z") == ["zsh"]


def test_zsh_completion_script_loads_with_the_commands_options(tmp_path) -> None:
    require_shell("zsh")
    script = tmp_path / "_mnist-classifier"
    script.write_text(completion_script("zsh"))
    check = subprocess.run(["zsh", "-n", str(script)], capture_output=True, text=True)
    assert check.returncode == 0, check.stderr
    program = (
        f"autoload -U compinit; compinit -u -d {tmp_path / 'zcompdump'}\n"
        f"source {script} 2>/dev/null\n"
        "whence -w _shtab_mnist_classifier\n"
        "print -l -- $_shtab_mnist_classifier_predict_options\n"
    )
    done = subprocess.run(
        ["zsh", "-f", "-c", program],
        capture_output=True,
        text=True,
        timeout=60,
        env={"HOME": str(tmp_path), "PATH": "/usr/bin:/bin"},
    )
    assert "_shtab_mnist_classifier: function" in done.stdout, done.stdout + done.stderr
    assert "--backend[" in done.stdout and "(auto torch onnx)" in done.stdout


def test_serve_quiet_keeps_only_the_address_line(trained_run: Path, mnist) -> None:
    import urllib.request

    from serving_helpers import mnist_png, running_server

    with running_server(trained_run, "-q") as (url, lines):
        request = urllib.request.Request(
            url + "api/predict",
            data=mnist_png(mnist.test_images[0].numpy()),
            headers={"Content-Type": "image/png"},
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            assert json.load(response)["digit"] == int(mnist.test_labels[0])
        with urllib.request.urlopen(url + "api/health", timeout=30) as response:
            assert response.status == 200
        while_serving = [line for line in lines if line.strip()]
    assert while_serving == [f"open {url}  (API docs: {url}docs; Ctrl-C stops)"], lines
    assert not any("INFO" in line or "POST /api/predict" in line for line in lines), lines


@pytest.mark.parametrize("module", ["torch", "matplotlib.pyplot", "tqdm"])
def test_a_command_needing_the_full_install_is_one_line(module, monkeypatch, capsys) -> None:
    import mnist_classifier.cli.train as train_cli

    def needs_it(args) -> int:
        raise ModuleNotFoundError(f"No module named {module!r}", name=module)

    monkeypatch.setattr(train_cli, "cmd_models", needs_it)
    code, out, err = run_cli(capsys, "models")
    assert code == 1 and out == ""
    (line,) = err.splitlines()
    top = module.split(".")[0]
    assert f"this needs {top}, which the inference-only install leaves out" in line
    assert line.endswith("pip install mnist-classifier")


def test_other_missing_modules_stay_a_bug_with_a_traceback(monkeypatch) -> None:
    import mnist_classifier.cli.train as train_cli

    def broken(args) -> int:
        raise ModuleNotFoundError("No module named 'numpy'", name="numpy")

    monkeypatch.setattr(train_cli, "cmd_models", broken)
    with pytest.raises(ModuleNotFoundError):
        main(["models"])
