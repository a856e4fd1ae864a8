"""softshrink forward and forward+backward: mps_ext vs torch.nn.functional.softshrink.

    python benchmarks/bench_softshrink.py [--device cpu|mpsgraph|mps] [--sizes 1M 4M] [--dtypes float32 ...]

Prints the machine (CPU model, ISA, threads, LLC), then per size and dtype the
time, the ratio (torch time / mps_ext time: > 1 means mps_ext is faster) and
effective GB/s, minor page faults per call (Linux; a result written into
freshly mapped memory costs one fault per 4 KiB page), the x.clone() copy
floor, and the per-call overhead on a 1-element tensor for the Python wrapper
and for torch.ops. Results go to benchmarks/results/softshrink.json.

mps_ext's results of 256 KiB and more reuse recently freed blocks and new
ones of 32 MiB and more sit on huge pages (csrc/runtime/reference/
output_allocator.h): torch gets huge pages with THP_MEM_ALLOC_ENABLE=1 (set it
to compare kernels alone at 16M), and the faults column shows when torch's
results land in fresh pages (glibc heap state, history-dependent).
"""
from __future__ import annotations

import argparse
import sys

import torch
import torch.nn.functional as F

import mps_ext
from common import describe_machine, time_call, time_pair, write_results

SIZES = {"1M": 1 << 20, "4M": 1 << 22, "16M": 1 << 24}
DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def minor_faults() -> int:
    if not sys.platform.startswith("linux"):
        return 0
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def counting_faults(fn, counts, key):
    """fn, adding its calls and minor page faults to counts[key]."""
    def call():
        before = minor_faults()
        fn()
        counts[key][0] += 1
        counts[key][1] += minor_faults() - before
    return call


def fwd_bwd(fn, x, g):
    x.grad = None
    fn(x, 0.5).backward(g)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--sizes", nargs="+", default=["1M", "4M"], choices=list(SIZES))
    parser.add_argument("--dtypes", nargs="+", default=list(DTYPES), choices=list(DTYPES))
    parser.add_argument("--threads", type=int, default=None,
                        help="torch threads (default: torch's; 1 gives steadier numbers on a shared machine)")
    parser.add_argument("--clock", default="wall", choices=["wall", "cpu"],
                        help="wall time, or process CPU time (steadier when the machine is oversubscribed)")
    parser.add_argument("--rounds", type=int, default=7, help="alternating rounds per case (best of all)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    dev = args.device
    ours, ref = mps_ext.nn.functional.softshrink, F.softshrink
    rows = []
    runtime = {"cpu": "reference", "mps": "mpsgraph"}.get(torch.device(dev).type, mps_ext.runtime())
    print(describe_machine())
    print(f"softshrink on {dev} (mps_ext runtime: {runtime}); {args.clock} clock; "
          f"ratio = torch time / mps_ext time")
    print(f"{'case':<30}{'torch ms':>10}{'mps_ext ms':>12}{'ratio':>8}{'GB/s':>8}{'faults/call torch, ours':>25}")
    for label in args.sizes:
        n = SIZES[label]
        for dname in args.dtypes:
            dtype = DTYPES[dname]
            size = torch.finfo(dtype).bits // 8
            x = torch.randn(n, device=dev, dtype=dtype)
            g = torch.randn(n, device=dev, dtype=dtype)
            assert torch.equal(ours(x, 0.5), ref(x, 0.5))
            xr = x.clone().requires_grad_()
            cases = {
                "forward": (lambda: ref(x, 0.5), lambda: ours(x, 0.5), 2 * size * n),
                # fwd reads x, writes y; bwd reads g and x, writes grad
                "fwd+bwd": (lambda: fwd_bwd(ref, xr, g), lambda: fwd_bwd(ours, xr, g), 5 * size * n),
            }
            if dtype == torch.float32:  # the floor for a one-in, one-out op: a copy into a fresh tensor
                t_copy = time_call(lambda: x.clone(), device=dev, clock=args.clock)
                rows.append({"case": "x.clone() (copy floor)", "numel": n, "dtype": dname, "device": dev,
                             "torch_s": t_copy, "torch_GBps": 2 * size * n / t_copy / 1e9})
                print(f"{'copy floor ' + label:<30}{t_copy * 1e3:>10.3f}{'':>12}{'':>8}"
                      f"{2 * size * n / t_copy / 1e9:>8.1f}")
            for case, (f_ref, f_ours, nbytes) in cases.items():
                counts = {"torch": [0, 0], "mps_ext": [0, 0]}
                t_ref, t_ours = time_pair(counting_faults(f_ref, counts, "torch"),
                                          counting_faults(f_ours, counts, "mps_ext"), device=dev,
                                          rounds=args.rounds, clock=args.clock)
                faults = {k: f / max(c, 1) for k, (c, f) in counts.items()}
                row = {"case": case, "numel": n, "dtype": dname, "device": dev,
                       "torch_s": t_ref, "mps_ext_s": t_ours, "ratio": t_ref / t_ours,
                       "mps_ext_GBps": nbytes / t_ours / 1e9, "torch_GBps": nbytes / t_ref / 1e9,
                       "torch_faults_per_call": faults["torch"], "mps_ext_faults_per_call": faults["mps_ext"]}
                rows.append(row)
                print(f"{f'{case} {label} {dname}':<30}{t_ref * 1e3:>10.3f}{t_ours * 1e3:>12.3f}"
                      f"{row['ratio']:>8.2f}{row['mps_ext_GBps']:>8.1f}"
                      f"{faults['torch']:>16.0f},{faults['mps_ext']:>8.0f}")

    # Per-call cost on a tensor too small to matter: dispatch + graph-cache hit.
    x1 = torch.randn(1, device=dev)
    ours(x1, 0.5)  # compile once
    before = mps_ext.graph.cache_info()
    t_ref, t_wrapper = time_pair(lambda: ref(x1, 0.5), lambda: ours(x1, 0.5), device=dev, rounds=9,
                                 clock=args.clock)
    t_aten_ops, t_ops = time_pair(lambda: torch.ops.aten.softshrink(x1, 0.5),
                                  lambda: torch.ops.mps_ext.softshrink(x1, 0.5), device=dev, rounds=9,
                                  clock=args.clock)
    after = mps_ext.graph.cache_info()
    assert after.misses == before.misses, "the 1-element calls must all be cache hits"
    overhead = {"torch_F_us": t_ref * 1e6, "mps_ext_wrapper_us": t_wrapper * 1e6,
                "mps_ext_torch_ops_us": t_ops * 1e6, "aten_torch_ops_us": t_aten_ops * 1e6,
                "wrapper_vs_F": t_wrapper / t_ref, "torch_ops_vs_aten_torch_ops": t_ops / t_aten_ops}
    print(f"1-element call: F.softshrink {t_ref * 1e6:.2f} us, mps_ext.nn.functional.softshrink "
          f"{t_wrapper * 1e6:.2f} us ({t_wrapper / t_ref:.2f}x); torch.ops.aten.softshrink {t_aten_ops * 1e6:.2f} us, "
          f"torch.ops.mps_ext.softshrink {t_ops * 1e6:.2f} us ({t_ops / t_aten_ops:.2f}x)")
    path = write_results("softshrink", rows, {"call_overhead": overhead, "machine": describe_machine(),
                                              "clock": args.clock})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
