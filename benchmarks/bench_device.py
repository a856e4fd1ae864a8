"""The mpsgraph device against torch on the CPU, in the same run.

1. Training steps/second of four small models (an MLP; a CNN with conv,
   batchnorm, pooling, dropout; a GPT with tied embeddings, attention,
   layer_norm, GELU, label-smoothed cross_entropy; an LSTM written out), each
   with AdamW and clip_grad_norm_, and the CPU-fallback count per step (0 =
   every op native). GFLOP/s counts the step's matmuls and convolutions
   (torch.utils.flop_counter).
2. Components: convolution and nn.LSTM steps, elementwise ops on a medium
   tensor, the MLP's AdamW step, and the caching allocator.

    python benchmarks/bench_device.py [--threads N] [--models mlp,cnn] [--seconds S]   # ~1 min

ratio = device steps/s / CPU steps/s (> 1: the device is faster). On Linux the
device runs the 'reference' runtime on host memory: graphs executed by ATen
and fused CPU kernels, so the ratio measures what the device layer adds
(dispatch, graph-cache lookups, argument handling). On a Mac the same graphs
lower to MPSGraph. CPU and device batches alternate and each side keeps its
best batch, so a shared machine's noise hits both. Results go to
benchmarks/results/device_t<threads>.json.
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # before torch: its backend autoload imports mps_ext
import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch.utils.flop_counter import FlopCounterMode  # noqa: E402

import mps_ext  # noqa: E402,F401

from common import describe_machine, environment, time_call, write_results  # noqa: E402

DEV = "mpsgraph"


class MLP(nn.Module):
    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(64, 256), nn.GELU(), nn.LayerNorm(256), nn.Linear(256, 256), nn.ReLU(),
                                 nn.Linear(256, 10))

    def forward(self, x):
        return self.net(x)


class CNN(nn.Module):
    def __init__(self):
        super().__init__()
        self.c1, self.b1 = nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16)
        self.c2 = nn.Conv2d(16, 32, 3, padding=1)
        self.fc = nn.Linear(32 * 4 * 4, 10)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.b1(self.c1(x))), 2)
        x = F.adaptive_avg_pool2d(F.relu(self.c2(x)), 4)
        return self.fc(F.dropout(x.flatten(1), 0.1, self.training))


class GPT(nn.Module):
    def __init__(self, v=128, d=64, t=32, heads=4):
        super().__init__()
        self.t, self.d, self.h = t, d, heads
        self.tok, self.pos = nn.Embedding(v, d), nn.Embedding(t, d)
        self.ln1, self.ln2, self.lnf = nn.LayerNorm(d), nn.LayerNorm(d), nn.LayerNorm(d)
        self.qkv, self.proj = nn.Linear(d, 3 * d), nn.Linear(d, d)
        self.mlp = nn.Sequential(nn.Linear(d, 4 * d), nn.GELU(), nn.Linear(4 * d, d))
        self.head = nn.Linear(d, v, bias=False)
        self.tie()

    def tie(self):  # Module.to() unties shared parameters on PrivateUse1 devices
        self.head.weight = self.tok.weight

    def forward(self, idx):
        b, t = idx.shape
        h = self.tok(idx) + self.pos(torch.arange(t, device=idx.device))
        q, k, v = self.qkv(self.ln1(h)).view(b, t, 3, self.h, self.d // self.h).permute(2, 0, 3, 1, 4)
        att = (q @ k.transpose(-2, -1)) * (self.d // self.h) ** -0.5
        mask = torch.tril(torch.ones(t, t, device=idx.device)) == 0
        att = att.masked_fill(mask, float("-inf")).softmax(-1)
        h = h + self.proj((att @ v).transpose(1, 2).reshape(b, t, self.d))
        h = h + self.mlp(self.ln2(h))
        return self.head(self.lnf(h))


class LSTM(nn.Module):
    """The recurrence written out (nn.LSTM on PrivateUse1 calls the fused cell op, not native yet)."""

    def __init__(self, i=32, hid=64):
        super().__init__()
        self.hid = hid
        self.ih, self.hh, self.out = nn.Linear(i, 4 * hid), nn.Linear(hid, 4 * hid), nn.Linear(hid, 10)

    def forward(self, x):
        h = c = torch.zeros(x.shape[1], self.hid, device=x.device)
        for t in range(x.shape[0]):
            i, f, g, o = (self.ih(x[t]) + self.hh(h)).chunk(4, 1)
            c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
            h = torch.sigmoid(o) * torch.tanh(c)
        return self.out(h)


def cases():
    torch.manual_seed(0)
    return [
        ("mlp", MLP, torch.randn(64, 64), torch.randint(0, 10, (64,)), lambda m, x, y: F.cross_entropy(m(x), y)),
        ("cnn", CNN, torch.randn(16, 3, 16, 16), torch.randint(0, 10, (16,)), lambda m, x, y: F.cross_entropy(m(x), y)),
        ("gpt", GPT, torch.randint(0, 128, (8, 32)), torch.randint(0, 128, (8, 32)),
         lambda m, x, y: F.cross_entropy(m(x).flatten(0, 1), y.flatten(), label_smoothing=0.1)),
        ("lstm", LSTM, torch.randn(12, 16, 32), torch.randint(0, 10, (16,)), lambda m, x, y: F.cross_entropy(m(x), y)),
    ]


def make_step(model, x, y, loss_fn, device):
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    x, y = x.to(device), y.to(device)

    def step():
        opt.zero_grad()
        loss = loss_fn(model, x, y)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        return loss

    for _ in range(3):  # warm up (graph compilation, allocator)
        step()
    return step


def best_step_time(step, batch=3):
    t0 = time.perf_counter()
    for _ in range(batch):
        step()
    return (time.perf_counter() - t0) / batch


def flops_per_step(step) -> int:
    with FlopCounterMode(display=False) as counter:
        step()
    return counter.get_total_flops()


def compare(cpu_step, dev_step, seconds=4.0):
    """Alternates CPU and device batches (a shared machine's noise hits both) and
    keeps each side's best batch: the reproducible cost."""
    before = torch.ops.mps_ext._fallback_count()
    dev_step()
    fallbacks = torch.ops.mps_ext._fallback_count() - before
    best_cpu = best_dev = float("inf")
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        best_cpu = min(best_cpu, best_step_time(cpu_step))
        best_dev = min(best_dev, best_step_time(dev_step))
    return 1 / best_cpu, 1 / best_dev, fallbacks


def backward_step(model, x):
    model.zero_grad(set_to_none=True)
    out = model(x)
    (out[0] if isinstance(out, tuple) else out).square().mean().backward()


def components(rows: list) -> None:
    print(f"\n{'component':<34}{'cpu ms':>10}{'device ms':>11}{'ratio':>8}{'device GFLOP/s':>16}{'device GB/s':>13}")
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
    # Elementwise on a medium tensor (the fused interpreter against ATen's
    # loops) and the MLP's AdamW step (each side's default: the CPU loops over
    # the parameters, the device runs the _foreach_ ops).
    a, b = torch.randn(256, 256), torch.randn(256, 256)
    ad, bd = a.to(DEV), b.to(DEV)
    ew_bytes = 3 * a.nbytes  # two reads, one write
    adam_cpu, adam_dev, adam_bytes = adamw_steps()
    cases = [
        ("conv2d forward", lambda: conv(x), lambda: conv_d(xd), fwd_flop, 0),
        ("conv2d forward+backward", lambda: backward_step(conv, x), lambda: backward_step(conv_d, xd), 3 * fwd_flop, 0),
        ("LSTM 2x128 seq16 fwd+bwd", lambda: backward_step(lstm, s), lambda: backward_step(lstm_d, sd), lstm_flop, 0),
        ("add [256,256]", lambda: a + b, lambda: ad + bd, 0, ew_bytes),
        ("lerp_ [256,256], scalar weight", lambda: a.lerp_(b, 0.0), lambda: ad.lerp_(bd, 0.0), 0, ew_bytes),
        ("sigmoid [256,256]", lambda: a.sigmoid(), lambda: ad.sigmoid(), 0, 2 * a.nbytes),
        ("AdamW step, MLP parameters", adam_cpu, adam_dev, 0, adam_bytes),
        ("empty 1 MiB + free (allocator)", lambda: torch.empty(1 << 18), lambda: torch.empty(1 << 18, device=DEV), 0, 0),
        ("empty 64 KiB + free (allocator)", lambda: torch.empty(1 << 14), lambda: torch.empty(1 << 14, device=DEV), 0, 0),
    ]
    for name, f_cpu, f_dev, flop, nbytes in cases:
        t_cpu = time_call(f_cpu)
        t_dev = time_call(f_dev)
        gflops = flop / t_dev / 1e9 if flop else None
        gbps = nbytes / t_dev / 1e9 if nbytes else None
        rows.append({"case": name, "cpu_s": t_cpu, "device_s": t_dev, "ratio": t_cpu / t_dev,
                     "device_GFLOPs": gflops, "device_GBs": gbps})
        print(f"{name:<34}{t_cpu * 1e3:>10.3f}{t_dev * 1e3:>11.3f}{t_cpu / t_dev:>8.2f}"
              f"{(f'{gflops:.1f}' if gflops else '-'):>16}{(f'{gbps:.1f}' if gbps else '-'):>13}")


def adamw_steps():
    """AdamW.step over the MLP's parameters on each side, and the bytes one step
    moves (parameter, gradient and two moments read, three written)."""
    steps = []
    for device in ("cpu", DEV):
        torch.manual_seed(0)
        params = [p.detach().to(device).requires_grad_() for p in MLP().parameters()]
        for p in params:
            p.grad = torch.randn_like(p)
        opt = torch.optim.AdamW(params, lr=1e-3)
        opt.step()  # creates the moments
        steps.append(opt.step)
    numel = sum(p.numel() for p in MLP().parameters())
    return steps[0], steps[1], 7 * numel * 4


def main() -> None:
    import argparse
    import warnings

    parser = argparse.ArgumentParser()
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    parser.add_argument("--models", default="mlp,cnn,gpt,lstm", help="comma-separated subset")
    parser.add_argument("--seconds", type=float, default=4.0, help="measuring time per model")
    parser.add_argument("--no-components", action="store_true", help="skip the component table")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    warnings.simplefilter("ignore")  # fallback warnings: counted below instead
    print(describe_machine())
    print(f"training steps/s, {DEV} device ({mps_ext.runtime()} runtime) vs cpu, {torch.get_num_threads()} threads")
    print(f"{'model':<8}{'cpu steps/s':>13}{'device steps/s':>16}{'ratio':>8}{'device GFLOP/s':>16}{'fallbacks/step':>16}")
    models, parts = [], []
    for name, make, x, y, loss_fn in cases():
        if name not in args.models.split(","):
            continue
        torch.manual_seed(0)
        ref = make()
        dev = make()
        dev.load_state_dict(ref.state_dict())
        dev.to(DEV)
        if hasattr(dev, "tie"):
            dev.tie()
        cpu_step = make_step(ref, x, y, loss_fn, "cpu")
        dev_step = make_step(dev, x, y, loss_fn, DEV)
        flops = flops_per_step(cpu_step)
        cpu_sps, dev_sps, fb = compare(cpu_step, dev_step, args.seconds)
        row = {"model": name, "cpu_steps_per_s": cpu_sps, "device_steps_per_s": dev_sps, "ratio": dev_sps / cpu_sps,
               "flops_per_step": flops, "device_GFLOPs": flops * dev_sps / 1e9, "fallbacks_per_step": fb}
        models.append(row)
        print(f"{name:<8}{cpu_sps:>13.1f}{dev_sps:>16.1f}{row['ratio']:>8.2f}{row['device_GFLOPs']:>16.2f}{fb:>16d}")
    if not args.no_components:
        components(parts)
    path = write_results(f"device_t{torch.get_num_threads()}", models + parts,
                         {"runtime": mps_ext.runtime(), "env": environment()})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
