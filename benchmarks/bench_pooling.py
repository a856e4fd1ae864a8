"""Pooling on the mps_ext device vs torch on the CPU, in the same run.

    PYTHONPATH=. python benchmarks/bench_pooling.py [--threads N] [--batch 32]

ResNet's stem pool (max_pool2d 3x3, stride 2, padding 1 on [N, 64, 56, 56])
forward and forward+backward, plus an avg_pool2d of the same shape, an
adaptive_avg_pool2d to 7x7 and an adaptive_max_pool2d to 10x10 (windows that
do not tile the input), float32. Prints the machine, per case the time on
`cpu` and on `mpsgraph` (reference runtime on Linux: the IR's pooling nodes run
through ATen, so the ratio shows what the device layer costs), the ratio
(cpu time / device time: > 1 means the device is faster) and effective GB/s
(bytes each pass must move). Writes benchmarks/results/pooling.json.
"""
from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F

import mps_ext  # noqa: F401
from common import describe_machine, time_pair, write_results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    n, c, h, w = args.batch, 64, 56, 56
    print(describe_machine())
    print(f"pooling on [{n}, {c}, {h}, {w}] float32; ratio = cpu time / mpsgraph time")
    print(f"{'case':<34}{'cpu ms':>10}{'device ms':>11}{'ratio':>8}{'dev GB/s':>10}")
    x_cpu = torch.randn(n, c, h, w)
    x_dev = x_cpu.to("mpsgraph")
    before = torch.ops.mps_ext._fallback_count()
    isz = x_cpu.numel() * 4
    osz = n * c * 28 * 28 * 4

    def fwd_bwd(fn):
        def run(x, g):
            x.grad = None
            fn(x).backward(g)
        return run

    stem = lambda t: F.max_pool2d(t, 3, 2, 1)  # noqa: E731
    avg = lambda t: F.avg_pool2d(t, 3, 2, 1)  # noqa: E731
    cases = {
        # forward: read x, write values + int64 indices; backward: read grad + indices, write grad_input
        "max_pool2d 3x3/s2/p1 fwd": (stem, None, isz + osz * 3),
        "max_pool2d 3x3/s2/p1 fwd+bwd": (stem, True, isz + osz * 3 + osz * 3 + isz),
        "avg_pool2d 3x3/s2/p1 fwd": (avg, None, isz + osz),
        "avg_pool2d 3x3/s2/p1 fwd+bwd": (avg, True, isz + osz + osz + isz),
        "adaptive_avg_pool2d ->7x7 fwd": (lambda t: F.adaptive_avg_pool2d(t, 7), None, isz + n * c * 49 * 4),
        # windows that do not tile the input (56 -> 10): the masked form on MPSGraph, ATen's kernel here
        "adaptive_max_pool2d ->10x10 fwd": (lambda t: F.adaptive_max_pool2d(t, 10), None, isz + n * c * 100 * 12),
        "adaptive_max_pool2d ->10x10 fwd+bwd": (lambda t: F.adaptive_max_pool2d(t, 10), True,
                                                isz + n * c * 100 * 12 * 2 + isz),
    }
    rows = []
    for name, (fn, bwd, nbytes) in cases.items():
        if bwd:
            xc, xd = x_cpu.clone().requires_grad_(), x_dev.clone().requires_grad_()
            gc = torch.randn_like(fn(x_cpu))
            gd = gc.to("mpsgraph")
            f_cpu, f_dev = (lambda: fwd_bwd(fn)(xc, gc)), (lambda: fwd_bwd(fn)(xd, gd))
        else:
            f_cpu, f_dev = (lambda: fn(x_cpu)), (lambda: fn(x_dev))
        torch.testing.assert_close(f_cpu() if not bwd else fn(x_cpu), (f_dev() if not bwd else fn(x_dev)).cpu())
        t_cpu, t_dev = time_pair(f_cpu, f_dev, device="mpsgraph")
        row = {"case": name, "shape": [n, c, h, w], "cpu_s": t_cpu, "device_s": t_dev, "ratio": t_cpu / t_dev,
               "device_GBps": nbytes / t_dev / 1e9, "cpu_GBps": nbytes / t_cpu / 1e9}
        rows.append(row)
        print(f"{name:<34}{t_cpu * 1e3:>10.3f}{t_dev * 1e3:>11.3f}{row['ratio']:>8.2f}{row['device_GBps']:>10.1f}")
    fallbacks = torch.ops.mps_ext._fallback_count() - before
    print(f"CPU fallbacks during the run: {fallbacks}")
    path = write_results("pooling", rows, {"fallbacks": fallbacks, "runtime": mps_ext.runtime()})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
