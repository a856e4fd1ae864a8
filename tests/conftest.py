"""Shared fixtures: the op suites run on every device mps_ext serves here.

`cpu` always (reference runtime); `mpsgraph` always (the mps_ext device: the
reference runtime on Linux, MPSGraph on a Mac); `mps` on macOS when
torch.backends.mps is available (mpsgraph runtime). Cases that need a Mac are
skipped with that reason, never silently dropped.
"""
import os

# Every graph-cache hit rebuilds its graph from the spec and compares: a
# builder that reads something its cache key omits fails loudly here.
os.environ.setdefault("MPS_EXT_CHECK_CACHE", "1")

import pytest  # noqa: E402
import torch  # noqa: E402

import mps_ext  # noqa: E402,F401  (registers torch.ops.mps_ext)

MPS_AVAILABLE = torch.backends.mps.is_available() and mps_ext.has_mpsgraph()
NEEDS_MAC = "needs macOS with an Apple GPU (torch.backends.mps) and the mpsgraph build"

DEVICES = [
    "cpu",
    pytest.param("mps", marks=pytest.mark.skipif(not MPS_AVAILABLE, reason=NEEDS_MAC)),
    "mpsgraph",  # the mps_ext device: reference runtime here, mpsgraph on a Mac
]


@pytest.fixture(params=DEVICES)
def device(request):
    return request.param


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def supports_dtype(device, dtype):
    """MPSGraph has no float64: neither `mps` nor the device on the mpsgraph runtime."""
    on_mpsgraph = device == "mps" or (device == "mpsgraph" and mps_ext.runtime() == "mpsgraph")
    return not (on_mpsgraph and dtype == torch.float64)
