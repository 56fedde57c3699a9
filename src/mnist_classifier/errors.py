"""Typed errors raised by the library.

Every error a user can cause (a bad file, a bad value) is a subclass of
:class:`MnistClassifierError`. The CLI turns one of these into a single line
on stderr and a non-zero exit code; anything else is a bug and keeps its
traceback.
"""

from __future__ import annotations


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


class ImageError(MnistClassifierError):
    """An input image cannot be read or holds no digit."""


class ExportError(MnistClassifierError):
    """A model could not be exported, or the export does not match PyTorch."""


class TrainingInterrupted(MnistClassifierError):
    """Training was interrupted (Ctrl-C); a resumable checkpoint was saved."""

    exit_code = 130


class RunFolderError(MnistClassifierError):
    """A run folder is missing, or a file in it is missing, corrupt or cannot be written."""


class MissingExtraError(MnistClassifierError):
    """An optional extra (``serve``, ``onnx``) is not installed: exit code 1, in every command."""

    def __init__(self, extra: str, modules: str, purpose: str) -> None:
        super().__init__(f"{purpose} needs {modules}: pip install 'mnist-classifier[{extra}]'")
        self.extra = extra
