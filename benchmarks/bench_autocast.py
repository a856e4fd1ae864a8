"""Mixed precision: a transformer training step in fp32 vs under bf16 (or fp16)
autocast, on the same device in the same run.

    python benchmarks/bench_autocast.py [--devices cpu mpsgraph] [--dtype bfloat16|float16] [--size small|medium]

For each device: time per training step (forward under autocast, backward,
AdamW step; best of several interleaved rounds), the ratio fp32 time / autocast time
(> 1: autocast is faster), achieved GFLOP/s of the step's matmuls, the bytes
of activations saved for backward (what autocast shrinks), and on the
mpsgraph device the peak of its allocator's live bytes over the step
(sampled after every aten op). The final loss of a short fp32 and autocast
run from the same initialisation is printed as a sanity check. Then
GradScaler's unscale_ kernel on the device vs torch's CPU kernel. Writes
benchmarks/results/autocast.json.

Honest caveat printed with the table: on a CPU, bf16 only pays off where the
ISA has bf16 dot products (AVX512-BF16 / AMX); elsewhere it is slower. The
mpsgraph device here runs the reference runtime, whose aten ops are CPU
kernels over device memory, so its ratio is the CPU's; on a Mac the same
script measures the GPU.
"""
from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode

import mps_ext
from common import cpu_flags, cpu_model, describe_machine, sync, time_call, write_results

SIZES = {  # d_model, heads, layers, seq, batch, vocab
    "small": (128, 4, 2, 64, 8, 512),
    "medium": (256, 4, 2, 128, 8, 1024),
}


class LM(torch.nn.Module):
    def __init__(self, d, heads, layers, seq, vocab):
        super().__init__()
        self.emb = torch.nn.Embedding(vocab, d)
        self.pos = torch.nn.Parameter(torch.randn(seq, d) * 0.02)
        layer = torch.nn.TransformerEncoderLayer(d, heads, 4 * d, dropout=0.0, batch_first=True, norm_first=True)
        self.blocks = torch.nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.head = torch.nn.Linear(d, vocab)
        self.register_buffer("mask", torch.nn.Transformer.generate_square_subsequent_mask(seq), persistent=False)

    def forward(self, tokens):
        h = self.emb(tokens) + self.pos
        return self.head(self.blocks(h, mask=self.mask, is_causal=True))


def step_flops(d, layers, seq, batch, vocab) -> float:
    """Matmul FLOPs of forward + backward (3x forward)."""
    tokens = seq * batch
    per_layer = 2 * tokens * (4 * d * d + 2 * 4 * d * d) + 2 * 2 * batch * seq * seq * d  # qkvo, mlp, attention
    return 3 * (layers * per_layer + 2 * tokens * d * vocab)


def make(device, size, seed=0):
    d, heads, layers, seq, batch, vocab = SIZES[size]
    torch.manual_seed(seed)
    model = LM(d, heads, layers, seq, vocab).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    data = torch.randint(0, vocab, (batch, seq + 1))
    return model, opt, data[:, :-1].to(device), data[:, 1:].to(device)


def train_step(model, opt, x, y, device, dtype):
    opt.zero_grad(set_to_none=True)
    with torch.autocast(device, dtype=dtype or torch.bfloat16, enabled=dtype is not None):
        logits = model(x)
        loss = F.cross_entropy(logits.flatten(0, 1), y.flatten())
    loss.backward()
    opt.step()
    return loss


def saved_activation_bytes(model, opt, x, y, device, dtype) -> int:
    storages = {}

    def pack(t):
        s = t.untyped_storage()
        storages[(s.data_ptr(), t.device)] = s.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        train_step(model, opt, x, y, device, dtype)
    params = {(p.untyped_storage().data_ptr(), p.device) for p in model.parameters()}
    return sum(n for k, n in storages.items() if k not in params)


class PeakDeviceMemory(TorchDispatchMode):
    """Peak of torch.mpsgraph.memory_allocated(), sampled after every aten op."""

    def __init__(self):
        super().__init__()
        self.peak = torch.mpsgraph.memory_allocated()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        self.peak = max(self.peak, torch.mpsgraph.memory_allocated())
        return out


