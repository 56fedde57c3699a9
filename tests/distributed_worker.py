"""A torchrun entry point for the distributed tests: ``mnist-classifier ARGS`` with probes.

- Every file this process opens for writing (or renames, or makes a folder of) is recorded
  through a Python audit hook and written as JSON to ``$DIST_AUDIT_DIR/rank-R-restart-K.json``
  at exit, so a test can see which rank wrote what.
- ``DIST_FAULT=epoch:step:rank:signal`` sends ``signal`` (KILL or TERM) to this process
  before that training step on that rank, in the first attempt only (torchrun's restart
  count 0): a worker that dies, or one that is asked to stop, mid-epoch.
"""

from __future__ import annotations

import atexit
import json
import os
import signal
import sys
from typing import Any

_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC


def _install_audit() -> None:
    folder = os.environ.get("DIST_AUDIT_DIR")
    if not folder:
        return
    written: list[str] = []

    def hook(event: str, args: tuple[Any, ...]) -> None:
        if event == "open":
            path, mode, flags = args
            writes = (isinstance(mode, str) and any(c in mode for c in "wax+")) or (
                isinstance(flags, int) and flags & _WRITE_FLAGS
            )
            if writes and isinstance(path, str | bytes | os.PathLike):
                written.append(os.fsdecode(path))
        elif event in ("os.rename", "os.mkdir"):
            written.append(os.fsdecode(args[1] if event == "os.rename" else args[0]))

    name = f"rank-{os.environ.get('RANK', '0')}-restart-{os.environ.get('TORCHELASTIC_RESTART_COUNT', '0')}.json"
    target = os.path.join(folder, name)

    def report() -> None:
        # Written with the hook still on: the report itself is the last entry, outside the run.
        with open(target, "w") as fh:
            json.dump(sorted(set(written)), fh)

    atexit.register(report)
    sys.addaudithook(hook)


def _install_fault() -> None:
    spec = os.environ.get("DIST_FAULT")
    if not spec or os.environ.get("TORCHELASTIC_RESTART_COUNT", "0") != "0":
        return
    epoch, step, rank, sig = spec.split(":")
    if os.environ.get("RANK") != rank:
        return
    signum = {"KILL": signal.SIGKILL, "TERM": signal.SIGTERM}[sig]
    from mnist_classifier.training import loop

    original_init = loop.Trainer.__init__

    def init(self: loop.Trainer, *args: Any, **kwargs: Any) -> None:
        def hook(e: int, s: int) -> None:
            if (e, s) == (int(epoch), int(step)):
                os.kill(os.getpid(), signum)

        kwargs["step_hook"] = hook
        original_init(self, *args, **kwargs)

    loop.Trainer.__init__ = init  # type: ignore[method-assign]


if __name__ == "__main__":
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    _install_fault()
    _install_audit()
    from mnist_classifier.cli import main

    sys.exit(main(sys.argv[1:]))
