"""Serialization and processes: torch.save/load of device tensors and modules,
plain pickling (a copy), and torch.multiprocessing, which cannot share device
memory and must say so instead of leaving the receiver waiting forever."""
import io
import pickle
import queue
import warnings

import pytest
import torch
import torch.multiprocessing as mp

import mps_ext  # noqa: F401

DEV = "mpsgraph"


def test_save_load_keeps_devices_storages_and_views():
    base = torch.arange(10.0, device=DEV)
    obj = {"view": base[2:6], "base": base, "param": torch.nn.Parameter(torch.ones(2, device=DEV)),
           "storage": torch.arange(3.0, device=DEV).untyped_storage()}
    buf = io.BytesIO()
    torch.save(obj, buf)
    buf.seek(0)
    back = torch.load(buf)
    assert back["view"].device.type == DEV and isinstance(back["param"], torch.nn.Parameter)
    assert back["view"].untyped_storage().data_ptr() == back["base"].untyped_storage().data_ptr()
    assert torch.equal(back["view"].cpu(), torch.arange(2.0, 6.0))
    assert back["storage"].device.type == DEV
    buf.seek(0)
    on_cpu = torch.load(buf, map_location="cpu")
    assert on_cpu["base"].device.type == "cpu"
    buf.seek(0)
    assert torch.load(buf, map_location=DEV)["base"].device.type == DEV


def test_plain_pickle_copies_a_device_tensor():
    x = torch.randn(3, device=DEV)
    y = pickle.loads(pickle.dumps(x))
    assert y.device.type == DEV and torch.equal(y.cpu(), x.cpu()) and y.data_ptr() != x.data_ptr()


def _receive(q_in, q_out):
    try:
        q_in.get(timeout=60)
        q_out.put("received a tensor")
    except RuntimeError as e:
        q_out.put(f"RuntimeError: {e}")
    except queue.Empty:
        q_out.put("timed out")


def test_multiprocessing_reports_a_clear_error_and_never_hangs():
    ctx = mp.get_context("spawn")
    q_in, q_out = ctx.Queue(), ctx.Queue()
    p = ctx.Process(target=_receive, args=(q_in, q_out))
    p.start()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the sender's warning: see the ForkingPickler test
            q_in.put(torch.ones(2, device=DEV))
            answer = q_out.get(timeout=90)
    finally:
        p.join(timeout=30)
        if p.is_alive():
            p.kill()
    assert answer.startswith("RuntimeError: mpsgraph tensors cannot be shared between processes"), answer
    assert "tensor.cpu()" in answer


def test_forking_pickler_refuses_device_tensors_but_shares_cpu_ones():
    from multiprocessing.reduction import ForkingPickler
    with pytest.warns(RuntimeWarning, match="cannot be shared between processes"):
        payload = ForkingPickler.dumps(torch.nn.Parameter(torch.ones(2, device=DEV)))
    with pytest.raises(RuntimeError, match="Send tensor.cpu\\(\\)"):
        pickle.loads(payload)
    cpu = torch.arange(3.0)
    assert torch.equal(pickle.loads(ForkingPickler.dumps(cpu)), cpu)
