"""Download the four official MNIST files from a list of mirrors, verified.

MNIST ships inside the package, so nothing needs this to work; it exists to
fetch a fresh copy (or to rebuild one elsewhere). Each file is streamed to a
temporary file beside its destination, its *decompressed* payload is checked
against :data:`~mnist_classifier.data.sources.MNIST_MD5`, and only then is it
renamed into place: an interrupted or failed download never leaves a partial
file behind. Mirrors are tried in order; each failure is one line on stderr.
"""

from __future__ import annotations

import gzip
import hashlib
import http.client
import os
import sys
import urllib.error
import urllib.request
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any, BinaryIO, TextIO

from .. import __version__, progress_bar
from ..errors import ConfigError, DataError, DownloadError
from ..fileio import atomic_path
from . import sources

DEFAULT_MIRRORS: tuple[str, ...] = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
    "http://yann.lecun.com/exdb/mnist/",
)
DEFAULT_TIMEOUT = 30.0  # seconds without data before a mirror counts as failed
# Decompressed size of each official file (bytes). A gzip stream is never much larger than
# what it holds, so a download that grows past max_download_bytes(stem) is cut off: a
# hostile or broken mirror cannot fill the disk with an endless stream.
OFFICIAL_SIZES: dict[str, int] = {
    "train-images-idx3-ubyte": 47_040_016,
    "train-labels-idx1-ubyte": 60_008,
    "t10k-images-idx3-ubyte": 7_840_016,
    "t10k-labels-idx1-ubyte": 10_008,
}
_CHUNK = 64 * 1024  # bytes per read
_SCHEMES = ("http://", "https://", "file://")


def max_download_bytes(stem: str) -> int:
    """The most bytes accepted for ``stem``'s ``.gz``: its content plus deflate's worst-case
    overhead (a few bytes per 16 kB block) and a header."""
    size = OFFICIAL_SIZES[stem]
    return size + size // 1000 + 1024


class _MirrorFailed(Exception):
    """One mirror could not provide a verified copy; the message says why."""


class Progress:
    """A one-file progress bar on ``stream``.

    On a terminal or in a notebook it is a tqdm bar (bytes, rate, ETA) that is cleared and
    replaced by one summary line when the file is done; elsewhere (a log file, CI), or with
    progress bars switched off (``TQDM_DISABLE=1``, ``--no-progress``), it writes one plain
    line when a file starts and one when it is done.
    """

    def __init__(self, name: str, total: int | None, stream: TextIO | None = None) -> None:
        self.name = name
        self.total = total if total and total > 0 else None
        self.stream = stream if stream is not None else sys.stderr
        self.done = 0
        self._bar: Any = None
        if progress_bar.wanted(self.stream):
            self._bar = progress_bar.new_bar(
                total=self.total,
                desc=name,
                stream=self.stream,
                unit="B",
                unit_scale=True,
                unit_divisor=1000,
            )
        else:
            size = f" ({_human_size(self.total)})" if self.total else ""
            self._write(f"downloading {name}{size}\n")

    def update(self, n: int) -> None:
        """Count ``n`` more bytes received."""
        self.done += n
        if self._bar is not None:
            self._bar.update(n)

    def finish(self, note: str) -> None:
        """End the bar with ``note`` (for example "verified")."""
        self._close()
        self._write(f"{self.name}: {_human_size(self.done)}, {note}\n")

    def abort(self) -> None:
        """Clear the bar so the next message starts on its own line."""
        self._close()

    def _close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def _write(self, text: str) -> None:
        self.stream.write(text)
        self.stream.flush()


def _human_size(n: int | None) -> str:
    """A byte count for people: MB, or kB below one megabyte."""
    n = n or 0
    return f"{n / 1e6:.1f} MB" if n >= 1e6 else f"{n / 1e3:.1f} kB"


def _check_mirrors(mirrors: Sequence[str]) -> list[str]:
    if isinstance(mirrors, str):
        mirrors = [mirrors]
    checked = [m if m.endswith("/") else m + "/" for m in mirrors]
    if not checked:
        raise ConfigError("no download mirrors given")
    for m in checked:
        if not m.startswith(_SCHEMES):
            raise ConfigError(f"mirror {m!r}: URL must start with http://, https:// or file://")
    return checked


def decompressed_md5(path: str | os.PathLike[str], limit: int | None = None) -> str:
    """MD5 of the decompressed content of the gzip file ``path``.

    With ``limit``, reading stops after a little more than ``limit`` bytes (the digest
    then cannot match a file of ``limit`` bytes): a small file that inflates to
    gigabytes costs no more than the real one. Raises OSError, EOFError or zlib.error
    when the file is missing or is not complete, valid gzip.
    """
    digest = hashlib.md5(usedforsecurity=False)
    read = 0
    with gzip.open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
            read += len(chunk)
            if limit is not None and read > limit:
                break
    return digest.hexdigest()


def is_verified(path: str | os.PathLike[str], stem: str) -> bool:
    """True when ``path`` is a gzip file whose content matches the official ``stem``."""
    try:
        return decompressed_md5(path) == sources.MNIST_MD5[stem]
    except (OSError, EOFError, zlib.error):
        return False


