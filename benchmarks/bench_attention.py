"""Attention: mps_ext.scaled_dot_product_attention vs torch's F.scaled_dot_product_attention.

    python benchmarks/bench_attention.py [--device cpu|mps|mpsgraph] [--long] [--no-memory]

Cases (issue 10): prefill B=1, H=32, L=S=1024 (and 4096 with --long), E=128,
causal; decode L=1 against S=1024..16384 keys with grouped-query heads 32/8;
fp32 and bf16. Prints times, the ratio (torch time / mps_ext time: > 1 means
mps_ext is faster), GFLOP/s for prefill, GB/s of K/V read for decode next to
the read floor (k.amax() + v.amax(): K/V streamed once), peak memory of one
prefill call (fresh subprocess each, peak RSS growth), and the KV-cache update time
against the cache length (torch's slice copy_ alongside). JSON goes to
benchmarks/results/attention.json.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys

import torch
import torch.nn.functional as F

import mps_ext
from common import cpu_model, time_call, write_results


def ratio_row(rows, case, dtype, t_torch, t_ours, **extra):
    row = {"case": case, "dtype": str(dtype).replace("torch.", ""), "torch_s": t_torch, "mps_ext_s": t_ours,
           "ratio": t_torch / t_ours, **extra}
    rows.append(row)
    more = "".join(f"{v:>12.1f}" if isinstance(v, float) else f"{v:>12}" for v in extra.values())
    print(f"{case:<34}{row['dtype']:>9}{t_torch * 1e3:>11.3f}{t_ours * 1e3:>11.3f}{row['ratio']:>8.2f}{more}")


def prefill(rows, dev, dtype, L, repeat):
    B, H, E = 1, 32, 128
    q, k, v = (torch.randn(B, H, L, E, dtype=dtype, device=dev) for _ in range(3))
    ours = torch.ops.mps_ext.scaled_dot_product_attention
    torch.testing.assert_close(ours(q, k, v, is_causal=True).float(),
                               F.scaled_dot_product_attention(q, k, v, is_causal=True).float(), atol=2e-2, rtol=2e-2)
    t_ref = time_call(lambda: F.scaled_dot_product_attention(q, k, v, is_causal=True), device=dev, repeat=repeat,
                      warmup=1)
    t_ours = time_call(lambda: ours(q, k, v, is_causal=True), device=dev, repeat=repeat, warmup=1)
    flops = 4 * B * H * L * L * E / 2  # two matmuls, causal half
    ratio_row(rows, f"prefill L=S={L} causal", dtype, t_ref, t_ours, GFLOPs=flops / t_ours / 1e9)


def decode(rows, dev, dtype, S):
    B, Hq, Hkv, E = 1, 32, 8, 128
    q = torch.randn(B, Hq, 1, E, dtype=dtype, device=dev)
    k, v = (torch.randn(B, Hkv, S, E, dtype=dtype, device=dev) for _ in range(2))
    ours = torch.ops.mps_ext.scaled_dot_product_attention
    torch.testing.assert_close(ours(q, k, v, enable_gqa=True).float(),
                               F.scaled_dot_product_attention(q, k, v, enable_gqa=True).float(), atol=2e-2, rtol=2e-2)
    t_ref = time_call(lambda: F.scaled_dot_product_attention(q, k, v, enable_gqa=True), device=dev)
    t_ours = time_call(lambda: ours(q, k, v, enable_gqa=True), device=dev)
    t_floor = time_call(lambda: (k.amax(), v.amax()), device=dev)
    kv_bytes = 2 * k.numel() * k.element_size()
    ratio_row(rows, f"decode L=1 S={S} GQA 32/8", dtype, t_ref, t_ours, GBps=kv_bytes / t_ours / 1e9,
              floor_GBps=kv_bytes / t_floor / 1e9, of_floor=t_floor / t_ours)


def cache_updates(rows, dev):
    print(f"\n{'KV-cache update (1 row, Hkv=8, D=128)':<40}{'torch copy_ ms':>15}{'mps_ext ms':>12}{'ratio':>8}")
    for S in (1024, 4096, 16384):
        cache = mps_ext.nn.KVCache(1, 8, S, 128, device=dev)
        new = torch.randn(1, 8, 1, 128, device=dev)
        pos = S - 1
        t_ours = time_call(lambda: torch.ops.mps_ext.kv_cache_update_(cache.k_cache, new, pos), device=dev)
        t_ref = time_call(lambda: cache.v_cache[:, :, pos:pos + 1].copy_(new), device=dev)
        rows.append({"case": f"kv_cache_update_ max_seq_len={S}", "dtype": "float32", "torch_s": t_ref,
                     "mps_ext_s": t_ours, "ratio": t_ref / t_ours})
        print(f"{'max_seq_len=' + str(S):<40}{t_ref * 1e3:>15.4f}{t_ours * 1e3:>12.4f}{t_ref / t_ours:>8.2f}")


# Peak RSS of one call: reset the high-water mark (clear_refs "5", Linux >= 4.0),
# then VmHWM after the call minus VmRSS before it.
PEAK_SCRIPT = """
import sys, torch, torch.nn.functional as F
import mps_ext
def status(key):
    for line in open("/proc/self/status"):
        if line.startswith(key):
            return int(line.split()[1]) * 1024
