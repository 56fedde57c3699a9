"""The run report drawn by a second process that gets ready while the run trains.

``train`` forks this process before torch is loaded (so the fork copies no thread and no
torch state). The child sleeps until the training starts (:meth:`ReportProcess.callback`),
so that it does not compete with the parent's own start-up; while the run trains it
imports matplotlib, the report code and the data loader and draws one throw-away figure
(fonts, caches), on the core the training leaves free. When the run folder is complete the parent sends its path; the child
writes the plots and ``report.html`` (atomically, as always) and answers ``ok`` or the
one-line error, and the parent waits for that answer before it returns, so the run
folder is complete when the command ends. Where forking is not possible (not Linux,
torch already imported, as in a test process), the child is still warming up when the
report is due (a training shorter than its imports) or the child dies, the report is drawn
in the parent, as before.
"""

from __future__ import annotations

import contextlib
import io
import os
import select
import signal
import sys
from pathlib import Path
from typing import Any

from ..training.callbacks import Callback

# The answer of a child that could not draw the report for a reason the parent should
# not repeat in-process: a library error (exit code, message).
_ERROR = "error"
_READY = "ready\n"  # the child's first line, once warmed up


class ReportProcess:
    """A forked child waiting to draw one run's report; see the module docstring."""

    def __init__(self, pid: int, to_child: int, from_child: int) -> None:
        self.pid = pid
        self.to_child = to_child
        self.from_child = from_child
        self.warming = False

    @classmethod
    def start(cls) -> ReportProcess | None:
        """Fork the child, or None where that is not safe or possible."""
        if not sys.platform.startswith("linux") or "torch" in sys.modules:
            return None
        try:
            down_r, down_w = os.pipe()
            up_r, up_w = os.pipe()
            sys.stdout.flush()
            sys.stderr.flush()
            pid = os.fork()
        except OSError:
            return None
        if pid == 0:  # the child: never returns
            os.close(down_w)
            os.close(up_r)
            _child(down_r, up_w)
        os.close(down_r)
        os.close(up_w)
        return cls(pid, down_w, up_r)

    def callback(self) -> Callback:
        """A training callback that lets the child warm up when the training starts."""
        child = self

        class WarmUpReport(Callback):
            def on_train_start(self, trainer: Any) -> None:
                child.warm_up()

        return WarmUpReport()

    def warm_up(self) -> None:
        """Tell the child to get ready (once; later calls do nothing)."""
        if self.to_child >= 0 and not self.warming:
            self.warming = True
            with contextlib.suppress(OSError):
                os.write(self.to_child, b"warm\n")

    def ready(self, timeout: float = 0.0) -> bool:
        """Whether the child has finished warming up (waiting up to ``timeout`` seconds)."""
        if self.from_child < 0:
            return False
        try:
            readable, _, _ = select.select([self.from_child], [], [], timeout)
        except (OSError, ValueError):
            return False
        return bool(readable)

    def write_report(self, run_dir: Path) -> Path | None:
        """Ask the child for ``run_dir``'s report; its path, or None when the child could not
        be used (the caller draws it itself). A library error is raised as in-process.

        A child still warming up (a training shorter than its imports) is not waited for:
        the parent, which has torch loaded already, draws the report sooner itself."""
        if not self.ready():
            self.close()
            return None
        try:
            os.write(self.to_child, (str(run_dir) + "\n").encode("utf-8", "surrogateescape"))
            os.close(self.to_child)
            self.to_child = -1
            with os.fdopen(self.from_child, "rb") as answers:
                self.from_child = -1
                answer = answers.read().decode("utf-8", "replace")
        except OSError:
            answer = ""
        self._reap()
        status, _, rest = answer.removeprefix(_READY).partition("\n")
        if status == "ok":
            return Path(rest.strip())
        if status == _ERROR:
            from ..errors import MnistClassifierError

            code, _, message = rest.partition(" ")
            error = MnistClassifierError(message.strip())
            error.exit_code = int(code) if code.isdigit() else 1
            raise error
        return None

    def close(self) -> None:
        """Let the child go without a report (--no-report, a failed run)."""
        for fd in (self.to_child, self.from_child):
            if fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self.to_child = self.from_child = -1
        self._reap()

    def _reap(self) -> None:
        if self.pid:
            with contextlib.suppress(OSError):
                os.waitpid(self.pid, 0)
            self.pid = 0


def _warm_up() -> None:
    """Import and exercise what drawing the report needs, before it is needed."""
    from matplotlib.figure import Figure

    from ..data import sources  # noqa: F401  (torch: the test images are read through it)
    from ..evaluation import report  # noqa: F401

    fig = Figure(figsize=(1, 1), dpi=50)
    fig.text(0.5, 0.5, "0", fontsize=10, family="monospace")
    fig.text(0.5, 0.2, "0", fontsize=10, fontweight="bold")
    fig.savefig(io.BytesIO(), format="png")


def _child(from_parent: int, to_parent: int) -> None:
    """The child's whole life: warm up, wait for a run folder, draw its report, exit."""
    code = 0
    try:
        # Ctrl-C is the parent's to handle; the child follows it through the pipe.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        with os.fdopen(from_parent, "rb") as requests:
            line = requests.readline().decode("utf-8", "surrogateescape").strip()
            if line == "warm":
                with contextlib.suppress(Exception):
                    _warm_up()
                os.write(to_parent, _READY.encode())
                line = requests.readline().decode("utf-8", "surrogateescape").strip()
        if line:
            answer = _draw(Path(line))
            os.write(to_parent, answer.encode("utf-8", "replace"))
    except BaseException:  # anything: the parent draws the report itself
        code = 1
    finally:
        os._exit(code)


def _draw(run_dir: Path) -> str:
    from ..errors import MnistClassifierError
    from ..evaluation.report import write_report

    try:
        return f"ok\n{write_report(run_dir)}"
    except MnistClassifierError as exc:
        return f"{_ERROR}\n{exc.exit_code} {str(exc).splitlines()[0] if str(exc) else ''}"
