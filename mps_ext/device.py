"""The ``mpsgraph`` device: PyTorch's PrivateUse1 backend under its own name.

``import mps_ext`` calls :func:`register` once per process: it renames
PrivateUse1 to ``"mpsgraph"``, registers this module as ``torch.mpsgraph`` and
generates the ``Tensor.mpsgraph()`` / ``Tensor.is_mpsgraph`` /
``Module.mpsgraph()`` / storage methods. Then ``x.to("mpsgraph")``,
``model.to("mpsgraph")`` and ``torch.randn(3, device="mpsgraph")`` work.

One device (index 0). Its memory is host-visible: shared-storage MTLBuffers on
Apple silicon, counted host memory elsewhere. ``mps_ext`` ops on the device run
on the runtime ``mps_ext.runtime()`` names (``MPS_EXT_RUNTIME``); every other
aten op runs on the CPU over the same bytes, with a once-per-op warning
(``MPS_EXT_FALLBACK=warn|silent|error``).
"""
from __future__ import annotations

import atexit
import os
import re
import sys

import torch

NAME = "mpsgraph"

_registered = False


def _ops():
    return torch.ops.mps_ext


def _check_device(device=None) -> None:
    if device is None:
        return
    if isinstance(device, int):
        index = device
    else:
        device = torch.device(device)
        if device.type != NAME:
            raise ValueError(f"expected an {NAME} device, got {device}")
        index = device.index if device.index is not None else 0
    if index not in (-1, 0):
        raise ValueError(f"invalid {NAME} device index {index}: there is 1 device")


def is_available() -> bool:
    return True


_in_bad_fork = False


def _after_fork_in_child() -> None:
    # Metal objects (device, queues, buffers) do not survive fork(): a forked
    # child of a process that loaded the Metal runtime must not touch them.
    global _in_bad_fork
    _in_bad_fork = True


def _is_in_bad_fork() -> bool:
    return _in_bad_fork


def is_initialized() -> bool:
    return not _in_bad_fork


def _lazy_init() -> None:
    if _in_bad_fork:
        raise RuntimeError(f"Cannot re-initialize {NAME} in forked subprocess. To use {NAME} with multiprocessing, "
                           "you must use the 'spawn' start method")


def init() -> None:
    """Initializes the device (already done by ``import mps_ext``; kept for torch.cuda parity)."""
    _lazy_init()


def device_count() -> int:
    return 1


def current_device() -> int:
    return 0


def set_device(device) -> None:
    _check_device(device)


class device:
    """Context manager selecting the device (there is only one; validates)."""

    def __init__(self, device):
        _check_device(device)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def synchronize(device=None) -> None:
    """Waits for all work queued on the device."""
    _check_device(device)
    _ops()._device_synchronize()


# --- memory: the caching allocator (csrc/device/caching_allocator.h) -----------------
# Freed blocks stay cached for reuse (on a Mac, only once the GPU work that may
# still use them completed); these mirror torch.cuda's functions and read the
# same statistics as torch.accelerator.memory_*.

def memory_stats(device=None) -> dict:
    """The allocator's statistics as a flat dict (``"allocated_bytes.all.current"``, ...)."""
    _check_device(device)
    return dict(torch.accelerator.memory_stats(0))


def memory_allocated(device=None) -> int:
    """Bytes of the blocks live device tensors hold (block sizes: small requests round up to 512 B)."""
    _check_device(device)
    return torch.accelerator.memory_allocated(0)


def max_memory_allocated(device=None) -> int:
    _check_device(device)
    return torch.accelerator.max_memory_allocated(0)


def memory_reserved(device=None) -> int:
    """Bytes the allocator holds from the system: live blocks plus the cache."""
    _check_device(device)
    return torch.accelerator.memory_reserved(0)


def max_memory_reserved(device=None) -> int:
    _check_device(device)
    return torch.accelerator.max_memory_reserved(0)


def reset_peak_memory_stats(device=None) -> None:
    _check_device(device)
    torch.accelerator.reset_peak_memory_stats(0)


def reset_accumulated_memory_stats(device=None) -> None:
    _check_device(device)
    torch.accelerator.reset_accumulated_memory_stats(0)


def empty_cache() -> None:
    """Returns every cached (free) block to the system."""
    torch.accelerator.empty_cache()


