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


def weight_traffic(qweight, scales, zero_points):
    return sum(t.numel() * t.element_size() for t in (qweight, scales, zero_points))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer repeats")
    parser.add_argument("--no-large", action="store_true", help="skip the larger-than-LLC shape")
    args = parser.parse_args()
    repeat = 5 if args.quick else 11
    timer = dict(repeat=repeat, min_time=0.1 if args.quick else 0.25)
    torch.manual_seed(0)
    print(describe_machine())
    llc = last_level_cache_bytes()
    print(f"last-level cache: {llc / 2**20:.0f} MiB" if llc else "last-level cache: unknown")
    print("ratio = other time / mps_ext time (> 1: mps_ext faster); GB/s = weight bytes read per call / time\n")
    rows = []
    k = n = 4096

    print(f"{'int4 (K=N=4096)':<36}{'ours ms':>10}{'GB/s':>8}  {'torch int4':>11}{'ratio':>8}{'fp32 lin':>11}{'ratio':>8}")
    w_fp32 = torch.randn(n, k)
    for gs in (64, 128):
        q, s, z = random_groupwise(n, k, 4, gs, torch.float32)
        packed, sz = torch_int4(q, s, z, gs)
        for m in (1, 16):
            x = torch.randn(m, k)
            xb, sb, zb = x.bfloat16(), s.bfloat16(), z.bfloat16()
            # same math: check the two kernels agree before timing them
            ref = ops.quantized_matmul(xb, q, sb, zb, 4, gs).float()
            theirs = torch._weight_int4pack_mm_for_cpu(xb, packed, gs, sz).float()
            assert (ref - theirs).abs().max() <= 0.02 * ref.abs().max() + 1e-3, "torch int4 format mismatch"
            t_ours_bf16 = time_call(lambda: ops.quantized_matmul(xb, q, sb, zb, 4, gs), **timer)
            t_ours_fp32 = time_call(lambda: ops.quantized_matmul(x, q, s, z, 4, gs), **timer)
            t_torch = time_call(lambda: torch._weight_int4pack_mm_for_cpu(xb, packed, gs, sz), **timer)
            t_linear = time_call(lambda: F.linear(x, w_fp32), **timer)
            r = {"case": f"int4 gs={gs} M={m}", "K": k, "N": n, "M": m, "bits": 4, "group_size": gs,
                 "mps_ext_bf16_ms": t_ours_bf16 * 1e3, "mps_ext_fp32_ms": t_ours_fp32 * 1e3,
                 "torch_int4_bf16_ms": t_torch * 1e3, "fp32_linear_ms": t_linear * 1e3,
                 "ratio_vs_torch_int4": t_torch / t_ours_bf16, "ratio_vs_fp32_linear": t_linear / t_ours_fp32,
                 "mps_ext_bf16_GBps": weight_traffic(q, sb, zb) / t_ours_bf16 / 1e9,
                 "mps_ext_fp32_GBps": weight_traffic(q, s, z) / t_ours_fp32 / 1e9,
                 "fp32_linear_GBps": w_fp32.numel() * 4 / t_linear / 1e9}
            rows.append(r)
            print(f"{'int4 gs=%d M=%d  bf16 | fp32' % (gs, m):<36}{t_ours_bf16 * 1e3:>6.3f}|{t_ours_fp32 * 1e3:<6.3f}"
                  f"{r['mps_ext_bf16_GBps']:>5.1f}  {t_torch * 1e3:>11.3f}{r['ratio_vs_torch_int4']:>7.2f}x"
                  f"{t_linear * 1e3:>11.3f}{r['ratio_vs_fp32_linear']:>7.2f}x")

    print(f"\n{'int8 (K=N=4096, fp32 x)':<36}{'ours ms':>10}{'GB/s':>8}  {'torch int8':>11}{'ratio':>8}")
    w8 = torch.randint(-127, 128, (n, k), dtype=torch.int8)
    scale8 = torch.rand(n) * 0.01 + 0.001
    for m in (1, 16):
        x = torch.randn(m, k)
        t_torch = time_call(lambda: torch._weight_int8pack_mm(x, w8, scale8), **timer)
        for gs in (k, 128):  # gs = K: one scale per output channel, torch's format
            q, s, z = random_groupwise(n, k, 8, gs, torch.float32)
            t = time_call(lambda: ops.quantized_matmul(x, q, s, z, 8, gs), **timer)
            r = {"case": f"int8 gs={gs} M={m}", "K": k, "N": n, "M": m, "bits": 8, "group_size": gs,
                 "mps_ext_fp32_ms": t * 1e3, "torch_int8_ms": t_torch * 1e3, "ratio_vs_torch_int8": t_torch / t,
                 "mps_ext_fp32_GBps": weight_traffic(q, s, z) / t / 1e9}
            rows.append(r)
            print(f"{r['case']:<36}{t * 1e3:>10.3f}{r['mps_ext_fp32_GBps']:>8.1f}  {t_torch * 1e3:>11.3f}"
                  f"{r['ratio_vs_torch_int8']:>7.2f}x")

    if not args.no_large:
        big = 12288
        print(f"\nlarger than the LLC: K=N={big}, fp32 weight {big * big * 4 / 2**20:.0f} MiB"
              + (f" vs LLC {llc / 2**20:.0f} MiB" if llc else ""))
        print(f"{'case':<36}{'ours ms':>10}{'GB/s':>8}  {'other':>11}{'ratio':>8}")
        w_big = torch.randn(big, big)
        x = torch.randn(1, big)
        t_linear = time_call(lambda: F.linear(x, w_big), repeat=5, min_time=0.1)
        del w_big
        q, s, z = random_groupwise(big, big, 4, 128, torch.float32)
        t = time_call(lambda: ops.quantized_matmul(x, q, s, z, 4, 128), **timer)
        packed, sz = torch_int4(q, s, z, 128)
        qb, sb, zb = q, s.bfloat16(), z.bfloat16()
        xb = x.bfloat16()
        t_b = time_call(lambda: ops.quantized_matmul(xb, qb, sb, zb, 4, 128), **timer)
        t_torch = time_call(lambda: torch._weight_int4pack_mm_for_cpu(xb, packed, 128, sz), **timer)
        r = {"case": f"int4 gs=128 M=1 K=N={big}", "K": big, "N": big, "M": 1, "bits": 4, "group_size": 128,
             "mps_ext_fp32_ms": t * 1e3, "mps_ext_bf16_ms": t_b * 1e3, "fp32_linear_ms": t_linear * 1e3,
             "torch_int4_bf16_ms": t_torch * 1e3, "ratio_vs_fp32_linear": t_linear / t,
             "ratio_vs_torch_int4": t_torch / t_b, "mps_ext_fp32_GBps": weight_traffic(q, s, z) / t / 1e9,
             "fp32_linear_GBps": big * big * 4 / t_linear / 1e9}
        rows.append(r)
        print(f"{'fp32 x: ours vs fp32 F.linear':<36}{t * 1e3:>10.3f}{r['mps_ext_fp32_GBps']:>8.1f}  "
              f"{t_linear * 1e3:>11.3f}{r['ratio_vs_fp32_linear']:>7.2f}x  (F.linear {r['fp32_linear_GBps']:.1f} GB/s)")
        print(f"{'bf16 x: ours vs torch int4':<36}{t_b * 1e3:>10.3f}{weight_traffic(qb, sb, zb) / t_b / 1e9:>8.1f}  "
              f"{t_torch * 1e3:>11.3f}{r['ratio_vs_torch_int4']:>7.2f}x")

    # Weight memory of a quantized model (a 4-layer 4096-wide MLP) vs fp32.
    model = torch.nn.Sequential(*[torch.nn.Linear(1024, 1024) for _ in range(4)])
    fp32_bytes = mps_ext.quantization.weight_bytes(model)
    mps_ext.quantize_model(model, bits=4, group_size=64)
    q_bytes = mps_ext.quantization.weight_bytes(model)
    model_bf16 = mps_ext.quantize_model(torch.nn.Sequential(*[torch.nn.Linear(1024, 1024) for _ in range(4)])
                                        .to(torch.bfloat16), bits=4, group_size=64)
    memory = {"fp32_bytes": fp32_bytes, "int4_gs64_fp32_scales_bytes": q_bytes,
              "int4_gs64_bf16_scales_bytes": mps_ext.quantization.weight_bytes(model_bf16)}
    print(f"\nweight memory, 4 x Linear(1024, 1024) with bias: fp32 {fp32_bytes / 2**20:.2f} MiB -> int4 gs=64 "
          f"{q_bytes / 2**20:.2f} MiB (1/{fp32_bytes / q_bytes:.2f}; fp32 scales+zero points), "
          f"{memory['int4_gs64_bf16_scales_bytes'] / 2**20:.2f} MiB with a bf16 model "
          f"(1/{fp32_bytes / memory['int4_gs64_bf16_scales_bytes']:.2f} of fp32)")
    path = write_results("quantized", rows, {"memory": memory})
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
