"""Typed errors raised by the library.

Every error a user can cause (a bad file, a bad value) is a subclass of
:class:`MnistClassifierError`. The CLI turns one of these into a single line
on stderr and a non-zero exit code; anything else is a bug and keeps its
traceback.
"""

from __future__ import annotations

import errno
import os
from functools import partial
from typing import Any, Literal, get_args


class MnistClassifierError(Exception):
    """Base class of every error this package raises on purpose."""

    exit_code = 1


class DataError(MnistClassifierError):
    """A dataset file is missing, truncated, corrupt or inconsistent."""


class DownloadError(DataError):
    """No mirror could provide a verified copy of a file."""


class ConfigError(MnistClassifierError):
    """A configuration value or key is invalid (a usage error: exit code 2)."""

    exit_code = 2


class CheckpointError(MnistClassifierError):
    """A checkpoint cannot be read, or does not fit the model it declares."""


class TrainingError(MnistClassifierError):
    """Training cannot go on (for example, the loss became non-finite)."""


# Why an image was refused (``ImageError.reason``), for callers that act on the kind of
# failure rather than its wording (the server chooses its HTTP status from it):
#   unreadable          missing, empty, truncated or corrupt, a directory, an unsupported mode
#   unsupported_format  the data is in no image format Pillow reads
#   too_large           more pixels than the cap (refused from the header)
#   bad_input           an array, tensor or object that is not an image (shape, dtype,
#                       values, type) - a caller's mistake rather than a file's
#   no_digit            the image was read but holds no ink that stands out
#   several_digits      the image holds a row of digits where one digit was asked for
#   unexpected          reading or preprocessing failed in a way the library did not
#                       foresee (a bug, or a decoder's odd exception); the original
#                       exception is the ``__cause__``
ImageErrorReason = Literal[
    "unreadable",
    "unsupported_format",
    "too_large",
    "bad_input",
    "no_digit",
    "several_digits",
    "unexpected",
]
IMAGE_ERROR_REASONS: tuple[ImageErrorReason, ...] = get_args(ImageErrorReason)


class ImageError(MnistClassifierError):
    """An input image cannot be read or holds no digit; ``reason`` says which kind of failure."""

    def __init__(self, message: str, *, reason: ImageErrorReason) -> None:
        super().__init__(message)
        self.reason: ImageErrorReason = reason

    def __reduce__(self) -> tuple[Any, ...]:  # pickling must keep the keyword-only reason
        return (partial(type(self), reason=self.reason), self.args)


class SeveralDigitsError(ImageError):
    """An image holds several digits side by side where one digit was to be read.

    ``boxes`` are the digits' (left, top, right, bottom), left to right, in the pixels of
    the mask they were found on, whose (height, width) is ``shape``.
    """

    def __init__(
        self,
        message: str,
        *,
        boxes: tuple[tuple[int, int, int, int], ...] = (),
        shape: tuple[int, int] = (0, 0),
        reason: ImageErrorReason = "several_digits",
    ) -> None:
        super().__init__(message, reason=reason)
        self.boxes = boxes
        self.shape = shape

    def __reduce__(self) -> tuple[Any, ...]:
        return (partial(type(self), boxes=self.boxes, shape=self.shape), self.args)


class ExportError(MnistClassifierError):
    """A model could not be exported, or the export does not match PyTorch."""


class TrainingInterrupted(MnistClassifierError):
    """Training was interrupted (Ctrl-C); a resumable checkpoint was saved."""

    exit_code = 130


class RunFolderError(MnistClassifierError):
    """A run folder is missing, or a file in it is missing, corrupt or cannot be written."""


class DiskFullError(MnistClassifierError, OSError):
    """A file could not be written because its file system is full (or over its quota).

    Also an :class:`OSError` (errno ``ENOSPC`` or ``EDQUOT``), so code that treats any
    unwritable file alike (an optional cache, for example) keeps doing so.
    """

    def __init__(self, path: str | os.PathLike[str], code: int = errno.ENOSPC) -> None:
        reason = "disk quota exceeded" if code == errno.EDQUOT else "no space left on device"
        super().__init__(code, reason, os.fspath(path))

    def __str__(self) -> str:
        return f"{self.filename}: cannot be written, {self.strerror}"

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.filename, self.errno))


class MissingExtraError(MnistClassifierError):
    """An optional extra (``serve``, ``onnx``) is not installed: exit code 1, in every command."""

    def __init__(self, extra: str, modules: str, purpose: str) -> None:
        super().__init__(f"{purpose} needs {modules}: pip install 'mnist-classifier[{extra}]'")
        self.extra = extra
