"""download_mnist against local HTTP mirrors on 127.0.0.1 serving small generated files."""

from __future__ import annotations

import gzip
import hashlib
import io
import socket
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest

from mnist_classifier.data import download as dl
from mnist_classifier.data import sources
from mnist_classifier.data.download import Progress, download_mnist
from mnist_classifier.data.idx import encode_idx
from mnist_classifier.data.sources import FILE_STEMS, load_dataset
from mnist_classifier.errors import ConfigError, DataError, DownloadError

STEMS = [s for pair in FILE_STEMS.values() for s in pair]


def _payloads() -> dict[str, bytes]:
    """Small IDX payloads under the four official names (decompressed)."""
    rng = np.random.default_rng(3)
    out = {}
    for split, n in (("train", 30), ("test", 10)):
        img, lbl = FILE_STEMS[split]
        out[img] = encode_idx(rng.integers(0, 256, (n, 28, 28), dtype=np.uint8))
        out[lbl] = encode_idx((np.arange(n) % 10).astype(np.uint8))
    return out


PAYLOADS = _payloads()
GOOD_FILES = {f"{s}.gz": gzip.compress(p, mtime=0) for s, p in PAYLOADS.items()}


@pytest.fixture(autouse=True)
def expected_checksums(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make the generated payloads the 'official' ones."""
    for stem, payload in PAYLOADS.items():
        monkeypatch.setitem(sources.MNIST_MD5, stem, hashlib.md5(payload).hexdigest())


class _Handler(BaseHTTPRequestHandler):
    server: _Mirror

    def do_GET(self) -> None:
        self.server.requests.append(self.path)
        body = self.server.files.get(self.path.rsplit("/", 1)[-1])
        if body is None:
            self.send_error(404)
            return
        self.send_response(200)
        declared = len(body) + (1000 if self.server.short else 0)
        self.send_header("Content-Length", str(declared))
        self.end_headers()
        self.wfile.write(body)
        if self.server.short:  # promise more than is sent, then hang up
            self.close_connection = True

    def log_message(self, format: str, *args: object) -> None:
        pass


class _Mirror(ThreadingHTTPServer):
    def __init__(self, files: dict[str, bytes], short: bool) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.files = files
        self.short = short
        self.requests: list[str] = []
        self.url = f"http://127.0.0.1:{self.server_address[1]}/mnist/"


@pytest.fixture
def serve() -> Iterator[Callable[..., _Mirror]]:
    """Factory: start a mirror serving ``files`` (name -> bytes) in a thread."""
    started: list[_Mirror] = []

    def start(files: dict[str, bytes], short: bool = False) -> _Mirror:
        mirror = _Mirror(files, short)
        threading.Thread(target=mirror.serve_forever, args=(0.02,), daemon=True).start()
        started.append(mirror)
        return mirror

    yield start
    for mirror in started:
        mirror.shutdown()
        mirror.server_close()


@pytest.fixture
def down_url() -> str:
    """A URL on a port nobody listens on (connection refused)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/mnist/"


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if not p.name.endswith(".gz"))


def test_download_from_a_good_mirror(serve: Callable[..., _Mirror], tmp_path: Path, capsys) -> None:
    mirror = serve(GOOD_FILES)
    dest = tmp_path / "dl"
    paths = download_mnist(dest, mirrors=[mirror.url], timeout=5)
    assert set(paths) == set(STEMS)
    for stem, path in paths.items():
        assert path == dest / f"{stem}.gz"
        assert gzip.decompress(path.read_bytes()) == PAYLOADS[stem]
    assert _leftovers(dest) == []
    err = capsys.readouterr().err
    assert "mirror" not in err
    assert len(err.splitlines()) <= 2 * len(STEMS)  # not a tty: a few plain lines per file
    assert "\r" not in err
    ds = load_dataset(dest, cache_dir=tmp_path / "cache")
    assert ds.is_official_mnist  # (the monkeypatched checksums)
    assert len(ds.train_labels) == 30


def test_verified_files_are_not_downloaded_again(
    serve: Callable[..., _Mirror], tmp_path: Path, capsys
) -> None:
    mirror = serve(GOOD_FILES)
    download_mnist(tmp_path, mirrors=[mirror.url], progress=False)
    assert len(mirror.requests) == 4
    bad = tmp_path / f"{STEMS[1]}.gz"
    bad.write_bytes(gzip.compress(b"not the labels"))
    download_mnist(tmp_path, mirrors=[mirror.url], progress=False)
    assert mirror.requests[4:] == [f"/mnist/{STEMS[1]}.gz"]  # only the damaged one
    assert gzip.decompress(bad.read_bytes()) == PAYLOADS[STEMS[1]]
    assert capsys.readouterr().err == ""


def test_down_mirror_is_reported_and_skipped(
    serve: Callable[..., _Mirror], down_url: str, tmp_path: Path, capsys
) -> None:
    mirror = serve(GOOD_FILES)
    paths = download_mnist(tmp_path, mirrors=[down_url, mirror.url], progress=False, timeout=5)
    assert len(paths) == 4
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 4  # one line per file for the down mirror, nothing else
    for line in lines:
        assert line.startswith(f"mirror {down_url}: ")
        assert line.endswith(", trying next")
        assert "refused" in line.lower()


