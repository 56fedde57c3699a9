"""The machine a benchmark ran on, as one line for its header: the CPU model, the vector
extensions that matter for PyTorch's CPU kernels, torch's own dispatch level, and the GPU.

The development machines differ (some AMD EPYC parts have AVX2 and FMA only, others AVX-512
with VNNI and bf16), and speed figures mean little without that line.
"""

from __future__ import annotations

import os
import platform

import torch

FLAGS = ("avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile")


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as info:
            for line in info:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cpu_flags() -> list[str]:
    """Which of :data:`FLAGS` the CPU reports (Linux), in that order; empty where unknown."""
    try:
        with open("/proc/cpuinfo") as info:
            for line in info:
                if line.startswith("flags"):
                    present = set(line.split(":", 1)[1].split())
                    return [flag for flag in FLAGS if flag in present]
    except OSError:
        pass
    return []


def describe_machine() -> str:
    flags = cpu_flags()
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return (
        f"{cpu_model()}, {os.cpu_count()} CPUs, flags: {' '.join(flags) or 'unknown'}, "
        f"torch {torch.__version__} CPU capability {torch.backends.cpu.get_cpu_capability()}, {gpu}"
    )


if __name__ == "__main__":
    print(describe_machine())
