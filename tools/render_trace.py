#!/usr/bin/env python3
"""Render an mps_ext profiler trace (Chrome trace JSON) as a PNG timeline.

    python tools/render_trace.py trace.json out.png     # any trace mps_ext wrote
    python tools/render_trace.py --record out.png       # record the README's example, then render

One row per track (thread x operations/copies/fallbacks, as ui.perfetto.dev
shows them), one bar per interval coloured by kind, compiles drawn inside their
op, instant events as ticks. A docs tool: needs matplotlib (`pip install
matplotlib`), which mps_ext itself never imports.
"""
from __future__ import annotations

import argparse
import json
import sys
import threading
import time
import warnings
from pathlib import Path

COLORS = {"operation": "#4C78A8", "compile": "#F58518", "copy": "#54A24B", "fallback": "#E45756"}


def record(trace_file: Path) -> None:
    """The example session: a training step on the mpsgraph device (copies in,
    softshrink forward/backward -- the first call compiles --, a CPU fallback)
    while a second thread runs softshrink on CPU tensors."""
    import torch

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # this checkout's mps_ext
    import mps_ext

    torch.manual_seed(0)
    x = torch.randn(256, 64)
    w = torch.randn(64, 64)
    stop = threading.Event()

    def background():
        t = torch.randn(1 << 18)
        while not stop.is_set():
            torch.ops.mps_ext.softshrink(t, 0.5)
            time.sleep(0.002)

    mps_ext.graph.cache_clear()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with mps_ext.profiler.profile(mode="interval", trace_file=trace_file):
            other = threading.Thread(target=background, name="data-loader")
            other.start()
            xd, wd = x.to("mpsgraph"), w.to("mpsgraph").requires_grad_()
            for _ in range(3):
                h = mps_ext.nn.functional.softshrink(xd @ wd, lambd=0.5)  # matmul falls back to the CPU
                h.sum().backward()
                loss = wd.grad.cpu().norm()
                wd.grad = None
            torch.cumsum(xd, 0).cpu()
            stop.set()
            other.join()
    del loss


def render(trace_file: Path, out: Path, title: str | None = None) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    doc = json.loads(trace_file.read_text())
    names = {ev["tid"]: ev["args"]["name"] for ev in doc["traceEvents"]
             if ev["ph"] == "M" and ev["name"] == "thread_name"}
    events = [ev for ev in doc["traceEvents"] if ev["ph"] in ("X", "i")]
    if not events:
        raise SystemExit(f"{trace_file}: no events")
    tracks = sorted({ev["tid"] for ev in events})
    row = {tid: i for i, tid in enumerate(reversed(tracks))}
    t0 = min(ev["ts"] for ev in events)
    for ev in events:
        ev["ts"] -= t0
    t_end = max(ev["ts"] + ev.get("dur", 0) for ev in events) / 1000.0

    fig, ax = plt.subplots(figsize=(13, 1.2 + 0.75 * len(tracks)), dpi=120)
    for ev in events:
        y = row[ev["tid"]]
        start = ev["ts"] / 1000.0
        color = COLORS.get(ev.get("cat"), "#999999")
        if ev["ph"] == "i":
            ax.plot([start, start], [y - 0.35, y + 0.35], color=color, lw=1)
            continue
        width = ev["dur"] / 1000.0
        inner = ev.get("cat") == "compile"  # nested inside its op: a thinner bar
        height = 0.34 if inner else 0.6
        ax.broken_barh([(start, max(width, t_end * 0.0015))], (y - height / 2, height),
                       facecolors=color, edgecolors="white", linewidth=0.3, zorder=3 if inner else 2)
        if width > t_end * 0.06:
            label = ev["name"].replace("mps_ext::", "").replace("compile ", "compile: ")
            ax.text(start + width / 2, y, label, ha="center", va="center", fontsize=7, color="white",
                    clip_on=True, zorder=4)
    ax.set_yticks(range(len(tracks)))
    ax.set_yticklabels([names.get(tid, str(tid)) for tid in reversed(tracks)], fontsize=8)
    ax.set_xlim(0, t_end * 1.01)
    ax.set_ylim(-0.6, len(tracks) - 0.4)
    ax.set_xlabel(f"time [ms] from the first event ({t0 / 1000.0:.1f} ms after mps_ext.profiler.start())")
    ax.grid(axis="x", alpha=0.3)
    ax.legend(handles=[Patch(color=c, label=k) for k, c in COLORS.items()], loc="upper center",
              bbox_to_anchor=(0.5, -0.35 if len(tracks) < 4 else -0.18), ncol=4, fontsize=8, frameon=False)
    ax.set_title(title or f"mps_ext profiler trace: {trace_file.name} ({len(events)} events)", fontsize=10)
    fig.tight_layout()
    fig.savefig(out)
    print(f"wrote {out}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("paths", nargs="+", help="TRACE.json OUT.png, or OUT.png with --record")
    parser.add_argument("--record", action="store_true", help="record the example session first")
    args = parser.parse_args()
    if args.record:
        if len(args.paths) != 1:
            parser.error("--record takes one path: the PNG to write")
        out = Path(args.paths[0])
        trace = out.with_suffix(".json")
        record(trace)
        render(trace, out, "mps_ext profiler: a training step on the mpsgraph device + a CPU thread")
        return 0
    if len(args.paths) != 2:
        parser.error("expected TRACE.json OUT.png")
    render(Path(args.paths[0]), Path(args.paths[1]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
