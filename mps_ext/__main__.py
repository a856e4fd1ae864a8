"""`python -m mps_ext`: a tour of what this install can do.

Prints the platform, runtime and device, trains a small model whose
activations are mps_ext ops, and summarises the loss curve and the graph cache.
"""
from __future__ import annotations

import argparse
import platform
import sys
import time

import torch

import mps_ext
import mps_ext.attention


def pick_device() -> str:
    if torch.backends.mps.is_available() and mps_ext.has_mpsgraph():
        return "mps"
    return "cpu"


def progress(step: int, total: int, loss: float, width: int = 30) -> None:
    done = int(width * step / total)
    line = f"  [{'#' * done}{'.' * (width - done)}] step {step:>3}/{total}  loss {loss:.4f}"
    if sys.stdout.isatty():  # redraw one line in a terminal
        print("\r" + line, end="\n" if step == total else "", flush=True)
    elif step == total or step % max(1, total // 6) == 0:  # a few lines in a log
        print(line, flush=True)


def train(device: str, steps: int, amp_dtype: torch.dtype | None = None) -> list[float]:
    """Fits a sparse linear target with a Softshrink MLP (the WWDC23 example)."""
    torch.manual_seed(0)
    x = torch.randn(512, 32, device=device)
    w_true = torch.randn(32, 1, device=device) * (torch.rand(32, 1, device=device) > 0.7)
    y = x @ w_true
    model = torch.nn.Sequential(
        torch.nn.Linear(32, 64), mps_ext.nn.Softshrink(0.5),
        torch.nn.Linear(64, 64), mps_ext.nn.Softshrink(0.5),
        torch.nn.Linear(64, 1),
    ).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for step in range(1, steps + 1):
        opt.zero_grad()
        with torch.autocast(device, dtype=amp_dtype or torch.bfloat16, enabled=amp_dtype is not None):
            loss = torch.nn.functional.mse_loss(model(x), y)
        loss.backward()
        opt.step()
        losses.append(loss.item())
        progress(step, steps, losses[-1])
    return losses


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mps_ext", description=__doc__)
    parser.add_argument("--steps", type=int, default=60, help="training steps (default: 60)")
    parser.add_argument("--profile", metavar="TRACE.json",
                        help="profile the run (mps_ext.profiler) and write a Chrome/Perfetto trace")
    args = parser.parse_args(argv)
    if args.steps < 1:
        parser.error("--steps must be at least 1")
    if args.profile:
        mps_ext.profiler._demo(args.profile)

    device = pick_device()
    print(f"mps_ext {mps_ext.__version__} on torch {torch.__version__}")
    print(f"platform : {platform.system()} {platform.machine()} (python {platform.python_version()})")
    print(f"runtimes : reference (always)" + (", mpsgraph (built)" if mps_ext.has_mpsgraph() else
                                               "; mpsgraph needs the macOS build"))
    print(f"device   : {device}  (ops on {device} tensors run on the "
          f"{'mpsgraph' if device == 'mps' else 'reference'} runtime)")
    x = torch.randn(8)
    same = torch.equal(torch.ops.mps_ext.softshrink(x.to("mpsgraph"), 0.5).cpu(), torch.ops.mps_ext.softshrink(x, 0.5))
    print(f"mpsgraph : torch.device('mpsgraph') available={torch.mpsgraph.is_available()}, "
          f"runtime={mps_ext.runtime()}, softshrink matches cpu: {same}")

    from mps_ext import ops as native_ops
    native_ops._demo()

    print(f"\nTraining a Softshrink MLP for {args.steps} steps:")
    start = time.perf_counter()
    losses = train(device, args.steps, mps_ext.autocast._demo(device))
    elapsed = time.perf_counter() - start
    k = max(1, len(losses) // 4)
    print(f"loss: first {losses[0]:.4f} -> last {losses[-1]:.4f} "
          f"(min {min(losses):.4f}; mean of first/last quarter {sum(losses[:k]) / k:.4f}/"
          f"{sum(losses[-k:]) / k:.4f}) in {elapsed:.2f}s")

    info = mps_ext.graph.cache_info()
    print(f"graph cache: {info.size} compiled graphs, {info.hits} hits, {info.misses} misses")
    graph = mps_ext.graph.dump(torch.ops.mps_ext.softshrink, torch.randn(4), 0.5)
    print(f"softshrink runs as graph '{graph['key']}' with {len(graph['nodes'])} nodes "
          f"(see mps_ext.graph.dump(..., format='dot'))")
    mps_ext.quantization._demo()
    print("\nDenoising audio through mps_ext.stft/istft (mps_ext.spectral._demo):"); mps_ext.spectral._demo(device)
    attention_ok = mps_ext.attention._demo(device)
    if not losses[-1] < losses[0] or not attention_ok:
        print("warning: the loss did not decrease", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
