"""Run comparison: Markdown and CSV tables and overlaid validation curves from two fake runs."""

from __future__ import annotations

import csv
import json

import pytest
from PIL import Image

from fake_run import make_fake_run
from mnist_classifier.cli import main
from mnist_classifier.errors import RunFolderError
from mnist_classifier.evaluation.compare import (
    CSV_COLUMNS,
    TABLE_COLUMNS,
    compare_runs,
    summarize_runs,
)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    small = make_fake_run(root / "mlp-small", accuracy=0.6, epochs=3, seed=1)
    big = make_fake_run(
        root / "cnn-big", accuracy=0.95, epochs=6, seed=2, model="cnn", parameters=1_234_567
    )
    return small, big


def test_compare_runs_writes_table_csv_and_curves(runs, tmp_path):
    small, big = runs
    out = tmp_path / "cmp"
    markdown = compare_runs([small, big], out)
    assert markdown == out / "comparison.md"

    lines = markdown.read_text().splitlines()
    assert [c.strip() for c in lines[0].strip("|").split("|")] == list(TABLE_COLUMNS)
    assert set(lines[1]) <= set("|-:")
    assert len(lines) == 4
    assert len({len(line) for line in lines}) == 1  # aligned columns
    assert lines[2].startswith("| mlp-small") and lines[3].startswith("| cnn-big")

    for run, line in zip(runs, lines[2:], strict=True):
        metrics = json.loads((run / "metrics.json").read_text())
        with (run / "history.csv").open() as fh:
            best_val = max(float(row["val_acc"]) for row in csv.DictReader(fh))
        cells = [c.strip() for c in line.strip("|").split("|")]
        assert cells[1] == metrics["model"]
        assert cells[2] == f"{metrics['parameters']:,}"
        assert cells[3] == str(metrics["epochs_run"])
        assert cells[5].startswith(f"{100 * best_val:.2f}%")
        assert cells[6] == f"{100 * metrics['test']['accuracy']:.2f}%"

    with (out / "comparison.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert list(rows[0]) == list(CSV_COLUMNS)
    assert [r["run"] for r in rows] == ["mlp-small", "cnn-big"]
    big_metrics = json.loads((big / "metrics.json").read_text())
    assert int(rows[1]["parameters"]) == 1_234_567
    assert float(rows[1]["test_accuracy"]) == pytest.approx(
        big_metrics["test"]["accuracy"], abs=1e-6
    )
    assert float(rows[1]["train_seconds"]) == pytest.approx(big_metrics["train_seconds"])

    png = out / "val_curves.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with Image.open(png) as img:
        assert img.size[0] >= 600 and img.size[1] >= 250
        assert img.convert("L").getextrema()[0] < 255


def test_runs_with_the_same_folder_name_keep_their_paths(tmp_path):
    a = make_fake_run(tmp_path / "a" / "run", seed=3)
    b = make_fake_run(tmp_path / "b" / "run", seed=4)
    summaries = summarize_runs([a, b])
    assert [s.name for s in summaries] == [str(a), str(b)]


def test_compare_refuses_a_broken_run_and_writes_nothing(runs, tmp_path):
    out = tmp_path / "cmp"
    with pytest.raises(RunFolderError, match="run folder does not exist"):
        compare_runs([runs[0], tmp_path / "gone"], out)
    assert not out.exists()
    with pytest.raises(RunFolderError, match="no run folder"):
        compare_runs([], out)


def test_compare_refuses_an_output_that_is_a_file(runs, tmp_path):
    out = tmp_path / "file"
    out.write_text("x")
    with pytest.raises(RunFolderError, match="is not a folder"):
        compare_runs(list(runs), out)


def test_cli_compare_prints_the_table(runs, tmp_path, capsys):
    out = tmp_path / "cli"
    assert main(["compare", str(runs[0]), str(runs[1]), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert (out / "comparison.md").read_text() in printed
    assert "cnn-big" in printed and str(out) in printed
    assert (out / "comparison.csv").is_file() and (out / "val_curves.png").is_file()


def test_cli_compare_bad_run_is_one_line_and_exit_1(runs, tmp_path, capsys):
    code = main(["compare", str(runs[0]), str(tmp_path / "nope"), "--out", str(tmp_path / "o")])
    assert code == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "nope: run folder does not exist" in err


def test_compare_two_real_runs(small_mnist, tmp_path, capsys):
    import mnist_classifier

    for name, model in (("mlp", "mlp-128"), ("cnn", "cnn-tiny")):
        mnist_classifier.train(
            out=tmp_path / name, dataset=small_mnist, model=model, epochs=2, log=None, threads=2
        )
    # The real runs were evaluated on the first 1,000 test images of the shipped MNIST.
    assert (
        main(
            [
                "compare",
                str(tmp_path / "mlp"),
                str(tmp_path / "cnn"),
                "--out",
                str(tmp_path / "cmp"),
            ]
        )
        == 0
    )
    table = capsys.readouterr().out
    assert "mlp-128" in table and "cnn-tiny" in table and "%" in table
    rows = list(csv.DictReader((tmp_path / "cmp" / "comparison.csv").open()))
    assert [r["model"] for r in rows] == ["mlp-128", "cnn-tiny"]
    with Image.open(tmp_path / "cmp" / "val_curves.png") as img:
        assert img.width > 300 and img.height > 200
