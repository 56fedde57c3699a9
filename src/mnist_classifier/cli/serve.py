"""``mnist-classifier serve``: the drawing page and the HTTP API for one model.

The model is loaded once, before the server starts, so a bad checkpoint is a
one-line error and exit code 1 instead of a server that fails on every request.
The listening socket is bound here too (same reason: a busy port is one line),
then handed to uvicorn. FastAPI and uvicorn come with the ``serve`` extra and are
imported only by this command.
"""

from __future__ import annotations

import argparse
import importlib.util
import ipaddress
import socket
import sys
from typing import Any

from ..errors import MissingExtraError, MnistClassifierError
from ..runtime import SERVE_THREADS
from .completion import complete_path
from .options import add_backend, add_device, add_quiet, add_threads

EXTRA_MODULES = ("fastapi", "uvicorn", "multipart")  # python-multipart imports as "multipart"


def register(subparsers: Any) -> None:
    serve = subparsers.add_parser(
        "serve",
        help="web page to draw digits on, and an HTTP API",
        description="Serve the drawing page at / and the HTTP API under /api (OpenAPI docs "
        "at /docs) for one model. Needs the serve extra: pip install 'mnist-classifier[serve]'.",
    )
    complete_path(serve.add_argument("checkpoint", metavar="RUN_OR_CHECKPOINT"))
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
        "--no-access-log", action="store_true", help="do not log one line per request"
    )
    add_quiet(serve, "model line, request log or server info; the address line and warnings stay")
    serve.set_defaults(func=cmd_serve)


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


def cmd_serve(args: argparse.Namespace) -> int:
    require_serve_extra()
    from ..inference.predictor import load_predictor

    predictor = load_predictor(args.checkpoint, backend=args.backend, device=args.device)
    if predictor.backend == "torch":
        # One image per request is far too small to share among threads; waking idle
        # worker threads costs more than it saves, most of all on a busy machine.
        from ..runtime import set_threads

        set_threads(args.threads)
    sock = bind_socket(args.host, args.port)

    import uvicorn

    from ..serving.app import create_app

    app = create_app(predictor)
    say = (lambda _text: None) if args.quiet else (lambda text: print(text, flush=True))
    say(f"serving {predictor.model_name} ({predictor.backend}) from {predictor.checkpoint_path}")
    if not _is_loopback(args.host):
        print(
            f"note: listening on {args.host}, reachable from other machines (no authentication)",
            file=sys.stderr,
            flush=True,
        )
    # Kept with -q: with --port 0 it is the only way to learn the port.
    print(f"open {url_of(sock)}  (API docs: {url_of(sock)}docs; Ctrl-C stops)", flush=True)
    config = uvicorn.Config(
        app,
        log_level="warning" if args.quiet else "info",
        access_log=not (args.no_access_log or args.quiet),
        timeout_graceful_shutdown=5,
    )
    server = uvicorn.Server(config)
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()
    return 0