which, L, dev = sys.argv[1], int(sys.argv[2]), sys.argv[3]
q, k, v = (torch.randn(1, 32, L, 128, device=dev) for _ in range(3))
fn = torch.ops.mps_ext.scaled_dot_product_attention if which == "mps_ext" else F.scaled_dot_product_attention
small = torch.randn(1, 32, 16, 128, device=dev)
fn(small, small, small, is_causal=True)  # load code paths first
open("/proc/self/clear_refs", "w").write("5")
base = status("VmRSS")
out = fn(q, k, v, is_causal=True)
print(status("VmHWM") - base)
"""


def peak_memory(rows, dev, L):
    print(f"\nPeak memory of one fp32 causal prefill call, L=S={L} (RSS growth; inputs excluded):")
    out_bytes = 32 * L * 128 * 4
    for which in ("torch", "mps_ext"):
        r = subprocess.run([sys.executable, "-c", PEAK_SCRIPT, which, str(L), dev], capture_output=True, text=True,
                           timeout=300)
        grown = int(r.stdout.strip().splitlines()[-1]) if r.returncode == 0 else -1
        rows.append({"case": f"peak memory prefill L=S={L}", "impl": which, "bytes": grown, "output_bytes": out_bytes,
                     "scores_bytes_if_materialised": 32 * L * L * 4})
        print(f"  {which:<8} {grown / 2**20:8.1f} MiB  (output {out_bytes / 2**20:.0f} MiB; an L x S score matrix "
              f"per head would be {32 * L * L * 4 / 2**20:.0f} MiB)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--long", action="store_true", help="also prefill L=S=4096 (slow on a small CPU)")
    parser.add_argument("--no-memory", action="store_true", help="skip the peak-memory subprocesses")
    args = parser.parse_args()
    dev = args.device
    runtime = {"cpu": "reference", "mps": "mpsgraph"}.get(torch.device(dev).type, mps_ext.runtime())
    print(f"attention on {dev}: {cpu_model()}, ISA {torch.backends.cpu.get_cpu_capability()}, "
          f"{torch.get_num_threads()} threads, mps_ext runtime: {runtime}")
    print(f"{'case':<34}{'dtype':>9}{'torch ms':>11}{'ours ms':>11}{'ratio':>8}{'rate':>12}")
    rows: list[dict] = []
    for dtype in (torch.float32, torch.bfloat16):
        for L in (1024, 4096) if args.long else (1024,):
            prefill(rows, dev, dtype, L, repeat=3 if L > 1024 else 5)
    print(f"{'':<34}{'':>9}{'':>11}{'':>11}{'':>8}{'ours GB/s':>12}{'floor GB/s':>12}{'of floor':>12}")
    for dtype in (torch.float32, torch.bfloat16):
        for S in (1024, 4096, 16384):
            decode(rows, dev, dtype, S)
    cache_updates(rows, dev)
    if not args.no_memory:
        peak_memory(rows, dev, 1024)
    path = write_results("attention", rows, {"cpu": cpu_model(), "device": dev, "runtime": runtime})
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
