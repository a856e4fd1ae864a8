"""mps_ext.profiler: events from the runtime seam (ops, compiles, copies, CPU
fallbacks), the Chrome trace sink, torch.profiler names, misuse errors and
concurrent recording. No timing assertions (speed lives in benchmarks/)."""
import json
import os
import subprocess
import sys
import threading
import warnings
from pathlib import Path

import pytest
import torch

import mps_ext
from mps_ext import profiler

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def _no_session_left():
    if profiler.is_active():
        profiler.stop()
    yield
    if profiler.is_active():
        profiler.stop()


def runtime_of(device):
    return "reference" if device == "cpu" else ("mpsgraph" if device == "mps" else mps_ext.runtime())


def ops_named(evs, name, phase="interval"):
    return [e for e in evs if e.name == name and e.phase == phase]


# --- operations --------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_softshrink_forward_and_backward_events(device, dtype):
    x = torch.randn(3, 5, dtype=dtype, device=device, requires_grad=True)
    mps_ext.graph.cache_clear()
    with profiler.profile():
        y = torch.ops.mps_ext.softshrink(x, 0.5)
        torch.ops.mps_ext.softshrink(x.detach(), 0.25)
        y.sum().backward()
    evs = profiler.events()
    fwd = ops_named(evs, "mps_ext::softshrink")
    assert len(fwd) == 2
    for e in fwd:
        assert e.kind == "operation"
        assert e.input_shapes[0] == (3, 5) and e.input_dtypes[0] == dtype
        assert e.input_devices[0] == torch.device(device).type
        assert e.input_shapes[1] == () and e.input_dtypes[1] == torch.float32  # lambd, fed from the CPU
        assert e.graph_key.startswith("softshrink|")
        assert e.runtime == runtime_of(device)
        assert e.bytes is None and e.gpu_ms is None
        assert e.thread == threading.get_native_id()
        assert e.cpu_end_ns >= e.cpu_start_ns
    # First call compiled (a nested compile event), second hit the cache.
    assert [e.cache_hit for e in fwd] == [False, True]
    assert [e.run_count for e in fwd] == [1, 2]
    compiles = [e for e in evs if e.kind == "compile" and e.graph_key == fwd[0].graph_key]
    assert len(compiles) == 1 and compiles[0].name == "compile mps_ext::softshrink"
    assert fwd[0].cpu_start_ns <= compiles[0].cpu_start_ns <= compiles[0].cpu_end_ns <= fwd[0].cpu_end_ns
    bwd = ops_named(evs, "mps_ext::softshrink_backward")
    assert len(bwd) == 1
    assert bwd[0].input_shapes[:2] == ((3, 5), (3, 5)) and bwd[0].graph_key.startswith("softshrink_backward|")


def test_out_variant_is_an_operation_event(device):
    x = torch.randn(2, 7, device=device)
    out = torch.empty(0, device=device)
    with profiler.profile():
        torch.ops.mps_ext.softshrink.out(x, 0.5, out=out)
    assert torch.equal(out.cpu(), torch.nn.functional.softshrink(x.cpu(), 0.5))
    (e,) = [e for e in profiler.events() if e.kind == "operation"]
    assert e.name == "mps_ext::softshrink" and e.input_shapes[0] == (2, 7) and e.runtime == runtime_of(device)


def test_nothing_recorded_without_a_session():
    x = torch.randn(4)
    with profiler.profile():
        torch.ops.mps_ext.softshrink(x, 0.5)
    n = len(profiler.events())
    torch.ops.mps_ext.softshrink(x, 0.5)
    x.to("mpsgraph").cpu()
    assert len(profiler.events()) == n  # the last session's events, unchanged
    with profiler.profile():
        pass
    assert profiler.events() == []  # a new session starts empty


