"""Plots: each function writes a real PNG; run folders are read strictly."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fake_run import make_fake_run
from mnist_classifier.errors import MnistClassifierError, RunFolderError
from mnist_classifier.evaluation.plots import (
    PLOT_FILES,
    confident_mistake_indices,
    plot_confident_mistakes,
    plot_confusion_matrix,
    plot_curves,
    plot_per_class,
    plot_predictions,
    write_run_plots,
)

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module", autouse=True)
def _isolated_cache(tmp_path_factory):
    """Decode the fake datasets into a private cache, never the user's."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MNIST_CLASSIFIER_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))
        yield


def assert_png(path: Path, min_size: tuple[int, int] = (200, 100)) -> tuple[int, int]:
    """``path`` is a complete PNG at least ``min_size`` pixels, with more than one colour."""
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE
    with Image.open(path) as img:
        img.verify()
    with Image.open(path) as img:
        assert img.format == "PNG"
        width, height = img.size
        extrema = img.convert("L").getextrema()
    assert width >= min_size[0] and height >= min_size[1], (width, height)
    assert width <= 4000 and height <= 4000, (width, height)
    assert extrema[0] < extrema[1], "the picture is a single colour"
    return width, height


def history(epochs: int = 5, lrs: list[float] | None = None) -> list[dict[str, float]]:
    lrs = lrs or [0.001] * epochs
    return [
        {
            "epoch": e,
            "train_loss": 1.0 / e,
            "train_acc": 0.8 + 0.03 * e,
            "val_loss": 1.1 / e,
            "val_acc": 0.78 + 0.03 * e,
            "lr": lrs[e - 1],
            "seconds": 2.0 * e,
        }
        for e in range(1, epochs + 1)
    ]


