"""Where MNIST-format data comes from: the shipped copy, a user's folder, and the decode cache.

Loading returns a :class:`Dataset` of uint8 tensors held in memory. The first
load of a set of files verifies them (MD5 of the decompressed payload, for the
official MNIST files) and decodes them into ``.npy`` files in the cache folder;
later loads read those in milliseconds. Each cached array's CRC-32 is stored
beside it and checked on every read, so a damaged cache (even one whose ``.npy``
headers are intact) is never used. A cache that cannot be written, is damaged,
or no longer matches its source files, is ignored and the files are decoded again.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import time
import zlib
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import numpy as np
import torch

from ..errors import DataError
from ..fileio import atomic_path, atomic_write_text
from .format import IMAGE_SIDE
from .idx import parse_idx, read_bytes

DATA_DIR_ENV = "MNIST_CLASSIFIER_DATA_DIR"
CACHE_DIR_ENV = "MNIST_CLASSIFIER_CACHE_DIR"

# split -> (images file stem, labels file stem), the four standard names.
FILE_STEMS: dict[str, tuple[str, str]] = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
# MD5 of the decompressed official MNIST files.
MNIST_MD5: dict[str, str] = {
    "train-images-idx3-ubyte": "6bbc9ace898e44ae57da46a324031adb",
    "train-labels-idx1-ubyte": "a25bea736e30d166cdddb491f175f624",
    "t10k-images-idx3-ubyte": "2646ac647ad5339dbf082846283269ea",
    "t10k-labels-idx1-ubyte": "27ae3e4e09519cfbb04c329615203637",
}
# Mean and standard deviation of the MNIST training pixels scaled to [0, 1].
MNIST_MEAN = 0.1307
MNIST_STD = 0.3081
_CACHE_VERSION = 1


@dataclass
class Dataset:
    """An MNIST-format dataset in memory.

    Images are uint8 tensors of shape (N, 28, 28); labels are int64 tensors of shape (N,).
    ``mean`` and ``std`` are the normalisation for pixels scaled to [0, 1].
    """

    train_images: torch.Tensor
    train_labels: torch.Tensor
    test_images: torch.Tensor
    test_labels: torch.Tensor
    mean: float
    std: float
    source: str
    files: dict[str, str] = field(default_factory=dict)  # file stem -> path it came from
    checksums: dict[str, str] = field(default_factory=dict)  # file stem -> status
    from_cache: bool = False

    @property
    def is_official_mnist(self) -> bool:
        return bool(self.checksums) and all(v == "ok" for v in self.checksums.values())


def shipped_data_dir() -> Path:
    """The folder holding the MNIST copy shipped inside the package."""
    return Path(str(resources.files("mnist_classifier") / "data" / "files"))


def default_cache_dir() -> Path:
    """The decode cache: $MNIST_CLASSIFIER_CACHE_DIR, else $XDG_CACHE_HOME or ~/.cache."""
    env = os.environ.get(CACHE_DIR_ENV)
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "mnist-classifier"


def locate_files(data_dir: str | os.PathLike[str]) -> dict[str, Path]:
    """Find the four standard files under ``data_dir``.

    Accepted layouts: the files directly in ``data_dir``, or torchvision's
    ``<data_dir>/<NAME>/raw`` (``MNIST``, ``FashionMNIST``, ...) and ``<data_dir>/raw``.
    Each file may be gzip-compressed (``.gz``) or raw.
    """
    root = Path(data_dir).expanduser()
    if not root.exists():
        raise DataError(f"{root}: data folder does not exist")
    if not root.is_dir():
        raise DataError(f"{root}: is not a folder")
    try:
        subfolders = sorted(p / "raw" for p in root.iterdir() if (p / "raw").is_dir())
    except OSError as exc:
        raise DataError(f"{root}: cannot be listed ({exc.strerror or exc})") from None
    candidates = [root, root / "raw", *subfolders]
    stems = [s for pair in FILE_STEMS.values() for s in pair]
    partial: DataError | None = None
    for folder in candidates:
        found = {}
        for stem in stems:
            dotted = stem.replace("-idx", ".idx")  # Kaggle-style names: train-images.idx3-ubyte
            for name in (stem, stem + ".gz", dotted, dotted + ".gz"):
                if (folder / name).is_file():
                    found[stem] = folder / name
                    break
        if len(found) == len(stems):
            return found
        if found and partial is None:
            missing = ", ".join(s for s in stems if s not in found)
            partial = DataError(f"{folder}: incomplete MNIST-format data, missing {missing}")
    if partial is not None:
        raise partial
    raise DataError(
        f"{root}: no MNIST-format files found (expected {', '.join(stems)}, "
        "gzip or raw, directly or under <NAME>/raw)"
    )


def _validate_pair(
    images: np.ndarray, labels: np.ndarray, image_path: Path, label_path: Path
) -> None:
    if images.ndim != 3 or images.shape[1:] != (IMAGE_SIDE, IMAGE_SIDE):
        raise DataError(
            f"{image_path}: images must be N x {IMAGE_SIDE} x {IMAGE_SIDE}, found {'x'.join(map(str, images.shape))}"
        )
    if images.dtype != np.uint8:
        raise DataError(f"{image_path}: images must be unsigned bytes, found {images.dtype}")
    if labels.ndim != 1:
        raise DataError(f"{label_path}: labels must be one-dimensional, found {labels.ndim} dims")
    if labels.dtype != np.uint8:
        raise DataError(f"{label_path}: labels must be unsigned bytes, found {labels.dtype}")
    if len(images) != len(labels):
        raise DataError(
            f"{label_path}: {len(labels)} labels but {image_path.name} holds {len(images)} images"
        )
    if len(labels) and int(labels.max()) > 9:
        bad = int(np.flatnonzero(labels > 9)[0])
        raise DataError(f"{label_path}: label {int(labels[bad])} at index {bad} is outside 0-9")


def _source_key(files: dict[str, Path]) -> dict[str, list[object]]:
    """What identifies the source files cheaply: resolved path, size, mtime, inode.

    The inode catches a file replaced by rename (as every atomic writer does)
    even when size and mtime happen to match.
    """
    key: dict[str, list[object]] = {}
    for stem, path in sorted(files.items()):
        try:
            st = path.stat()
        except OSError as exc:
            raise DataError(f"{path}: cannot be read ({exc.strerror or exc})") from None
        key[stem] = [str(path.resolve()), st.st_size, st.st_mtime_ns, st.st_ino]
    return key


def _cache_folder(cache_dir: Path, key: dict[str, list[object]]) -> Path:
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    return cache_dir / f"v{_CACHE_VERSION}-{digest}"


@dataclass
class _Decoded:
    arrays: dict[str, np.ndarray]
    checksums: dict[str, str]
    mean: float
    std: float


def _read_cache(
    folder: Path, key: dict[str, list[object]], files: dict[str, Path]
) -> _Decoded | None:
    """The cached decode of ``files``, or None when it is missing, stale or damaged."""
    try:
        meta = json.loads((folder / "meta.json").read_text())
        if meta.get("key") != json.loads(json.dumps(key)):
            return None
        arrays = {s: np.load(folder / f"{s}.npy", allow_pickle=False) for s in key}
        crcs = meta["crc32"]
        if any(crcs[s] != _crc32(a) for s, a in arrays.items()):
            return None
        for img_stem, lbl_stem in FILE_STEMS.values():
            _validate_pair(arrays[img_stem], arrays[lbl_stem], files[img_stem], files[lbl_stem])
        checksums = {str(k): str(v) for k, v in meta["checksums"].items()}
        mean, std = float(meta["mean"]), float(meta["std"])
    except (OSError, EOFError, ValueError, KeyError, TypeError, AttributeError, DataError):
        return None
    return _Decoded(arrays, checksums, mean, std)


def _crc32(array: np.ndarray) -> int:
    """CRC-32 of an array's bytes: about 25 ms for the 47 MB of training images."""
    return zlib.crc32(np.ascontiguousarray(array).reshape(-1).view(np.uint8).data)


