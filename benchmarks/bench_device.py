"""The mpsgraph device against torch on the CPU, same run: convolution and
LSTM training steps (graphs on the device's runtime vs ATen's CPU kernels),
and the caching allocator (torch.empty + free) vs torch's CPU allocator.

    python benchmarks/bench_device.py

ratio = torch-CPU time / device time (> 1: the device is faster). On Linux
the device runs the 'reference' runtime on the host, so the ratios measure
the device's overhead over the same CPU kernels (ATen convolution inside the
graph; the fused LSTM cell graph against ATen's unfused CPU cell). Results go
to benchmarks/results/device.json.
"""
from __future__ import annotations

import os

import torch
import torch.nn as nn

import mps_ext
from common import cpu_model, time_call, write_results

DEV = "mpsgraph"


def step(model, x):
    model.zero_grad(set_to_none=True)
    out = model(x)
    (out[0] if isinstance(out, tuple) else out).square().mean().backward()


def main() -> None:
    os.environ.setdefault("MPS_EXT_FALLBACK", "silent")
    print(f"CPU: {cpu_model()} | ISA: {torch.backends.cpu.get_cpu_capability()} | threads: {torch.get_num_threads()} "
          f"| device runtime: {mps_ext.runtime()}")
    print(f"{'case':<34}{'cpu ms':>10}{'device ms':>11}{'ratio':>8}{'device GFLOP/s':>16}")
    rows = []
    torch.manual_seed(0)

    # conv2d 3x3, 32 -> 64 channels, 8 x 32 x 32: forward and forward+backward
    conv = nn.Conv2d(32, 64, 3, padding=1)
    conv_d = nn.Conv2d(32, 64, 3, padding=1).to(DEV)
    conv_d.load_state_dict(conv.state_dict())
    x = torch.randn(8, 32, 32, 32)
    xd = x.to(DEV)
    fwd_flop = 2 * 8 * 64 * 32 * 32 * 32 * 9
    lstm = nn.LSTM(64, 128, num_layers=2)
    lstm_d = nn.LSTM(64, 128, num_layers=2).to(DEV)
    lstm_d.load_state_dict(lstm.state_dict())
    s = torch.randn(16, 8, 64)
    sd = s.to(DEV)
    # per step and layer: 4 gates of (in + hidden) x hidden matmuls, x3 for backward
    lstm_flop = 3 * 2 * 16 * 8 * 4 * 128 * ((64 + 128) + (128 + 128))
    cases = [
        ("conv2d forward", lambda: conv(x), lambda: conv_d(xd), fwd_flop),
        ("conv2d forward+backward", lambda: step(conv, x), lambda: step(conv_d, xd), 3 * fwd_flop),
        ("LSTM 2x128 seq16 fwd+bwd", lambda: step(lstm, s), lambda: step(lstm_d, sd), lstm_flop),
        ("empty 1 MiB + free (allocator)", lambda: torch.empty(1 << 18), lambda: torch.empty(1 << 18, device=DEV), 0),
        ("empty 64 KiB + free (allocator)", lambda: torch.empty(1 << 14), lambda: torch.empty(1 << 14, device=DEV), 0),
    ]
    for name, f_cpu, f_dev, flop in cases:
        t_cpu = time_call(f_cpu)
        t_dev = time_call(f_dev)
        gflops = flop / t_dev / 1e9 if flop else None
        rows.append({"case": name, "cpu_s": t_cpu, "device_s": t_dev, "ratio": t_cpu / t_dev,
                     "device_GFLOPs": gflops, "runtime": mps_ext.runtime()})
        print(f"{name:<34}{t_cpu * 1e3:>10.3f}{t_dev * 1e3:>11.3f}{t_cpu / t_dev:>8.2f}"
              f"{(f'{gflops:.1f}' if gflops else '-'):>16}")
    path = write_results("device", rows, {"cpu_model": cpu_model()})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
