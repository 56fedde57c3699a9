"""One training step of the seed recipe, several ways, side by side in one run.

The seed model (784-128-64-10 MLP, ReLU, dropout 0.2), cross-entropy, Adam (lr 1e-3,
weight decay 1e-4), batch 32, one torch thread by default. Each variant trains the same
steps on the same random batches; the table gives the median over ``--repeats`` timed
stretches of ``--steps`` steps (after a warm-up), in milliseconds per step of wall time,
and of this process's CPU time (steadier than wall time on a shared, loaded machine). Compiled
variants report their compile time (the first calls) separately; ``--cache-check`` also
times a second process that finds inductor's on-disk cache (FX graph cache) filled by
this one.

    python benchmarks/seed_step.py [--repeats 5] [--steps 300] [--threads 1]
        [--no-compile] [--cache-check] [--profile]
"""

from __future__ import annotations

import os
import tempfile

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as the CLI does; before torch loads
# A fresh inductor cache, so the first compile here is a cold one (unless one is given).
os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", tempfile.mkdtemp(prefix="seed-step-inductor-"))

import argparse
import json
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))

from machine import describe_machine
from mnist_classifier.models.registry import create_model
from mnist_classifier.training.fast_step import DirectAdamStep, FusedMLPStep

Step = Callable[[torch.Tensor, torch.Tensor], object]


def make_model() -> torch.nn.Module:
    torch.manual_seed(0)
    return create_model("mlp-128-64-dropout").train()


def adam(model: torch.nn.Module, kind: str) -> torch.optim.Optimizer:
    kwargs = {"fused": True} if kind == "fused" else {"foreach": kind == "foreach"}
    return torch.optim.Adam(model.parameters(), lr=1e-3, weight_decay=1e-4, **kwargs)


def eager(kind: str) -> Step:
    model = make_model()
    opt = adam(model, "fused" if kind == "direct" else kind)
    opt_step = DirectAdamStep(opt) if kind == "direct" else opt.step

    def step(x: torch.Tensor, y: torch.Tensor) -> object:
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt_step()
        return loss

    return step


def compiled(kind: str, with_optimizer: bool) -> Step:
    model = make_model()
    opt = adam(model, kind)
    forward = torch.compile(lambda x, y: F.cross_entropy(model(x), y))

    @torch.compile
    def opt_step() -> None:
        opt.step()

    def step(x: torch.Tensor, y: torch.Tensor) -> object:
        loss = forward(x, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if with_optimizer:
            opt_step()
        else:
            opt.step()
        return loss

    return step


def fused(kind: str) -> Step:
    model = make_model()
    opt = adam(model, "fused" if kind == "direct" else kind)
    fused_step = FusedMLPStep(model)
    opt_step = DirectAdamStep(opt) if kind == "direct" else opt.step

    def step(x: torch.Tensor, y: torch.Tensor) -> object:
        _, loss = fused_step(x, y)
        opt_step()
        return loss

    return step


def batches(n: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(1)
    return [
        (torch.randn(32, 1, 28, 28, generator=g), torch.randint(0, 10, (32,), generator=g))
        for _ in range(n)
    ]


def time_variant(
    build: Callable[[], Step], repeats: int, steps: int, data: list
) -> dict[str, float]:
    started = time.perf_counter()
    step = build()
    for x, y in data[:3]:  # the first calls: compilation for the compiled variants
        float(step(x, y).item())  # type: ignore[attr-defined]
    first = time.perf_counter() - started
    for x, y in data[3:20]:
        step(x, y)
    per_step, cpu_per_step = [], []
    for _ in range(repeats):
        t, c = time.perf_counter(), time.process_time()
        for x, y in data[:steps]:
            loss = step(x, y)
            float(loss.item())  # type: ignore[attr-defined]  # as the trainer checks each step
        cpu_per_step.append((time.process_time() - c) / steps * 1000)
        per_step.append((time.perf_counter() - t) / steps * 1000)
    return {
        "ms": statistics.median(per_step),
        "min": min(per_step),
        "max": max(per_step),
        "cpu_ms": statistics.median(cpu_per_step),
        "first_s": first,
    }


def profile(build: Callable[[], Step], data: list, label: str) -> None:
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    step = build()
    for x, y in data[:20]:
        step(x, y)
    with torch_profile(activities=[ProfilerActivity.CPU]) as prof:
        for x, y in data[:100]:
            step(x, y)
    print(f"\n## profile: {label} (100 steps)\n")
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=15))


