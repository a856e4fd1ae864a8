"""Profiling mps_ext: the same events in Instruments, in a trace file and in Python.

Mirrors :mod:`torch.mps.profiler`::

    mps_ext.profiler.start(mode="interval", wait_until_completed=False, trace_file=None)
    ...                                  # run mps_ext ops, copies, CPU fallbacks
    mps_ext.profiler.stop()              # writes trace_file, if given
    mps_ext.profiler.events()            # [ProfilerEvent(...), ...]

    with mps_ext.profiler.profile(trace_file="trace.json"):
        ...

Every mps_ext op (one event per graph run, marked as a cache hit or with a
nested ``compile`` event), every copy between the CPU and the ``mpsgraph``
device (with its byte count) and every aten op that falls back to the CPU on
the device is recorded, from every thread.

``mode``: ``"interval"`` records begin/end intervals, ``"event"`` one instant
event per occurrence, ``"interval,event"`` both (as torch.mps.profiler).
``wait_until_completed=True`` makes each op wait for the device, so its
interval covers the GPU work and, on a Mac, its GPU time is known.

Sinks: the in-memory list (:func:`events`); a Chrome/Perfetto trace JSON
(``trace_file``; open it in https://ui.perfetto.dev or chrome://tracing); on
macOS os_signposts under subsystem ``com.mps_ext.profiler`` with categories
``operations``, ``copies``, ``fallbacks``, ``compiles`` (Instruments'
os_signpost / Logging template). ``torch.profiler.profile()`` lists mps_ext
ops by name (``mps_ext::softshrink``) and graph compiles as ``mps_ext::compile``.

Environment switches, for long runs without code changes:
``MPS_EXT_PROFILE=interval,event`` profiles from ``import mps_ext`` to exit;
``MPS_EXT_PROFILE_TRACE=path.json`` writes the trace at exit (alone, it
implies ``MPS_EXT_PROFILE=interval``). A session keeps at most
``MPS_EXT_PROFILE_MAX_EVENTS`` events (default 1,000,000, read at start) and
counts the rest as :func:`dropped`, with a warning at stop; os_signposts are
emitted regardless.

When no profiler is active the hooks cost one relaxed atomic load per op.
"""
from __future__ import annotations

import atexit
import contextlib
import os
import warnings
from dataclasses import dataclass
from typing import Iterator, Optional

import torch

from . import _C

__all__ = ["start", "stop", "profile", "events", "dropped", "is_active", "trace_json", "ProfilerEvent"]

_MODES = {"interval": 1, "event": 2}
_WAIT = 4


@dataclass(frozen=True)
class ProfilerEvent:
    """One recorded occurrence. Times are on the steady (monotonic) clock, in ns."""

    name: str                      # "mps_ext::softshrink", "aten::cumsum.out", "copy cpu->mpsgraph", "compile ..."
    kind: str                      # "operation", "copy", "fallback" or "compile"
    phase: str                     # "interval" or "event" (instant)
    graph_key: Optional[str]       # operations and compiles: the graph cache key
    runtime: Optional[str]         # "reference" or "mpsgraph" (operations, compiles)
    cache_hit: Optional[bool]      # operations: False when the graph was built and compiled by this call
    run_count: Optional[int]       # operations: runs of this graph key in the session, this one included
    input_shapes: tuple            # one tuple per input tensor
    input_dtypes: tuple            # torch.dtype per input tensor
    input_devices: tuple           # "cpu", "mpsgraph", "mps" per input tensor
    bytes: Optional[int]           # copies: bytes written to the destination
    cpu_start_ns: int
    cpu_end_ns: int
    gpu_ms: Optional[float]        # on a Mac with wait_until_completed=True; else None
    thread: int                    # OS thread id (threading.get_native_id())

    @property
    def cpu_ms(self) -> float:
        return (self.cpu_end_ns - self.cpu_start_ns) / 1e6


def _parse_mode(mode) -> int:
    if not isinstance(mode, str):
        raise TypeError(f"mps_ext.profiler: mode must be a str, but got {type(mode).__name__}")
    parts = [p.strip() for p in mode.split(",")]
    bad = [p for p in parts if p not in _MODES]
    if bad or not parts:
        raise ValueError(f"mps_ext.profiler: mode must be 'interval', 'event' or 'interval,event', "
                         f"but got {mode!r}")
    bits = 0
    for p in parts:
        bits |= _MODES[p]
    return bits


