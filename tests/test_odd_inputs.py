"""Odd inputs that used to crash: non-UTF-8 file names, empty splits, an endless download."""

from __future__ import annotations

import csv
import dataclasses
import os
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import mnist_classifier
from mnist_classifier.cli import main
from mnist_classifier.errors import ConfigError, DataError

# ----------------------------------------------------------------- non-UTF-8 file names


@pytest.mark.skipif(sys.platform == "darwin", reason="macOS file systems refuse non-UTF-8 names")
def test_predict_csv_with_a_non_utf8_file_name(trained_run, mnist, tmp_path):
    folder = tmp_path / "images"
    folder.mkdir()
    odd = os.fsencode(folder) + b"/caf\xe9-\xff.png"  # Latin-1 bytes: not UTF-8
    Image.fromarray(mnist.test_images[0].numpy()).save(odd.decode("utf-8", "surrogateescape"))
    Image.fromarray(mnist.test_images[1].numpy()).save(folder / "plain.png")
    out_csv, explain = tmp_path / "out.csv", tmp_path / "explain"
    # A real process: its stdout is strict UTF-8, as in a terminal.
    done = subprocess.run(
        [sys.executable, "-m", "mnist_classifier", "predict", str(trained_run), str(folder),
         "--csv", str(out_csv), "--explain", str(explain)],
        capture_output=True, timeout=300, env={**os.environ, "PYTHONIOENCODING": "utf-8"},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    assert b"Traceback" not in done.stderr
    assert b"caf\\xe9-\\xff.png" in done.stdout
    rows = list(csv.DictReader(out_csv.read_text(encoding="utf-8").splitlines()))
    names = sorted(Path(r["file"]).name for r in rows)
    assert names == ["caf\\xe9-\\xff.png", "plain.png"]
    assert all(r["digit"] != "" for r in rows)
    assert len(list(explain.iterdir())) == 2


# ----------------------------------------------------------------- empty splits


def _write_split_data(folder: Path, n_train: int, n_test: int) -> Path:
    from mnist_classifier.data.idx import write_idx
    from mnist_classifier.data.sources import FILE_STEMS

    rng = np.random.default_rng(0)
    for split, n in (("train", n_train), ("test", n_test)):
        images, labels = FILE_STEMS[split]
        write_idx(folder / f"{images}.gz", rng.integers(0, 256, (n, 28, 28), dtype=np.uint8))
        write_idx(folder / f"{labels}.gz", (np.arange(n) % 10).astype(np.uint8))
    return folder


def test_an_empty_test_split_is_refused_before_training(tmp_path, capsys):
    data = _write_split_data(tmp_path / "data", n_train=100, n_test=0)
    out = tmp_path / "run"
    argv = [
        "train",
        "--data-dir",
        str(data),
        "--model",
        "mlp-128",
        "--epochs",
        "1",
        "--out",
        str(out),
    ]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "test split is empty" in err
    assert not out.exists(), "nothing was written"


def test_an_empty_training_split_is_refused_in_one_line(tmp_path, small_mnist):
    data = _write_split_data(tmp_path / "data", n_train=0, n_test=10)
    with pytest.raises(DataError, match="empty training split"):
        mnist_classifier.train(out=tmp_path / "a", data_dir=str(data), log=None)
    empty = dataclasses.replace(
        small_mnist,
        train_images=small_mnist.train_images[:0],
        train_labels=small_mnist.train_labels[:0],
    )
    with pytest.raises(ConfigError, match="empty split"):
        mnist_classifier.train(out=tmp_path / "b", dataset=empty, log=None)
    one = dataclasses.replace(
        small_mnist,
        train_images=small_mnist.train_images[:1],
        train_labels=small_mnist.train_labels[:1],
    )
    with pytest.raises(ConfigError, match="empty split"):  # nothing left for validation
        mnist_classifier.train(out=tmp_path / "c", dataset=one, log=None)


# ----------------------------------------------------------------- an endless download


class _Endless(BaseHTTPRequestHandler):
    """Answers every file with an endless stream of bytes (no Content-Length)."""

    server: _EndlessMirror

    def do_GET(self) -> None:
        self.send_response(200)
        self.end_headers()
        chunk = b"\x1f\x8b" + bytes(64 * 1024 - 2)
        try:
            while self.server.sent < 100_000_000:
                self.wfile.write(chunk)
                self.server.sent += len(chunk)
        except OSError:  # the client hung up: what this test wants
            pass

    def log_message(self, format: str, *args: object) -> None:
        pass


class _EndlessMirror(ThreadingHTTPServer):
    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Endless)
        self.sent = 0
        self.url = f"http://127.0.0.1:{self.server_address[1]}/"


def test_download_stops_reading_a_stream_larger_than_the_file(tmp_path, capsys):
    from mnist_classifier.data.download import download_mnist, max_download_bytes
    from mnist_classifier.errors import DownloadError

    mirror = _EndlessMirror()
    threading.Thread(target=mirror.serve_forever, args=(0.02,), daemon=True).start()
    try:
        with pytest.raises(DownloadError, match=r"larger than the .* bytes expected"):
            download_mnist(tmp_path, mirrors=[mirror.url], progress=False, timeout=30)
    finally:
        mirror.shutdown()
        mirror.server_close()
    # train-images comes first: its cap is about 47 MB; the socket buffers hold a few more.
    assert mirror.sent < max_download_bytes("train-images-idx3-ubyte") + 16_000_000
    assert list(tmp_path.iterdir()) == [], "nothing written"
    assert "larger than" in capsys.readouterr().err


def test_download_refuses_a_declared_size_over_the_cap(tmp_path, monkeypatch):
    from mnist_classifier.data import download
    from mnist_classifier.errors import DownloadError

    class Big(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Length", str(10**12))
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Big)
    threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True).start()
    try:
        with pytest.raises(DownloadError, match=r"more than the .* expected"):
            download.download_mnist(
                tmp_path, mirrors=[f"http://127.0.0.1:{server.server_address[1]}/"], progress=False
            )
    finally:
        server.shutdown()
        server.server_close()
    assert list(tmp_path.iterdir()) == []
