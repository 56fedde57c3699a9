"""``serve --workers N``: N server processes sharing one listening socket.

The parent binds the socket (so a busy port is one line) and hands it to uvicorn's process
supervisor, which starts N workers with the ``spawn`` method and replaces one that dies.
Each worker builds its app with :func:`app_from_environment`, a uvicorn app factory: it
reads what to serve from ``MNIST_CLASSIFIER_SERVE`` (JSON set by the parent), loads the
model once, and serves it. The kernel spreads new connections over the workers.

Metrics are summed over the workers: the parent points ``PROMETHEUS_MULTIPROC_DIR`` at a
fresh folder (unless the user set one) before the workers start, and removes it at the end.
"""

from __future__ import annotations

import inspect
import json
import os
import socket
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .metrics import MULTIPROC_ENV

__all__ = [
    "SETTINGS_ENV",
    "WORKER_PROTOCOL",
    "WorkerSettings",
    "app_from_environment",
    "run_workers",
]

SETTINGS_ENV = "MNIST_CLASSIFIER_SERVE"
FACTORY = f"{__name__}:app_from_environment"
WORKER_PROTOCOL = f"{__name__}:WorkerProtocol"


@dataclass(frozen=True)
class WorkerSettings:
    """What every worker serves, as ``serve`` was asked."""

    checkpoint: str | None  # None: the model shipped in the package
    backend: str = "auto"
    device: str = "auto"
    threads: int | None = None  # torch threads per process (None: torch's default)
    limits: dict[str, Any] = field(default_factory=dict)  # ServerLimits fields
    cors_origins: list[str] = field(default_factory=list)
    allowed_hosts: list[str] | None = None  # None: any Host header


def _settings() -> WorkerSettings:
    raw = os.environ.get(SETTINGS_ENV)
    if not raw:
        raise RuntimeError(f"{SETTINGS_ENV} is not set: start workers with `serve --workers N`")
    return WorkerSettings(**json.loads(raw))


def __getattr__(name: str) -> Any:
    # uvicorn imports the protocol class by name in each worker process (a class made
    # at run time cannot be sent to a spawned process): build it from the settings.
    if name == "WorkerProtocol":
        from .limits import ServerLimits
        from .protocol import guarded_protocol

        return guarded_protocol(ServerLimits(**_settings().limits))
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def app_from_environment() -> Any:
    """The app of one worker process: its own predictor, loaded once (a uvicorn factory)."""
    from ..inference.predictor import load_predictor
    from .app import create_app
    from .limits import ServerLimits

    settings = _settings()
    predictor = load_predictor(
        settings.checkpoint, backend=settings.backend, device=settings.device
    )
    if predictor.backend == "torch":
        from ..runtime import set_threads

        set_threads(settings.threads)
    app = create_app(
        predictor,
        limits=ServerLimits(**settings.limits),
        cors_origins=settings.cors_origins,
        allowed_hosts=settings.allowed_hosts,
    )
    # At the end of the app's lifespan: uvicorn ends a worker by re-raising the signal
    # that stopped it, so atexit handlers would not run.
    app.router.on_shutdown.append(app.state.metrics.process_stopped)
    return app


def run_workers(settings: WorkerSettings, sock: socket.socket, workers: int, **config: Any) -> None:
    """Serve on ``sock`` with ``workers`` processes until Ctrl-C or SIGTERM.

    ``config`` is passed to ``uvicorn.Config`` (log level, access log, timeouts...).
    """
    import uvicorn
    from uvicorn.supervisors import Multiprocess

    os.environ[SETTINGS_ENV] = json.dumps(asdict(settings))
    own_dir = None
    if not os.environ.get(MULTIPROC_ENV):
        own_dir = tempfile.TemporaryDirectory(prefix="mnist-classifier-metrics-")
        os.environ[MULTIPROC_ENV] = own_dir.name
    else:
        Path(os.environ[MULTIPROC_ENV]).mkdir(parents=True, exist_ok=True)
    try:
        uv_config = uvicorn.Config(FACTORY, factory=True, workers=workers, **config)
        if "target" in inspect.signature(Multiprocess).parameters:  # older uvicorn took the target
            supervisor = Multiprocess(
                uv_config,
                target=uvicorn.Server(uv_config).run,  # type: ignore[call-arg]
                sockets=[sock],
            )
        else:
            supervisor = Multiprocess(uv_config, sockets=[sock])
        supervisor.run()
    finally:
        if own_dir is not None:
            os.environ.pop(MULTIPROC_ENV, None)
            own_dir.cleanup()
