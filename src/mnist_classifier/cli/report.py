"""``mnist-classifier plots | report | compare``: pictures and pages made from run folders."""

from __future__ import annotations

import argparse
from typing import Any

from ..run_folder import PLOTS_DIR, REPORT_FILE


def register(subparsers: Any) -> None:
    plots = subparsers.add_parser(
        "plots",
        help=f"draw a run's plots into RUN/{PLOTS_DIR}/",
        description="Draw learning curves, confusion matrix, per-class scores, predictions "
        f"and confident mistakes of a run into RUN/{PLOTS_DIR}/.",
    )
    plots.add_argument("run", metavar="RUN", help="run folder (runs/NAME)")
    plots.set_defaults(func=cmd_plots)

    report = subparsers.add_parser(
        "report",
        help=f"write RUN/{REPORT_FILE}, one self-contained page",
        description=f"Write RUN/{REPORT_FILE}: config, metrics, per-class table and every plot "
        "in one page that needs no network. Missing plots are drawn first.",
    )
    report.add_argument("run", metavar="RUN", help="run folder (runs/NAME)")
    report.set_defaults(func=cmd_report)

    compare = subparsers.add_parser(
        "compare",
        help="compare runs: a table, a CSV and overlaid validation curves",
        description="Compare runs side by side; writes comparison.md, comparison.csv and "
        "val_curves.png into --out and prints the table.",
    )
    compare.add_argument("runs", nargs="+", metavar="RUN", help="run folders (runs/NAME)")
    compare.add_argument(
        "--out",
        metavar="DIR",
        default="runs/comparison",
        help="folder for the comparison files (default: runs/comparison)",
    )
    compare.set_defaults(func=cmd_compare)


def cmd_plots(args: argparse.Namespace) -> int:
    from ..evaluation.plots import write_run_plots

    for path in write_run_plots(args.run):
        print(path)
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from ..evaluation.report import write_report

    print(write_report(args.run))
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from ..evaluation.compare import compare_runs

    markdown = compare_runs(args.runs, args.out)
    print(markdown.read_text(encoding="utf-8"), end="")
    print(f"\nwritten to {markdown.parent}: comparison.md, comparison.csv, val_curves.png")
    return 0