def mem_get_info(device=None) -> tuple[int, int]:
    """(free, total) bytes: the GPU's working-set budget on a Mac, host RAM elsewhere."""
    _check_device(device)
    return torch.accelerator.get_memory_info(0)


# --- streams and events ------------------------------------------------------------
# Every stream runs in issue order on the device's one queue, so cross-stream
# waits hold by construction; events on a Mac are MTLSharedEvents on PyTorch's
# MPS stream, on the reference runtime host-clock stamps (ops are synchronous).

class _OnDevice(type):
    """isinstance(x, torch.mpsgraph.Stream/Event): a torch.Stream/Event of this
    device. The classes build plain torch.Stream/torch.Event objects, which
    torch's own methods (wait_stream, elapsed_time, ...) require exactly."""

    def __instancecheck__(cls, obj):
        return isinstance(obj, cls._torch_type) and obj.device.type == NAME


class Stream(metaclass=_OnDevice):
    """A new stream of the mpsgraph device: ``torch.Stream(device="mpsgraph")``."""

    _torch_type = torch.Stream

    def __new__(cls, device=None, priority: int = 0) -> torch.Stream:
        _check_device(device)
        return torch.Stream(device=torch.device(NAME, 0), priority=priority)


def _stream(stream_id: int) -> torch.Stream:
    return torch.Stream(stream_id=stream_id, device_index=0,
                        device_type=torch.accelerator.current_stream(0).device_type)


def current_stream(device=None) -> torch.Stream:
    _check_device(device)
    return torch.accelerator.current_stream(0)


def default_stream(device=None) -> torch.Stream:
    _check_device(device)
    return _stream(0)


def set_stream(stream: torch.Stream) -> None:
    if stream is not None:
        torch.accelerator.set_stream(stream)


class StreamContext:
    """Makes ``stream`` current inside the block (``None``: a no-op), like torch.cuda.stream."""

    def __init__(self, stream):
        self.stream = stream
        self._previous = None

    def __enter__(self):
        if self.stream is not None:
            self._previous = torch.accelerator.current_stream(0)
            torch.accelerator.set_stream(self.stream)
        return self.stream

    def __exit__(self, *exc):
        if self._previous is not None:
            torch.accelerator.set_stream(self._previous)
        return False


def stream(stream) -> StreamContext:
    return StreamContext(stream)


class Event(metaclass=_OnDevice):
    """An event of the mpsgraph device: ``torch.Event(device="mpsgraph", ...)``."""

    _torch_type = torch.Event

    def __new__(cls, enable_timing: bool = False, blocking: bool = False, interprocess: bool = False) -> torch.Event:
        if interprocess:
            raise ValueError(f"{NAME}: interprocess events are not supported")
        return torch.Event(device=NAME, enable_timing=enable_timing, blocking=blocking)


def manual_seed(seed: int) -> None:
    seed = int(seed) & 0xFFFF_FFFF_FFFF_FFFF  # as torch.manual_seed: the low 64 bits
    _ops()._device_manual_seed(seed - (1 << 64) if seed >= (1 << 63) else seed)


def manual_seed_all(seed: int) -> None:
    manual_seed(seed)


def seed() -> None:
    _ops()._device_seed()


def seed_all() -> None:
    seed()


def initial_seed() -> int:
    return int(_ops()._device_initial_seed()) & 0xFFFF_FFFF_FFFF_FFFF  # unsigned, like torch.initial_seed


def get_rng_state(device=None) -> torch.Tensor:
    _check_device(device)
    return _ops()._device_get_rng_state()


def set_rng_state(new_state: torch.Tensor, device=None) -> None:
    _check_device(device)
    _ops()._device_set_rng_state(new_state)


def get_rng_state_all() -> list[torch.Tensor]:
    """One state per device (there is one device)."""
    return [get_rng_state()]


def set_rng_state_all(new_states) -> None:
    new_states = list(new_states)
    if len(new_states) != device_count():
        raise ValueError(f"set_rng_state_all: expected {device_count()} state(s), one per {NAME} device, "
                         f"got {len(new_states)}")
    set_rng_state(new_states[0])


def get_amp_supported_dtype() -> list[torch.dtype]:
    return [torch.float16, torch.bfloat16]


def _no_tag(obj):
    return None  # torch's PrivateUse1 tagger already writes "mpsgraph:0"


