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
    """Waits for queued device work before the clock is read (GPU devices run async)."""
    kind = torch.device(device).type
    if kind == "mps":
        torch.mps.synchronize()
    elif kind == "mpsgraph":
        torch.mpsgraph.synchronize()


def _cpuinfo_field(name: str) -> str | None:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.split(":")[0].strip() == name:
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def cpu_model() -> str:
    model = _cpuinfo_field("model name")
    if model is None and platform.system() == "Darwin":
        import subprocess

        out = subprocess.run(["sysctl", "-n", "machdep.cpu.brand_string"], capture_output=True, text=True)
        model = out.stdout.strip() if out.returncode == 0 else None
    return model or platform.processor() or platform.machine()


def cpu_flags() -> set[str]:
    """The CPU's feature flags (/proc/cpuinfo), empty where they cannot be read."""
    return set((_cpuinfo_field("flags") or "").split())


def last_level_cache_bytes() -> int | None:
    """Size of the largest CPU cache (sysfs), or None where it cannot be read."""
    sizes = []
    for index in Path("/sys/devices/system/cpu/cpu0/cache").glob("index*"):
        try:
            text = (index / "size").read_text().strip()
        except OSError:
            continue
        scale = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}.get(text[-1], 1)
        sizes.append(int(text.rstrip("KMG")) * scale)
    return max(sizes) if sizes else None


def describe_machine() -> str:
    """One line naming the CPU, the ISA torch vectorizes for, threads and LLC: print it in every benchmark."""
    llc = last_level_cache_bytes()
    llc_text = f"{llc / (1 << 20):.0f} MiB LLC" if llc else "LLC unknown"
    return (f"CPU: {cpu_model()} | {platform.machine()} | ISA {torch.backends.cpu.get_cpu_capability()} | "
            f"{torch.get_num_threads()} threads | {llc_text} | torch {torch.__version__}")


# "wall": elapsed time. "cpu": this process's CPU time (all threads, user +
# system, so page faults count): on an oversubscribed machine a process is
# descheduled for most of the wall time and only CPU time stays comparable.
# Host-side only: a GPU device's work is not on the clock.
CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}


def time_call(fn, *, device="cpu", warmup=3, repeat=15, min_time=0.2, clock="wall") -> float:
    """Best (minimum) seconds per call over `repeat` samples, as timeit advises:
    on a shared machine the minimum is the reproducible cost, noise only adds."""
    now = CLOCKS[clock]
    for _ in range(warmup):
        fn()
    sync(device)
    start = now()
    fn()
    sync(device)
    once = max(now() - start, 1e-7)
    number = max(1, int(min_time / repeat / once))
    samples = []
    for _ in range(repeat):
        start = now()
        for _ in range(number):
            fn()
        sync(device)
        samples.append((now() - start) / number)
    return min(samples)


def time_pair(fn_a, fn_b, *, device="cpu", rounds=7, **kwargs) -> tuple[float, float]:
    """Best seconds per call of two functions measured in alternating rounds
    (a, b, b, a, ...), so drifting load on a shared machine hits both alike."""
    best_a = best_b = float("inf")
    for r in range(rounds):
        order = [(0, fn_a), (1, fn_b)] if r % 2 == 0 else [(1, fn_b), (0, fn_a)]
        for which, fn in order:
            t = time_call(fn, device=device, repeat=3, **kwargs)
            if which == 0:
                best_a = min(best_a, t)
            else:
                best_b = min(best_b, t)
    return best_a, best_b


def environment() -> dict:
    return {
        "torch": torch.__version__,
        "machine": platform.machine(),
        "system": platform.system(),
        "threads": torch.get_num_threads(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "cpu_model": cpu_model(),
        "llc_bytes": last_level_cache_bytes(),
    }


def write_results(name: str, rows: list[dict], extra: dict | None = None) -> Path:
    RESULTS_DIR.mkdir(exist_ok=True)
    path = Path(os.environ.get("MPS_EXT_BENCH_OUT", RESULTS_DIR / f"{name}.json"))
    path.write_text(json.dumps({"benchmark": name, "env": environment(), "rows": rows, **(extra or {})}, indent=2))
    return path
