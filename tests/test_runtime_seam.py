"""The runtime seam (issue 7): out= results, in-place variable updates, kernel
nodes and their decompositions, the bounded graph cache."""
import os
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F

import mps_ext
from mps_ext.graph import Graph

f32, i64 = torch.float32, torch.int64


# --- out= ---------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16, torch.float64])
def test_out_variant_writes_into_out(device, dtype):
    x = torch.randn(5, 7, dtype=dtype, device=device)
    out = torch.empty(5, 7, dtype=dtype, device=device)
    ptr = out.data_ptr()
    r = torch.ops.mps_ext.softshrink(x, 0.3, out=out)
    assert r is out and out.data_ptr() == ptr  # written in place, no temporary swapped in
    torch.testing.assert_close(out.cpu(), F.softshrink(x.cpu(), 0.3), rtol=0, atol=0)


def test_out_variant_resizes_and_handles_strided_out(device):
    x = torch.randn(4, 6, device=device)
    out = torch.empty(0, device=device)
    torch.ops.mps_ext.softshrink(x, 0.5, out=out)
    assert out.shape == (4, 6)
    torch.testing.assert_close(out.cpu(), F.softshrink(x.cpu(), 0.5), rtol=0, atol=0)
    base = torch.zeros(6, 4, device=device)
    strided = base.t()  # non-contiguous out of the right size
    torch.ops.mps_ext.softshrink(x, 0.5, out=strided)
    torch.testing.assert_close(base.t().cpu(), F.softshrink(x.cpu(), 0.5), rtol=0, atol=0)


def test_out_variant_in_place_alias():
    x = torch.randn(100)
    expected = F.softshrink(x, 0.2)
    torch.ops.mps_ext.softshrink(x, 0.2, out=x)
    torch.testing.assert_close(x, expected, rtol=0, atol=0)


def test_out_variant_errors():
    x = torch.randn(3)
    with pytest.raises(TypeError, match="out of dtype"):
        torch.ops.mps_ext.softshrink(x, 0.5, out=torch.empty(3, dtype=torch.float64))
    with pytest.raises(RuntimeError, match="don't support automatic differentiation"):
        torch.ops.mps_ext.softshrink(x.requires_grad_(), 0.5, out=torch.empty(3))


# torch's functionalization (opcheck's aot_dispatch test) rejects custom ops
# whose outputs alias inputs, which every torch-style out= / in-place op does
# (`-> Tensor(a!)`); the other checks apply.
MUTATING_OP_CHECKS = ("test_schema", "test_autograd_registration", "test_faketensor")


def test_out_variant_opcheck():
    x = torch.randn(3, 5)
    torch.library.opcheck(torch.ops.mps_ext.softshrink.out, (x, 0.5), {"out": torch.empty(3, 5)},
                          test_utils=MUTATING_OP_CHECKS)


# --- kernel nodes -----------------------------------------------------------------

def test_softshrink_is_a_kernel_node_with_its_decomposition():
    doc = mps_ext.graph.dump(torch.ops.mps_ext.softshrink, torch.randn(8), 0.5)
    (kernel,) = [n for n in doc["nodes"] if n["op"] == "kernel"]
    assert kernel["attrs"]["kernel"] == "softshrink"
    assert "softshrink" in mps_ext.graph.kernels() and "softshrink_backward" in mps_ext.graph.kernels()


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_kernel_matches_its_decomposition(device, dtype):
    # The decomposition is the oracle of the hand-written kernel: same values,
    # NaN, +-inf and the dead zone included.
    x = torch.randn(257, 3, dtype=dtype, device=device) * 2
    x[0, 0], x[1, 1], x[2, 2] = float("nan"), float("inf"), -float("inf")
    g = torch.randn(257, 3, dtype=dtype, device=device)
    fwd = torch.ops.mps_ext.softshrink(x, 0.5)
    bwd = torch.ops.mps_ext.softshrink_backward(g, x, 0.5)
    with mps_ext.graph.decompositions():
        fwd_d = torch.ops.mps_ext.softshrink(x, 0.5)
        bwd_d = torch.ops.mps_ext.softshrink_backward(g, x, 0.5)
    torch.testing.assert_close(fwd.cpu(), fwd_d.cpu(), rtol=0, atol=0, equal_nan=True)
    torch.testing.assert_close(bwd.cpu(), bwd_d.cpu(), rtol=0, atol=0, equal_nan=True)


def test_decompositions_context_restores_kernels():
    with mps_ext.graph.decompositions():
        assert not mps_ext._C._use_kernels()
    assert mps_ext._C._use_kernels()


# --- in-place slice updates (Tensor(a!) inputs) ---------------------------------------

def kv_update_graph(rank=2):
    g = Graph()
    cache = g.variable([-1] * rank, f32, "cache")
    new = g.placeholder([-1] * rank, f32, "new")
    starts = g.placeholder([rank], i64, "starts")
    g.output(g.assign(cache, g.slice_update(cache, new, starts)))
    return g


