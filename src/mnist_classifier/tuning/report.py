"""The study page: one self-contained HTML file, like a run's report.html.

Optuna's matplotlib visualisations (optimisation history, parameter importances,
parallel coordinates, slices, intermediate values) are drawn to PNGs in memory and
inlined as ``data:`` URLs beside the leaderboard; the page has no script and the same
Content-Security-Policy as the run report, so it opens offline and looks the same
everywhere. A plot that the study cannot support yet (importances need two complete
trials) is replaced by a sentence saying why.
"""

from __future__ import annotations

import base64
import html
import io
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .. import __version__
from ..evaluation.metrics import percent
from ..evaluation.report import CSP, STYLE
from ..fileio import atomic_write_text
from .storage import import_optuna
from .study import StudySummary, default_study_dir, format_params, row_score, row_state

STUDY_REPORT = "study.html"
IMPORTANCES_PNG = "importances.png"


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def _png(result: Any) -> bytes:
    """PNG bytes of the figure behind what Optuna's matplotlib plot returned (axes or an
    array of axes); the figure is closed."""
    import numpy as np
    from matplotlib import pyplot as plt

    first = np.asarray(result, dtype=object).flat[0] if isinstance(result, np.ndarray) else result
    fig = first.figure
    width, height = fig.get_size_inches()
    if width < 9:
        fig.set_size_inches(9, max(height, 5.0))
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=96, bbox_inches="tight")
    plt.close(fig)
    return buffer.getvalue()


def study_plots(study: Any) -> list[tuple[str, bytes | str]]:
    """(title, PNG bytes or the reason it is missing) for each of Optuna's plots."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    optuna = import_optuna()
    vis = optuna.visualization.matplotlib
    complete = [t for t in study.trials if t.state.name == "COMPLETE"]
    plots: list[tuple[str, Callable[[], Any], int]] = [
        ("Optimisation history", lambda: vis.plot_optimization_history(study), 1),
        ("Parameter importances", lambda: vis.plot_param_importances(study), 2),
        ("Parallel coordinates", lambda: vis.plot_parallel_coordinate(study), 2),
        ("Slices: the objective against each parameter", lambda: vis.plot_slice(study), 1),
        (
            "Validation score per epoch (pruned trials stop early)",
            lambda: vis.plot_intermediate_values(study),
            1,
        ),
    ]
    out: list[tuple[str, bytes | str]] = []
    for title, draw, needed in plots:
        if len(complete) < needed:
            out.append((title, f"needs {needed} complete trial(s); the study has {len(complete)}"))
            continue
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                out.append((title, _png(draw())))
        except Exception as exc:  # a plot Optuna cannot draw for this study: say why, go on
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            out.append((title, f"not drawn: {reason}"))
    return out


def _leaderboard_table(summary: StudySummary) -> str:
    label = "val acc" if summary.metric == "val_acc" else "val loss"
    head = "".join(
        f"<th>{h}</th>"
        for h in ("trial", label, "epochs", "seconds", "state", "parameters", "run folder")
    )
    body = []
    for r in summary.rows:
        score, state = row_score(summary, r), row_state(r)
        body.append(
            f"<tr><td class=num>{r.number}</td><td class=num>{_e(score)}</td>"
            f"<td class=num>{'-' if r.epochs is None else r.epochs}</td>"
            f"<td class=num>{'-' if r.seconds is None else f'{r.seconds:.1f}'}</td>"
            f"<td>{_e(state)}</td><td><code>{_e(format_params(r.params))}</code></td>"
            f"<td><code>{_e(r.run_dir or '-')}</code></td></tr>"
        )
    return f"<table><tr>{head}</tr>{''.join(body)}</table>"


def render_study_report(study: Any, summary: StudySummary) -> str:
    figures = []
    for title, content in study_plots(study):
        if isinstance(content, bytes):
            data = base64.b64encode(content).decode("ascii")
            figures.append(
                f'<h2>{_e(title)}</h2><figure><img src="data:image/png;base64,{data}" '
                f'alt="{_e(title)}"></figure>'
            )
        else:
            figures.append(f"<h2>{_e(title)}</h2><p>{_e(content)}</p>")
    counts = ", ".join(f"{n} {state.lower()}" for state, n in sorted(summary.counts.items()))
    best = summary.best
    lead = f"{len(summary.rows)} trials ({counts or 'none'})"
    if best is not None and best.value is not None:
        score = percent(best.value) if summary.metric == "val_acc" else f"{best.value:.4f}"
        lead += f"; best: trial {best.number}, {summary.metric} {score}"
    if summary.best_test is not None:
        lead += (
            f", test accuracy {percent(summary.best_test['accuracy'])} (scored once, at the end)"
        )
    saved = ""
    if summary.counts.get("PRUNED"):
        saved = (
            f"<p>Pruning stopped {summary.counts['PRUNED']} trial(s) early and saved about "
            f"{summary.pruned_seconds_saved:.0f} s of training.</p>"
        )
    body = "\n".join(
        [
            f"<main><h1>Study {_e(summary.study)}</h1>",
            f'<p class="lead">{_e(lead)}</p>',
            saved,
            "<h2>Leaderboard</h2>",
            _leaderboard_table(summary),
            *figures,
            f"<footer>Written by mnist-classifier {_e(__version__)} on "
            f"{_e(time.strftime('%Y-%m-%d %H:%M'))}. The objective is the validation score; "
            "trials never see the test set.</footer></main>",
        ]
    )
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f'<meta http-equiv="Content-Security-Policy" content="{_e(CSP)}">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>Study {_e(summary.study)}</title>\n<style>\n{STYLE}\n</style>\n</head>\n"
        f"<body>\n{body}\n</body>\n</html>\n"
    )


def write_study_report(
    study: Any, summary: StudySummary, *, study_dir: Any = None, path: Path | None = None
) -> Path:
    """Write the page to ``path`` (default ``DIR/study.html``) atomically."""
    target = (
        path
        if path is not None
        else Path(study_dir or default_study_dir(summary.study)) / STUDY_REPORT
    )
    target.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(target, render_study_report(study, summary))
    return target


def write_importances_png(study: Any, path: Path) -> Path:
    """The parameter-importances plot alone, as a PNG file (for documentation)."""
    optuna = import_optuna()
    from ..fileio import atomic_path

    payload = _png(optuna.visualization.matplotlib.plot_param_importances(study))
    with atomic_path(path) as tmp:
        Path(tmp).write_bytes(payload)
    return path