def _write_cache(folder: Path, key: dict[str, list[object]], decoded: _Decoded) -> bool:
    """Store ``decoded`` in ``folder``; False (and no exception) when the cache is unwritable."""
    created = [p for p in (folder.parent, folder) if not p.exists()]
    try:
        folder.mkdir(parents=True, exist_ok=True)
        for stem, array in decoded.arrays.items():
            with atomic_path(folder / f"{stem}.npy") as tmp, open(tmp, "wb") as fh:
                np.save(fh, array, allow_pickle=False)
        meta = {
            "key": key,
            "crc32": {stem: _crc32(array) for stem, array in decoded.arrays.items()},
            "checksums": decoded.checksums,
            "mean": decoded.mean,
            "std": decoded.std,
            "written": time.time(),
        }
        # meta.json last: a folder without it is never read.
        atomic_write_text(folder / "meta.json", json.dumps(meta, indent=1))
    except OSError:  # a full disk included: the cache is optional, leave nothing half-written
        if folder in created:
            shutil.rmtree(folder, ignore_errors=True)
        if folder.parent in created:
            with contextlib.suppress(OSError):
                folder.parent.rmdir()  # only when empty
        return False
    _prune_stale(folder, key)
    return True


def _prune_stale(current: Path, key: dict[str, list[object]]) -> None:
    """Remove cache entries decoded from the same paths before the files changed."""
    paths = sorted(str(v[0]) for v in key.values())
    for other in current.parent.glob(f"v{_CACHE_VERSION}-*"):
        if other == current:
            continue
        try:
            meta = json.loads((other / "meta.json").read_text())
            other_paths = sorted(str(v[0]) for v in meta["key"].values())
        except (OSError, ValueError, KeyError, TypeError, AttributeError, IndexError):
            continue
        if other_paths == paths:
            shutil.rmtree(other, ignore_errors=True)


