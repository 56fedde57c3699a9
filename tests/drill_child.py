"""A training process for the fault drills (tests/test_fault_drills.py), run as a script.

``python tests/drill_child.py '{"out": DIR, ...}'`` trains mlp-128 for two epochs on
the first 3,000 shipped training images (the ``small_mnist`` fixture's data) and
optionally hurts itself on the way; the spec's keys:

- ``resume``: continue the run in ``out`` instead of starting it
- ``signal`` and ``at``: send itself SIGTERM or SIGKILL before step ``at`` = [epoch, step]
- ``kill_on_replace``: SIGKILL itself when the N-th rename over that file name is about to
  happen (its temporary file is written: a kill in the middle of a save)
- ``ready`` and ``go``: once the run folder is held, create ``ready``, then wait for ``go``

It exits like the CLI: 0, or a library error as one line on stderr and its exit code.
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

DRILL_CONFIG = {"model": "mlp-128", "epochs": 2, "batch_size": 64, "seed": 3}


def drill_dataset():
    from mnist_classifier.data.sources import load_dataset

    full = load_dataset()
    return dataclasses.replace(
        full,
        train_images=full.train_images[:3000],
        train_labels=full.train_labels[:3000],
        test_images=full.test_images[:1000],
        test_labels=full.test_labels[:1000],
    )


def main(spec: dict) -> int:
    import mnist_classifier
    from mnist_classifier.errors import MnistClassifierError
    from mnist_classifier.training import loop

    hook = None
    if spec.get("signal"):
        sig = getattr(signal, f"SIG{spec['signal']}")
        at = tuple(spec["at"])

        def hook(epoch: int, step: int) -> None:
            if (epoch, step) == at:
                os.kill(os.getpid(), sig)

    if spec.get("kill_on_replace"):
        name, nth = spec["kill_on_replace"]
        real_replace, seen = os.replace, []

        def replace(src, dst):  # type: ignore[no-untyped-def]
            if Path(dst).name == name:
                seen.append(dst)
                if len(seen) == nth:
                    os.kill(os.getpid(), signal.SIGKILL)
            return real_replace(src, dst)

        os.replace = replace  # type: ignore[assignment]

    if spec.get("go"):
        real_fit = loop.Trainer.fit

        def waiting_fit(self):  # type: ignore[no-untyped-def]
            Path(spec["ready"]).touch()
            deadline = time.monotonic() + 120
            while not Path(spec["go"]).exists() and time.monotonic() < deadline:
                time.sleep(0.05)
            return real_fit(self)

        loop.Trainer.fit = waiting_fit  # type: ignore[method-assign]

    try:
        if spec.get("resume"):
            mnist_classifier.train(
                resume=spec["out"], dataset=drill_dataset(), log=None, step_hook=hook
            )
        else:
            mnist_classifier.train(
                out=spec["out"], dataset=drill_dataset(), log=None, step_hook=hook, **DRILL_CONFIG
            )
    except MnistClassifierError as exc:
        print(f"mnist-classifier: error: {exc}", file=sys.stderr)
        return exc.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main(json.loads(sys.argv[1])))