def start(mode: str = "interval", wait_until_completed: bool = False,
          trace_file: Optional[str | os.PathLike] = None) -> None:
    """Starts a profiling session (one per process at a time; RuntimeError if one is active).

    Args:
        mode: ``"interval"``, ``"event"`` or ``"interval,event"``.
        wait_until_completed: wait for the device after each op (GPU time on a Mac).
        trace_file: where :func:`stop` writes a Chrome/Perfetto trace JSON.
    """
    bits = _parse_mode(mode)
    if not isinstance(wait_until_completed, bool):
        raise TypeError("mps_ext.profiler: wait_until_completed must be a bool, "
                        f"but got {type(wait_until_completed).__name__}")
    if wait_until_completed:
        bits |= _WAIT
    path = "" if trace_file is None else os.fspath(trace_file)
    if trace_file is not None and not path:
        raise ValueError("mps_ext.profiler: trace_file must be a non-empty path or None")
    _C._profiler_start(bits, path)


def stop() -> None:
    """Ends the session and writes its trace_file (RuntimeError if none is active)."""
    _C._profiler_stop()
    lost = _C._profiler_dropped()
    if lost:
        warnings.warn(f"mps_ext.profiler: kept the first {len(_C._profiler_events())} events and dropped "
                      f"{lost} (MPS_EXT_PROFILE_MAX_EVENTS raises the limit)", stacklevel=2)


def is_active() -> bool:
    return _C._profiler_active()


@contextlib.contextmanager
def profile(mode: str = "interval", wait_until_completed: bool = False,
            trace_file: Optional[str | os.PathLike] = None) -> Iterator[None]:
    """``with mps_ext.profiler.profile(...):`` -- :func:`start` on entry, :func:`stop` on exit."""
    start(mode, wait_until_completed, trace_file)
    try:
        yield
    finally:
        stop()


def events() -> list[ProfilerEvent]:
    """The events of the current session, or of the last one after :func:`stop`, in end order."""
    out = []
    for (name, kind, phase, key, runtime, hit, runs, inputs, nbytes, t0, t1, gpu, tid) in _C._profiler_events():
        out.append(ProfilerEvent(
            name=name, kind=kind, phase=phase, graph_key=key or None, runtime=runtime or None,
            cache_hit=None if hit < 0 else bool(hit), run_count=runs if kind == "operation" else None,
            input_shapes=tuple(i[0] for i in inputs), input_dtypes=tuple(i[1] for i in inputs),
            input_devices=tuple(i[2] for i in inputs), bytes=nbytes if nbytes >= 0 else None,
            cpu_start_ns=t0, cpu_end_ns=t1, gpu_ms=gpu if gpu >= 0 else None, thread=tid))
    return out


def dropped() -> int:
    """Events of the current (or last) session not kept because it reached MPS_EXT_PROFILE_MAX_EVENTS."""
    return _C._profiler_dropped()


def trace_json() -> str:
    """The current (or last) session as Chrome trace JSON text."""
    return _C._profiler_trace_json()


def _start_from_environment() -> None:
    mode = os.environ.get("MPS_EXT_PROFILE", "").strip()
    trace = os.environ.get("MPS_EXT_PROFILE_TRACE", "").strip()
    if not mode and not trace:
        return
    try:
        _parse_mode(mode or "interval")
    except ValueError:
        raise ValueError(f"MPS_EXT_PROFILE must be 'interval', 'event' or 'interval,event', "
                         f"but got {mode!r}") from None
    start(mode or "interval", trace_file=trace or None)
    atexit.register(_stop_at_exit)


def _stop_at_exit() -> None:
    if is_active():
        stop()


def _demo(trace_file: str) -> None:
    """``python -m mps_ext --profile trace.json``: profile the whole demo run; at exit,
    write the trace and print what it holds."""
    start("interval", trace_file=trace_file)

    def report() -> None:
        if not is_active():
            return
        stop()
        evs = events()
        kinds: dict[str, int] = {}
        for e in evs:
            kinds[e.kind] = kinds.get(e.kind, 0) + 1
        ops: dict[str, list[float]] = {}
        for e in evs:
            if e.kind in ("operation", "fallback"):
                ops.setdefault(e.name, []).append(e.cpu_ms)
        top = sorted(ops.items(), key=lambda kv: -sum(kv[1]))[:5]
        print(f"\nprofile: {len(evs)} events ({', '.join(f'{n} {k}' for k, n in sorted(kinds.items()))}) "
              f"written to {trace_file} -- open it in https://ui.perfetto.dev or chrome://tracing")
        for name, ms in top:
            print(f"  {name:<40} {len(ms):>5} calls {sum(ms):>9.3f} ms CPU")

    atexit.register(report)
