"""torch.mpsgraph and torch.accelerator for the device: the module's API,
device capability, autocast availability (owned elsewhere; only checked not to
break), and the torch.backends autoload entry point."""
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

import mps_ext

DEV = "mpsgraph"
ROOT = Path(__file__).resolve().parents[2]


def test_device_module_api():
    m = torch.mpsgraph
    m.init()
    assert m.is_initialized() and m.is_available() and m.device_count() == 1
    for name in ["Stream", "Event", "current_stream", "default_stream", "set_stream", "stream", "memory_stats",
                 "memory_allocated", "max_memory_allocated", "memory_reserved", "max_memory_reserved",
                 "reset_peak_memory_stats", "empty_cache", "mem_get_info", "get_rng_state_all",
                 "set_rng_state_all", "manual_seed_all", "synchronize"]:
        assert callable(getattr(m, name)), name
    with m.device(0):
        assert m.current_device() == 0
    with pytest.raises(ValueError, match="invalid mpsgraph device index 2"):
        m.set_device(2)


def test_torch_accelerator_sees_the_device():
    assert torch.accelerator.is_available() and torch.accelerator.device_count() == 1
    assert torch.accelerator.current_accelerator() == torch.device(DEV)
    assert torch.accelerator.current_device_index() == 0
    with torch.accelerator.device_index(0):
        torch.accelerator.synchronize()


def test_device_capability_lists_dtypes_the_device_computes_in():
    dtypes = torch.accelerator.get_device_capability()["supported_dtypes"]
    for t in (torch.float32, torch.float16, torch.bfloat16, torch.int64, torch.bool, torch.complex64):
        assert t in dtypes
    for t in (torch.qint8, torch.quint8, torch.qint32):
        assert t not in dtypes  # quantized tensors are refused on the device
    assert (torch.float64 in dtypes) == (mps_ext.runtime() == "reference")


def test_autocast_availability_is_unchanged():
    # autocast on this device belongs to its own issue; this only pins that
    # the device work here did not change what torch reports
    from torch.amp.autocast_mode import is_autocast_available
    assert isinstance(is_autocast_available(DEV), bool)
    assert is_autocast_available("cpu")


def test_torch_backends_entry_point_declared():
    text = (ROOT / "pyproject.toml").read_text()
    assert '[project.entry-points."torch.backends"]' in text and 'mps_ext = "mps_ext:_autoload"' in text
    assert callable(mps_ext._autoload)


def test_autoload_lets_a_child_that_never_imports_mps_ext_use_the_device(tmp_path):
    # An installed mps_ext exposes its entry point through its dist-info; build
    # that metadata here (the package itself comes from the worktree).
    info = tmp_path / "mps_ext-0.1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: mps_ext\nVersion: 0.1.0\n")
    (info / "entry_points.txt").write_text('[torch.backends]\nmps_ext = mps_ext:_autoload\n')
    code = """
        import sys, torch
        assert "mps_ext" in sys.modules  # imported by torch's backend autoload, not by us
        x = torch.ones(3, device="mpsgraph")
        print(x.device, torch.mpsgraph.device_count(), (x * 2).sum().item())
    """
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), str(ROOT)]), "MPS_EXT_FALLBACK": "silent",
           "TORCH_DEVICE_BACKEND_AUTOLOAD": "1"}
    r = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, env=env,
                       timeout=120, cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.split() == ["mpsgraph:0", "1", "6.0"]
    env["TORCH_DEVICE_BACKEND_AUTOLOAD"] = "0"
    r = subprocess.run([sys.executable, "-c", "import sys, torch; print('mps_ext' in sys.modules)"],
                       capture_output=True, text=True, env=env, timeout=120, cwd=tmp_path)
    assert r.stdout.strip() == "False"
