"""Per-op overhead of the mpsgraph device vs the CPU: microseconds per call of
small ops (16x16), where dispatch, graph-cache lookup and argument handling
dominate the arithmetic. Small models' training speed is this number times
their op count.

    python benchmarks/bench_op_overhead.py [--threads N]   # ~20 s
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # before torch: its backend autoload imports mps_ext
import torch  # noqa: E402

import mps_ext  # noqa: E402,F401

from common import describe_machine, time_pair, write_results  # noqa: E402

DEV = "mpsgraph"


def cases(device: str):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(16, 16, generator=g).to(device)
    y = torch.randn(16, 16, generator=g).to(device)
    b = torch.randn(16, generator=g).to(device)
    acc = torch.zeros(16, 16).to(device)
    return [
        ("add", lambda: x + y),
        ("add_scalar", lambda: x + 1.5),
        ("mul_broadcast", lambda: x * b),
        ("relu", lambda: torch.relu(x)),
        ("add_", lambda: acc.add_(y, alpha=0.5)),
        ("mm", lambda: x @ y),
        ("sum", lambda: x.sum()),
    ]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(describe_machine())
    print(f"per-op time, 16x16 float32: {DEV} device ({mps_ext.runtime()} runtime) vs cpu")
    print(f"{'op':<15}{'cpu us':>9}{'device us':>11}{'overhead us':>13}{'ratio':>8}")
    rows = []
    fallbacks = torch.ops.mps_ext._fallback_count()
    for (name, cpu_fn), (_, dev_fn) in zip(cases("cpu"), cases(DEV)):
        cpu_s, dev_s = time_pair(cpu_fn, dev_fn, device=DEV, rounds=5, min_time=0.05)
        row = {"op": name, "cpu_us": cpu_s * 1e6, "device_us": dev_s * 1e6, "ratio": cpu_s / dev_s}
        rows.append(row)
        print(f"{name:<15}{row['cpu_us']:>9.2f}{row['device_us']:>11.2f}{row['device_us'] - row['cpu_us']:>13.2f}"
              f"{row['ratio']:>8.2f}")
    fallbacks = torch.ops.mps_ext._fallback_count() - fallbacks
    print(f"fallbacks: {fallbacks}")
    path = write_results("bench_op_overhead", rows, {"runtime": mps_ext.runtime(), "fallbacks": fallbacks})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
