"""mps_ext: graph-compiled Apple-GPU kernels for PyTorch.

Importing registers the ``torch.ops.mps_ext.*`` operators. Each op is a small
graph in an MPSGraph-shaped IR, run by the ``mpsgraph`` runtime on macOS or by
the ``reference`` runtime (C++ on the CPU) everywhere.
"""


def _autoload() -> None:
    """The ``torch.backends`` entry point (pyproject.toml): ``import torch`` imports
    mps_ext through it, so a process that never imports mps_ext itself (a spawned
    DataLoader worker, a torch.multiprocessing child) still knows ``"mpsgraph"``.
    Importing the package does the registration; nothing is left to do. Defined
    before ``import torch``: when a script imports mps_ext first, torch's own
    import runs this entry point while mps_ext is still half-initialised.
    ``TORCH_DEVICE_BACKEND_AUTOLOAD=0`` turns autoloading off."""


import torch  # noqa: E402,F401  (loads libtorch before the extension)

from . import _C  # registers the operators with the dispatcher
from . import device as _device

_device.register()  # PrivateUse1 becomes the "mpsgraph" device, before any device call

from . import graph, nn, profiler
from . import autocast

autocast.register()  # autocast rules for the mps_ext ops this build has
from . import fft
from .spectral import istft, stft
from .aten_override import override_aten, overridable_aten_ops, overridden_aten_ops
from . import quantization
from .quantization import quantize_model

__version__ = "0.1.0"

profiler._start_from_environment()  # MPS_EXT_PROFILE / MPS_EXT_PROFILE_TRACE


def runtime() -> str:
    """Name of the runtime behind the ``mpsgraph`` device: ``"mpsgraph"`` or ``"reference"``.

    Chosen by ``MPS_EXT_RUNTIME``; defaults to ``mpsgraph`` where this build has
    Metal, else ``reference``. CPU tensors always run on ``reference``.
    """
    return _C._device_runtime()


def has_mpsgraph() -> bool:
    """True if this build contains the macOS MPSGraph runtime."""
    return _C._mpsgraph_built()


__all__ = ["autocast", "graph", "nn", "profiler", "fft", "stft", "istft", "runtime", "has_mpsgraph", "override_aten",
           "overridable_aten_ops",
           "overridden_aten_ops", "quantization", "quantize_model"]

