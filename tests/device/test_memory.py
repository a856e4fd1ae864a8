"""The caching device allocator: statistics through torch.mpsgraph and
torch.accelerator, block reuse, empty_cache, mem_get_info, out-of-memory
errors, and pinned host memory."""
import gc

import pytest
import torch

import mps_ext  # noqa: F401

DEV = "mpsgraph"
KiB, MiB = 1024, 1024 * 1024


@pytest.fixture(autouse=True)
def _clean():
    gc.collect()
    torch.mpsgraph.synchronize()
    # No cached blocks from earlier tests: a block up to twice a request's
    # size is reused for it, which would change the sizes these tests expect.
    torch.mpsgraph.empty_cache()
    yield
    gc.collect()


def test_allocator_is_a_device_allocator_for_torch_accelerator():
    assert torch.accelerator.current_accelerator().type == DEV
    x = torch.empty(1000, device=DEV)  # 4000 B -> one 4096 B block
    stats = torch.mpsgraph.memory_stats()
    assert stats == dict(torch.accelerator.memory_stats())
    assert torch.mpsgraph.memory_allocated() == torch.accelerator.memory_allocated() == stats["allocated_bytes.all.current"]
    assert stats["allocation.all.current"] >= 1 and stats["requested_bytes.all.current"] >= 4000
    del x


def test_allocated_reserved_and_peak_follow_tensors():
    torch.mpsgraph.reset_peak_memory_stats()
    base_alloc = torch.mpsgraph.memory_allocated()
    x = torch.empty(1000, device=DEV)
    assert torch.mpsgraph.memory_allocated() - base_alloc == 4 * KiB  # rounded to 512 B blocks
    y = torch.empty(MiB, dtype=torch.uint8, device=DEV)
    assert torch.mpsgraph.memory_allocated() - base_alloc == 4 * KiB + MiB
    assert torch.mpsgraph.memory_reserved() >= torch.mpsgraph.memory_allocated()
    peak = torch.mpsgraph.max_memory_allocated()
    assert peak >= base_alloc + 4 * KiB + MiB
    del x, y
    assert torch.mpsgraph.memory_allocated() == base_alloc
    assert torch.mpsgraph.max_memory_allocated() == peak  # the peak stays
    torch.mpsgraph.reset_peak_memory_stats()
    assert torch.mpsgraph.max_memory_allocated() == base_alloc
    assert torch.mpsgraph.max_memory_reserved() == torch.mpsgraph.memory_reserved()


def test_freed_blocks_are_reused_and_empty_cache_releases_them():
    x = torch.empty(3 * MiB, dtype=torch.uint8, device=DEV)
    ptr = x.data_ptr()
    reserved = torch.mpsgraph.memory_reserved()
    del x
    torch.mpsgraph.synchronize()  # on a Mac, reuse waits for the GPU
    assert torch.mpsgraph.memory_reserved() == reserved  # cached, not returned
    y = torch.empty(3 * MiB - 100, dtype=torch.uint8, device=DEV)
    assert y.data_ptr() == ptr  # the cached block served the similar request
    stats = torch.mpsgraph.memory_stats()
    del y
    torch.mpsgraph.empty_cache()
    assert torch.mpsgraph.memory_reserved() <= reserved - 3 * MiB
    after = torch.mpsgraph.memory_stats()
    assert after["num_device_free"] > stats["num_device_free"]


def test_reset_accumulated_stats():
    x = torch.empty(10, device=DEV)
    del x
    assert torch.mpsgraph.memory_stats()["allocation.all.allocated"] > 0
    torch.mpsgraph.reset_accumulated_memory_stats()
    stats = torch.mpsgraph.memory_stats()
    assert stats["allocation.all.allocated"] == 0 and stats["allocation.all.freed"] == 0


def test_mem_get_info():
    free, total = torch.mpsgraph.mem_get_info()
    assert 0 < free <= total
    assert (free, total) != (0, 0) and torch.accelerator.get_memory_info()[1] == total


def test_out_of_memory_is_a_clear_error_and_the_allocator_recovers():
    with pytest.raises(torch.OutOfMemoryError, match="mpsgraph: out of memory allocating"):
        torch.empty(2**48, dtype=torch.uint8, device=DEV)  # more than the address space
    assert torch.mpsgraph.memory_stats()["num_ooms"] >= 1
    assert torch.ones(4, device=DEV).sum().item() == 4


def test_many_allocations_do_not_grow_reserved_memory():
    for _ in range(3):
        xs = [torch.empty(1000 + 10 * i, device=DEV) for i in range(50)]
        del xs
    reserved = torch.mpsgraph.memory_reserved()
    for _ in range(3):
        xs = [torch.empty(1000 + 10 * i, device=DEV) for i in range(50)]
        del xs
    assert torch.mpsgraph.memory_reserved() == reserved


def test_device_argument_is_checked():
    with pytest.raises(ValueError, match="invalid mpsgraph device index 1"):
        torch.mpsgraph.memory_allocated(1)
    with pytest.raises(ValueError, match="expected an mpsgraph device"):
        torch.mpsgraph.memory_allocated("cpu")


# --- pinned host memory --------------------------------------------------------------

def test_pin_memory_and_is_pinned():
    t = torch.randn(10)
    assert not t.is_pinned()
    p = t.pin_memory()
    assert p.is_pinned() and p.device.type == "cpu" and torch.equal(p, t)
    assert p[2:5].is_pinned()
    assert not torch.randn(10).is_pinned()
    s = torch.randn(6).untyped_storage()
    assert not s.is_pinned(DEV)
    assert s.pin_memory(DEV).is_pinned(DEV)
    # copies from pinned memory reach the device
    d = p.to(DEV, non_blocking=True)
    torch.mpsgraph.synchronize()
    assert torch.equal(d.cpu(), t)
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.randn(4, 2)), batch_size=2,
                                         pin_memory=True)
    assert all(b[0].is_pinned() for b in loader)


def test_gpu_fence_reuses_freed_blocks_only_after_a_later_synchronize():
    # The Metal build's policy (GPU work may still use a freed buffer), run on
    # host memory: a freed block is not handed out again until a synchronize
    # that began after the free has finished.
    before, after, freed_during, pending_active = torch.ops.mps_ext._device_allocator_fence_check()
    assert (before, after, freed_during) == (0, 1, 0)
    assert pending_active == 1024  # the pending block still counts as active


@pytest.mark.parametrize("op", [
    lambda x, w, b: x @ w,  # a kernel node: CPU views of the device tensors for ATen
    lambda x, w, b: torch.addmm(b, x, w),
    lambda x, w, b: torch.cat([x, w], 0),
    lambda x, w, b: (x * 2).sum(0),  # a fused region, then a reduction
    lambda x, w, b: torch.nn.functional.layer_norm(x, (256,)),
])
def test_op_results_and_inputs_are_freed(op):
    # The CPU views ATen computes on are recycled between ops; they must not
    # keep freed device memory alive.
    torch.mpsgraph.synchronize()
    before = torch.mpsgraph.memory_allocated()
    x, w, b = (torch.randn(s, device=DEV) for s in ((256, 256), (256, 256), (256,)))
    y = op(x, w, b)
    assert torch.mpsgraph.memory_allocated() > before
    del x, w, b, y
    assert torch.mpsgraph.memory_allocated() == before
