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


def is_initialized() -> bool:
    return True


def _lazy_init() -> None:
    pass


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


def memory_allocated(device=None) -> int:
    """Bytes currently held by live device tensors (the allocator's count)."""
    _check_device(device)
    return int(_ops()._device_memory_allocated())


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
    return int(_ops()._device_initial_seed())


def get_rng_state(device=None) -> torch.Tensor:
    _check_device(device)
    return _ops()._device_get_rng_state()


def set_rng_state(new_state: torch.Tensor, device=None) -> None:
    _check_device(device)
    _ops()._device_set_rng_state(new_state)


def get_amp_supported_dtype() -> list[torch.dtype]:
    return [torch.float16, torch.bfloat16]


def _is_in_bad_fork() -> bool:
    return False


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
    _registered = True


__all__ = ["is_available", "device_count", "current_device", "set_device", "synchronize", "memory_allocated",
           "manual_seed", "manual_seed_all", "seed", "seed_all", "initial_seed", "get_rng_state",
           "set_rng_state", "get_amp_supported_dtype", "register"]