def _fetch(
    url: str, out: BinaryIO, name: str, timeout: float, progress: bool, limit: int
) -> Progress | None:
    """Stream ``url`` into the open file ``out`` and return its (unfinished) progress bar.

    Raises _MirrorFailed on any network or HTTP fault and when the file is (or would
    be) larger than ``limit`` bytes, DataError when ``out`` cannot be written.
    """
    request = urllib.request.Request(url, headers={"User-Agent": f"mnist-classifier/{__version__}"})
    bar: Progress | None = None
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            length = response.headers.get("Content-Length") if response.headers else None
            total = int(length) if length and length.isdigit() else None
            if total is not None and total > limit:
                raise _MirrorFailed(f"file is {total} bytes, more than the {limit} expected")
            bar = Progress(name, total) if progress else None
            received = 0
            while chunk := response.read(_CHUNK):
                if received + len(chunk) > limit:
                    raise _MirrorFailed(f"stream is larger than the {limit} bytes expected")
                try:
                    out.write(chunk)
                except OSError as exc:
                    raise DataError(
                        f"{out.name}: cannot be written ({exc.strerror or exc})"
                    ) from None
                received += len(chunk)
                if bar is not None:
                    bar.update(len(chunk))
        if total is not None and received != total:
            raise _MirrorFailed(f"incomplete download ({received} of {total} bytes)")
    except BaseException as exc:
        if bar is not None:
            bar.abort()
        if isinstance(exc, urllib.error.HTTPError):
            exc.close()
            raise _MirrorFailed(f"HTTP {exc.code} {exc.reason}") from None
        if isinstance(exc, (OSError, http.client.HTTPException, ValueError)):
            raise _MirrorFailed(_reason(exc)) from None
        raise
    return bar


def _reason(exc: BaseException) -> str:
    """A short, one-line description of a network failure."""
    if isinstance(exc, urllib.error.URLError) and not isinstance(exc, urllib.error.HTTPError):
        inner = exc.reason
        if isinstance(inner, BaseException):
            return _reason(inner)
        return str(inner)
    if isinstance(exc, TimeoutError):
        return "timed out"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    text = str(exc) or type(exc).__name__
    return " ".join(text.split())


def _verify(path: Path, stem: str) -> None:
    """Raise _MirrorFailed unless ``path`` is gzip holding the official ``stem`` content."""
    try:
        digest = decompressed_md5(path, limit=OFFICIAL_SIZES[stem])
    except (OSError, EOFError, zlib.error) as exc:
        raise _MirrorFailed(f"not valid gzip ({_reason(exc)})") from None
    if digest != sources.MNIST_MD5[stem]:
        raise _MirrorFailed(f"checksum mismatch (content MD5 {digest})")


def download_mnist(
    dest_dir: str | os.PathLike[str],
    mirrors: Sequence[str] = DEFAULT_MIRRORS,
    progress: bool = True,
    timeout: float = DEFAULT_TIMEOUT,
) -> dict[str, Path]:
    """Download the four official MNIST ``.gz`` files into ``dest_dir``; return stem -> path.

    Mirrors are base URLs tried in order for each file. A file already in
    ``dest_dir`` whose content verifies is kept without a download. A copy is
    accepted only when the MD5 of its decompressed payload matches the official
    one. Each failing mirror is reported as one line on stderr; when every
    mirror fails for a file, :class:`DownloadError` names the file and the
    mirrors tried. The folder can then be read with ``--data-dir``.
    """
    bases = _check_mirrors(mirrors)
    if timeout <= 0:
        raise ConfigError(f"download timeout must be positive, got {timeout}")
    dest = Path(dest_dir).expanduser()
    try:
        dest.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DataError(f"{dest}: cannot create folder ({exc.strerror or exc})") from None

    paths: dict[str, Path] = {}
    for stem in (s for pair in sources.FILE_STEMS.values() for s in pair):
        name = f"{stem}.gz"
        target = dest / name
        if is_verified(target, stem):
            if progress:
                print(f"{name}: already present and verified", file=sys.stderr)
            paths[stem] = target
            continue
        failures: list[str] = []
        for i, base in enumerate(bases):
            url = base + name
            try:
                with atomic_path(target) as tmp:
                    with open(tmp, "wb") as out:
                        limit = max_download_bytes(stem)
                        bar = _fetch(url, out, name, timeout, progress, limit)
                    _verify(tmp, stem)
                    if bar is not None:
                        bar.finish(f"verified, from {base}")
            except _MirrorFailed as exc:
                failures.append(f"{base} ({exc})")
                more = ", trying next" if i + 1 < len(bases) else ""
                print(f"mirror {base}: {exc}{more}", file=sys.stderr)
                continue
            except OSError as exc:  # the temporary file itself: not the mirror's fault
                raise DataError(f"{target}: cannot be written ({exc.strerror or exc})") from None
            paths[stem] = target
            break
        else:
            raise DownloadError(
                f"{name}: no mirror provided a verified copy; tried {'; '.join(failures)}"
            )
    return paths