def test_modes_interval_event_and_both():
    x = torch.randn(6)
    torch.ops.mps_ext.softshrink(x, 0.5)  # compiled already
    for mode, phases in [("interval", ["interval"]), ("event", ["event"]),
                         ("interval,event", ["interval", "event"]), (" event , interval ", ["interval", "event"])]:
        with profiler.profile(mode=mode):
            torch.ops.mps_ext.softshrink(x, 0.5)
        evs = [e for e in profiler.events() if e.kind == "operation"]
        assert sorted(e.phase for e in evs) == sorted(phases), mode
        for e in evs:
            if e.phase == "event":
                assert e.cpu_start_ns == e.cpu_end_ns
    with profiler.profile(wait_until_completed=True):
        torch.ops.mps_ext.softshrink(x, 0.5)
    (e,) = profiler.events()
    assert e.gpu_ms is None  # the reference runtime has no GPU; Macs fill it in


# --- copies and fallbacks ---------------------------------------------------------------
def test_copies_record_direction_and_bytes():
    x = torch.randn(4, 8)
    with profiler.profile():
        d = x.to("mpsgraph")
        h = d.to(torch.float16).cpu()  # device->device conversion runs on the CPU fallback path
        back = d.cpu()
        d16 = x.to("mpsgraph", torch.float16)  # the copy converts: bytes written are float16
    assert torch.equal(back, x) and torch.equal(h, x.half()) and d16.dtype == torch.float16
    copies = [e for e in profiler.events() if e.kind == "copy"]
    by_name = {}
    for e in copies:
        by_name.setdefault(e.name, []).append(e)
    to_dev = by_name["copy cpu->mpsgraph"]
    assert [e.bytes for e in to_dev][0] == 4 * 8 * 4
    assert 4 * 8 * 2 in [e.bytes for e in to_dev]
    assert all(e.input_shapes == ((4, 8),) and e.input_devices == ("cpu",) for e in to_dev)
    to_host = by_name["copy mpsgraph->cpu"]
    assert {e.bytes for e in to_host} >= {4 * 8 * 4}
    assert all(e.input_devices == ("mpsgraph",) for e in to_host)


def test_fallback_op_on_the_device_is_a_fallback_event():
    x = torch.randn(5, 3).to("mpsgraph")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with profiler.profile():
            y = torch.cumprod(x, 0)  # not native on the device (cumsum is)
    assert torch.allclose(y.cpu(), torch.cumprod(x.cpu(), 0))
    falls = [e for e in profiler.events() if e.kind == "fallback"]
    assert falls, "cumprod on the device must run on the CPU fallback"
    (e,) = [f for f in falls if f.name.startswith("aten::cumprod")]
    assert e.input_shapes[0] == (5, 3) and e.input_devices[0] == "mpsgraph"
    assert e.graph_key is None and e.cache_hit is None