def predictions(n: int = 30, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
    labels = rng.integers(0, 10, size=n)
    probs = rng.dirichlet(np.ones(10), size=n).astype(np.float32)
    return images, labels, probs


def test_plot_curves_writes_one_png_and_adds_a_panel_when_the_rate_changes(tmp_path):
    flat = plot_curves(history(), tmp_path / "flat", best_epoch=4)
    varying = plot_curves(history(lrs=[1e-3, 8e-4, 5e-4, 2e-4, 0.0]), tmp_path / "cosine")
    assert flat == tmp_path / "flat" / "curves.png"
    flat_w, flat_h = assert_png(flat, (600, 250))
    var_w, var_h = assert_png(varying, (600, 250))
    assert var_h == flat_h
    assert var_w > flat_w * 1.3  # the learning-rate panel


def test_plot_curves_accepts_csv_strings_and_a_single_epoch(tmp_path):
    rows = [{k: str(v) for k, v in row.items()} for row in history(1)]
    assert_png(plot_curves(rows, tmp_path), (600, 250))


def test_plot_curves_refuses_an_empty_history(tmp_path):
    with pytest.raises(ValueError, match="empty"):
        plot_curves([], tmp_path)
    assert not (tmp_path / "curves.png").exists()


def test_plot_confusion_matrix(tmp_path):
    cm = np.diag(np.full(10, 95)) + np.eye(10, k=1, dtype=int) * 5
    out = plot_confusion_matrix(cm.tolist(), tmp_path / "cm.png")
    assert out == tmp_path / "cm.png"
    width, height = assert_png(out, (500, 450))
    assert 0.8 < width / height < 1.5


def test_plot_confusion_matrix_refuses_a_non_square_table(tmp_path):
    with pytest.raises(ValueError, match="square"):
        plot_confusion_matrix([[1, 2, 3], [4, 5, 6]], tmp_path / "cm.png")


@pytest.mark.parametrize("key", [str, int])
def test_plot_per_class(tmp_path, key):
    per_class = {
        key(d): {"precision": 0.97 + d / 400, "recall": 0.99 - d / 500, "f1": 0.98, "support": 100}
        for d in range(10)
    }
    assert_png(plot_per_class(per_class, tmp_path / "per_class.png"), (600, 250))


def test_plot_predictions_grid(tmp_path):
    images, labels, probs = predictions(30)
    out = plot_predictions(images, labels, probs, tmp_path / "pred.png", n=25)
    width, height = assert_png(out, (400, 400))
    few = plot_predictions(images[:4], labels[:4], probs[:4], tmp_path / "few.png", n=25)
    few_w, few_h = assert_png(few, (100, 100))
    assert few_w < width and few_h < height  # 2x2 grid, not 5x5


def test_plot_predictions_takes_tensors(tmp_path):
    torch = pytest.importorskip("torch")
    images, labels, probs = predictions(9)
    out = plot_predictions(
        torch.from_numpy(images),
        torch.from_numpy(labels),
        torch.from_numpy(probs),
        tmp_path / "t.png",
    )
    assert_png(out, (200, 200))


def test_plot_predictions_refuses_mismatched_lengths(tmp_path):
    images, labels, probs = predictions(10)
    with pytest.raises(ValueError, match="differ in length"):
        plot_predictions(images, labels[:5], probs, tmp_path / "p.png")


def test_confident_mistake_indices_orders_wrong_predictions_by_confidence():
    labels = np.array([0, 1, 2, 3, 4])
    probs = np.full((5, 10), 0.01)
    probs[0, 0] = 0.9  # right
    probs[1, 7] = 0.6  # wrong, 0.6
    probs[2, 2] = 0.99  # right
    probs[3, 5] = 0.95  # wrong, 0.95
    probs[4, 9] = 0.7  # wrong, 0.7
    assert confident_mistake_indices(labels, probs, 16).tolist() == [3, 4, 1]
    assert confident_mistake_indices(labels, probs, 2).tolist() == [3, 4]
    assert confident_mistake_indices(labels, probs, 0).tolist() == []


def test_plot_confident_mistakes(tmp_path):
    images, labels, probs = predictions(40)
    assert_png(plot_confident_mistakes(images, labels, probs, tmp_path / "m.png"), (400, 400))


def test_plot_confident_mistakes_without_any_mistake(tmp_path):
    images, labels, _ = predictions(8)
    probs = np.eye(10, dtype=np.float32)[labels]
    assert_png(plot_confident_mistakes(images, labels, probs, tmp_path / "none.png"), (300, 80))


def test_plots_module_leaves_pyplot_and_the_backend_alone(tmp_path):
    code = (
        "import sys, matplotlib\n"
        "before = matplotlib.rcParams._get_backend_or_none()\n"
        "from mnist_classifier.evaluation.plots import plot_confusion_matrix\n"
        f"plot_confusion_matrix([[3, 1], [0, 4]], {str(tmp_path / 'cm.png')!r})\n"
        "assert 'matplotlib.pyplot' not in sys.modules, 'pyplot was imported'\n"
        "assert matplotlib.rcParams._get_backend_or_none() == before, 'backend changed'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
    assert_png(tmp_path / "cm.png", (300, 300))


# ----------------------------------------------------------------------------- run folders


@pytest.fixture(scope="module")
def fake_run(tmp_path_factory):
    return make_fake_run(tmp_path_factory.mktemp("runs") / "fake")


def test_write_run_plots_writes_every_plot(fake_run):
    paths = write_run_plots(fake_run)
    assert [p.name for p in paths] == list(PLOT_FILES)
    for path in paths:
        assert path.parent == fake_run / "plots"
        assert_png(path)
    leftovers = [p.name for p in (fake_run / "plots").iterdir() if p.suffix != ".png"]
    assert leftovers == []  # no temporary files left behind


def _copy_run(src: Path, dst: Path) -> Path:
    import shutil

    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("plots", "report.html"))
    return dst


def _corrupt(run: Path, name: str, content: str | bytes) -> None:
    path = run / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)


