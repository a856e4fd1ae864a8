"""softshrink forward and forward+backward: mps_ext vs torch.nn.functional.softshrink.

    python benchmarks/bench_softshrink.py [--device cpu|mps] [--sizes 1M 16M]

Prints time, ratio (torch time / mps_ext time: > 1 means mps_ext is faster)
and effective GB/s, the time of x.clone() as the memory-traffic floor, then the
per-call overhead of a graph-cache hit on a 1-element tensor. Results go to
benchmarks/results/softshrink.json.

Results of 32 MiB and more come from huge pages in mps_ext (see
csrc/runtime/reference/output_allocator.h); torch gets the same with
THP_MEM_ALLOC_ENABLE=1, so run with it set to compare kernels alone.
"""
from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F

import mps_ext
from common import time_call, write_results

SIZES = {"1M": 1 << 20, "16M": 1 << 24}


def fwd_bwd(fn, x, g):
    x.grad = None
    fn(x, 0.5).backward(g)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--sizes", nargs="+", default=list(SIZES), choices=list(SIZES))
    args = parser.parse_args()
    dev = args.device
    ours, ref = torch.ops.mps_ext.softshrink, F.softshrink
    rows = []
    runtime = {"cpu": "reference", "mps": "mpsgraph"}.get(torch.device(dev).type, mps_ext.runtime())
    print(f"softshrink on {dev} ({torch.get_num_threads()} threads, mps_ext runtime: {runtime})")
    print(f"{'case':<22}{'torch ms':>10}{'mps_ext ms':>12}{'ratio':>8}{'GB/s':>8}")
    for label in args.sizes:
        n = SIZES[label]
        x = torch.randn(n, device=dev)
        g = torch.randn(n, device=dev)
        assert torch.equal(ours(x, 0.5), ref(x, 0.5))
        xr = x.clone().requires_grad_()
        cases = {
            "forward": (lambda: ref(x, 0.5), lambda: ours(x, 0.5), 2 * 4 * n),
            # fwd reads x, writes y; bwd reads g and x, writes grad
            "forward+backward": (lambda: fwd_bwd(ref, xr, g), lambda: fwd_bwd(ours, xr, g), 5 * 4 * n),
        }
        # The floor for a one-in, one-out op: a plain copy into a fresh tensor.
        t_copy = time_call(lambda: x.clone(), device=dev)
        rows.append({"case": "x.clone() (copy floor)", "numel": n, "dtype": "float32", "device": dev,
                     "torch_s": t_copy, "torch_GBps": 2 * 4 * n / t_copy / 1e9})
        print(f"{'copy floor ' + label:<22}{t_copy * 1e3:>10.3f}{'':>12}{'':>8}{2 * 4 * n / t_copy / 1e9:>8.1f}")
        for case, (f_ref, f_ours, nbytes) in cases.items():
            t_ref = time_call(f_ref, device=dev)
            t_ours = time_call(f_ours, device=dev)
            row = {"case": case, "numel": n, "dtype": "float32", "device": dev,
                   "torch_s": t_ref, "mps_ext_s": t_ours, "ratio": t_ref / t_ours,
                   "mps_ext_GBps": nbytes / t_ours / 1e9, "torch_GBps": nbytes / t_ref / 1e9}
            rows.append(row)
            print(f"{case + ' ' + label:<22}{t_ref * 1e3:>10.3f}{t_ours * 1e3:>12.3f}{row['ratio']:>8.2f}"
                  f"{row['mps_ext_GBps']:>8.1f}")

    # Overhead of the dispatch + graph-cache hit path, on a tensor too small to matter.
    x1 = torch.randn(1, device=dev)
    ours(x1, 0.5)  # compile once
    before = mps_ext.graph.cache_info()
    t_ref = time_call(lambda: ref(x1, 0.5), device=dev, repeat=25)
    t_ours = time_call(lambda: ours(x1, 0.5), device=dev, repeat=25)
    after = mps_ext.graph.cache_info()
    assert after.misses == before.misses, "the 1-element calls must all be cache hits"
    overhead = {"torch_us": t_ref * 1e6, "mps_ext_us": t_ours * 1e6, "extra_us": (t_ours - t_ref) * 1e6}
    print(f"1-element call: torch {overhead['torch_us']:.2f} us, mps_ext {overhead['mps_ext_us']:.2f} us "
          f"(cache hit overhead {overhead['extra_us']:+.2f} us)")
    path = write_results("softshrink", rows, {"cache_hit_overhead": overhead})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
