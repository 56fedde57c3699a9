"""Atomic file writes: a reader never sees a half-written file.

Every file the package writes goes through :func:`atomic_path`: the content is
written to a temporary file beside the destination (``.NAME.XXXXXX.tmp``), synced
and renamed over it. A failure leaves the destination as it was and removes the
temporary file; a full file system becomes one :class:`~.errors.DiskFullError`
naming the destination, whatever the writer inside raised it through.
"""

from __future__ import annotations

import contextlib
import errno
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from .errors import DiskFullError

# errno values that mean "the file system has no room": reported as a DiskFullError.
_FULL = (errno.ENOSPC, errno.EDQUOT)
TEMP_SUFFIX = ".tmp"


def temp_prefix(path: str | os.PathLike[str]) -> str:
    """The prefix of the temporary files :func:`atomic_path` makes for ``path``."""
    return f".{Path(path).name}."


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success fsync it and rename it over ``path``.

    On any exception (Ctrl-C included) the temporary file is removed and ``path``
    keeps its previous content. An ``ENOSPC``/``EDQUOT`` failure, in the body or in
    the sync, is raised as :class:`DiskFullError` naming ``path``.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(
            dir=path.parent, prefix=temp_prefix(path), suffix=TEMP_SUFFIX
        )
    except OSError as exc:
        if exc.errno in _FULL:
            raise DiskFullError(path, exc.errno) from None
        raise
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        # mkstemp creates files readable by the owner only; give the usual umask-based mode.
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except DiskFullError:
        raise
    except OSError as exc:
        if exc.errno in _FULL:
            raise DiskFullError(path, exc.errno) from None
        raise
    finally:
        tmp.unlink(missing_ok=True)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_bytes(
    path: str | os.PathLike[str], payload: bytes | bytearray | memoryview
) -> None:
    """Write ``payload`` to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(payload)


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    atomic_write_bytes(path, text.encode("utf-8"))