CORRUPTIONS = {
    "metrics-missing": ("metrics.json", None, "metrics.json: file not found"),
    "metrics-bad-json": ("metrics.json", '{"model": "x",', "metrics.json: not valid JSON"),
    "metrics-no-test": ("metrics.json", '{"model": "m", "parameters": 1, "epochs_run": 1, '
                        '"best_epoch": 1, "train_seconds": 1.0}', "metrics.json: 'test'"),
    "config-not-object": ("config.json", "[1, 2]", "config.json: expected a JSON object"),
    "history-missing-column": ("history.csv", "epoch,train_loss\n1,0.5\n", "missing column(s)"),
    "history-empty": ("history.csv", "epoch,train_loss,train_acc,val_loss,val_acc,lr,seconds\n",
                      "no epochs recorded"),
    "history-percent": ("history.csv", "epoch,train_loss,train_acc,val_loss,val_acc,lr,seconds\n"
                        "1,0.5,97.5,0.4,96.0,0.001,3.0\n", "not a fraction"),
    "history-text": ("history.csv", "epoch,train_loss,train_acc,val_loss,val_acc,lr,seconds\n"
                     "1,0.5,0.9,oops,0.9,0.001,3.0\n", "line 2: column val_loss is not a number"),
    "predictions-garbage": ("predictions.npz", b"not a zip", "predictions.npz: not a readable"),
    "predictions-missing": ("predictions.npz", None, "predictions.npz: file not found"),
}  # fmt: skip


@pytest.mark.parametrize("case", list(CORRUPTIONS))
def test_write_run_plots_names_the_bad_file(fake_run, tmp_path, case):
    name, content, message = CORRUPTIONS[case]
    run = _copy_run(fake_run, tmp_path / "run")
    if content is None:
        (run / name).unlink()
    else:
        _corrupt(run, name, content)
    with pytest.raises(RunFolderError) as info:
        write_run_plots(run)
    text = str(info.value)
    assert message in text
    assert str(run / name) in text
    assert "\n" not in text
    assert not (run / "plots").exists()  # nothing is drawn from a broken run


def test_write_run_plots_refuses_predictions_of_another_dataset(fake_run, tmp_path):
    run = _copy_run(fake_run, tmp_path / "run")
    with np.load(run / "predictions.npz") as npz:
        probs, labels = npz["probs"], npz["labels"]
    np.savez(run / "predictions.npz", probs=probs, labels=(labels + 1) % 10)
    with pytest.raises(RunFolderError, match="labels do not match the test labels"):
        write_run_plots(run)
    np.savez(run / "predictions.npz", probs=np.tile(probs, (2, 1)), labels=np.tile(labels, 2))
    with pytest.raises(RunFolderError, match="holds 80 predictions"):
        write_run_plots(run)


def test_write_run_plots_accepts_predictions_for_the_first_test_images(fake_run, tmp_path):
    run = _copy_run(fake_run, tmp_path / "run")
    with np.load(run / "predictions.npz") as npz:
        probs, labels = npz["probs"], npz["labels"]
    np.savez(run / "predictions.npz", probs=probs[:12], labels=labels[:12])
    assert len(write_run_plots(run)) == len(PLOT_FILES)


def test_write_run_plots_refuses_what_is_not_a_run_folder(tmp_path):
    with pytest.raises(RunFolderError, match="run folder does not exist"):
        write_run_plots(tmp_path / "nope")
    with pytest.raises(RunFolderError, match="not a run folder"):
        write_run_plots(tmp_path)
    (tmp_path / "file").write_text("x")
    with pytest.raises(RunFolderError, match="is not a folder"):
        write_run_plots(tmp_path / "file")


def test_write_run_plots_reports_a_missing_dataset(fake_run, tmp_path):
    run = _copy_run(fake_run, tmp_path / "run")
    config = json.loads((run / "config.json").read_text())
    config["data_dir"] = str(tmp_path / "moved")
    (run / "config.json").write_text(json.dumps(config))
    with pytest.raises(MnistClassifierError, match="moved"):
        write_run_plots(run)
