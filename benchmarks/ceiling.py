"""This machine's own ceiling, printed beside every timed figure: dense matmul GFLOP/s in fp32 and bf16."""
from __future__ import annotations

import os
import time

import torch


def matmul_gflops(dtype: torch.dtype, size: int = 1024, seconds: float = 0.5) -> float:
    a = torch.randn(size, size).to(dtype)
    b = torch.randn(size, size).to(dtype)
    torch.mm(a, b)  # warm-up
    runs, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        torch.mm(a, b)
        runs += 1
    return 2 * size ** 3 * runs / (time.perf_counter() - start) / 1e9


def ceiling_line() -> str:
    load = os.getloadavg()[0]
    return (f"machine: {os.cpu_count()} CPUs, {torch.get_num_threads()} torch threads, load average {load:.2f}; "
            f"matmul ceiling fp32 {matmul_gflops(torch.float32):.0f} GFLOP/s, bf16 {matmul_gflops(torch.bfloat16):.0f} GFLOP/s")
