"""Streams and events of the mpsgraph device, through torch.Stream/torch.Event,
torch.accelerator and torch.mpsgraph.Stream/Event (issue 8, item 5)."""
import time

import pytest
import torch

import mps_ext  # noqa: F401

DEV = "mpsgraph"


@pytest.fixture(autouse=True)
def _default_stream_after():
    yield
    torch.accelerator.set_stream(torch.mpsgraph.default_stream())


# --- streams --------------------------------------------------------------------------

def test_new_streams_are_distinct_and_not_the_default():
    default = torch.accelerator.current_stream()
    assert default.device_type == torch.mpsgraph.default_stream().device_type and default.stream_id == 0
    s1, s2, s3 = (torch.Stream(device=DEV) for _ in range(3))
    assert len({s1.stream_id, s2.stream_id, s3.stream_id, 0}) == 4
    assert s1.device == torch.device(DEV, 0) and s1.device_index == torch.mpsgraph.current_device()
    same = torch.Stream(stream_id=s1.stream_id, device_type=s1.device_type, device_index=s1.device_index)
    assert same == s1 and same != s2
    assert "torch.Stream device_type=mpsgraph, device_index=0" in repr(s1)


def test_current_stream_context_and_set_stream():
    s = torch.Stream(device=DEV)
    with s:
        assert torch.accelerator.current_stream() == s
        assert torch.mpsgraph.current_stream() == s
    assert torch.accelerator.current_stream().stream_id == 0
    torch.accelerator.set_stream(s)
    assert torch.mpsgraph.current_stream() == s
    torch.mpsgraph.set_stream(torch.mpsgraph.default_stream())
    assert torch.mpsgraph.current_stream().stream_id == 0
    ms = torch.mpsgraph.Stream()
    assert isinstance(ms, torch.Stream) and isinstance(ms, torch.mpsgraph.Stream) and ms.device.type == DEV
    assert not isinstance(torch.Stream(device="cpu"), torch.mpsgraph.Stream)
    assert isinstance(torch.mpsgraph.Event(), torch.mpsgraph.Event)
    with torch.mpsgraph.stream(ms):
        assert torch.mpsgraph.current_stream() == ms
    with torch.mpsgraph.stream(None):  # like torch.cuda.stream(None): a no-op
        assert torch.mpsgraph.current_stream().stream_id == 0


def test_work_on_streams_matches_the_default_stream():
    x = torch.randn(64, 64, device=DEV)
    want = (x @ x).cpu()
    s1, s2 = torch.Stream(device=DEV), torch.Stream(device=DEV)
    with s1:
        y = x @ x
        e = s1.record_event()
    s2.wait_event(e)
    with s2:
        z = y + 1
    s2.wait_stream(s1)
    s2.synchronize()
    assert s1.query() and s2.query()
    torch.testing.assert_close(z.cpu(), want + 1)


def test_stream_synchronize_and_query():
    s = torch.Stream(device=DEV)
    assert s.query()
    torch.Event().record(s)
    s.synchronize()
    assert s.query()
    torch.accelerator.synchronize()
    torch.mpsgraph.synchronize()


def test_bad_stream_arguments():
    with pytest.raises(ValueError, match="invalid mpsgraph device index"):
        torch.mpsgraph.Stream("mpsgraph:3")
    with pytest.raises(ValueError, match="interprocess events are not supported"):
        torch.mpsgraph.Event(interprocess=True)


# --- events ---------------------------------------------------------------------------

def test_event_ids_and_query_before_and_after_record():
    e = torch.Event(device=DEV)
    assert e.event_id == 0 and e.query()  # never recorded: complete
    s = torch.Stream(device=DEV)
    e1, e2 = s.record_event(), s.record_event()
    assert e1.event_id != 0 and e2.event_id != 0 and e1.event_id != e2.event_id
    assert e1.device == torch.device(DEV, 0)
    e1.synchronize()
    assert e1.query()
    e1.record(s)  # re-recording an event is fine
    s.synchronize()
    assert e1.query()


def test_elapsed_time_is_real_time():
    s = torch.Stream(device=DEV)
    start = torch.Event(device=DEV, enable_timing=True)
    end = torch.mpsgraph.Event(enable_timing=True)
    start.record(s)
    time.sleep(0.05)  # the end event is recorded (and completes) at least 50 ms later
    with s:
        torch.randn(128, 128, device=DEV).sum()
        end.record()
    end.synchronize()
    ms = start.elapsed_time(end)
    assert 50 <= ms < 5000
    assert end.elapsed_time(start) < 0 or end.elapsed_time(start) == -ms


def test_elapsed_time_needs_timing_and_recording():
    a, b = torch.Event(device=DEV), torch.Event(device=DEV)
    a.record()
    b.record()
    with pytest.raises(ValueError, match="Both events must be created with argument 'enable_timing=True'"):
        a.elapsed_time(b)
    c, d = torch.Event(device=DEV, enable_timing=True), torch.Event(device=DEV, enable_timing=True)
    c.record()
    with pytest.raises(ValueError, match="must be recorded"):
        c.elapsed_time(d)


def test_autograd_backward_on_a_side_stream():
    x = torch.randn(8, 8, device=DEV, requires_grad=True)
    s = torch.Stream(device=DEV)
    with s:
        loss = (x.tanh() * 2).sum()
    loss.backward()  # the engine records and waits on events across streams
    torch.testing.assert_close(x.grad.cpu(), 2 * (1 - x.detach().cpu().tanh() ** 2))
