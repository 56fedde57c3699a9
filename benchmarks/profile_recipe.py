"""Where a recipe's training time goes: the real trainer under torch.profiler.

    python benchmarks/profile_recipe.py [--recipe cnn-fast] [--limit-train 12800] [--top 15]

Trains the recipe (its own model, optimizer, batch size, augmentation and thread
setting) for one epoch on the first ``--limit-train`` images with the profiler on,
then prints the operators with the most self CPU time and the share of each kind
of work (convolutions forward and backward, batch norm, the optimizer, ...).
The profiler adds a little overhead per operator, so read the shares, not the
absolute times.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as the CLI does; before torch loads

import argparse
import tempfile
from collections import defaultdict
from pathlib import Path

from torch.profiler import ProfilerActivity, profile

import mnist_classifier
from machine import describe_machine
from mnist_classifier.data.sources import load_dataset
from mnist_classifier.training.recipes import RECIPES

# (kind, substrings of an operator's name); the first match wins
KINDS = (
    ("convolution backward", ("convolution_backward",)),
    ("convolution forward", ("conv", "mkldnn_convolution")),
    ("batch norm", ("batch_norm",)),
    ("optimizer", ("adam", "foreach", "lerp", "addcdiv", "addcmul")),
    ("matrix products", ("addmm", "aten::mm", "aten::bmm", "linear")),
    ("augmentation", ("grid_sample", "affine_grid", "max_pool", "avg_pool", "gather")),
    ("loss and softmax", ("softmax", "nll_loss", "cross_entropy")),
    ("activations", ("relu", "threshold", "gelu")),
)


def kind_of(name: str) -> str:
    lower = name.lower()
    for kind, needles in KINDS:
        if any(n in lower for n in needles):
            return kind
    return "other operators"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", default="cnn-fast", choices=list(RECIPES))
    parser.add_argument("--limit-train", type=int, default=12800)
    parser.add_argument("--top", type=int, default=15)
    args = parser.parse_args()
    dataset = load_dataset()
    print(f"# recipe {args.recipe}, 1 epoch on {args.limit_train:,} images")
    print(f"# machine: {describe_machine()}")
    with tempfile.TemporaryDirectory() as tmp, profile(activities=[ProfilerActivity.CPU]) as prof:
        run = mnist_classifier.train(
            recipe=args.recipe, epochs=1, limit_train=args.limit_train,
            out=Path(tmp) / "run", dataset=dataset, log=None,
        )  # fmt: skip
    events = [e for e in prof.key_averages() if not e.key.startswith("ProfilerStep")]
    total = sum(e.self_cpu_time_total for e in events)
    print(f"# trainer's train_seconds under the profiler: {run.metrics['train_seconds']:.2f}")
    print()
    print("| kind of work | self CPU s | share |")
    print("|---|---:|---:|")
    by_kind: dict[str, float] = defaultdict(float)
    for e in events:
        by_kind[kind_of(e.key)] += e.self_cpu_time_total
    for kind, us in sorted(by_kind.items(), key=lambda kv: -kv[1]):
        print(f"| {kind} | {us / 1e6:.2f} | {100 * us / total:.1f}% |")
    print()
    print("| operator | calls | self CPU s | share |")
    print("|---|---:|---:|---:|")
    for e in sorted(events, key=lambda e: -e.self_cpu_time_total)[: args.top]:
        share = 100 * e.self_cpu_time_total / total
        print(f"| `{e.key}` | {e.count:,} | {e.self_cpu_time_total / 1e6:.2f} | {share:.1f}% |")


if __name__ == "__main__":
    main()
