"""The reference runtime's result-block cache (csrc/runtime/reference/output_allocator.h):
results of 256 KiB and more reuse recently freed blocks of the same size."""
import os
import subprocess
import sys
import textwrap

import pytest
import torch
import torch.nn.functional as F

import mps_ext
from mps_ext import _C

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIG = 1 << 17  # fp32 elements: 512 KiB, above the cache's 256 KiB floor


def run_python(code, **env):
    """Runs code in a fresh interpreter (the cache limit is read once per process)."""
    full_env = {**os.environ, "PYTHONPATH": ROOT, **env}
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                          env=full_env, cwd=ROOT, timeout=120)


def test_reused_blocks_never_alias_live_results():
    _C._output_cache_clear()
    kept = []
    for i in range(12):
        n = BIG * (1 + i % 3)  # three sizes share the cache
        dtype = [torch.float32, torch.float16, torch.bfloat16][i % 3]
        x = torch.randn(n, dtype=dtype)
        y = torch.ops.mps_ext.softshrink(x, 0.5)
        torch.ops.mps_ext.softshrink(x * 2, 0.5)  # freed at once: its block goes back to the cache
        if i % 2 == 0:
            kept.append((x, y))  # stays alive while later results reuse freed blocks
    for x, y in kept:
        torch.testing.assert_close(y, F.softshrink(x, 0.5), rtol=0, atol=0)
    hits, misses, cached, limit = _C._output_cache_info()
    assert hits > 0 and misses > 0 and 0 < cached <= limit


def test_forward_backward_reuses_blocks():
    _C._output_cache_clear()
    x = torch.randn(BIG, requires_grad=True)
    g = torch.randn(BIG)
    for _ in range(5):
        x.grad = None
        mps_ext.nn.functional.softshrink(x, 0.5).backward(g)
    hits, misses, _, _ = _C._output_cache_info()
    assert misses <= 2 and hits >= 8  # y and grad: fresh blocks once, then reused
    torch.testing.assert_close(x.grad, torch.ops.aten.softshrink_backward(g, x.detach(), 0.5), rtol=0, atol=0)


def test_resized_result_keeps_its_values():
    y = torch.ops.mps_ext.softshrink(torch.full((BIG,), 2.0), 0.5)
    y.resize_(2 * BIG)  # a new block from the same allocator, old one back to the cache
    assert torch.equal(y[:BIG], torch.full((BIG,), 1.5))


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="page-fault counts come from getrusage on Linux")
def test_fresh_process_forward_backward_does_not_page_fault():
    # Without the cache, glibc's heap grew and trimmed on every step here: ~1,000+
    # minor faults per forward+backward (4 MiB results) in a fresh process.
    out = run_python("""
        import resource, torch, mps_ext
        torch.set_num_threads(1)
        x = torch.randn(1 << 20, requires_grad=True); g = torch.randn(1 << 20)
        def step():
            x.grad = None
            mps_ext.nn.functional.softshrink(x, 0.5).backward(g)
        for _ in range(3): step()
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        for _ in range(30): step()
        print((resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 30)
    """)
    assert out.returncode == 0, out.stderr
    assert float(out.stdout.split()[-1]) < 100  # a 4 MiB result alone is 1,024 pages


def test_cache_limit_from_environment():
    out = run_python("""
        import torch, mps_ext
        from mps_ext import _C
        for _ in range(3): torch.ops.mps_ext.softshrink(torch.randn(1 << 17), 0.5)
        print(*_C._output_cache_info())
    """, MPS_EXT_OUTPUT_CACHE_BYTES="0")
    assert out.returncode == 0, out.stderr
    hits, misses, cached, limit = map(int, out.stdout.split()[-4:])
    assert (hits, misses, cached, limit) == (0, 0, 0, 0)  # off: ATen's allocator

    out = run_python("""
        import torch, mps_ext
        torch.ops.mps_ext.softshrink(torch.randn(1 << 17), 0.5)
    """, MPS_EXT_OUTPUT_CACHE_BYTES="lots")
    assert out.returncode != 0 and "MPS_EXT_OUTPUT_CACHE_BYTES must be a non-negative integer" in out.stderr
