"""FFT, STFT and ISTFT: mps_ext vs torch.fft / torch.stft / torch.istft in the same run.

    python benchmarks/bench_spectral.py [--device cpu|mpsgraph|mps] [--quick]

Cases: 1-D c2c and r2c for n = 256 .. 65536, batched to 16 MiB of input;
2-D c2c 512x512 (batch of 8); STFT and ISTFT of 16 x 10 s of 16 kHz audio
(n_fft 512, hop 256, Hann, center=True). Prints time, ratio (torch / mps_ext:
> 1 means mps_ext is faster) and GB/s (input + output bytes / time), then the
per-call overhead of a graph-cache hit (a tiny FFT). Writes
benchmarks/results/spectral.json.
"""
from __future__ import annotations

import argparse

import torch

import time

import mps_ext
from common import cpu_model, sync, time_call, write_results

MiB = 1 << 20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--quick", action="store_true", help="fewer sizes and samples")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch threads (1 gives stable numbers on a busy shared machine)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    dev = args.device
    repeat, min_time = (5, 0.05) if args.quick else (15, 0.3)
    runtime = {"cpu": "reference", "mps": "mpsgraph"}.get(torch.device(dev).type, mps_ext.runtime())
    print(f"spectral on {dev}: {cpu_model()} (ISA {torch.backends.cpu.get_cpu_capability()}, "
          f"{torch.get_num_threads()} threads), mps_ext runtime {runtime}")
    print(f"{'case':<34}{'torch ms':>10}{'mps_ext ms':>12}{'ratio':>8}{'GB/s':>8}")
    rows = []

    def interleaved(f_ref, f_ours):
        """Best seconds per call of each, samples alternating so both see the same machine load."""
        for f in (f_ref, f_ours, f_ref, f_ours):
            f()
        sync(dev)
        start = time.perf_counter()
        f_ref()
        sync(dev)
        number = max(1, int(min_time / repeat / max(time.perf_counter() - start, 1e-7)))
        best = [float("inf"), float("inf")]
        for r in range(repeat):
            order = ((0, f_ref), (1, f_ours)) if r % 2 == 0 else ((1, f_ours), (0, f_ref))  # no position bias
            for k, f in order:
                start = time.perf_counter()
                for _ in range(number):
                    f()
                sync(dev)
                best[k] = min(best[k], (time.perf_counter() - start) / number)
        return best

    def bench(case, f_ref, f_ours, nbytes, **info):
        t_ref, t_ours = interleaved(f_ref, f_ours)
        row = {"case": case, "device": dev, "torch_s": t_ref, "mps_ext_s": t_ours, "ratio": t_ref / t_ours,
               "mps_ext_GBps": nbytes / t_ours / 1e9, "torch_GBps": nbytes / t_ref / 1e9, **info}
        rows.append(row)
        print(f"{case:<34}{t_ref * 1e3:>10.3f}{t_ours * 1e3:>12.3f}{row['ratio']:>8.2f}{row['mps_ext_GBps']:>8.1f}")

    sizes = [256, 4096, 65536] if args.quick else [256, 1024, 4096, 16384, 65536]
    for n in sizes:
        x = torch.randn(16 * MiB // 8 // n, n, dtype=torch.complex64, device=dev)
        ref, ours = torch.fft.fft(x), mps_ext.fft.fft(x)
        assert torch.allclose(ours.cpu(), ref.cpu(), rtol=1e-4, atol=1e-3 * n ** 0.5)
        bench(f"c2c fft n={n} x{x.shape[0]}", lambda: torch.fft.fft(x), lambda: mps_ext.fft.fft(x),
              2 * x.numel() * 8, n=n, batch=x.shape[0], kind="c2c")
    for n in sizes:
        r = torch.randn(16 * MiB // 4 // n, n, device=dev)
        bench(f"r2c rfft n={n} x{r.shape[0]}", lambda: torch.fft.rfft(r), lambda: mps_ext.fft.rfft(r),
              r.numel() * 4 + r.shape[0] * (n // 2 + 1) * 8, n=n, batch=r.shape[0], kind="r2c")
    x2 = torch.randn(8, 512, 512, dtype=torch.complex64, device=dev)
    bench("c2c fft2 512x512 x8", lambda: torch.fft.fft2(x2), lambda: mps_ext.fft.fft2(x2), 2 * x2.numel() * 8,
          kind="c2c-2d")

    # STFT / ISTFT of 16 clips of 10 s at 16 kHz.
    audio = torch.randn(16, 160000, device=dev)
    window = torch.hann_window(512, device=dev)
    kw = dict(n_fft=512, hop_length=256, window=window)
    spec = torch.stft(audio, return_complex=True, **kw)
    ours = mps_ext.stft(audio, return_complex=True, **kw)
    assert torch.allclose(ours.cpu(), spec.cpu(), rtol=1e-4, atol=1e-3)
    spec_bytes = spec.numel() * 8
    bench("stft 16x160000 n_fft=512 hop=256", lambda: torch.stft(audio, return_complex=True, **kw),
          lambda: mps_ext.stft(audio, return_complex=True, **kw), audio.numel() * 4 + spec_bytes, kind="stft")
    assert torch.allclose(mps_ext.istft(spec, **kw).cpu(), torch.istft(spec, **kw).cpu(), rtol=1e-4, atol=1e-4)
    bench("istft 16x160000 n_fft=512 hop=256", lambda: torch.istft(spec, **kw), lambda: mps_ext.istft(spec, **kw),
          audio.numel() * 4 + spec_bytes, kind="istft")

    # Dispatch + graph-cache hit, on an FFT too small to matter.
    tiny = torch.randn(1, 8, dtype=torch.complex64, device=dev)
    mps_ext.fft.fft(tiny)
    before = mps_ext.graph.cache_info()
    t_ref = time_call(lambda: torch.fft.fft(tiny), device=dev, repeat=25)
    t_ours = time_call(lambda: mps_ext.fft.fft(tiny), device=dev, repeat=25)
    t_op = time_call(lambda: torch.ops.mps_ext.fft_c2c(tiny, None, [-1], None, True), device=dev, repeat=25)
    after = mps_ext.graph.cache_info()
    assert after.misses == before.misses, "the tiny calls must all be cache hits"
    overhead = {"torch_us": t_ref * 1e6, "mps_ext_us": t_ours * 1e6, "mps_ext_op_us": t_op * 1e6,
                "extra_us": (t_ours - t_ref) * 1e6}
    print(f"8-point fft: torch {overhead['torch_us']:.2f} us, mps_ext.fft.fft {overhead['mps_ext_us']:.2f} us, "
          f"torch.ops.mps_ext.fft_c2c {overhead['mps_ext_op_us']:.2f} us "
          f"(cache-hit overhead {overhead['extra_us']:+.2f} us per call)")
    path = write_results("spectral", rows, {"cache_hit_overhead": overhead, "cpu": cpu_model()})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
