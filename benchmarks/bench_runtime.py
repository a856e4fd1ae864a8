"""The runtime seam itself: an in-place slice update costs O(update), not
O(tensor), and a graph-cache hit costs little.

    python benchmarks/bench_runtime.py

Updates one row of a 4096-row and of a 65536-row float32 tensor (row width
1024: 16 MiB and 256 MiB) through a graph that assigns slice_update_at back
into its variable, as a KV-cache update does, and compares with torch's own
in-place row copy (`cache[i].copy_(row)`) in the same run (mps_ext here compiles the small graph on every call through
the test binding: an upper bound). Equal times across
sizes show the cost does not depend on the tensor. Writes
benchmarks/results/runtime.json.
"""
from __future__ import annotations

import torch

import mps_ext
from common import describe_machine, time_call, write_results
from mps_ext.graph import Graph


def update_graph() -> Graph:
    g = Graph()
    cache = g.variable([-1, -1], torch.float32, "cache")
    new = g.placeholder([-1, -1], torch.float32, "new")
    starts = g.placeholder([2], torch.int64, "starts")
    g.output(g.assign(cache, g.slice_update(cache, new, starts)))
    return g


def main() -> None:
    print(describe_machine())
    g = update_graph()
    width = 1024
    rows = []
    print(f"{'rows':>8}{'tensor MiB':>12}{'torch copy_ us':>16}{'mps_ext us':>12}{'ratio':>8}")
    for n in (4096, 65536):
        cache = torch.zeros(n, width)
        row = torch.randn(1, width)
        starts = torch.tensor([n // 2, 0])
        mps_ext._C._run_reference(g, [cache, row, starts])
        assert torch.equal(cache[n // 2], row[0])
        t_ours = time_call(lambda: mps_ext._C._run_reference(g, [cache, row, starts]), repeat=25)
        t_torch = time_call(lambda: cache[n // 2].copy_(row[0]), repeat=25)
        rows.append({"rows": n, "tensor_bytes": n * width * 4, "torch_s": t_torch, "mps_ext_s": t_ours,
                     "ratio": t_torch / t_ours, "update_bytes": width * 4})
        print(f"{n:>8}{n * width * 4 / (1 << 20):>12.0f}{t_torch * 1e6:>16.2f}{t_ours * 1e6:>12.2f}"
              f"{t_torch / t_ours:>8.2f}")
    flat = rows[1]["mps_ext_s"] / rows[0]["mps_ext_s"]
    print(f"65536-row / 4096-row update time: {flat:.2f} (1.0 = independent of the tensor size; "
          f"a functional update would be 16x)")
    path = write_results("runtime", rows, {"size_ratio": flat, "machine": describe_machine()})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