def test_fallback_result_moving_to_the_device_is_a_copy():
    a, b = torch.randn(6, 2), torch.randn(6, 2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ad, bd = a.to("mpsgraph"), b.to("mpsgraph")
        with profiler.profile():
            loss = torch.median(ad)  # not native: a fresh CPU result, copied into device memory
    assert loss.device.type == "mpsgraph" and torch.allclose(loss.cpu(), torch.median(a))
    evs = profiler.events()
    (fall,) = [e for e in evs if e.kind == "fallback"]
    assert fall.name.startswith("aten::median") and fall.input_shapes == ((6, 2),)
    (copy,) = [e for e in evs if e.kind == "copy"]
    assert copy.name == "copy cpu->mpsgraph" and copy.bytes == 4 and copy.input_shapes == ((),)
    assert fall.cpu_start_ns <= copy.cpu_start_ns <= copy.cpu_end_ns <= fall.cpu_end_ns


# --- sinks -------------------------------------------------------------------------
def check_chrome_trace(doc):
    assert isinstance(doc["traceEvents"], list)
    for ev in doc["traceEvents"]:
        assert ev["ph"] in ("X", "i", "M"), ev
        assert isinstance(ev["pid"], int) and isinstance(ev["tid"], int) and isinstance(ev["name"], str)
        if ev["ph"] == "X":
            assert isinstance(ev["ts"], (int, float)) and ev["ts"] >= 0
            assert isinstance(ev["dur"], (int, float)) and ev["dur"] >= 0
            assert ev["cat"] in ("operation", "copy", "fallback", "compile")
        if ev["ph"] == "i":
            assert ev["s"] == "t" and ev["ts"] >= 0
    return [ev for ev in doc["traceEvents"] if ev["ph"] != "M"]


def test_chrome_trace_file(tmp_path):
    path = tmp_path / "trace.json"
    x = torch.randn(2, 3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with profiler.profile(mode="interval,event", trace_file=path):
            d = x.to("mpsgraph")
            torch.ops.mps_ext.softshrink(d, 0.5)
            torch.cumprod(d, 1)  # not native on the device: a fallback
    events = check_chrome_trace(json.loads(path.read_text()))
    assert len(events) == len(profiler.events())
    names = {ev["name"] for ev in events}
    assert {"copy cpu->mpsgraph", "mps_ext::softshrink"} <= names and any(n.startswith("aten::cumprod") for n in names)
    tid = {ev["cat"]: ev["tid"] for ev in events}
    assert len({tid["operation"], tid["copy"], tid["fallback"]}) == 3  # own tracks
    copy = next(ev for ev in events if ev["cat"] == "copy" and ev["ph"] == "X")
    assert copy["args"]["bytes"] == 2 * 3 * 4
    op = next(ev for ev in events if ev["name"] == "mps_ext::softshrink" and ev["ph"] == "X")
    assert op["args"]["graph_key"].startswith("softshrink|") and op["args"]["inputs"][0] == "float32[2, 3] mpsgraph"
    meta = [ev for ev in json.loads(path.read_text())["traceEvents"] if ev["ph"] == "M"]
    assert any(ev["name"] == "thread_name" and "copies" in ev["args"]["name"] for ev in meta)
    assert json.loads(profiler.trace_json()) == json.loads(path.read_text())


def test_unwritable_trace_file_raises_at_stop(tmp_path):
    profiler.start(trace_file=tmp_path / "missing-dir" / "t.json")
    with pytest.raises(RuntimeError, match="cannot write trace_file"):
        profiler.stop()
    assert not profiler.is_active()


def test_torch_profiler_lists_mps_ext_ops():
    x = torch.randn(9, 2)
    mps_ext.graph.cache_clear()
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        torch.ops.mps_ext.softshrink(x, 0.5)
        mps_ext.nn.functional.softshrink(x, lambd=0.5)
    names = {e.key for e in prof.key_averages()}
    assert "mps_ext::softshrink" in names
    assert "mps_ext::compile" in names  # the first call built and compiled its graph
    counts = {e.key: e.count for e in prof.key_averages()}
    assert counts["mps_ext::softshrink"] == 2 and counts["mps_ext::compile"] == 1


# --- misuse ------------------------------------------------------------------------
def test_misuse_errors():
    with pytest.raises(RuntimeError, match="no profiling session is active"):
        profiler.stop()
    profiler.start()
    with pytest.raises(RuntimeError, match="already active"):
        profiler.start()
    with pytest.raises(RuntimeError, match="already active"):
        with profiler.profile():
            pass
    assert profiler.is_active()  # the failed starts left the session alone
    profiler.stop()
    for bad in ["", "intervals", "interval,foo", "event;interval"]:
        with pytest.raises(ValueError, match="mode must be"):
            profiler.start(mode=bad)
    with pytest.raises(TypeError, match="mode must be a str"):
        profiler.start(mode=1)
    with pytest.raises(TypeError, match="wait_until_completed must be a bool"):
        profiler.start(wait_until_completed="yes")
    with pytest.raises(ValueError, match="trace_file"):
        profiler.start(trace_file="")
    assert not profiler.is_active()


def test_event_limit_drops_and_warns(monkeypatch):
    x = torch.randn(3)
    torch.ops.mps_ext.softshrink(x, 0.5)
    monkeypatch.setenv("MPS_EXT_PROFILE_MAX_EVENTS", "5")
    profiler.start(mode="interval,event")
    for _ in range(4):
        torch.ops.mps_ext.softshrink(x, 0.5)
    with pytest.warns(UserWarning, match="kept the first 5 events and dropped 3"):
        profiler.stop()
    assert len(profiler.events()) == 5 and profiler.dropped() == 3
    assert json.loads(profiler.trace_json())["otherData"]["dropped_events"] == 3
    assert [e.run_count for e in profiler.events() if e.phase == "interval"] == [1, 2, 3]
    monkeypatch.setenv("MPS_EXT_PROFILE_MAX_EVENTS", "lots")
    with pytest.raises(ValueError, match="MPS_EXT_PROFILE_MAX_EVENTS must be a positive integer"):
        profiler.start()
    assert not profiler.is_active()


# --- threads -------------------------------------------------------------------------
def test_two_threads_profile_concurrently(tmp_path):
    n = 40
    shapes = {0: (7,), 1: (3, 11)}
    tids = {}
    barrier = threading.Barrier(2)

    def work(i):
        tids[i] = threading.get_native_id()
        x = torch.randn(*shapes[i])
        barrier.wait()
        for _ in range(n):
            torch.ops.mps_ext.softshrink(x, 0.5)
            if i == 1:
                x.to("mpsgraph")

    for i in (0, 1):
        torch.ops.mps_ext.softshrink(torch.randn(*shapes[i]), 0.5)  # compile outside the session
    with profiler.profile(trace_file=tmp_path / "t.json"):
        threads = [threading.Thread(target=work, args=(i,)) for i in (0, 1)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    evs = profiler.events()
    for i in (0, 1):
        mine = [e for e in evs if e.thread == tids[i]]
        ops = [e for e in mine if e.kind == "operation"]
        assert len(ops) == n and all(e.input_shapes[0] == shapes[i] for e in ops)
        assert all(e.cache_hit for e in ops)
        copies = [e for e in mine if e.kind == "copy"]
        assert len(copies) == (n if i == 1 else 0)
        assert all(e.bytes == 3 * 11 * 4 for e in copies)
        ops.sort(key=lambda e: e.cpu_start_ns)
        assert all(a.cpu_end_ns <= b.cpu_start_ns for a, b in zip(ops, ops[1:]))  # one thread: no overlap
    for key in {e.graph_key for e in evs if e.kind == "operation"}:
        runs = sorted(e.run_count for e in evs if e.graph_key == key and e.kind == "operation")
        assert runs == list(range(1, len(runs) + 1))  # counted once each, across threads
    trace = check_chrome_trace(json.loads((tmp_path / "t.json").read_text()))
    assert len(trace) == len(evs) == 3 * n


# --- environment switches and the demo ---------------------------------------------------
def run_python(code, env_extra, *args):
    env = dict(os.environ, **env_extra)
    return subprocess.run([sys.executable, *args] if not code else [sys.executable, "-c", code],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)


def test_environment_switches_write_trace_at_exit(tmp_path):
    path = tmp_path / "env.json"
    code = ("import torch, mps_ext; torch.ops.mps_ext.softshrink(torch.randn(3), 0.5); "
            "print(mps_ext.profiler.is_active())")
    p = run_python(code, {"MPS_EXT_PROFILE": "interval,event", "MPS_EXT_PROFILE_TRACE": str(path)})
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == "True"
    events = check_chrome_trace(json.loads(path.read_text()))
    assert {ev["ph"] for ev in events if ev["name"] == "mps_ext::softshrink"} == {"X", "i"}
    p = run_python("import mps_ext", {"MPS_EXT_PROFILE": "sometimes", "MPS_EXT_PROFILE_TRACE": ""})
    assert p.returncode != 0 and "MPS_EXT_PROFILE must be" in p.stderr


def test_demo_profile_flag_writes_a_trace(tmp_path):
    path = tmp_path / "demo.json"
    p = run_python(None, {}, "-m", "mps_ext", "--steps", "2", "--profile", str(path))
    assert p.returncode == 0, p.stderr
    assert "ui.perfetto.dev" in p.stdout
    events = check_chrome_trace(json.loads(path.read_text()))
    assert any(ev["name"] == "mps_ext::softshrink" for ev in events)
