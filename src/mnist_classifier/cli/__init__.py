"""The ``mnist-classifier`` command: a thin front over the library.

Each command group lives in its own module with a ``register(subparsers)``
function. Library errors become one line on stderr and an exit code; usage
errors exit with 2.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import warnings
from collections.abc import Sequence

from .. import __version__
from ..errors import MnistClassifierError
from ..runtime import quiet_openmp_waiters

quiet_openmp_waiters()  # before torch is imported (see runtime.py)

# Modules that add sub-commands, in the order they appear in --help.
COMMAND_MODULES = (
    "mnist_classifier.cli.data",
    "mnist_classifier.cli.train",
    "mnist_classifier.cli.tune",
    "mnist_classifier.cli.calibrate",
    "mnist_classifier.cli.predict",
    "mnist_classifier.cli.report",
    "mnist_classifier.cli.serve",
    "mnist_classifier.cli.completion",
)

# What `pip install mnist-classifier` brings and the inference-only install leaves out.
FULL_INSTALL_MODULES = ("torch", "matplotlib", "tqdm")

# Written once, here: the same codes for every command.
EXIT_CODES = """\
exit codes:
  0    success
  1    an error: a file that cannot be read or written, an image that failed, a missing
       optional extra, a failed export or download (one line on stderr says which)
  2    a usage error: an unknown option, a bad value, an unknown model or recipe
  130  interrupted (Ctrl-C); training saved a checkpoint that --resume continues"""


class OneLineParser(argparse.ArgumentParser):
    """An ArgumentParser whose usage errors are one line and exit code 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="mnist-classifier",
        description="Train, evaluate, explain and serve handwritten-digit classifiers on MNIST.",
        epilog=EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    subparsers = parser.add_subparsers(
        dest="command", metavar="COMMAND", parser_class=OneLineParser
    )
    subparsers.required = True
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # usage errors, --help and --version
        return exc.code if isinstance(exc.code, int) else 2
    args.command_line = list(argv) if argv is not None else sys.argv[1:]
    try:
        with warnings.catch_warnings():
            warnings.showwarning = _one_line_warning
            code = args.func(args)
    except MnistClassifierError as exc:
        print(f"mnist-classifier: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("mnist-classifier: interrupted", file=sys.stderr)
        return 130
    except ModuleNotFoundError as exc:
        missing = (exc.name or "").split(".")[0]
        if missing not in FULL_INSTALL_MODULES:
            raise
        # The inference-only install (no torch, no matplotlib) runs predict and serve on .onnx
        # files; anything else needs the full install.
        print(
            f"mnist-classifier: error: this needs {missing}, which the inference-only install "
            "leaves out; install the package with its dependencies: pip install mnist-classifier",
            file=sys.stderr,
        )
        return 1
    except OSError as exc:  # an output path the user named cannot be written (or read)
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"mnist-classifier: error: {where}{exc.strerror or exc}", file=sys.stderr)
        return 1
    if argv is None and getattr(args, "exit_when_done", False):
        # The command has written and closed everything: skip the interpreter's teardown
        # of torch and matplotlib (more than a second), as the process ends here anyway.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(int(code or 0))
    return int(code or 0)


def _one_line_warning(
    message: Warning | str,
    category: type[Warning],
    filename: str,
    lineno: int,
    file: object = None,
    line: str | None = None,
) -> None:
    """Warnings (a skipped model plugin, a library's deprecation) as one line on stderr."""
    print(f"mnist-classifier: warning: {message}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