def _restore_location(obj, location: str):
    """torch.load for "mpsgraph" locations. Registered ahead of torch's mps
    deserializer, which would otherwise claim them ("mpsgraph".startswith("mps"))."""
    if location == NAME or re.match(rf"{NAME}(:|[0-9]+)", location):
        device = torch.device(location)
        _check_device(device)
        return obj.to(device=device)
    return None


# --- processes ----------------------------------------------------------------------
# torch.multiprocessing shares CPU tensors through shared memory; device memory
# is not shareable between processes (MTLBuffers belong to one process). A
# device tensor sent through a torch.multiprocessing queue or pipe therefore
# arrives as an error the receiver raises on unpickling -- so it never waits
# forever for an item whose pickling failed in the sender's feeder thread --
# and the sender is warned when it pickles the tensor.

_UNSHAREABLE = (f"{NAME} tensors cannot be shared between processes (torch.multiprocessing): device memory "
                f"belongs to one process. Send tensor.cpu() (shared memory) and move it with .to('{NAME}') in "
                f"the receiving process.")


def _raise_unshareable(message: str):
    raise RuntimeError(message)


def _install_sharing_guard() -> None:
    import warnings
    from multiprocessing.reduction import ForkingPickler

    import torch.multiprocessing.reductions as reductions  # registers torch's reducers first

    def reducer(default):
        def reduce(tensor):
            if tensor.device.type == NAME:
                warnings.warn(_UNSHAREABLE, RuntimeWarning, stacklevel=2)
                return _raise_unshareable, (_UNSHAREABLE,)
            return default(tensor)
        return reduce

    for cls in (torch.Tensor, torch.nn.Parameter):
        default = ForkingPickler._extra_reducers.get(cls, reductions.reduce_tensor)
        if not getattr(default, "_mps_ext_guard", False):
            guarded = reducer(default)
            guarded._mps_ext_guard = True
            ForkingPickler.register(cls, guarded)


def register() -> None:
    """Makes PrivateUse1 the ``mpsgraph`` device. Idempotent."""
    global _registered
    if _registered:
        return
    current = torch._C._get_privateuse1_backend_name()
    if current != NAME:
        if current != "privateuseone":
            raise RuntimeError(f"PrivateUse1 is already registered as '{current}'; mps_ext needs it for '{NAME}'")
        torch.utils.rename_privateuse1_backend(NAME)
    if not hasattr(torch, NAME):
        torch._register_device_module(NAME, sys.modules[__name__])
    if not hasattr(torch.Tensor, NAME):
        torch.utils.generate_methods_for_privateuse1_backend(for_tensor=True, for_module=True, for_storage=True)
    torch.serialization.register_package(15, _no_tag, _restore_location)  # before mps (21)
    _install_sharing_guard()
    from . import _C
    if _C._device_runtime() == "mpsgraph":  # the reference runtime's host memory survives fork
        os.register_at_fork(after_in_child=_after_fork_in_child)
    # Device backwards run on the calling thread, like CPU ones. torch's
    # default hands them to an engine thread per device, whose ATen calls then
    # start a second OpenMP team: with more OpenMP threads than cores, every
    # team's workers stop spinning and each parallel region waits on a futex
    # (2x slower steps on 2 cores, and CPU work in the same process slows
    # too). Thread-local, like torch's switch: set for the importing thread;
    # torch.autograd.set_multithreading_enabled(True) restores the default.
    torch._C._set_multithreading_enabled(False)
    # With the engine thread back on, a script ending right after a device
    # backward must not abort in finalization (csrc/device/device.h:
    # flush_autograd_device_thread).
    atexit.register(_C._flush_autograd_device_thread)
    _registered = True


__all__ = ["is_available", "is_initialized", "init", "device_count", "current_device", "set_device", "device",
           "synchronize", "memory_stats", "memory_allocated", "max_memory_allocated", "memory_reserved",
           "max_memory_reserved", "reset_peak_memory_stats", "reset_accumulated_memory_stats", "empty_cache",
           "mem_get_info", "Stream", "Event", "current_stream", "default_stream", "set_stream", "stream",
           "StreamContext", "manual_seed", "manual_seed_all", "seed", "seed_all", "initial_seed", "get_rng_state",
           "set_rng_state", "get_rng_state_all", "set_rng_state_all", "get_amp_supported_dtype", "register"]
