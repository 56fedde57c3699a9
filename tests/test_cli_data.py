"""`mnist-classifier data ...` run in-process on generated data."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path

import pytest

from mnist_classifier.cli import data as cli_data
from mnist_classifier.cli import main
from mnist_classifier.data import sources
from mnist_classifier.data.idx import read_bytes

MakeDataset = Callable[..., Path]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(autouse=True)
def private_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(sources.CACHE_DIR_ENV, str(tmp_path / "cache"))
    monkeypatch.delenv(sources.DATA_DIR_ENV, raising=False)


def test_info(make_idx_dataset: MakeDataset, capsys: pytest.CaptureFixture[str]) -> None:
    folder = make_idx_dataset(n_train=50, n_test=20)
    assert main(["data", "info", "--data-dir", str(folder)]) == 0
    out = capsys.readouterr().out
    assert f"source:     {folder}" in out
    assert "official:   no" in out
    assert "cache:      decoded now" in out
    assert "(from the training split)" in out
    rows = {line.split()[0]: line.split()[1:] for line in out.splitlines()[-2:]}
    assert rows["train"] == ["5"] * 10 + ["50"]
    assert rows["test"] == ["2"] * 10 + ["20"]


def test_info_json_second_run_hits_cache(
    make_idx_dataset: MakeDataset, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = make_idx_dataset(n_train=30, n_test=10)
    main(["data", "info", "--data-dir", str(folder)])
    capsys.readouterr()
    assert main(["data", "info", "--data-dir", str(folder), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["from_cache"] is True
    assert summary["official_mnist"] is False
    assert summary["splits"]["train"] == {"count": 30, "per_class": [3] * 10}
    assert set(summary["files"]) == {s for pair in sources.FILE_STEMS.values() for s in pair}


@pytest.mark.parametrize("split", ["train", "test"])
def test_show_writes_a_png(
    make_idx_dataset: MakeDataset, tmp_path: Path, capsys: pytest.CaptureFixture[str], split: str
) -> None:
    folder = make_idx_dataset()
    out = tmp_path / "pics" / "samples.png"
    args = [
        "data",
        "show",
        "--data-dir",
        str(folder),
        "--split",
        split,
        "--n",
        "7",
        "--out",
        str(out),
    ]
    assert main(args) == 0
    assert out.read_bytes()[:8] == PNG_MAGIC
    assert [p.name for p in out.parent.iterdir()] == ["samples.png"]  # no temporary left
    assert str(out) in capsys.readouterr().out


def test_show_picks_by_seed_and_labels_match(
    make_idx_dataset: MakeDataset, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = make_idx_dataset(n_train=50)
    drawn: list[tuple[list[int], list[int]]] = []

    def fake_render(images, labels, indices, title: str) -> bytes:
        assert images.shape == (len(indices), 28, 28)
        drawn.append((labels.tolist(), indices.tolist()))
        return b"png"

    monkeypatch.setattr(cli_data, "render_samples", fake_render)
    for seed in (0, 0, 1):
        out = str(tmp_path / "s.png")
        main(["data", "show", "--data-dir", str(folder), "--seed", str(seed), "--out", out])
    (labels0, picks0), (labels0b, picks0b), (_, picks1) = drawn
    assert picks0 == picks0b and labels0 == labels0b
    assert picks0 != picks1
    assert len(set(picks0)) == 25
    assert labels0 == [i % 10 for i in picks0]  # the generated labels cycle 0-9


@pytest.mark.parametrize("n", ["0", "21"])
def test_show_bad_count_is_a_usage_error(
    make_idx_dataset: MakeDataset, tmp_path: Path, capsys: pytest.CaptureFixture[str], n: str
) -> None:
    folder = make_idx_dataset(n_test=20)
    out = tmp_path / "x.png"
    code = main(
        ["data", "show", "--data-dir", str(folder), "--split", "test", "--n", n, "--out", str(out)]
    )
    assert code == 2
    err = capsys.readouterr().err
    assert err.startswith("mnist-classifier: error: --n ")
    assert err.count("\n") == 1
    assert not out.exists()


@pytest.mark.parametrize("command", ["info", "show"])
def test_bad_data_dir_is_one_line_and_exit_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], command: str
) -> None:
    missing = tmp_path / "no-such-folder"
    args = ["data", command, "--data-dir", str(missing)]
    if command == "show":
        args += ["--out", str(tmp_path / "x.png")]
    assert main(args) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == f"mnist-classifier: error: {missing}: data folder does not exist\n"


def test_corrupt_data_dir_is_one_line_and_exit_1(
    make_idx_dataset: MakeDataset, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = make_idx_dataset()
    (folder / "t10k-labels-idx1-ubyte.gz").write_bytes(b"\x1f\x8b garbage")
    assert main(["data", "info", "--data-dir", str(folder)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "t10k-labels-idx1-ubyte.gz: gzip data is truncated or corrupt" in err


def test_download_from_a_local_mirror(
    make_idx_dataset: MakeDataset,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    mirror = make_idx_dataset(tmp_path / "mirror")
    for path in mirror.iterdir():
        stem = path.name.removesuffix(".gz")
        monkeypatch.setitem(sources.MNIST_MD5, stem, hashlib.md5(read_bytes(path)).hexdigest())
    dest = tmp_path / "dl"
    args = ["data", "download", "--out", str(dest), "--mirror", mirror.as_uri(), "--quiet"]
    assert main(args) == 0
    out = capsys.readouterr().out.splitlines()
    assert sorted(out) == sorted(str(p) for p in dest.iterdir())
    assert len(out) == 4
    assert main(["data", "info", "--data-dir", str(dest), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["official_mnist"] is True


def test_download_failure_is_one_error_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    empty = tmp_path / "empty-mirror"
    empty.mkdir()
    dest = tmp_path / "dl"
    assert main(["data", "download", "--out", str(dest), "--mirror", empty.as_uri()]) == 1
    err = capsys.readouterr().err.splitlines()
    assert err[0].startswith(f"mirror {empty.as_uri()}/: ")
    assert err[-1].startswith("mnist-classifier: error: train-images-idx3-ubyte.gz: ")
    assert list(dest.iterdir()) == []
