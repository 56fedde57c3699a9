"""The command's own costs: lazy imports, and the report drawn by a forked, warmed-up child."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from fake_run import make_fake_run

SRC = Path(__file__).resolve().parents[1] / "src"
HEAVY = ("torch", "matplotlib", "PIL", "scipy", "onnx", "onnxruntime")
linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="fork on Linux only")


def run_python(code: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SRC), str(Path(__file__).parent)])}
    return subprocess.run(
        [sys.executable, "-c", code], cwd=cwd, env=env, capture_output=True, text=True, timeout=300
    )


def test_the_package_and_the_command_line_import_nothing_heavy(tmp_path):
    code = (
        "import sys\n"
        "import mnist_classifier\n"
        "from mnist_classifier.cli import build_parser\n"
        "build_parser()\n"
        f"print(sorted(m for m in {HEAVY!r} if m in sys.modules))\n"
    )
    result = run_python(code, tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


@linux_only
def test_the_forked_child_draws_a_complete_report(tmp_path):
    run = make_fake_run(tmp_path / "run")
    code = (
        "import sys\n"
        "from pathlib import Path\n"
        "from mnist_classifier.cli.report_process import ReportProcess\n"
        "child = ReportProcess.start()\n"
        "assert child is not None, 'no child was forked'\n"
        "child.warm_up()  # as the training's start does\n"
        "child.warm_up()  # once only\n"
        "assert child.ready(timeout=240), 'the child did not warm up'\n"
        f"print(child.write_report(Path({str(run)!r})))\n"
        "assert 'matplotlib' not in sys.modules, 'the parent drew the report itself'\n"
    )
    result = run_python(code, tmp_path)
    assert result.returncode == 0, result.stderr
    report = run / "report.html"
    assert result.stdout.strip() == str(report)
    text = report.read_text()
    assert text.rstrip().endswith("</html>")
    assert text.count('src="data:image/png;base64,') >= 5  # every standard plot, inlined
    assert sorted(p.name for p in (run / "plots").iterdir()) == [
        "confident_mistakes.png",
        "confusion_matrix.png",
        "curves.png",
        "per_class.png",
        "predictions.png",
        "reliability.png",
    ]
    assert not [p for p in run.rglob("*.tmp")]


@linux_only
def test_an_error_in_the_child_is_one_library_error(tmp_path):
    (tmp_path / "empty").mkdir()
    code = (
        "from pathlib import Path\n"
        "from mnist_classifier.cli.report_process import ReportProcess\n"
        "from mnist_classifier.errors import MnistClassifierError\n"
        "child = ReportProcess.start()\n"
        "child.warm_up()\n"
        "assert child.ready(timeout=240), 'the child did not warm up'\n"
        "try:\n"
        f"    child.write_report(Path({str(tmp_path / 'empty')!r}))\n"
        "except MnistClassifierError as exc:\n"
        "    print(exc.exit_code, exc)\n"
    )
    result = run_python(code, tmp_path)
    assert result.returncode == 0, result.stderr
    line = result.stdout.strip()
    assert len(line.splitlines()) == 1 and "empty" in line, line
    assert line.split()[0] in {"1", "2"}


@linux_only
def test_a_child_still_warming_up_is_not_waited_for(tmp_path):
    run = make_fake_run(tmp_path / "run")
    code = (
        "from pathlib import Path\n"
        "from mnist_classifier.cli.report_process import ReportProcess\n"
        "child = ReportProcess.start()\n"
        "child.warm_up()\n"
        f"print(child.write_report(Path({str(run)!r})))  # asked at once: not ready yet\n"
    )
    result = run_python(code, tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "None"


@linux_only
def test_a_dead_child_leaves_the_report_to_the_parent(tmp_path):
    run = make_fake_run(tmp_path / "run")
    code = (
        "import os, signal\n"
        "from pathlib import Path\n"
        "from mnist_classifier.cli.report_process import ReportProcess\n"
        "child = ReportProcess.start()\n"
        "os.kill(child.pid, signal.SIGKILL)\n"
        f"print(child.write_report(Path({str(run)!r})))\n"
    )
    result = run_python(code, tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "None"  # the caller then draws it in-process
    assert not (run / "report.html").exists()


def test_no_child_is_forked_once_torch_is_loaded():
    pytest.importorskip("torch")
    from mnist_classifier.cli.report_process import ReportProcess

    assert ReportProcess.start() is None  # this test process already holds torch


@linux_only
def test_train_from_a_fresh_process_writes_the_report_and_ends_with_the_phases(
    make_idx_dataset, tmp_path
):
    data = make_idx_dataset(n_train=80, n_test=20)
    out = tmp_path / "run"
    # As the installed command runs: main() without arguments, which ends the process
    # itself once the run is complete (skipping the interpreter's teardown).
    code = (
        "import sys\n"
        "from mnist_classifier.cli import main\n"
        "sys.argv[1:] = ['train', '--model', 'mlp-128', '--epochs', '1', '--batch-size', '8',\n"
        f"    '--data-dir', {str(data)!r}, '--out', {str(out)!r}, '--no-progress']\n"
        "main()\n"
        "print('not reached: main() ends the process after train')\n"
    )
    result = run_python(code, tmp_path)
    assert result.returncode == 0, result.stderr
    *_, report_line, folder_line, phases_line = result.stdout.strip().splitlines()
    assert report_line == f"report: {out / 'report.html'}"
    assert folder_line == f"run folder: {out}"
    assert phases_line.startswith("time: ") and phases_line.endswith("s in all")
    assert (out / "report.html").read_text().rstrip().endswith("</html>")
    assert len(list((out / "plots").glob("*.png"))) >= 5
