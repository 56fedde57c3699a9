"""Where a study lives: the embedded SQLite file under the study folder, or any SQLAlchemy URL.

The embedded default is ``DIR/study.db``, an SQLite database through Optuna's
``RDBStorage``, with a long lock timeout so that several local worker processes
share it. Optuna's journal file storage was measured beside it
(``benchmarks/tune_storage.py``): both kept every trial with four writers, the journal
being faster per write, but only the RDB storage has heartbeats, and heartbeats are
what mark a killed worker's trial as failed so that it is retried. A trial's writes are
a few per epoch, so SQLite's speed is not what limits a study.

``--storage postgresql://user@host/db`` (or any SQLAlchemy URL) is the same
``RDBStorage`` on a server: workers on several machines then share one study.
``postgresql://`` is read with the psycopg (3) driver.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

from ..errors import ConfigError, MissingExtraError

STUDY_DB = "study.db"
DEFAULT_HEARTBEAT = 30.0  # seconds between a running trial's heartbeats
MAX_RETRY = 3  # a trial whose worker died is retried this many times at most
SQLITE_LOCK_TIMEOUT = 120  # seconds a writer waits for another one's lock


def import_optuna() -> Any:
    """``optuna``, or a one-line error naming the extra to install."""
    try:
        import optuna
    except ImportError:
        raise MissingExtraError("tune", "optuna", "mnist-classifier tune") from None
    import warnings

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    # Heartbeats and retries are "experimental" in Optuna's terms; the warning is noise here.
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    return optuna


def storage_url(storage: str | None, out: Path) -> str:
    """The SQLAlchemy URL of the study: ``storage`` as given, or ``sqlite:///DIR/study.db``."""
    if storage is None:
        return f"sqlite:///{(out / STUDY_DB).resolve()}"
    if "://" not in storage:
        raise ConfigError(
            f"--storage {storage!r}: expected a database URL such as "
            "postgresql://user:password@host/db or sqlite:///path/study.db"
        )
    scheme = storage.split("://", 1)[0]
    if scheme in ("postgresql", "postgres"):
        # SQLAlchemy's default PostgreSQL driver is psycopg2; this package uses psycopg 3.
        storage = "postgresql+psycopg://" + storage.split("://", 1)[1]
        if importlib.util.find_spec("psycopg") is None:
            raise MissingExtraError("tune", "psycopg", "a PostgreSQL study")
    return storage


def open_storage(url: str, *, heartbeat: float = DEFAULT_HEARTBEAT) -> Any:
    """An ``RDBStorage`` with heartbeats: a trial silent for 2x ``heartbeat`` seconds is failed
    and retried (up to :data:`MAX_RETRY` times), its retry resuming the same run folder."""
    import_optuna()
    from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback

    engine_kwargs: dict[str, Any] = {}
    if url.startswith("sqlite"):
        Path(url.split(":///", 1)[1]).parent.mkdir(parents=True, exist_ok=True)
        engine_kwargs = {"connect_args": {"timeout": SQLITE_LOCK_TIMEOUT}}
    else:
        engine_kwargs = {"pool_pre_ping": True}
    try:
        return RDBStorage(
            url,
            engine_kwargs=engine_kwargs,
            heartbeat_interval=max(1, round(heartbeat)),
            grace_period=max(2, round(2 * heartbeat)),
            heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(max_retry=MAX_RETRY),
        )
    except ImportError as exc:
        raise ConfigError(f"--storage {_safe(url)}: no driver for it ({exc})") from None
    except Exception as exc:  # sqlalchemy's OperationalError, ArgumentError, ...
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConfigError(f"--storage {_safe(url)}: cannot be opened ({first})") from None


def _safe(url: str) -> str:
    """The URL without its password, for messages."""
    if "@" not in url or "://" not in url:
        return url
    scheme, rest = url.split("://", 1)
    credentials, host = rest.rsplit("@", 1)
    user = credentials.split(":", 1)[0]
    return f"{scheme}://{user}:***@{host}" if ":" in credentials else url
