"""``mnist-classifier serve``: the drawing page and the HTTP API for one model.

The model is loaded once, before the server starts, so a bad checkpoint is a
one-line error and exit code 1 instead of a server that fails on every request.
The listening socket is bound here too (same reason: a busy port is one line),
then handed to uvicorn. FastAPI and uvicorn come with the ``serve`` extra and are
imported only by this command.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import ipaddress
import socket
import sys
from pathlib import Path
from typing import Any

from ..errors import ConfigError, MissingExtraError, MnistClassifierError
from ..runtime import SERVE_THREADS
from .completion import complete_path
from .options import (
    add_backend,
    add_device,
    add_model,
    add_quiet,
    add_threads,
    count_of_at_least_one,
)

# python-multipart imports as "multipart"; fastapi_offline ships the /docs and /redoc assets
EXTRA_MODULES = ("fastapi", "uvicorn", "multipart", "prometheus_client", "fastapi_offline")


def register(subparsers: Any) -> None:
    serve = subparsers.add_parser(
        "serve",
        help="web page to draw digits on, and an HTTP API",
        description="Serve the drawing page at / and the HTTP API under /api (OpenAPI docs "
        "at /docs) for one model. Needs the serve extra: pip install 'mnist-classifier[serve]'.",
    )
    complete_path(
        serve.add_argument(
            "checkpoint",
            metavar="RUN_OR_CHECKPOINT",
            nargs="?",
            default=None,
            help="run folder, .pt or .onnx (default: the model shipped in the package)",
        )
    )
    add_model(serve)
    serve.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to listen on (default: 127.0.0.1, this machine only; 0.0.0.0 opens it "
        "to the network)",
    )
    serve.add_argument(
        "--port", type=int, default=8000, help="port (default: 8000; 0 picks a free one)"
    )
    add_backend(serve)
    add_device(serve)
    add_threads(
        serve,
        default=SERVE_THREADS,
        default_text=f"{SERVE_THREADS} per request: requests run in parallel instead, one per CPU",
    )
    serve.add_argument(
        "--workers",
        type=count_of_at_least_one("--workers"),
        default=1,
        metavar="N",
        help="server processes, each with its own copy of the model, sharing the port "
        "(default: 1; /metrics sums over all of them)",
    )
    serve.add_argument(
        "--no-access-log",
        action="store_true",
        help="do not log one line per request (each line ends with its request_id)",
    )
    serve.add_argument(
        "--cors-origin",
        action="append",
        default=[],
        metavar="ORIGIN",
        help="let web pages from ORIGIN (scheme://host[:port]) call the API, with CORS "
        "headers; repeat for several. Requests from any other origin are refused (403)",
    )
    serve.add_argument(
        "--allowed-host",
        action="append",
        default=None,
        metavar="NAME",
        help="a host name the server answers to (the Host header; *.example.com for "
        "subdomains, * for any); repeat for several. Default: localhost, 127.0.0.1 and ::1 "
        "when listening on loopback (so DNS rebinding cannot reach it), any otherwise",
    )
    defaults = _default_limits()
    serve.add_argument(
        "--read-timeout",
        type=float,
        default=defaults.header_timeout,
        metavar="SECONDS",
        help="the longest wait for a request's headers, or for the next piece of its body "
        f"(default: {defaults.header_timeout:g}); slower clients get 408 and are disconnected",
    )
    serve.add_argument(
        "--max-connections",
        type=int,
        default=defaults.max_connections,
        metavar="N",
        help=f"connections open at once (default: {defaults.max_connections}); more are "
        "answered 503 and closed",
    )
    add_quiet(serve, "model line, request log or server info; the address line and warnings stay")
    serve.set_defaults(func=cmd_serve)


def _default_limits() -> Any:
    from ..serving.limits import ServerLimits  # numpy and Pillow, not FastAPI

    return ServerLimits()


def require_serve_extra() -> None:
    """Fail with one line naming the extra when FastAPI, uvicorn or python-multipart is missing."""
    missing = [name for name in EXTRA_MODULES if importlib.util.find_spec(name) is None]
    if missing:
        raise MissingExtraError("serve", ", ".join(missing), "serving")


def bind_socket(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host:port``; a one-line error when that is not possible."""
    if not 0 <= port <= 65535:
        raise MnistClassifierError(f"--port must be between 0 and 65535, got {port}")
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
    except socket.gaierror as exc:
        raise MnistClassifierError(f"cannot listen on {host}: {exc.strerror}") from None
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(128)
    except OSError as exc:
        sock.close()
        raise MnistClassifierError(
            f"cannot listen on {host}:{port} ({exc.strerror or exc})"
        ) from None
    sock.set_inheritable(True)
    return sock


