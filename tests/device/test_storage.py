"""Storages of the mpsgraph device: device, size, resize, sharing between
views, copies and the generated storage methods."""
import pytest
import torch

import mps_ext  # noqa: F401

DEV = "mpsgraph"


@pytest.fixture(autouse=True)
def _quiet_fallback(monkeypatch):
    monkeypatch.setenv("MPS_EXT_FALLBACK", "silent")


def test_storage_device_size_and_views_share_it():
    x = torch.arange(12.0, device=DEV)
    s = x.untyped_storage()
    assert s.device.type == DEV and s.nbytes() == 48 and len(x.storage()) == 12
    v = x.view(3, 4)[1:]
    assert v.untyped_storage().data_ptr() == s.data_ptr() and v.storage_offset() == 4
    assert x.storage().device.type == DEV and x.storage().dtype == torch.float32


def test_storage_resize_keeps_the_prefix():
    s = torch.arange(4.0, device=DEV).untyped_storage()
    s.resize_(32)
    assert s.nbytes() == 32
    t = torch.empty(0, device=DEV).set_(s, 0, (4,), (1,))
    assert torch.equal(t.cpu(), torch.arange(4.0))
    s.resize_(8)
    assert s.nbytes() == 8


def test_storage_copies_between_cpu_and_device():
    cpu = torch.arange(6, dtype=torch.int32).untyped_storage()
    dev = cpu.mpsgraph()
    assert dev.device.type == DEV and dev.nbytes() == cpu.nbytes()
    back = dev.cpu()
    assert back.tolist() == cpu.tolist()
    fresh = torch.UntypedStorage(6, device=DEV)
    fresh.copy_(cpu[:6])
    assert fresh.cpu().tolist() == cpu[:6].tolist()
    assert torch.arange(3.0).storage().mpsgraph().device.type == DEV


def test_tensor_set_from_device_storage_and_is_shared_write():
    x = torch.zeros(6, device=DEV)
    y = torch.empty(0, device=DEV).set_(x.untyped_storage(), 1, (2, 2), (2, 1))
    y.fill_(3.0)
    assert x.cpu().tolist() == [0.0, 3.0, 3.0, 3.0, 3.0, 0.0]
