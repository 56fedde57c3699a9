"""The walkthrough notebook: committed without outputs, and it runs from top to bottom.

Executing it headless with nbclient keeps it from rotting when the package changes:
a renamed function or a changed run folder breaks this test, not a learner's first hour.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "notebooks" / "walkthrough.ipynb"


def read_notebook() -> nbformat.NotebookNode:
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(nb)
    return nb


def test_committed_notebook_has_no_outputs() -> None:
    nb = read_notebook()
    code_cells = [cell for cell in nb.cells if cell.cell_type == "code"]
    assert code_cells, "the notebook has no code cell"
    for index, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        assert cell.outputs == [], f"cell {index} has outputs; clear them before committing"
        assert cell.execution_count is None, f"cell {index} has an execution count"


@pytest.fixture
def venv_kernel(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A "python3" kernel spec that runs this interpreter, found before any other.

    Outside a virtual environment, a user's own python3 spec (~/.local/share/jupyter) wins
    over the environment's and may run another Python; JUPYTER_PATH is searched before both,
    so the kernel always runs with this environment's packages.
    Runtime files and the IPython profile also go to the temporary folder, and torch in
    the kernel uses one thread: on a small shared machine two threads per process mostly
    wait on each other (the CNN cell ran several times slower with two under load).
    """
    spec_dir = tmp_path / "jupyter" / "kernels" / "python3"
    spec_dir.mkdir(parents=True)
    spec = {
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "Python 3 (test)",
        "language": "python",
    }
    (spec_dir / "kernel.json").write_text(json.dumps(spec))
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(tmp_path / "runtime"))
    monkeypatch.setenv("IPYTHONDIR", str(tmp_path / "ipython"))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    return "python3"


def _text_of(cell: nbformat.NotebookNode) -> str:
    parts = []
    for output in cell.outputs:
        if output.output_type == "stream":
            parts.append(output.text)
        elif "data" in output:
            parts.append(output.data.get("text/markdown", ""))
            parts.append(output.data.get("text/plain", ""))
    return "".join(parts)


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_notebook_runs(venv_kernel: str) -> None:
    nb = read_notebook()
    nb.cells.append(nbformat.v4.new_code_cell("import sys\nprint(sys.prefix)"))
    before = sorted(p.name for p in ROOT.iterdir())
    client = NotebookClient(
        nb,
        kernel_name=venv_kernel,
        timeout=300,
        resources={"metadata": {"path": str(ROOT)}},
    )
    client.execute()  # raises CellExecutionError, naming the cell, if any cell fails

    # The kernel ran in this environment (the extra last cell prints its sys.prefix).
    assert nb.cells[-1].outputs[0].text.strip() == sys.prefix

    images = [
        output
        for cell in nb.cells
        if cell.cell_type == "code"
        for output in cell.outputs
        if "data" in output and "image/png" in output.data
    ]
    # samples grid, curves, confusion matrix, per class, predictions, mistakes, val curves
    assert len(images) >= 7
    everything = "\n".join(_text_of(cell) for cell in nb.cells if cell.cell_type == "code")
    assert "test accuracy:" in everything
    for model in ("mlp-128-64", "mlp-128-64-dropout", "cnn-small"):
        assert f"| {model} " in everything, f"the comparison table lacks {model}"
    assert "report.html" in everything
    # The training progress bar renders in a kernel (tqdm.auto; text when ipywidgets is absent).
    stderr = "".join(
        output.text
        for cell in nb.cells
        if cell.cell_type == "code"
        for output in cell.outputs
        if output.output_type == "stream" and output.name == "stderr"
    )
    widgets = [
        output
        for cell in nb.cells
        if cell.cell_type == "code"
        for output in cell.outputs
        if "data" in output and "application/vnd.jupyter.widget-view+json" in output.data
    ]
    assert widgets or ("epoch 1/" in stderr and "step" in stderr), stderr[-500:]
    # Runs went to a temporary folder that the last cell removed: the repository is unchanged.
    assert sorted(p.name for p in ROOT.iterdir()) == before
    workdir = everything.split("runs go to ", 1)[1].split()[0]
    assert not Path(workdir).exists()