def bench_unscale(rounds: int) -> list[dict]:
    """GradScaler's unscale over a model's worth of grads (4.7M params, 88
    tensors): torch's CPU kernel on CPU tensors vs the device kernel (torch's
    CPU kernel over device memory on the reference runtime) vs the device
    graph (what the mpsgraph runtime runs; its decomposition here)."""
    sizes = [256 * 256] * 40 + [256] * 40 + [1024 * 256] * 8
    rows = []
    print(f"\nGradScaler unscale_ ({sum(sizes) / 1e6:.1f}M params in {len(sizes)} grads): "
          "read + write each grad once")
    print(f"{'dtype':<10}{'path':<34}{'ms':>8}{'ratio':>7}{'GB/s':>7}")
    for dtype in (torch.float32, torch.float16):
        cpu = [torch.randn(n, dtype=dtype) for n in sizes]
        dev = [g.to("mpsgraph") for g in cpu]
        nbytes = 2 * sum(sizes) * cpu[0].element_size()
        found_c, inv_c = torch.zeros(()), torch.tensor(0.5)
        found_d, inv_d = found_c.to("mpsgraph"), inv_c.to("mpsgraph")
        unscale = torch._amp_foreach_non_finite_check_and_unscale_
        cases = {"torch CPU kernel, cpu tensors": lambda: unscale(cpu, found_c, inv_c),
                 "mpsgraph device (kernel)": lambda: unscale(dev, found_d, inv_d)}
        times = {}
        for name, fn in cases.items():
            times[name] = time_call(fn, device="mpsgraph", warmup=1, repeat=rounds, min_time=0.1)
        with mps_ext.graph.decompositions():
            times["mpsgraph device (graph)"] = time_call(cases["mpsgraph device (kernel)"], device="mpsgraph",
                                                         warmup=1, repeat=rounds, min_time=0.1)
        base = times["torch CPU kernel, cpu tensors"]
        for name, sec in times.items():
            rows.append({"bench": "unscale", "dtype": str(dtype), "path": name, "ms": sec * 1e3,
                         "ratio_vs_torch": base / sec, "gbps": nbytes / sec / 1e9})
            print(f"{str(dtype).replace('torch.', ''):<10}{name:<34}{sec * 1e3:>8.2f}{base / sec:>7.2f}"
                  f"{nbytes / sec / 1e9:>7.1f}")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--devices", nargs="+", default=["cpu", "mpsgraph"])
    parser.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float16"])
    parser.add_argument("--size", default="medium", choices=list(SIZES))
    parser.add_argument("--rounds", type=int, default=6, help="timed rounds (each runs every config once)")
    parser.add_argument("--check-steps", type=int, default=20, help="steps of the fp32-vs-autocast loss check")
    args = parser.parse_args()
    low = getattr(torch, args.dtype)
    d, heads, layers, seq, batch, vocab = SIZES[args.size]
    flops = step_flops(d, layers, seq, batch, vocab)
    flags = cpu_flags()
    isa = ", ".join(f for f in ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "avx512_fp16") if f in flags) or "?"
    print(describe_machine())
    print(f"bf16/fp16 ISA flags: {isa}; mpsgraph device runtime: {mps_ext.runtime()}")
    print(f"transformer LM: d_model {d}, {heads} heads, {layers} layers, seq {seq}, batch {batch}, vocab {vocab}; "
          f"{flops / 1e9:.2f} GFLOP of matmul per training step")
    print(f"{'device':<10}{'precision':<19}{'step ms':>9}{'ratio':>7}{'GFLOP/s':>9}{'saved MiB':>11}"
          f"{'peak MiB':>10}{'loss@' + str(args.check_steps):>10}")
    configs = [(device, dtype) for device in args.devices for dtype in (None, low)]
    # Interleaved rounds: every config runs once per round, so load from
    # other processes on a shared machine hits all of them alike; best round wins.
    runs = {c: make(c[0], args.size) for c in configs}
    best = {c: float("inf") for c in configs}
    for round_ in range(args.rounds + 1):
        for c, (model, opt, x, y) in runs.items():
            sync(c[0])
            start = time.perf_counter()
            train_step(model, opt, x, y, *c)
            sync(c[0])
            elapsed = time.perf_counter() - start
            if round_ > 0:  # round 0 warms up (allocations, optimizer state, autocast cache)
                best[c] = min(best[c], elapsed)
    rows = []
    for device, dtype in configs:
        name = "fp32" if dtype is None else f"{args.dtype} autocast"
        seconds = best[(device, dtype)]
        model, opt, x, y = runs[(device, dtype)]
        saved = saved_activation_bytes(model, opt, x, y, device, dtype)
        peak = None
        if device == "mpsgraph":
            with PeakDeviceMemory() as mode:
                train_step(model, opt, x, y, device, dtype)
            peak = mode.peak
        model, opt, x, y = make(device, args.size)
        for _ in range(args.check_steps):
            loss = train_step(model, opt, x, y, device, dtype).item()
        base = best[(device, None)]
        row = {"device": device, "precision": name, "step_ms": seconds * 1e3, "ratio_vs_fp32": base / seconds,
               "gflops": flops / seconds / 1e9, "saved_activation_bytes": saved, "peak_device_bytes": peak,
               "loss_after_check_steps": loss}
        rows.append(row)
        peak_s = f"{peak / 2**20:>10.1f}" if peak is not None else f"{'n/a':>10}"
        print(f"{device:<10}{name:<19}{seconds * 1e3:>9.1f}{base / seconds:>7.2f}{row['gflops']:>9.1f}"
              f"{saved / 2**20:>11.1f}{peak_s}{loss:>10.4f}")
    print("ratio = fp32 step time / autocast step time (> 1: autocast faster). "
          "bf16 on a CPU is fast only with AVX512-BF16/AMX; the mpsgraph device on the reference runtime "
          "runs aten ops as CPU kernels, so its ratio is the CPU's.")
    if "mpsgraph" in args.devices:
        rows += bench_unscale(args.rounds)
    path = write_results("autocast", rows, {"model": dict(zip(("d_model", "heads", "layers", "seq", "batch", "vocab"),
                                                               SIZES[args.size])),
                                             "dtype": args.dtype, "cpu": cpu_model(), "isa": isa,
                                             "runtime": mps_ext.runtime()})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