def test_slice_update_at_writes_only_the_region_in_place():
    g = kv_update_graph()
    cache = torch.zeros(64, 8)
    ptr = cache.data_ptr()
    for step in range(3):  # one graph serves every position
        new = torch.full((2, 8), float(step + 1))
        (out,) = mps_ext._C._run_reference(g, [cache, new, torch.tensor([10 + 2 * step, 0])])
        assert out.data_ptr() == ptr  # the result is the caller's tensor itself
    assert cache.data_ptr() == ptr
    expected = torch.zeros(64, 8)
    expected[10:12], expected[12:14], expected[14:16] = 1, 2, 3
    torch.testing.assert_close(cache, expected, rtol=0, atol=0)


def test_slice_update_at_out_of_range_raises_and_leaves_data_untouched():
    g = kv_update_graph()
    cache = torch.randn(8, 4)
    before = cache.clone()
    with pytest.raises(RuntimeError, match="does not fit"):
        mps_ext._C._run_reference(g, [cache, torch.ones(2, 4), torch.tensor([7, 0])])
    with pytest.raises(RuntimeError, match="does not fit"):
        mps_ext._C._run_reference(g, [cache, torch.ones(2, 4), torch.tensor([-1, 0])])
    torch.testing.assert_close(cache, before, rtol=0, atol=0)


def test_slice_update_at_functional_form_does_not_mutate():
    g = Graph()
    data = g.placeholder([-1, -1], f32, "data")
    new = g.placeholder([-1, -1], f32, "new")
    starts = g.placeholder([2], i64, "starts")
    g.output(g.slice_update(data, new, starts))
    x = torch.zeros(4, 4)
    (y,) = mps_ext._C._run_reference(g, [x, torch.ones(1, 2), torch.tensor([1, 2])])
    assert x.abs().sum() == 0 and y.sum() == 2 and y[1, 2] == 1 and y[1, 3] == 1


def test_slice_update_at_validates_types():
    g = Graph()
    data = g.placeholder([4, 4], f32)
    with pytest.raises(ValueError, match="starts must be an int64"):
        g.slice_update(data, g.placeholder([1, 4], f32), g.placeholder([2], f32))
    with pytest.raises(ValueError, match="does not fit"):
        g.slice_update(data, g.placeholder([5, 4], f32), g.placeholder([2], i64))


# --- the bounded cache ------------------------------------------------------------------

def run_python(code, **env):
    full_env = {**os.environ, **env}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=full_env, timeout=120)


def test_cache_is_lru_bounded_by_env():
    code = (
        "import torch, mps_ext\n"
        "for r in range(1, 5): torch.ops.mps_ext.softshrink(torch.randn([2] * r), 0.5)\n"
        "torch.ops.mps_ext.softshrink(torch.randn(2, 2, 2, 2), 0.5)\n"  # most recent: still cached
        "i = mps_ext.graph.cache_info()\n"
        "print(i.size, i.maxsize, i.evictions, i.hits, i.misses)\n"
    )
    r = run_python(code, MPS_EXT_GRAPH_CACHE_SIZE="2")
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["2", "2", "2", "1", "4"]


def test_cache_size_env_is_validated():
    r = run_python("import torch, mps_ext; torch.ops.mps_ext.softshrink(torch.randn(2), 0.5)",
                   MPS_EXT_GRAPH_CACHE_SIZE="lots")
    assert r.returncode != 0 and "MPS_EXT_GRAPH_CACHE_SIZE must be a positive integer" in r.stderr


def test_default_cache_maxsize_and_check_mode_in_tests():
    assert mps_ext.graph.cache_info().maxsize == int(os.environ.get("MPS_EXT_GRAPH_CACHE_SIZE", 1024))
    assert os.environ["MPS_EXT_CHECK_CACHE"] == "1"  # conftest: every hit is rebuilt and compared
    mps_ext.graph.cache_clear()
    x = torch.randn(3)
    torch.ops.mps_ext.softshrink(x, 0.5)
    torch.ops.mps_ext.softshrink(x, 0.25)
    assert mps_ext.graph.cache_info()[:3] == (1, 1, 1)


def test_mpsgraph_shape_buckets_bound_the_executables_of_a_growing_length():
    # The mpsgraph runtime compiles per key: static dims keep their size, a
    # dynamic dim is specialised for its first N sizes, then one executable
    # with the dim unknown (-1) serves every further size.
    declared = [[1, 8, -1, 64], [-1]]
    runs = [[[1, 8, s, 64], [3]] for s in range(1, 11)] + [[[1, 8, 2, 64], [3]], [[1, 8, 5, 64], [4]]]
    keys = mps_ext._C._shape_bucket_keys(declared, runs, 4)
    assert keys[:4] == [[[1, 8, s, 64], [3]] for s in range(1, 5)]
    assert all(k == [[1, 8, -1, 64], [3]] for k in keys[4:10])
    assert keys[10] == [[1, 8, 2, 64], [3]]   # a specialised size keeps its executable
    assert keys[11] == [[1, 8, -1, 64], [4]]  # the second input's dim still has room
    distinct = {repr(k) for k in keys}
    assert len(distinct) == 6
    # 0 specialisations: dynamic dims are unknown from the start.
    assert mps_ext._C._shape_bucket_keys(declared, runs[:2], 0) == [[[1, 8, -1, 64], [-1]]] * 2
    with pytest.raises(ValueError, match="expects \\[1,8,-1,64\\]"):
        mps_ext._C._shape_bucket_keys(declared, [[[1, 8, 64], [3]]], 4)