def compile_only() -> None:
    """The second process of --cache-check: one compile of the step, its seconds as JSON."""
    data = batches(3)
    started = time.perf_counter()
    step = compiled("fused", with_optimizer=False)
    for x, y in data:
        float(step(x, y).item())  # type: ignore[attr-defined]
    print(json.dumps({"first_s": time.perf_counter() - started}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--no-compile", action="store_true", help="skip torch.compile variants")
    parser.add_argument(
        "--cache-check", action="store_true", help="time a second process's compile"
    )
    parser.add_argument("--profile", action="store_true", help="print torch.profiler tables")
    parser.add_argument("--compile-only", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.compile_only:
        compile_only()
        return
    print(
        f"# seed step: mlp-128-64-dropout, batch 32, Adam, {torch.get_num_threads()} thread(s), "
        f"median of {args.repeats} x {args.steps} steps\n# machine: {describe_machine()}"
    )
    variants: dict[str, Callable[[], Step]] = {
        "eager, fused Adam (the trainer before)": lambda: eager("fused"),
        "eager, foreach Adam": lambda: eager("foreach"),
        "eager, for-loop Adam": lambda: eager("loop"),
        "eager, direct fused-Adam kernel call": lambda: eager("direct"),
        "hand-fused step, fused Adam": lambda: fused("fused"),
        "hand-fused step, direct fused-Adam call (the trainer now)": lambda: fused("direct"),
        "hand-fused step, foreach Adam": lambda: fused("foreach"),
    }
    if not args.no_compile:
        variants["torch.compile forward+loss, fused Adam"] = lambda: compiled("fused", False)
        variants["torch.compile forward+loss, compiled Adam step"] = lambda: compiled(
            "foreach", True
        )
    data = batches(max(args.steps, 20))
    rows = {}
    for name, build in variants.items():
        try:
            rows[name] = time_variant(build, args.repeats, args.steps, data)
        except Exception as exc:  # a compiler missing or failing: the row says so
            print(f"  {name}: failed ({type(exc).__name__}: {str(exc).splitlines()[0][:120]})")
            continue
        r = rows[name]
        print(f"  {name}: {r['ms']:.3f} ms/step ({r['cpu_ms']:.3f} CPU)", flush=True)
    base = rows[next(iter(variants))]["ms"]
    base_cpu = rows[next(iter(variants))]["cpu_ms"]
    print(
        "\n| step | ms/step (median) | min | max | CPU ms/step | first 3 steps s "
        "| vs eager (wall) | vs eager (CPU) |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for name, r in rows.items():
        print(
            f"| {name} | {r['ms']:.3f} | {r['min']:.3f} | {r['max']:.3f} | {r['cpu_ms']:.3f} | "
            f"{r['first_s']:.2f} | {base / r['ms']:.2f}x | {base_cpu / r['cpu_ms']:.2f}x |"
        )
    if args.cache_check and not args.no_compile:
        out = subprocess.run(
            [sys.executable, __file__, "--compile-only", "--threads", str(args.threads)],
            capture_output=True,
            text=True,
            env=dict(os.environ),
            check=True,
        )
        warm = json.loads(out.stdout.strip().splitlines()[-1])["first_s"]
        cold = rows.get("torch.compile forward+loss, fused Adam", {}).get("first_s", float("nan"))
        print(
            f"\ncompile of forward+loss+backward: {cold:.2f} s cold (this process), "
            f"{warm:.2f} s in a second process with inductor's cache warm "
            f"({os.environ['TORCHINDUCTOR_CACHE_DIR']})"
        )
    if args.profile:
        profile(lambda: eager("fused"), data, "eager, fused Adam")
        profile(lambda: fused("direct"), data, "hand-fused step, direct fused-Adam call")


if __name__ == "__main__":
    main()
