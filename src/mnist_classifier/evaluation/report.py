"""The run report: one self-contained HTML page that shows everything about a run.

The page needs nothing but itself: every plot is inlined as a base64 ``data:``
URL, the style sheet is inline, there is no script, no web font and no link to
anything outside the file, and a Content-Security-Policy tells the browser to
refuse any request other than ``data:`` images. It can be mailed, archived or
opened offline and always looks the same.
"""

from __future__ import annotations

import base64
import html
import json
import os
import struct
from pathlib import Path
from typing import Any

from .. import __version__
from ..errors import RunFolderError
from ..run_folder import (
    RunFolder,
    check_run_dir,
    read_config,
    read_metrics,
    run_name,
    write_report_text,
)
from .metrics import percent
from .plots import PLOT_FILES, write_run_plots

CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"

STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif;
       margin: 0; background: #f6f7f9; color: #1d2329; line-height: 1.45; }
main { max-width: 1100px; margin: 0 auto; padding: 1.5rem 1.25rem 3rem; }
h1 { font-size: 1.7rem; margin: 0.2rem 0 0.3rem; }
h2 { font-size: 1.2rem; margin: 2rem 0 0.6rem; padding-bottom: 0.2rem;
     border-bottom: 1px solid #d5d9de; }
p.lead { margin: 0 0 1rem; color: #4a535c; }
table { border-collapse: collapse; background: #fff; font-size: 0.92rem; margin: 0.4rem 0 1rem; }
th, td { border: 1px solid #d5d9de; padding: 0.28rem 0.7rem; text-align: left;
         vertical-align: top; }
th { background: #eef0f3; font-weight: 600; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
tr.avg td { background: #f3f5f8; font-weight: 600; }
code { font-family: ui-monospace, "DejaVu Sans Mono", monospace; font-size: 0.9em; }
figure { margin: 0.6rem 0 1.4rem; background: #fff; border: 1px solid #d5d9de; padding: 0.6rem; }
figure img { display: block; max-width: 100%; height: auto; margin: 0 auto; }
figcaption { font-size: 0.88rem; color: #4a535c; margin-top: 0.35rem; }
.cards { display: flex; flex-wrap: wrap; gap: 0.8rem; margin: 0.8rem 0; }
.card { background: #fff; border: 1px solid #d5d9de; padding: 0.6rem 1rem; min-width: 9rem; }
.card .value { font-size: 1.5rem; font-weight: 650; }
.card .label { font-size: 0.82rem; color: #4a535c; }
footer { margin-top: 2.5rem; font-size: 0.8rem; color: #6b747d; }
""".strip()


def _e(value: object) -> str:
    """Escape ``value`` for HTML text or a quoted attribute."""
    return html.escape(str(value), quote=True)


def format_seconds(seconds: float) -> str:
    """A duration for people: ``42.3 s``, ``3 min 05 s``, ``1 h 02 min``."""
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def _config_value(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True)


def _png_size(payload: bytes) -> tuple[int, int] | None:
    """(width, height) from a PNG header, or None if ``payload`` is not a PNG."""
    if payload[:8] != b"\x89PNG\r\n\x1a\n" or payload[12:16] != b"IHDR":
        return None
    width, height = struct.unpack(">II", payload[16:24])
    return int(width), int(height)


def _figure(path: Path, caption: str) -> str:
    try:
        payload = path.read_bytes()
    except OSError as exc:
        raise RunFolderError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    size = _png_size(payload)
    if size is None:
        raise RunFolderError(f"{path}: is not a PNG image")
    data = base64.b64encode(payload).decode("ascii")
    return (
        f'<figure><img src="data:image/png;base64,{data}" alt="{_e(caption)}" '
        f'width="{size[0]}" height="{size[1]}">'
        f"<figcaption>{_e(caption)} <code>{_e(path.parent.name)}/{_e(path.name)}</code></figcaption></figure>"
    )


def _key_value_table(rows: list[tuple[str, str, bool]]) -> str:
    """A two-column table; the bool marks values to right-align as numbers."""
    body = "".join(
        f"<tr><th>{_e(key)}</th><td{' class=num' if numeric else ''}>{_e(value)}</td></tr>"
        for key, value, numeric in rows
    )
    return f"<table>{body}</table>"


def _metrics_table(metrics: dict[str, Any]) -> str:
    test, val = metrics["test"], metrics["val"]
    rows = [
        ("model", metrics["model"], False),
        ("parameters", f"{metrics['parameters']:,}", True),
        ("test accuracy", percent(test["accuracy"]), True),
        ("test loss", f"{test['loss']:.4f}", True),
        ("validation accuracy", percent(val["accuracy"]), True),
        ("validation loss", f"{val['loss']:.4f}", True),
        ("best epoch", f"{metrics['best_epoch']} of {metrics['epochs_run']}", True),
        ("training time", format_seconds(float(metrics["train_seconds"])), True),
    ]
    for key in ("device", "package_version"):
        if isinstance(metrics.get(key), str):
            rows.append((key.replace("_", " "), metrics[key], False))
    return _key_value_table(rows)


def _calibration_table(metrics: dict[str, Any]) -> str:
    """The temperature and the ECE before and after calibration (or a note when not calibrated)."""
    test, val = metrics["test"], metrics["val"]
    if "ece" not in test:
        return "<p>This run was not calibrated: <code>mnist-classifier calibrate RUN</code>.</p>"
    rows = [("temperature", f"{float(metrics.get('temperature') or 1.0):.3f}", True)]
    for name, block in (("test", test), ("validation", val)):
        if "ece" in block:
            rows.append(
                (
                    f"{name} ECE, before -> after",
                    f"{percent(block['ece_uncalibrated'])} -> {percent(block['ece'])}",
                    True,
                )
            )
    return _key_value_table(rows)


def _per_class_table(block: dict[str, Any]) -> str:
    head = "<tr><th>digit</th><th>precision</th><th>recall</th><th>F1</th><th>support</th></tr>"

    def row(label: str, scores: dict[str, Any], css: str = "") -> str:
        cells = "".join(
            f"<td class=num>{percent(float(scores[k]))}</td>" for k in ("precision", "recall", "f1")
        )
        cls = f' class="{css}"' if css else ""
        support = f"<td class=num>{int(scores['support']):,}</td>"
        return f"<tr{cls}><td>{_e(label)}</td>{cells}{support}</tr>"

    per_class = block["per_class"]
    rows = [row(key, per_class[key]) for key in sorted(per_class, key=int)]
    rows.append(row("macro average", block["macro_avg"], "avg"))
    rows.append(row("weighted average", block["weighted_avg"], "avg"))
    return f"<table>{head}{''.join(rows)}</table>"


def _plot_paths(run: Path) -> list[tuple[Path, str]]:
    """The plots to show: the standard ones in order, then any other PNG beside them."""
    plots = RunFolder(run).plots
    if not all((plots / name).is_file() for name in PLOT_FILES):
        write_run_plots(run)
    shown = [(plots / name, caption) for name, caption in PLOT_FILES.items()]
    extra = sorted(p for p in plots.glob("*.png") if p.is_file() and p.name not in PLOT_FILES)
    shown += [(p, p.stem.replace("_", " ").replace("-", " ")) for p in extra]
    return shown


def render_report(run_dir: str | os.PathLike[str]) -> str:
    """The HTML text of a run's report (plots are drawn first if any is missing)."""
    run = check_run_dir(run_dir)
    config = read_config(run)
    metrics = read_metrics(run)
    figures = {path.name: _figure(path, caption) for path, caption in _plot_paths(run)}
    name = run_name(run)
    test = metrics["test"]

    cards = "".join(
        f'<div class="card"><div class="value">{_e(value)}</div>'
        f'<div class="label">{_e(label)}</div></div>'
        for value, label in (
            (percent(test["accuracy"]), "test accuracy"),
            (percent(metrics["val"]["accuracy"]), "validation accuracy"),
            (f"{metrics['parameters']:,}", "parameters"),
            (format_seconds(float(metrics["train_seconds"])), "training time"),
        )
    )
    config_rows = [(str(k), _config_value(v), False) for k, v in config.items()]
    curves = figures.pop("curves.png")
    confusion = figures.pop("confusion_matrix.png")
    per_class = figures.pop("per_class.png")
    predictions = figures.pop("predictions.png")
    mistakes = figures.pop("confident_mistakes.png")
    reliability = figures.pop("reliability.png")
    sections = [
        f"<h1>Run <code>{_e(name)}</code></h1>",
        f'<p class="lead">model <code>{_e(metrics["model"])}</code>: '
        f"test accuracy {_e(percent(test['accuracy']))}, "
        f"best epoch {_e(metrics['best_epoch'])} of {_e(metrics['epochs_run'])}</p>",
        f'<div class="cards">{cards}</div>',
        "<h2>Final metrics</h2>",
        _metrics_table(metrics),
        "<h2>Training curves</h2>",
        curves,
        "<h2>Per-class results (test)</h2>",
        _per_class_table(test),
        per_class,
        "<h2>Confusion matrix (test)</h2>",
        confusion,
        "<h2>Predictions</h2>",
        predictions,
        mistakes,
        "<h2>Calibration (test)</h2>",
        _calibration_table(metrics),
        reliability,
    ]
    if figures:
        sections += ["<h2>Other plots</h2>", *figures.values()]
    sections += [
        "<h2>Configuration</h2>",
        _key_value_table(config_rows),
        f"<footer>Written by mnist-classifier {_e(__version__)} from the run folder "
        f"<code>{_e(name)}</code>.</footer>",
    ]
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f'<meta http-equiv="Content-Security-Policy" content="{_e(CSP)}">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{_e(name)}: mnist-classifier run report</title>\n"
        f"<style>\n{STYLE}\n</style>\n</head>\n<body>\n<main>\n"
        + "\n".join(sections)
        + "\n</main>\n</body>\n</html>\n"
    )


def write_report(run_dir: str | os.PathLike[str]) -> Path:
    """Write the run folder's report page atomically and return its path.

    The plots are drawn first when any of them is missing.
    """
    return write_report_text(RunFolder.at(run_dir), render_report(run_dir))
