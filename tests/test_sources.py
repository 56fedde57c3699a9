"""Dataset sources: the shipped MNIST, --data-dir layouts, the decode cache, validation."""

from __future__ import annotations

import gzip
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

from mnist_classifier.data import sources
from mnist_classifier.data.idx import read_idx, write_idx
from mnist_classifier.data.sources import FILE_STEMS, load_dataset, locate_files, pixel_stats
from mnist_classifier.errors import DataError

TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
MakeDataset = Callable[..., Path]


def test_shipped_mnist_loads_verifies_and_caches(tmp_path: Path) -> None:
    first = load_dataset(cache_dir=tmp_path)
    assert not first.from_cache
    assert first.is_official_mnist
    assert set(first.checksums.values()) == {"ok"}
    assert first.train_images.shape == (60000, 28, 28)
    assert first.test_images.shape == (10000, 28, 28)
    assert first.train_images.dtype == torch.uint8
    assert first.train_labels.dtype == torch.int64
    assert torch.bincount(first.train_labels, minlength=10).tolist() == TRAIN_COUNTS
    assert torch.bincount(first.test_labels, minlength=10).tolist() == TEST_COUNTS
    assert (first.mean, first.std) == (sources.MNIST_MEAN, sources.MNIST_STD)

    second = load_dataset(cache_dir=tmp_path)
    assert second.from_cache
    assert second.is_official_mnist
    assert torch.equal(second.train_images, first.train_images)
    assert torch.equal(second.test_labels, first.test_labels)
    assert (second.mean, second.std) == (first.mean, first.std)


