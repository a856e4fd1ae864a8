"""Quantized matmul on the CPU: mps_ext vs torch's own int4/int8 kernels and fp32 F.linear.

    python benchmarks/bench_quantized.py [--quick] [--no-large]

Cases (same run, same inputs):
  * int4, K=N=4096, group size 64/128, M=1 and 16: mps_ext.quantized_matmul vs
    torch._weight_int4pack_mm_for_cpu (torch's int4 CPU kernel; its fast path
    takes bfloat16 activations, so both run bf16 there) and vs fp32 F.linear
    (mps_ext with fp32 activations).
  * int8, K=N=4096, M=1 and 16: vs torch._weight_int8pack_mm (per-channel
    scales; mps_ext with group_size = K is the same format, also gs=128).
  * a shape whose fp32 weight exceeds the last-level cache (K=N=12288 where
    the LLC is smaller than 576 MiB): the memory-bound case.
  * weight memory of a quantized model vs fp32.
ratio = other time / mps_ext time (> 1: mps_ext faster). GB/s = bytes of
weight each call must read (packed codes + scales + zero points, or the fp32
weight) / time. JSON: benchmarks/results/quantized.json.
"""
from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F

import mps_ext
from common import describe_machine, last_level_cache_bytes, time_call, write_results

ops = torch.ops.mps_ext