def _decode(files: dict[str, Path]) -> _Decoded:
    """Read, checksum, parse and validate the four files."""
    arrays, checksums = {}, {}
    for stem, path in files.items():
        payload = read_bytes(path)
        digest = hashlib.md5(payload, usedforsecurity=False).hexdigest()
        checksums[stem] = "ok" if digest == MNIST_MD5.get(stem) else "differs from MNIST"
        arrays[stem] = parse_idx(payload, str(path))
    for img_stem, lbl_stem in FILE_STEMS.values():
        _validate_pair(arrays[img_stem], arrays[lbl_stem], files[img_stem], files[lbl_stem])
    if all(v == "ok" for v in checksums.values()):
        mean, std = MNIST_MEAN, MNIST_STD
    else:
        mean, std = pixel_stats(arrays[FILE_STEMS["train"][0]])
    return _Decoded(arrays, checksums, mean, std)


def load_dataset(
    data_dir: str | os.PathLike[str] | None = None,
    *,
    cache_dir: str | os.PathLike[str] | None = None,
    use_cache: bool = True,
) -> Dataset:
    """Load an MNIST-format dataset into memory.

    ``data_dir`` (or ``$MNIST_CLASSIFIER_DATA_DIR``) names a folder of MNIST-format
    files; without one, the copy shipped with the package is used. Files are
    decoded once into ``cache_dir`` (default :func:`default_cache_dir`); a cache
    that is stale, damaged or unwritable is ignored. The normalisation is MNIST's
    for the official files and is computed from the training split otherwise.
    """
    if data_dir is None:
        data_dir = os.environ.get(DATA_DIR_ENV) or None
    if data_dir is None:
        folder = shipped_data_dir()
        source = f"shipped MNIST ({folder})"
    else:
        folder = Path(data_dir).expanduser()
        source = str(folder)
    files = locate_files(folder)
    key = _source_key(files)
    cache = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    cache_folder = _cache_folder(cache, key)

    decoded = _read_cache(cache_folder, key, files) if use_cache else None
    from_cache = decoded is not None
    if decoded is None:
        decoded = _decode(files)
        if use_cache:
            _write_cache(cache_folder, key, decoded)
    if data_dir is None and not all(v == "ok" for v in decoded.checksums.values()):
        bad = next(s for s, v in decoded.checksums.items() if v != "ok")
        raise DataError(f"{files[bad]}: checksum does not match the official MNIST file")

    arrays = decoded.arrays
    train_img, train_lbl = FILE_STEMS["train"]
    test_img, test_lbl = FILE_STEMS["test"]
    return Dataset(
        train_images=torch.from_numpy(np.ascontiguousarray(arrays[train_img])),
        train_labels=torch.from_numpy(arrays[train_lbl].astype(np.int64)),
        test_images=torch.from_numpy(np.ascontiguousarray(arrays[test_img])),
        test_labels=torch.from_numpy(arrays[test_lbl].astype(np.int64)),
        mean=decoded.mean,
        std=decoded.std,
        source=source,
        files={s: str(p) for s, p in files.items()},
        checksums=decoded.checksums,
        from_cache=from_cache,
    )


def pixel_stats(images: np.ndarray) -> tuple[float, float]:
    """Mean and standard deviation of uint8 ``images`` scaled to [0, 1].

    Computed exactly from a 256-bin histogram, so a 60,000-image split needs no
    float copy of its pixels. A constant split gets std 1.0 (no division by zero).
    """
    if images.size == 0:
        raise DataError("cannot compute pixel statistics of an empty training split")
    counts = np.bincount(np.asarray(images, dtype=np.uint8).reshape(-1), minlength=256)
    values = np.arange(256, dtype=np.float64) / 255.0
    n = float(counts.sum())
    mean = float((counts * values).sum() / n)
    var = float((counts * (values - mean) ** 2).sum() / n)
    std = var**0.5
    return mean, std if std > 0 else 1.0
