"""report.html: one self-contained page with config, metrics and every plot; the CLI commands."""

from __future__ import annotations

import base64
import json
import shutil
from html.parser import HTMLParser
from pathlib import Path

import pytest
from PIL import Image

from fake_run import make_fake_run
from mnist_classifier.cli import main
from mnist_classifier.errors import RunFolderError
from mnist_classifier.evaluation.plots import PLOT_FILES
from mnist_classifier.evaluation.report import format_seconds, write_report

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module", autouse=True)
def _isolated_cache(tmp_path_factory):
    """Decode the fake datasets into a private cache, never the user's."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MNIST_CLASSIFIER_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))
        yield


class PageParser(HTMLParser):
    """Collects every tag with its attributes, and the visible text."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data):
        self.text.append(data)


def parse(html_text: str) -> PageParser:
    parser = PageParser()
    parser.feed(html_text)
    parser.close()
    return parser


NOTE = "<script>alert('x')</script> & \"quotes\""


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    run = make_fake_run(
        tmp_path_factory.mktemp("runs") / "mlp-seed",
        config_extra={"note": NOTE, "future_key": {"nested": [1, 2]}},
    )
    write_report(run)
    return run


@pytest.fixture(scope="module")
def page(run) -> str:
    return (run / "report.html").read_text(encoding="utf-8")


def test_report_is_written_with_its_plots(run):
    assert (run / "report.html").is_file()
    for name in PLOT_FILES:
        assert (run / "plots" / name).is_file()
    assert not [p for p in run.iterdir() if p.name.startswith(".report.html")]  # no temp file


def test_report_is_self_contained(page):
    parsed = parse(page)
    tags = [tag for tag, _ in parsed.tags]
    assert "script" not in tags and "link" not in tags and "iframe" not in tags
    assert "@import" not in page and "url(" not in page
    for tag, attrs in parsed.tags:
        for name in ("src", "href", "srcset", "poster", "data", "action"):
            value = attrs.get(name)
            if value is not None:
                assert value.startswith("data:"), f"<{tag} {name}={value[:60]!r}> leaves the page"
    assert "http://" not in page and "https://" not in page


def test_every_image_is_an_inlined_png_of_the_size_it_declares(page, tmp_path):
    images = [attrs for tag, attrs in parse(page).tags if tag == "img"]
    assert len(images) == len(PLOT_FILES)
    for i, attrs in enumerate(images):
        src = attrs["src"] or ""
        prefix = "data:image/png;base64,"
        assert src.startswith(prefix)
        payload = base64.b64decode(src[len(prefix) :], validate=True)
        assert payload[:8] == PNG_SIGNATURE
        path = tmp_path / f"{i}.png"
        path.write_bytes(payload)
        with Image.open(path) as img:
            assert img.size == (int(attrs["width"] or 0), int(attrs["height"] or 0))
        assert attrs.get("alt")


def test_report_shows_config_metrics_and_per_class_table(run, page):
    metrics = json.loads((run / "metrics.json").read_text())
    text = " ".join(parse(page).text)
    assert "<title>mlp-seed: mnist-classifier run report</title>" in page
    assert f"{100 * metrics['test']['accuracy']:.2f}%" in text
    assert f"{100 * metrics['val']['accuracy']:.2f}%" in text
    assert f"{metrics['test']['loss']:.4f}" in text
    assert "109,386" in text  # parameters
    assert f"{metrics['best_epoch']} of {metrics['epochs_run']}" in text
    assert format_seconds(metrics["train_seconds"]) in text
    for key in ("model", "optimizer", "lr", "weight_decay", "batch_size", "schedule", "future_key"):
        assert f"<th>{key}</th>" in page
    assert "mlp-128-64-dropout" in text
    assert '{"nested": [1, 2]}' in text
    assert "macro average" in text and "weighted average" in text
    recall_7 = metrics["test"]["per_class"]["7"]["recall"]
    assert f"{100 * recall_7:.2f}%" in text


def test_report_escapes_text(page):
    assert "<script>" not in page
    assert html_escaped(NOTE) in page


def html_escaped(text: str) -> str:
    import html

    return html.escape(text, quote=True)


def test_report_redraws_missing_plots_and_shows_extra_ones(run, tmp_path):
    copy = tmp_path / "again"
    shutil.copytree(run, copy)
    shutil.rmtree(copy / "plots")
    (copy / "report.html").unlink()
    extra = copy / "plots" / "saliency_maps.png"
    extra.parent.mkdir()
    shutil.copy(run / "plots" / "per_class.png", extra)
    page = write_report(copy).read_text()
    for name in PLOT_FILES:
        assert (copy / "plots" / name).is_file()
    assert page.count("<img ") == len(PLOT_FILES) + 1
    assert "saliency maps" in page


def test_report_of_a_broken_run_names_the_file(run, tmp_path):
    copy = tmp_path / "broken"
    shutil.copytree(run, copy)
    (copy / "metrics.json").write_text("{not json")
    with pytest.raises(RunFolderError, match=r"metrics\.json: not valid JSON"):
        write_report(copy)


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(4.26, "4.3 s"), (59.94, "59.9 s"), (185.2, "3 min 05 s"), (3725, "1 h 02 min")],
)
def test_format_seconds(seconds, text):
    assert format_seconds(seconds) == text


# ----------------------------------------------------------------------------- CLI


def test_cli_plots_and_report(run, tmp_path, capsys):
    copy = tmp_path / "cli"
    shutil.copytree(run, copy)
    shutil.rmtree(copy / "plots")
    assert main(["plots", str(copy)]) == 0
    printed = capsys.readouterr().out.split()
    assert printed == [str(copy / "plots" / name) for name in PLOT_FILES]
    assert main(["report", str(copy)]) == 0
    assert capsys.readouterr().out.strip() == str(copy / "report.html")


@pytest.mark.parametrize("command", ["plots", "report"])
def test_cli_bad_run_is_one_line_and_exit_1(tmp_path, capsys, command):
    assert main([command, str(tmp_path / "missing")]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "missing: run folder does not exist" in err
    assert main([command, str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "not a run folder" in err