def random_groupwise(n, k, bits, gs, dtype):
    """Random codes/scales/zero points (quantizing a 12288^2 weight would dominate the run)."""
    qweight = torch.randint(0, 256, (n, k * bits // 8), dtype=torch.uint8)
    scales = (torch.rand(n, k // gs) * 0.02 + 0.01).to(dtype)
    zero_points = torch.randint(0, 2**bits, (n, k // gs)).to(dtype)
    return qweight, scales, zero_points


def torch_int4(qweight, scales, zero_points, gs):
    """The same weights in torch's CPU int4 format: w = (q - 8) * scale + zero."""
    codes = torch.stack([qweight & 0xF, qweight >> 4], -1).reshape(qweight.shape[0], -1).to(torch.int32)
    packed = torch._convert_weight_to_int4pack_for_cpu(codes, 1)
    s = scales.float()
    zero = s * (8 - zero_points.float())
    scale_and_zero = torch.stack([s, zero], -1).transpose(0, 1).contiguous().to(torch.bfloat16)  # [K/gs, N, 2]
    return packed, scale_and_zero


def cpu_time_1thread(fn, repeat=7, min_time=0.1) -> float:
    """Best CPU seconds per call of the calling thread with torch on one thread:
    unlike wall time, not inflated when a shared machine deschedules us."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        fn()
        start = time.thread_time()
        fn()
        number = max(1, int(min_time / repeat / max(time.thread_time() - start, 1e-6)))
        best = float("inf")
        for _ in range(repeat):
            start = time.thread_time()
            for _ in range(number):
                fn()
            best = min(best, (time.thread_time() - start) / number)
        return best
    finally:
        torch.set_num_threads(threads)


def weight_traffic(qweight, scales, zero_points):
    return sum(t.numel() * t.element_size() for t in (qweight, scales, zero_points))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer repeats")
    parser.add_argument("--no-large", action="store_true", help="skip the larger-than-LLC shape")
    args = parser.parse_args()
    repeat = 5 if args.quick else 9
    min_time = 0.1 if args.quick else 0.2
    torch.manual_seed(0)
    print(describe_machine())
    llc = last_level_cache_bytes()
    print(f"last-level cache: {llc / 2**20:.0f} MiB" if llc else "last-level cache: unknown")
    print("ratio = other time / mps_ext time (> 1: mps_ext faster); wall = best wall time on all threads, "
          "cpu1 = best CPU time on one thread (robust on a loaded machine); GB/s = weight bytes per call / wall\n")
    rows = []

    def measure(fn):
        return time_call(fn, repeat=repeat, min_time=min_time), cpu_time_1thread(fn, repeat=repeat, min_time=min_time)

    def report(case, ours, others, weight_bytes, **extra):
        r = {"case": case, **extra, "mps_ext_wall_ms": ours[0] * 1e3, "mps_ext_cpu1_ms": ours[1] * 1e3,
             "weight_bytes": weight_bytes, "mps_ext_GBps": weight_bytes / ours[0] / 1e9}
        text = f"{case:<34}{ours[0] * 1e3:>8.3f}{ours[1] * 1e3:>8.3f}{r['mps_ext_GBps']:>7.1f}"
        for name, t in others.items():
            r.update({f"{name}_wall_ms": t[0] * 1e3, f"{name}_cpu1_ms": t[1] * 1e3,
                      f"ratio_vs_{name}_wall": t[0] / ours[0], f"ratio_vs_{name}_cpu1": t[1] / ours[1]})
            text += f" | {name} {t[0] * 1e3:7.3f} {t[1] * 1e3:7.3f} -> {t[0] / ours[0]:5.2f}x {t[1] / ours[1]:5.2f}x"
        rows.append(r)
        print(text)

    header = f"{'case':<34}{'wall ms':>8}{'cpu1 ms':>8}{'GB/s':>7} | other: wall ms, cpu1 ms -> ratio wall, cpu1"
    k = n = 4096
    print(f"int4, K=N={k}: bf16 x vs torch int4 (bf16 is its fast path); fp32 x vs fp32 F.linear")
    print(header)
    w_fp32 = torch.randn(n, k)
    for gs in (64, 128):
        q, s, z = random_groupwise(n, k, 4, gs, torch.float32)
        packed, sz = torch_int4(q, s, z, gs)
        sb, zb = s.bfloat16(), z.bfloat16()
        for m in (1, 16):
            x = torch.randn(m, k)
            xb = x.bfloat16()
            # same weights: the two kernels must agree before they are timed
            ours_b = ops.quantized_matmul(xb, q, sb, zb, 4, gs).float()
            theirs = torch._weight_int4pack_mm_for_cpu(xb, packed, gs, sz).float()
            assert (ours_b - theirs).abs().max() <= 0.02 * ours_b.abs().max() + 1e-3, "torch int4 format mismatch"
            shape = dict(K=k, N=n, M=m, bits=4, group_size=gs)
            report(f"int4 gs={gs} M={m} bf16", measure(lambda: ops.quantized_matmul(xb, q, sb, zb, 4, gs)),
                   {"torch_int4": measure(lambda: torch._weight_int4pack_mm_for_cpu(xb, packed, gs, sz))},
                   weight_traffic(q, sb, zb), **shape)
            report(f"int4 gs={gs} M={m} fp32", measure(lambda: ops.quantized_matmul(x, q, s, z, 4, gs)),
                   {"fp32_linear": measure(lambda: F.linear(x, w_fp32))}, weight_traffic(q, s, z), **shape)

    print(f"\nint8, K=N={k}, fp32 x: vs torch._weight_int8pack_mm (per-channel = mps_ext group_size K)")
    print(header)
    w8 = torch.randint(-127, 128, (n, k), dtype=torch.int8)
    scale8 = torch.rand(n) * 0.01 + 0.001
    for m in (1, 16):
        x = torch.randn(m, k)
        theirs = measure(lambda: torch._weight_int8pack_mm(x, w8, scale8))
        for gs in (k, 128):
            q, s, z = random_groupwise(n, k, 8, gs, torch.float32)
            report(f"int8 gs={gs} M={m} fp32", measure(lambda: ops.quantized_matmul(x, q, s, z, 8, gs)),
                   {"torch_int8": theirs}, weight_traffic(q, s, z), K=k, N=n, M=m, bits=8, group_size=gs)

    if not args.no_large:
        big = 12288
        print(f"\nlarger than the LLC: K=N={big}, M=1, int4 gs=128; fp32 weight {big * big * 4 / 2**20:.0f} MiB"
              + (f" vs LLC {llc / 2**20:.0f} MiB" if llc else ""))
        print(header)
        w_big = torch.randn(big, big)
        x = torch.randn(1, big)
        linear = measure(lambda: F.linear(x, w_big))
        print(f"  (fp32 F.linear: {big * big * 4 / linear[0] / 1e9:.1f} GB/s)")
        del w_big
        q, s, z = random_groupwise(big, big, 4, 128, torch.float32)
        shape = dict(K=big, N=big, M=1, bits=4, group_size=128)
        report(f"int4 gs=128 K=N={big} fp32", measure(lambda: ops.quantized_matmul(x, q, s, z, 4, 128)),
               {"fp32_linear": linear}, weight_traffic(q, s, z), **shape)
        packed, sz = torch_int4(q, s, z, 128)
        xb, sb, zb = x.bfloat16(), s.bfloat16(), z.bfloat16()
        report(f"int4 gs=128 K=N={big} bf16", measure(lambda: ops.quantized_matmul(xb, q, sb, zb, 4, 128)),
               {"torch_int4": measure(lambda: torch._weight_int4pack_mm_for_cpu(xb, packed, 128, sz))},
               weight_traffic(q, sb, zb), **shape)

    # Weight memory of a quantized model vs fp32.
    def mlp():
        return torch.nn.Sequential(*[torch.nn.Linear(1024, 1024) for _ in range(4)])

    model = mlp()
    fp32_bytes = mps_ext.quantization.weight_bytes(model)
    q_bytes = mps_ext.quantization.weight_bytes(mps_ext.quantize_model(model, bits=4, group_size=64))
    bf16_bytes = mps_ext.quantization.weight_bytes(mps_ext.quantize_model(mlp().to(torch.bfloat16), bits=4,
                                                                          group_size=64))
    memory = {"fp32_bytes": fp32_bytes, "int4_gs64_fp32_scales_bytes": q_bytes, "int4_gs64_bf16_scales_bytes": bf16_bytes}
    print(f"\nweight memory, 4 x Linear(1024, 1024) with bias: fp32 {fp32_bytes / 2**20:.2f} MiB -> int4 gs=64 "
          f"{q_bytes / 2**20:.2f} MiB (1/{fp32_bytes / q_bytes:.2f}, fp32 scales + zero points); "
          f"{bf16_bytes / 2**20:.2f} MiB for the bf16 model (1/{fp32_bytes / bf16_bytes:.2f} of fp32)")
    path = write_results("quantized", rows, {"memory": memory})
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