@pytest.mark.parametrize("fault", ["wrong content", "not gzip", "truncated gzip", "short body"])
def test_corrupt_mirror_is_reported_and_skipped(
    serve: Callable[..., _Mirror], tmp_path: Path, capsys, fault: str
) -> None:
    if fault == "wrong content":
        files = {n: gzip.compress(b"\x00\x00\x08\x01" + b"\x00" * 8) for n in GOOD_FILES}
    elif fault == "not gzip":
        files = {n: b"<html>moved</html>" for n in GOOD_FILES}
    else:
        files = {n: b[: len(b) // 2] for n, b in GOOD_FILES.items()}
    bad = serve(files, short=fault == "short body")
    good = serve(GOOD_FILES)
    paths = download_mnist(tmp_path, mirrors=[bad.url, good.url], progress=False)
    assert all(gzip.decompress(p.read_bytes()) == PAYLOADS[s] for s, p in paths.items())
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 4
    expected = {
        "wrong content": "checksum mismatch",
        "not gzip": "not valid gzip",
        "truncated gzip": "not valid gzip",
        "short body": "incomplete download",
    }[fault]
    assert all(line.startswith(f"mirror {bad.url}: {expected}") for line in lines), lines
    assert _leftovers(tmp_path) == []


def test_all_mirrors_failing(
    serve: Callable[..., _Mirror], down_url: str, tmp_path: Path, capsys
) -> None:
    missing = serve({})  # HTTP 404 for everything
    corrupt = serve({n: gzip.compress(b"junk") for n in GOOD_FILES})
    dest = tmp_path / "dl"
    mirrors = [down_url, missing.url, corrupt.url]
    with pytest.raises(DownloadError) as info:
        download_mnist(dest, mirrors=mirrors, progress=False, timeout=5)
    message = str(info.value)
    assert message.startswith("train-images-idx3-ubyte.gz: ")
    assert "\n" not in message
    for url in mirrors:
        assert url in message
    assert "HTTP 404" in message
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == len(mirrors)
    for line, url in zip(lines, mirrors, strict=True):
        assert line.startswith(f"mirror {url}: ")
    assert lines[-1].endswith(
        "checksum mismatch (content MD5 " + hashlib.md5(b"junk").hexdigest() + ")"
    )
    assert list(dest.iterdir()) == []  # nothing partial left behind


def test_interrupt_leaves_no_partial_file(
    serve: Callable[..., _Mirror], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    mirror = serve(GOOD_FILES)
    calls = []

    def interrupt(self: Progress, n: int) -> None:
        calls.append(n)
        raise KeyboardInterrupt

    monkeypatch.setattr(Progress, "update", interrupt)
    with pytest.raises(KeyboardInterrupt):
        download_mnist(tmp_path, mirrors=[mirror.url])
    assert calls  # it was interrupted mid-stream
    assert list(tmp_path.iterdir()) == []


def test_file_url_mirror(tmp_path: Path) -> None:
    local = tmp_path / "local"
    local.mkdir()
    for name, body in GOOD_FILES.items():
        (local / name).write_bytes(body)
    paths = download_mnist(tmp_path / "dl", mirrors=[local.as_uri()], progress=False)
    assert len(paths) == 4


def test_bad_arguments(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="must start with http"):
        download_mnist(tmp_path, mirrors=["ftp://example.org/"])
    with pytest.raises(ConfigError, match="no download mirrors"):
        download_mnist(tmp_path, mirrors=[])
    with pytest.raises(ConfigError, match="timeout"):
        download_mnist(tmp_path, mirrors=["http://127.0.0.1/"], timeout=0)
    (tmp_path / "file").write_text("x")
    with pytest.raises(DataError, match="cannot create folder"):
        download_mnist(tmp_path / "file" / "sub", mirrors=["http://127.0.0.1/"])


def test_progress_bar_on_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TQDM_DISABLE", raising=False)

    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    stream = Tty()
    bar = Progress("x.gz", 1000, stream)
    bar.update(500)
    bar._bar.refresh()  # tqdm redraws at most every 0.1 s; draw the half-way state now
    bar.finish("verified")
    text = stream.getvalue()
    assert text.startswith("\rx.gz")
    assert "50%" in text and "100%" not in text
    assert "downloading" not in text  # the bar, not the plain lines
    assert text.endswith("x.gz: 0.5 kB, verified\n")
    assert text.count("\n") == 1


def test_progress_bar_switched_off_on_a_terminal_gives_plain_lines(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TQDM_DISABLE", "1")

    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    stream = Tty()
    bar = Progress("x.gz", 1000, stream)
    bar.update(1000)
    bar.finish("verified")
    assert stream.getvalue() == "downloading x.gz (1.0 kB)\nx.gz: 1.0 kB, verified\n"


def test_default_mirrors_are_the_official_ones() -> None:
    assert dl.DEFAULT_MIRRORS[0] == "https://ossci-datasets.s3.amazonaws.com/mnist/"
    assert all(m.endswith("/") for m in dl.DEFAULT_MIRRORS)