def url_of(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}/"


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def allowed_hosts(host: str, chosen: list[str] | None) -> list[str] | None:
    """The Host names to answer to: those chosen, else loopback's names on loopback, else any."""
    if chosen:
        for name in chosen:
            check_host_name(name)
        return chosen
    if _is_loopback(host):
        return sorted({"localhost", "127.0.0.1", "::1", host.strip("[]").lower()})
    return None


def check_host_name(name: str) -> None:
    """Refuse an ``--allowed-host`` value that no Host header can match (a port, a path)."""
    bare_ipv6 = name.count(":") > 1 or name.startswith("[")
    if not name.strip() or "/" in name or (":" in name and not bare_ipv6) or " " in name:
        raise ConfigError(
            f"--allowed-host {name!r}: give a host name without port or path, such as "
            "localhost, digits.example.org or *.example.org"
        )


def public_host_warning(host: str) -> str:
    """The one line printed when ``--host`` is not a loopback address."""
    return (
        f"warning: listening on {host}, reachable from other machines, with no authentication; "
        "to expose it, keep --host 127.0.0.1 behind a reverse proxy (nginx, Caddy) that adds "
        "TLS and authentication (see README: Serving in production)"
    )


def cmd_serve(args: argparse.Namespace) -> int:
    require_serve_extra()
    from ..serving.security import normalise_origin

    for origin in args.cors_origin:
        normalise_origin(origin)  # a bad one is a usage error before the model loads
    if not args.read_timeout > 0:
        raise ConfigError(f"--read-timeout must be more than 0 seconds, got {args.read_timeout:g}")
    if args.max_connections < 1:
        raise ConfigError(f"--max-connections must be at least 1, got {args.max_connections}")
    hosts = allowed_hosts(args.host, args.allowed_host)  # a bad one: before the model loads
    if args.checkpoint is not None and args.model is not None:
        raise ConfigError("give the model once: RUN_OR_CHECKPOINT or --model, not both")
    model = args.model if args.model is not None else args.checkpoint
    from ..inference.predictor import load_predictor

    predictor = load_predictor(model, backend=args.backend, device=args.device)
    if predictor.backend == "torch":
        # One image per request is far too small to share among threads; waking idle
        # worker threads costs more than it saves, most of all on a busy machine.
        from ..runtime import set_threads

        set_threads(args.threads)
    sock = bind_socket(args.host, args.port)

    import uvicorn

    from ..serving.app import create_app
    from ..serving.protocol import guarded_protocol
    from ..serving.request_id import log_config
    from ..serving.workers import WORKER_PROTOCOL, WorkerSettings, run_workers

    limits = dataclasses.replace(
        _default_limits(),
        header_timeout=args.read_timeout,
        body_idle_timeout=args.read_timeout,
        max_connections=args.max_connections,
    )
    app = (
        create_app(predictor, limits=limits, cors_origins=args.cors_origin, allowed_hosts=hosts)
        if args.workers == 1
        else None
    )
    say = (lambda _text: None) if args.quiet else (lambda text: print(text, flush=True))
    say(f"serving {predictor.label} with the {predictor.backend} backend")
    if not _is_loopback(args.host):
        print(public_host_warning(args.host), file=sys.stderr, flush=True)
    if args.workers > 1:
        say(f"{args.workers} worker processes, each loading the model")
    # Kept with -q: with --port 0 it is the only way to learn the port.
    print(f"open {url_of(sock)}  (API docs: {url_of(sock)}docs; Ctrl-C stops)", flush=True)
    config: dict[str, Any] = {
        "log_level": "warning" if args.quiet else "info",
        "access_log": not (args.no_access_log or args.quiet),
        "log_config": log_config(),
        # Requests in flight when stopping are finished (drained) before the server exits.
        "timeout_graceful_shutdown": limits.shutdown_drain,
        # Each worker process builds the same guarded protocol from its settings.
        "http": guarded_protocol(limits) if app is not None else WORKER_PROTOCOL,
    }
    try:
        if app is None:
            del predictor  # loaded here only to fail early: each worker loads its own
            target = None if model is None else str(Path(model).resolve())
            settings = WorkerSettings(
                target,
                args.backend,
                args.device,
                args.threads,
                limits=dataclasses.asdict(limits),
                cors_origins=list(args.cors_origin),
                allowed_hosts=hosts,
            )
            run_workers(settings, sock, args.workers, **config)
        else:
            uvicorn.Server(uvicorn.Config(app, **config)).run(sockets=[sock])
    finally:
        sock.close()
    return 0