def test_shipped_files_with_wrong_checksum_are_refused(
    make_idx_dataset: MakeDataset, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = make_idx_dataset()
    monkeypatch.setattr(sources, "shipped_data_dir", lambda: fake)
    monkeypatch.delenv(sources.DATA_DIR_ENV, raising=False)
    for _ in range(2):  # refused when decoded, and again when read from the cache
        with pytest.raises(DataError, match="checksum does not match the official MNIST"):
            load_dataset(cache_dir=tmp_path / "cache")


@pytest.mark.parametrize("compress", [True, False], ids=["gzip", "raw"])
@pytest.mark.parametrize("layout", ["direct", "torchvision", "raw"])
def test_data_dir_layouts(
    make_idx_dataset: MakeDataset, tmp_path: Path, layout: str, compress: bool
) -> None:
    root = tmp_path / "root"
    where = {"direct": root, "torchvision": root / "MNIST" / "raw", "raw": root / "raw"}[layout]
    make_idx_dataset(where, n_train=50, n_test=20, compress=compress)
    ds = load_dataset(root, cache_dir=tmp_path / "cache")
    assert ds.train_images.shape == (50, 28, 28)
    assert ds.test_images.shape == (20, 28, 28)
    assert ds.train_labels.tolist() == [i % 10 for i in range(50)]
    assert not ds.is_official_mnist
    assert set(ds.checksums.values()) == {"differs from MNIST"}
    assert all(Path(p).parent == where for p in ds.files.values())
    expected = read_idx(where / (FILE_STEMS["test"][0] + (".gz" if compress else "")))
    np.testing.assert_array_equal(ds.test_images.numpy(), expected)


def test_kaggle_style_names(make_idx_dataset: MakeDataset, tmp_path: Path) -> None:
    folder = make_idx_dataset(compress=False)
    for path in list(folder.iterdir()):
        path.rename(folder / path.name.replace("-idx", ".idx"))
    assert len(locate_files(folder)) == 4


def test_data_dir_from_environment(
    make_idx_dataset: MakeDataset, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(sources.DATA_DIR_ENV, str(make_idx_dataset(n_train=30)))
    assert len(load_dataset(cache_dir=tmp_path / "cache").train_labels) == 30


def test_mean_std_come_from_the_training_split(
    make_idx_dataset: MakeDataset, tmp_path: Path
) -> None:
    folder = make_idx_dataset(compress=False)
    # A test split of white images: statistics over both splits would differ a lot.
    write_idx(folder / FILE_STEMS["test"][0], np.full((20, 28, 28), 255, np.uint8))
    train = read_idx(folder / FILE_STEMS["train"][0]).astype(np.float64) / 255.0
    for _ in range(2):  # decoded, then from the cache
        ds = load_dataset(folder, cache_dir=tmp_path / "cache")
        assert ds.mean == pytest.approx(train.mean(), abs=1e-9)
        assert ds.std == pytest.approx(train.std(), abs=1e-9)
    assert ds.from_cache


def test_pixel_stats_constant_images_give_unit_std() -> None:
    mean, std = pixel_stats(np.full((2, 28, 28), 51, np.uint8))
    assert mean == pytest.approx(0.2)
    assert std == 1.0
    with pytest.raises(DataError, match="empty training split"):
        pixel_stats(np.zeros((0, 28, 28), np.uint8))


def test_second_load_hits_the_cache(make_idx_dataset: MakeDataset, tmp_path: Path) -> None:
    folder = make_idx_dataset()
    cache = tmp_path / "cache"
    first = load_dataset(folder, cache_dir=cache)
    second = load_dataset(folder, cache_dir=cache)
    assert (first.from_cache, second.from_cache) == (False, True)
    assert torch.equal(first.train_images, second.train_images)
    assert second.checksums == first.checksums
    assert not load_dataset(folder, cache_dir=cache, use_cache=False).from_cache


def test_changed_source_file_is_decoded_again(
    make_idx_dataset: MakeDataset, tmp_path: Path
) -> None:
    folder = make_idx_dataset()
    cache = tmp_path / "cache"
    load_dataset(folder, cache_dir=cache)
    assert load_dataset(folder, cache_dir=cache).from_cache
    # Same size, new content, written by rename (a new inode), mtime forced back.
    path = folder / (FILE_STEMS["train"][1] + ".gz")
    old_stat = path.stat()
    new_labels = (9 - np.arange(50) % 10).astype(np.uint8)
    write_idx(path, new_labels)
    os.utime(path, ns=(old_stat.st_atime_ns, old_stat.st_mtime_ns))
    stale = load_dataset(folder, cache_dir=cache)
    assert not stale.from_cache
    assert stale.train_labels.tolist() == new_labels.tolist()
    # The stale entry was removed; the fresh one is used from now on.
    assert len(list(cache.iterdir())) == 1
    assert load_dataset(folder, cache_dir=cache).train_labels.tolist() == new_labels.tolist()


def test_damaged_cache_falls_back_to_decoding(
    make_idx_dataset: MakeDataset, tmp_path: Path
) -> None:
    folder = make_idx_dataset()
    cache = tmp_path / "cache"
    first = load_dataset(folder, cache_dir=cache)
    (entry,) = cache.iterdir()
    (entry / f"{FILE_STEMS['train'][0]}.npy").write_bytes(b"")
    again = load_dataset(folder, cache_dir=cache)
    assert not again.from_cache
    assert torch.equal(again.train_images, first.train_images)
    assert load_dataset(folder, cache_dir=cache).from_cache  # repaired


@pytest.mark.parametrize("stem", [FILE_STEMS["train"][0], FILE_STEMS["test"][1]])
def test_a_zeroed_cache_payload_with_its_header_intact_is_rebuilt(
    make_idx_dataset: MakeDataset, tmp_path: Path, stem: str
) -> None:
    folder = make_idx_dataset()
    cache = tmp_path / "cache"
    first = load_dataset(folder, cache_dir=cache)
    (entry,) = cache.iterdir()
    npy = entry / f"{stem}.npy"
    raw = bytearray(npy.read_bytes())
    header = len(raw) - np.load(npy).nbytes  # the .npy header stays as it was
    raw[header:] = bytes(len(raw) - header)
    npy.write_bytes(bytes(raw))
    assert np.load(npy).shape == np.load(npy).shape  # still a well-formed array file
    again = load_dataset(folder, cache_dir=cache)
    assert not again.from_cache
    for name in ("train_images", "train_labels", "test_images", "test_labels"):
        assert torch.equal(getattr(again, name), getattr(first, name)), name
    assert load_dataset(folder, cache_dir=cache).from_cache  # rebuilt


def test_a_cache_entry_that_cannot_be_completed_is_removed(
    make_idx_dataset: MakeDataset, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import errno

    folder = make_idx_dataset()
    cache = tmp_path / "cache"
    real_fsync, calls = os.fsync, []

    def full_after_two(fd: int) -> None:
        calls.append(fd)
        if len(calls) > 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", full_after_two)
    ds = load_dataset(folder, cache_dir=cache)  # the cache is optional: no error
    assert not ds.from_cache and len(ds.train_labels) == 50
    assert list(cache.rglob("*")) == [], "no half-written entry or temporary file is left"


def test_unwritable_cache_dir_falls_back_to_decoding(
    make_idx_dataset: MakeDataset, tmp_path: Path
) -> None:
    folder = make_idx_dataset()
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    cache = blocker / "cache"  # cannot be created, whatever the user's permissions
    for _ in range(2):
        ds = load_dataset(folder, cache_dir=cache)
        assert not ds.from_cache
        assert len(ds.train_labels) == 50


def _rewrite(folder: Path, stem: str, array: np.ndarray) -> Path:
    path = folder / f"{stem}.gz"
    write_idx(path, array)
    return path


def test_labels_outside_0_to_9(make_idx_dataset: MakeDataset, tmp_path: Path) -> None:
    folder = make_idx_dataset()
    labels = (np.arange(20) % 10).astype(np.uint8)
    labels[7] = 12
    path = _rewrite(folder, FILE_STEMS["test"][1], labels)
    with pytest.raises(DataError, match="label 12 at index 7 is outside 0-9") as info:
        load_dataset(folder, cache_dir=tmp_path / "cache")
    assert str(info.value).startswith(f"{path}: ")


def test_image_label_count_mismatch(make_idx_dataset: MakeDataset, tmp_path: Path) -> None:
    folder = make_idx_dataset()
    path = _rewrite(folder, FILE_STEMS["train"][1], np.zeros(49, np.uint8))
    with pytest.raises(
        DataError, match=r"49 labels but train-images-idx3-ubyte\.gz holds 50"
    ) as info:
        load_dataset(folder, cache_dir=tmp_path / "cache")
    assert str(info.value).startswith(f"{path}: ")


@pytest.mark.parametrize("shape", [(20, 28, 27), (20, 784)])
def test_wrong_image_size(make_idx_dataset: MakeDataset, tmp_path: Path, shape: tuple) -> None:
    folder = make_idx_dataset()
    path = _rewrite(folder, FILE_STEMS["test"][0], np.zeros(shape, np.uint8))
    with pytest.raises(DataError, match="images must be N x 28 x 28") as info:
        load_dataset(folder, cache_dir=tmp_path / "cache")
    assert str(info.value).startswith(f"{path}: ")


def test_wrong_dtype(make_idx_dataset: MakeDataset, tmp_path: Path) -> None:
    folder = make_idx_dataset()
    path = _rewrite(folder, FILE_STEMS["train"][0], np.zeros((50, 28, 28), np.float32))
    with pytest.raises(DataError, match="unsigned bytes") as info:
        load_dataset(folder, cache_dir=tmp_path / "cache")
    assert str(info.value).startswith(f"{path}: ")


def test_corrupt_file_in_data_dir_names_it(make_idx_dataset: MakeDataset, tmp_path: Path) -> None:
    folder = make_idx_dataset()
    path = folder / (FILE_STEMS["train"][0] + ".gz")
    path.write_bytes(gzip.compress(b"\x00\x00\x08\x03" + b"\x00" * 5))
    with pytest.raises(DataError, match="header truncated") as info:
        load_dataset(folder, cache_dir=tmp_path / "cache")
    assert str(info.value).startswith(f"{path}: ")


def test_folder_errors(make_idx_dataset: MakeDataset, tmp_path: Path) -> None:
    with pytest.raises(DataError, match="data folder does not exist"):
        locate_files(tmp_path / "missing")
    (tmp_path / "file").write_text("x")
    with pytest.raises(DataError, match="is not a folder"):
        locate_files(tmp_path / "file")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no MNIST-format files found"):
        locate_files(tmp_path / "empty")
    folder = make_idx_dataset()
    (folder / (FILE_STEMS["test"][1] + ".gz")).unlink()
    with pytest.raises(DataError, match="missing t10k-labels-idx1-ubyte"):
        locate_files(folder)


def test_incomplete_folder_does_not_hide_a_complete_layout(
    make_idx_dataset: MakeDataset, tmp_path: Path
) -> None:
    root = tmp_path / "root"
    make_idx_dataset(root / "MNIST" / "raw")
    shutil.copy(root / "MNIST" / "raw" / (FILE_STEMS["train"][0] + ".gz"), root)
    assert locate_files(root)[FILE_STEMS["test"][1]].parent == root / "MNIST" / "raw"
