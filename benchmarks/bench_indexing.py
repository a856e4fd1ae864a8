"""Indexing and sorting on the mpsgraph device vs torch's CPU ops, same run:
embedding forward+backward (vocab 32k), sort, topk, x[idx] and
index_put_(accumulate=True) (x[idx] += v with duplicates), scatter_add.

    python benchmarks/bench_indexing.py          # ~1 min

Prints the machine, then per case the CPU and device times, the ratio (cpu
time / device time: > 1 means the device is faster) and the device's effective
GB/s (bytes each op must read + write, once). On Linux the device runs the
reference runtime (ATen's gather/scatter/sort on the same host memory): the
ratio is what the device layer adds. Before this change the device's embedding
decomposition was a [tokens, vocab] one-hot matmul (MPSGraph) and the reference
runtime ran index_select as a kernel node; sort/topk/index_put fell back to the
CPU. Results go to benchmarks/results/indexing.json.
"""
from __future__ import annotations

import sys
from pathlib import Path

# The repo root first: torch's backend autoload imports mps_ext with torch.
sys.path[:0] = [str(Path(__file__).resolve().parents[1]), str(Path(__file__).resolve().parent)]
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

import mps_ext  # noqa: E402,F401
from common import describe_machine, time_pair, write_results  # noqa: E402

DEV = "mpsgraph"


def cases():
    vocab, dim, tokens = 32768, 256, 4096
    w = torch.randn(vocab, dim)
    ids = torch.randint(0, vocab, (tokens,))
    g = torch.randn(tokens, dim)
    x = torch.randn(256, 1024)
    big = torch.randn(1 << 20)
    rows = torch.randint(0, 4096, (16384,))
    table = torch.randn(4096, 64)
    upd = torch.randn(16384, 64)
    sidx = torch.randint(0, 1024, (256, 1024))
    f = 4  # bytes per float32

    def emb_fwd_bwd(w, ids, g):
        w = w.detach().requires_grad_()
        F.embedding(ids, w).backward(g)
        return w.grad

    def put(t, i, v):
        return t.clone().index_put_((i,), v, accumulate=True)

    yield ("embedding fwd+bwd 32k x 256, 4096 tok", emb_fwd_bwd, (w, ids, g),
           # fwd: read tokens rows, write them; bwd: zero the table, read grads, add rows
           f * (2 * tokens * dim + vocab * dim + 2 * tokens * dim))
    yield ("sort 256 x 1024 (dim -1)", lambda t: torch.sort(t), (x,), f * x.numel() * 2 + 8 * x.numel())
    yield ("sort 1M", lambda t: torch.sort(t), (big,), f * big.numel() * 2 + 8 * big.numel())
    yield ("topk k=8 of 256 x 1024", lambda t: torch.topk(t, 8), (x,), f * x.numel())
    yield ("x[idx] 16384 rows of 4096 x 64", lambda t, i: t[i], (table, rows), 2 * f * upd.numel())
    yield ("index_put_ accumulate 16384 -> 4096 x 64", put, (table, rows, upd),
           f * (2 * table.numel() + 2 * upd.numel()))
    yield ("scatter_add 256 x 1024", lambda t, i, s: t.scatter_add(1, i, s), (x, sidx, x),
           f * (3 * x.numel()) + 8 * x.numel())


def main() -> None:
    print(describe_machine())
    print(f"device runtime: {mps_ext.runtime()}; ratio = cpu time / device time")
    print(f"{'case':<44}{'cpu ms':>9}{'dev ms':>9}{'ratio':>7}{'dev GB/s':>10}{'fallbacks':>10}")
    out = []
    for name, fn, args, nbytes in cases():
        dargs = tuple(a.to(DEV) for a in args)
        before = torch.ops.mps_ext._fallback_count()
        fn(*dargs)
        fallbacks = torch.ops.mps_ext._fallback_count() - before
        t_cpu, t_dev = time_pair(lambda: fn(*args), lambda: fn(*dargs), device=DEV, rounds=3)
        row = {"case": name, "cpu_s": t_cpu, "device_s": t_dev, "ratio": t_cpu / t_dev,
               "device_GBps": nbytes / t_dev / 1e9, "fallbacks_per_call": fallbacks}
        out.append(row)
        print(f"{name:<44}{t_cpu * 1e3:>9.3f}{t_dev * 1e3:>9.3f}{row['ratio']:>7.2f}{row['device_GBps']:>10.1f}"
              f"{fallbacks:>10}")
    print(f"wrote {write_results('indexing', out)}")


if __name__ == "__main__":
    main()
