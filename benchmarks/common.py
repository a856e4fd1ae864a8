"""Shared timing and reporting for the benchmarks: every benchmark compares an
mps_ext op with torch's own implementation in the same run and writes JSON."""
from __future__ import annotations

import json
import os
import platform
import time
from pathlib import Path

import torch

RESULTS_DIR = Path(__file__).resolve().parent / "results"


def sync(device: str) -> None:
    if device == "mps":
        torch.mps.synchronize()


def time_call(fn, *, device="cpu", warmup=3, repeat=15, min_time=0.2) -> float:
    """Best (minimum) seconds per call over `repeat` samples, as timeit advises:
    on a shared machine the minimum is the reproducible cost, noise only adds."""
    for _ in range(warmup):
        fn()
    sync(device)
    start = time.perf_counter()
    fn()
    sync(device)
    once = max(time.perf_counter() - start, 1e-7)
    number = max(1, int(min_time / repeat / once))
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        for _ in range(number):
            fn()
        sync(device)
        samples.append((time.perf_counter() - start) / number)
    return min(samples)


def environment() -> dict:
    return {
        "torch": torch.__version__,
        "machine": platform.machine(),
        "system": platform.system(),
        "threads": torch.get_num_threads(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
    }


def write_results(name: str, rows: list[dict], extra: dict | None = None) -> Path:
    RESULTS_DIR.mkdir(exist_ok=True)
    path = Path(os.environ.get("MPS_EXT_BENCH_OUT", RESULTS_DIR / f"{name}.json"))
    path.write_text(json.dumps({"benchmark": name, "env": environment(), "rows": rows, **(extra or {})}, indent=2))
    return path
