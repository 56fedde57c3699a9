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
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from .metrics import MULTIPROC_ENV

__all__ = ["SETTINGS_ENV", "WorkerSettings", "app_from_environment", "run_workers"]

SETTINGS_ENV = "MNIST_CLASSIFIER_SERVE"
FACTORY = f"{__name__}:app_from_environment"


@dataclass(frozen=True)
class WorkerSettings:
    """What every worker serves, as ``serve`` was asked."""

    checkpoint: str
    backend: str = "torch"
    device: str = "auto"
    threads: int | None = None  # torch threads per process (None: torch's default)


def app_from_environment() -> Any:
    """The app of one worker process: its own predictor, loaded once (a uvicorn factory)."""
    from ..inference.predictor import load_predictor
    from .app import create_app

    raw = os.environ.get(SETTINGS_ENV)
    if not raw:
        raise RuntimeError(f"{SETTINGS_ENV} is not set: start workers with `serve --workers N`")
    settings = WorkerSettings(**json.loads(raw))
    predictor = load_predictor(
        settings.checkpoint, backend=settings.backend, device=settings.device
    )
    if predictor.backend == "torch":
        from ..runtime import set_threads

        set_threads(settings.threads)
    app = create_app(predictor)
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
