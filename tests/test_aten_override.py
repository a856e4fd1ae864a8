"""mps_ext.override_aten routes aten ops on the mps device to mps_ext kernels."""
import subprocess
import sys

import pytest
import torch

import mps_ext
from conftest import MPS_AVAILABLE, NEEDS_MAC

# Registration is process-wide, so each case runs in a fresh interpreter.
PRELUDE = "import torch, mps_ext\n"


def run(code):
    out = subprocess.run([sys.executable, "-c", PRELUDE + code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_registers_mps_kernels_for_the_op_and_its_backward():
    out = run(
        "has = torch._C._dispatch_has_kernel_for_dispatch_key\n"
        "print(mps_ext.override_aten(['softshrink']))\n"
        "print(has('aten::softshrink', 'MPS'), has('aten::softshrink_backward', 'MPS'))\n"
        "print(mps_ext.override_aten(['softshrink']))\n"  # idempotent
        "print(has('aten::softshrink', 'CPU'))\n"
    )
    lines = out.strip().splitlines()
    assert lines[0] == "['softshrink', 'softshrink_backward']"
    assert lines[1] == "True True"
    assert lines[2] == lines[0]
    assert lines[3] == "True"  # CPU keeps torch's kernel


def test_cpu_results_unchanged_after_override():
    run(
        "x = torch.randn(100)\n"
        "ref = torch.nn.functional.softshrink(x, 0.3)\n"
        "mps_ext.override_aten(['softshrink'])\n"
        "assert torch.equal(torch.nn.functional.softshrink(x, 0.3), ref)\n"
    )


def test_bad_names_raise_before_registering():
    with pytest.raises(ValueError, match="no mps_ext kernel for \\['no_such_op'\\]"):
        mps_ext.override_aten(["softshrink", "no_such_op"])
    assert mps_ext.overridden_aten_ops() == []
    with pytest.raises(TypeError, match="list of op names"):
        mps_ext.override_aten("softshrink")
    assert "softshrink" in mps_ext.overridable_aten_ops()


@pytest.mark.skipif(not MPS_AVAILABLE, reason=NEEDS_MAC)
def test_override_runs_mps_ext_on_mps():
    run(
        "mps_ext.override_aten(['softshrink'])\n"
        "x = torch.randn(1000, device='mps', requires_grad=True)\n"
        "y = torch.nn.functional.softshrink(x, 0.5)\n"
        "y.sum().backward()\n"
        "xc = x.detach().cpu().requires_grad_()\n"
        "torch.nn.functional.softshrink(xc, 0.5).sum().backward()\n"
        "assert torch.equal(y.cpu(), torch.nn.functional.softshrink(xc, 0.5).detach())\n"
        "assert torch.equal(x.grad.cpu(), xc.grad)\n"
    )
