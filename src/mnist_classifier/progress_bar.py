"""Progress bars (tqdm): when they are drawn, and how they are switched off.

A bar is drawn on a terminal and in a Jupyter notebook (tqdm's ``auto`` mode: a widget when
ipywidgets is installed, text otherwise), never into a log file or a pipe. It is switched off
by ``TQDM_DISABLE=1`` (tqdm's own variable, honoured here because the bars are created with an
explicit ``disable``), by the CLI's ``--no-progress`` and ``-q``, and in Python by
``with progress_bar.disabled(): ...``. Used by training (one bar per epoch) and by the MNIST
download (one bar per file). tqdm is imported only when a bar is drawn.
"""

from __future__ import annotations

import contextlib
import os
import sys
import warnings
from collections.abc import Iterator
from contextvars import ContextVar
from typing import Any, TextIO

ENV_DISABLE = "TQDM_DISABLE"
_OFF_VALUES = ("", "0", "false", "no", "off")

_disabled: ContextVar[bool] = ContextVar("mnist_classifier_progress_disabled", default=False)


def disabled_by_env() -> bool:
    """True when ``TQDM_DISABLE`` is set to anything but an empty, 0, false, no or off."""
    return os.environ.get(ENV_DISABLE, "").strip().lower() not in _OFF_VALUES


def in_notebook() -> bool:
    """True inside a Jupyter kernel, where stderr is no terminal but a bar still renders."""
    return "ipykernel" in sys.modules


def wanted(stream: TextIO | None = None) -> bool:
    """Whether a bar should be drawn on ``stream`` (default stderr) now."""
    if _disabled.get() or disabled_by_env():
        return False
    stream = stream if stream is not None else sys.stderr
    return in_notebook() or bool(getattr(stream, "isatty", lambda: False)())


@contextlib.contextmanager
def disabled(flag: bool = True) -> Iterator[None]:
    """No progress bars inside the block when ``flag`` is true (nested blocks keep them off)."""
    token = _disabled.set(flag or _disabled.get())
    try:
        yield
    finally:
        _disabled.reset(token)


def new_bar(*, total: float | None, desc: str, stream: TextIO | None, **options: Any) -> Any:
    """A tqdm bar (``tqdm.auto``: a notebook widget where one renders) that shows the ETA.

    Call only when :func:`wanted` says so; the bar is cleared when it is closed.
    """
    with warnings.catch_warnings():  # tqdm.auto warns when a notebook lacks ipywidgets
        warnings.simplefilter("ignore")
        from tqdm.auto import tqdm

        return tqdm(
            total=total,
            desc=desc,
            file=stream if stream is not None else sys.stderr,
            disable=False,
            leave=False,
            dynamic_ncols=True,
            **options,
        )
