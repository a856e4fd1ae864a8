"""Pooling and integer bit ops on the mps_ext device vs torch on the CPU.

Every case also checks that nothing went to the CPU fallback
(torch.ops.mps_ext._fallback_count() unchanged): max/avg/adaptive pools
1d/2d/3d and their backwards, and the bitwise ops, run as graphs (the IR's
pooling and bitwise node kinds; MPSGraph's pooling and bitwise ops on a Mac).
"""
import contextlib
import itertools
import json

import pytest
import torch
import torch.nn.functional as F

import mps_ext  # noqa: F401

DEV = "mpsgraph"
FLOATS = [torch.float32, torch.float16, torch.bfloat16, torch.float64]


def fallbacks():
    return torch.ops.mps_ext._fallback_count()


def tol(dtype):
    return {torch.float16: (2e-3, 2e-3), torch.bfloat16: (1.6e-2, 1.6e-2)}.get(dtype, (1e-5, 1.3e-6))


def check(fn, *args, dtype=torch.float32, native=True):
    """fn on the CPU vs on the device: values, dtypes, indices exactly."""
    expected = fn(*args)
    before = fallbacks()
    got = fn(*[a.to(DEV) if isinstance(a, torch.Tensor) else a for a in args])
    if native:
        assert fallbacks() == before, "the op fell back to the CPU"
    exp = expected if isinstance(expected, tuple) else (expected,)
    res = got if isinstance(got, tuple) else (got,)
    assert len(exp) == len(res)
    atol, rtol = tol(dtype)
    for e, r in zip(exp, res):
        assert r.device.type == DEV and r.dtype == e.dtype and r.shape == e.shape
        if e.dtype.is_floating_point:
            torch.testing.assert_close(r.cpu(), e, atol=atol, rtol=rtol, equal_nan=True)
        else:
            assert torch.equal(r.cpu(), e)


def distinct(*shape, dtype=torch.float32):
    """Values without ties (a permutation), so max-pool indices are unique."""
    n = 1
    for s in shape:
        n *= s
    return (torch.randperm(n).float() / n - 0.5).reshape(shape).to(dtype)


def with_grad(fn):
    """fn's output and the gradient of a fixed weighting of it w.r.t. x."""
    def run(x):
        x = x.detach().clone().requires_grad_()
        out = fn(x)
        y = out[0] if isinstance(out, tuple) else out
        w = (torch.arange(y.numel(), dtype=torch.float64) % 7 - 3).reshape(y.shape).to(y.dtype).to(y.device)
        y.backward(w)
        return (*(out if isinstance(out, tuple) else (out,)), x.grad)
    return run


# --- fixed windows: kernel/stride/padding/dilation/ceil_mode grid ----------------------
GRID_2D = [  # kernel, stride, padding, dilation, ceil_mode
    (3, 2, 1, 1, False),  # ResNet's stem pool
    (3, 2, 1, 1, True),
    (2, 2, 0, 1, False),
    (3, 1, 1, 1, False),
    ((3, 2), (2, 1), (1, 0), 1, True),
    (2, 3, 1, 2, True),
    (3, 2, 0, 2, False),
]


@pytest.mark.parametrize("k,s,p,d,ceil", GRID_2D)
@pytest.mark.parametrize("shape", [(2, 3, 9, 10), (3, 7, 8)])  # batched, unbatched
def test_max_pool2d_grid(k, s, p, d, ceil, shape):
    x = distinct(*shape)
    check(with_grad(lambda t: F.max_pool2d(t, k, s, p, d, ceil_mode=ceil, return_indices=True)), x)


@pytest.mark.parametrize("k,s,p,d,ceil", [(3, 2, 1, 1, False), (2, 1, 1, 2, True), (4, 3, 2, 1, True)])
@pytest.mark.parametrize("shape", [(2, 3, 11), (3, 10)])
def test_max_pool1d_grid(k, s, p, d, ceil, shape):
    x = distinct(*shape)
    check(with_grad(lambda t: F.max_pool1d(t, k, s, p, d, ceil_mode=ceil, return_indices=True)), x)
    check(lambda t: F.max_pool1d(t, k, s, p, d, ceil_mode=ceil), x)


@pytest.mark.parametrize("k,s,p,d,ceil", [(3, 2, 1, 1, False), (2, 2, 0, 1, True), ((2, 3, 2), (1, 2, 2), (1, 1, 0), (1, 1, 2), True)])
@pytest.mark.parametrize("shape", [(2, 2, 5, 6, 7), (2, 6, 5, 7)])
def test_max_pool3d_grid(k, s, p, d, ceil, shape):
    x = distinct(*shape)
    check(with_grad(lambda t: F.max_pool3d(t, k, s, p, d, ceil_mode=ceil, return_indices=True)), x)


AVG_GRID = [  # kernel, stride, padding, ceil_mode, count_include_pad, divisor_override
    (3, 2, 1, False, True, None),
    (3, 2, 1, True, True, None),
    (3, 2, 1, True, False, None),
    (2, 2, 0, False, True, None),
    ((3, 2), (2, 1), (1, 1), True, False, None),
    (3, 2, 1, False, True, 5),
    (3, 3, 1, True, False, 2),
]


@pytest.mark.parametrize("k,s,p,ceil,include,div", AVG_GRID)
@pytest.mark.parametrize("shape", [(2, 3, 9, 10), (3, 7, 8)])
def test_avg_pool2d_grid(k, s, p, ceil, include, div, shape):
    x = torch.randn(shape)
    check(with_grad(lambda t: F.avg_pool2d(t, k, s, p, ceil, include, div)), x)


@pytest.mark.parametrize("k,s,p,ceil,include", [(3, 2, 1, False, True), (4, 3, 2, True, False), (2, 1, 1, True, True)])
def test_avg_pool1d_grid(k, s, p, ceil, include):
    x = torch.randn(2, 3, 11)
    check(with_grad(lambda t: F.avg_pool1d(t, k, s, p, ceil, include)), x)


@pytest.mark.parametrize("k,s,p,ceil,include,div", [(3, 2, 1, False, True, None), (3, 2, 1, True, False, None),
                                                    ((2, 3, 2), (2, 1, 2), (1, 1, 0), True, True, 3)])
@pytest.mark.parametrize("shape", [(2, 2, 5, 6, 7), (2, 6, 5, 7)])
def test_avg_pool3d_grid(k, s, p, ceil, include, div, shape):
    x = torch.randn(shape)
    check(with_grad(lambda t: F.avg_pool3d(t, k, s, p, ceil, include, div)), x)


# --- adaptive pools: divisible (fixed windows) and overlapping windows ------------------
@pytest.mark.parametrize("out", [(3, 5), (4, 3), (1, 1), (9, 10), (7, 4), (2, None)])
@pytest.mark.parametrize("shape", [(2, 3, 9, 10), (3, 9, 10)])
def test_adaptive_pool2d(out, shape):
    x = distinct(*shape)
    check(with_grad(lambda t: F.adaptive_avg_pool2d(t, out)), x)
    check(with_grad(lambda t: F.adaptive_max_pool2d(t, out, return_indices=True)), x)


@pytest.mark.parametrize("out", [(2, 3, 5), (1, 1, 1), (4, 2, 3)])
def test_adaptive_pool3d(out):
    x = distinct(2, 2, 5, 6, 7)
    check(with_grad(lambda t: F.adaptive_avg_pool3d(t, out)), x)
    check(with_grad(lambda t: F.adaptive_max_pool3d(t, out, return_indices=True)), x)


@pytest.mark.parametrize("shape,out", [((16, 32, 8, 8), 4), ((2, 3, 6, 9), (3, 3)), ((2, 2, 4, 6, 8), (2, 3, 4))])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_tiled_adaptive_avg_pools_are_torchs_kernels_with_a_pool_decomposition(shape, out, dtype):
    # Windows that tile the input: a kernel node (ATen's adaptive kernels on
    # the reference runtime: torch's bits, forward and backward) whose
    # decomposition is the average pool MPSGraph runs.
    pool = F.adaptive_avg_pool3d if len(shape) == 5 else F.adaptive_avg_pool2d
    x = torch.randn(*shape, dtype=dtype, requires_grad=True)
    g = torch.randn_like(pool(x, out))
    pool(x, out).backward(g)
    for decompose in (False, True):
        xd = x.detach().to(DEV).requires_grad_()
        with mps_ext.graph.decompositions() if decompose else contextlib.nullcontext():
            y = pool(xd, out)
            y.backward(g.to(DEV))
            names = [n["attrs"].get("kernel") for _, doc, _ in mps_ext.graph.capture(lambda t: pool(t, out), xd.detach())
                     for n in json.loads(doc)["nodes"] if n["op"] == "kernel"]
        if decompose:
            torch.testing.assert_close(y.cpu(), pool(x, out), rtol=1e-6, atol=1e-6)
            torch.testing.assert_close(xd.grad.cpu(), x.grad, rtol=1e-6, atol=1e-6)
        else:
            assert names == ["aten.adaptive_avg_pool"]
            assert torch.equal(y.cpu(), pool(x, out)) and torch.equal(xd.grad.cpu(), x.grad)


@pytest.mark.parametrize("out", [3, 4, 11, 1])
def test_adaptive_pool1d(out):
    x = distinct(2, 3, 11)
    check(with_grad(lambda t: F.adaptive_avg_pool1d(t, out)), x)
    check(with_grad(lambda t: F.adaptive_max_pool1d(t, out, return_indices=True)), x)


# --- dtypes, layouts, empty batches, ties and NaN -----------------------------------------
@pytest.mark.parametrize("dtype", FLOATS)
def test_dtypes(dtype):
    x = distinct(2, 3, 9, 8, dtype=dtype)  # 216 distinct values: exact in bf16 too
    check(with_grad(lambda t: F.max_pool2d(t, 3, 2, 1, return_indices=True)), x, dtype=dtype)
    check(with_grad(lambda t: F.avg_pool2d(t, 3, 2, 1, ceil_mode=True, count_include_pad=False)), x, dtype=dtype)
    check(with_grad(lambda t: F.adaptive_avg_pool2d(t, (4, 3))), x, dtype=dtype)
    check(with_grad(lambda t: F.adaptive_max_pool2d(t, (4, 3), return_indices=True)), x, dtype=dtype)
    check(with_grad(lambda t: F.max_pool3d(t.unsqueeze(1), 2, 2, 1, return_indices=True)), x, dtype=dtype)


def test_channels_last_and_non_contiguous():
    x = distinct(2, 4, 9, 10).contiguous(memory_format=torch.channels_last)
    for fn in [lambda t: F.max_pool2d(t, 3, 2, 1, return_indices=True), lambda t: F.avg_pool2d(t, 3, 2, 1),
               lambda t: F.adaptive_avg_pool2d(t, (4, 3)), lambda t: F.adaptive_max_pool2d(t, (4, 3))]:
        check(with_grad(fn), x)
        out = fn(x.to(DEV))
        out = out[0] if isinstance(out, tuple) else out
        assert out.is_contiguous(memory_format=torch.channels_last)  # as torch's CPU kernels
    y = distinct(2, 3, 10, 18)[..., ::2].transpose(2, 3)  # strided and transposed
    check(with_grad(lambda t: F.max_pool2d(t, 3, 2, 1, return_indices=True)), y)
    check(with_grad(lambda t: F.avg_pool2d(t, 2, 1, 1, count_include_pad=False)), y)
    check(with_grad(lambda t: F.adaptive_max_pool2d(t, (3, 4))), y)


def test_integer_input_runs_on_the_cpu_fallback():
    x = torch.randint(-50, 50, (1, 2, 6, 6))
    check(lambda t: F.max_pool2d(t, 3, 2, 1, return_indices=True), x, native=False)
    check(lambda t: F.avg_pool2d(t, 2), x, native=False)


def test_empty_batch():
    x = torch.randn(0, 3, 8, 8)
    check(with_grad(lambda t: F.max_pool2d(t, 3, 2, 1, return_indices=True)), x)
    check(with_grad(lambda t: F.avg_pool2d(t, 3, 2, 1)), x)
    check(with_grad(lambda t: F.adaptive_avg_pool2d(t, (3, 5))), x)
    check(with_grad(lambda t: F.adaptive_max_pool2d(t, (3, 5), return_indices=True)), x)
    check(with_grad(lambda t: F.max_pool3d(t.unsqueeze(2), 1, 1, return_indices=True)), x)
    check(lambda t: F.adaptive_avg_pool2d(t, (0, 2)), torch.randn(2, 3, 4, 4))  # empty output size


def test_ties_and_nan_pick_torchs_index():
    x = torch.zeros(1, 1, 6, 6)  # every window ties: torch picks the first maximum
    check(lambda t: F.max_pool2d(t, 3, 2, 1, return_indices=True), x)
    check(lambda t: F.adaptive_max_pool2d(t, (4, 4), return_indices=True), x)
    y = torch.randn(1, 2, 6, 6)
    y[0, 0, 2, 3] = float("nan")
    check(lambda t: F.max_pool2d(t, 3, 2, 1, return_indices=True), y)
    check(lambda t: F.max_pool2d(t, 2), y)


# --- gradcheck (float64) of every backward ------------------------------------------------
@pytest.mark.parametrize("fn", [
    lambda t: F.max_pool2d(t, 3, 2, 1, ceil_mode=True),
    lambda t: F.max_pool1d(t[0], 3, 2, 1, dilation=2),
    lambda t: F.max_pool3d(t.unsqueeze(0), 2, 1, 1),
    lambda t: F.avg_pool2d(t, 3, 2, 1, ceil_mode=True, count_include_pad=False),
    lambda t: F.avg_pool2d(t, 3, 2, 1, divisor_override=4),
    lambda t: F.avg_pool3d(t.unsqueeze(0), 2, 1, 1),
    lambda t: F.adaptive_avg_pool2d(t, (3, 4)),
    lambda t: F.adaptive_max_pool2d(t, (3, 4)),
    lambda t: F.adaptive_avg_pool3d(t.unsqueeze(0), (2, 3, 4)),
    lambda t: F.adaptive_max_pool3d(t.unsqueeze(0), (2, 3, 2)),
], ids=["max2d", "max1d", "max3d", "avg2d", "avg2d_div", "avg3d", "aavg2d", "amax2d", "aavg3d", "amax3d"])
def test_gradcheck(fn):
    x = distinct(2, 3, 7, 6, dtype=torch.float64).to(DEV).requires_grad_()
    before = fallbacks()
    assert torch.autograd.gradcheck(fn, (x,), eps=1e-6, atol=1e-5)
    assert fallbacks() == before


# --- errors: torch's messages ---------------------------------------------------------------
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
@pytest.mark.parametrize("spatial, out", [((7, 6), (3, 4)), ((5, 7), (5, 2)), ((4, 5, 6), (3, 2, 4))])
def test_adaptive_max_pool_kernel_and_decomposition_match_torch(spatial, out, dtype):
    # float32/float64 run ATen's kernel here ("aten.adaptive_max_pool" and its
    # backward); MPSGraph runs the masked decomposition: both must be torch's.
    x = torch.randn(2, 3, *spatial).to(dtype)
    x.view(-1)[5] = float("nan")  # a NaN is the window's maximum, and its index wins
    x.view(-1)[17] = x.view(-1)[18] = 4.0  # ties: the first index
    pool = F.adaptive_max_pool2d if len(spatial) == 2 else F.adaptive_max_pool3d
    xc = x.clone().requires_grad_()
    values, indices = pool(xc, out, return_indices=True)
    grad = torch.randn_like(values)
    values.backward(grad)
    for decomposed in (False, True):
        xd = x.to(DEV).requires_grad_()
        before = fallbacks()
        if decomposed:
            with mps_ext.graph.decompositions():
                v, i = pool(xd, out, return_indices=True)
                v.backward(grad.to(DEV))
        else:
            v, i = pool(xd, out, return_indices=True)
            v.backward(grad.to(DEV))
        assert fallbacks() == before
        torch.testing.assert_close(v.cpu(), values, equal_nan=True)
        assert torch.equal(i.cpu(), indices)
        torch.testing.assert_close(xd.grad.cpu(), xc.grad)
    (_, doc, _), = mps_ext.graph.capture(lambda t: pool(t, out), x.to(DEV))
    kernels = {n["attrs"]["kernel"] for n in json.loads(doc)["nodes"] if n["op"] == "kernel"}
    assert kernels == ({"aten.adaptive_max_pool", "aten.adaptive_max_pool#1"} if dtype != torch.bfloat16 else set())


def test_pools_run_no_python_meta_kernel():
    """torch registers Python meta kernels for max_pool2d, avg_pool2d and the
    adaptive max pools; the device takes their checks and sizes from ATen's C++
    meta functions instead (~40 us a call less)."""
    import cProfile
    import pstats
    x = torch.randn(2, 3, 8, 8).to(DEV)
    profile = cProfile.Profile()
    profile.enable()
    F.avg_pool2d(x, 2)
    F.avg_pool3d(x.unsqueeze(0), 2)
    F.max_pool2d(x, 2)
    F.adaptive_max_pool2d(x, 3)
    F.adaptive_max_pool3d(x.unsqueeze(0), 3)
    profile.disable()
    called = {f"{name}" for (_, _, name) in pstats.Stats(profile).stats}
    assert not any(name.startswith("meta_") for name in called), sorted(called)


@pytest.mark.parametrize("fn", [
    lambda t: F.max_pool2d(t, 3, 2, 2),                 # padding > half the kernel
    lambda t: F.max_pool2d(t, 0),                       # kernel size 0
    lambda t: F.max_pool2d(t, 3, stride=0),             # zero stride
    lambda t: F.max_pool2d(t, 9),                       # output too small
    lambda t: F.avg_pool2d(t, 3, 2, 2),
    lambda t: F.avg_pool2d(t, 3, divisor_override=0),
    lambda t: F.avg_pool2d(t, 9),                       # output too small
    lambda t: F.avg_pool2d(t, (2, 2, 2)),               # kernel of the wrong length
    lambda t: F.avg_pool2d(t, 2, stride=0),
    lambda t: F.avg_pool3d(t, 2, 1, 2),                 # rank 4: unbatched 3-d; padding > half the kernel
    lambda t: F.avg_pool3d(t.unsqueeze(0), 9),
    lambda t: F.max_pool3d(t, 6),                       # rank 4 is an unbatched 3-d input: too small
    lambda t: F.adaptive_max_pool2d(t[0, 0], (2, 2)),   # rank 2
    lambda t: F.adaptive_max_pool2d(t, (2, 2, 2)),      # output_size of the wrong length
    lambda t: F.adaptive_max_pool3d(t[0, 0], 2),        # rank 2
    lambda t: F.adaptive_avg_pool3d(t[0], (2, 2)),      # output_size of the wrong length
])
def test_bad_arguments_raise_torchs_error(fn):
    x = torch.randn(1, 2, 5, 5)
    with pytest.raises(Exception) as cpu_err:
        fn(x)
    with pytest.raises(type(cpu_err.value)) as dev_err:
        fn(x.to(DEV))
    assert str(dev_err.value).split("\n")[0] == str(cpu_err.value).split("\n")[0]


# --- integer and bool bit ops ---------------------------------------------------------------
INTS = [torch.int64, torch.int32, torch.int8, torch.uint8]


@pytest.mark.parametrize("dtype", INTS + [torch.bool])
def test_bitwise(dtype):
    if dtype == torch.bool:
        a, b = torch.rand(4, 5) > 0.5, torch.rand(5) > 0.5
    else:
        info = torch.iinfo(dtype)
        a = torch.randint(max(info.min, -1000), min(info.max, 1000), (4, 5)).to(dtype)
        b = torch.randint(max(info.min, -1000), min(info.max, 1000), (5,)).to(dtype)  # broadcast
    check(lambda x, y: (x & y, x | y, x ^ y, ~x), a, b)
    check(lambda x, y: (torch.bitwise_and(x, 3), torch.bitwise_or(x, True if dtype == torch.bool else 6),
                        torch.bitwise_xor(x, y[:1])), a, b)
    check(lambda x, y: (x.t() & y[:4], (~x)[:, ::2]), a, b)  # non-contiguous
    out = a.to(DEV).clone()
    out &= b.to(DEV)
    torch.testing.assert_close(out.cpu(), a & b)


@pytest.mark.parametrize("dtype", INTS)
def test_shifts_match_torch_at_the_edges(dtype):
    bits = torch.iinfo(dtype).bits
    info = torch.iinfo(dtype)
    vals = torch.tensor([0, 1, -1, 5, -7, 100, info.min, info.max], dtype=torch.int64).clamp(info.min, info.max).to(dtype)
    amounts = [0, 1, 3, bits - 1, bits, bits + 5]
    if dtype != torch.uint8:
        amounts.append(-1)  # torch: 0 (left), the sign fill (right)
    a = vals.repeat_interleave(len(amounts))
    s = torch.tensor(amounts * len(vals), dtype=torch.int64).to(dtype)
    check(lambda x, y: (torch.bitwise_left_shift(x, y), torch.bitwise_right_shift(x, y)), a, s)
    check(lambda x: (x << 2, x >> 1, torch.bitwise_left_shift(x, 5)), a)
    x = a.to(DEV).clone()
    x <<= 1
    torch.testing.assert_close(x.cpu(), a << 1)


def test_bitwise_on_floats_raises_torchs_error():
    x = torch.randn(3)
    with pytest.raises(RuntimeError, match="not implemented for 'Float'"):
        torch.bitwise_and(x.to(DEV), x.to(DEV))


def test_int_overflow_wraps():
    a = torch.tensor([2**62, -(2**62), 2**31 - 1], dtype=torch.int64)
    check(lambda x: (x << 1, x << 2), a)
    b = torch.tensor([100, -100, 127], dtype=torch.int8)
    check(lambda x: (x << 1, x << 4), b)


def test_fused_elementwise_regions_skip_integer_bit_ops():
    """A bit op between float ops (the reference runtime fuses float chains) stays exact."""
    a = torch.randint(0, 1 << 20, (64,))
    check(lambda x: ((x.float() * 2).long() ^ 0x5555) >> 3, a)


# --- the mpsgraph lowering's pooling plan (pool_plan.h), emulated with torch ---------------
# MPSGraph cannot run here; what can be checked is the plan the lowering hands
# it: the rank-5 view, the 4-D descriptor's windows with explicit (extended)
# padding, and the average correction map. MPSGraph's documented semantics are
# emulated with plain torch (max over windows ignoring padding; average over
# the samples that come from the input), and plan + emulation must equal torch.
def _windows(x5, plan, fill):
    """x5 [N, C, D, H, W] padded per the plan, unfolded into windows [N, C, Do, Ho, Wo, kD*kH*kW]."""
    p = plan["padding"]  # before/after for C, D, H, W
    xp = F.pad(x5, (p[6], p[7], p[4], p[5], p[2], p[3]), value=fill)
    k, s, d = plan["kernel"][1:], plan["stride"][1:], plan["dilation"][1:]
    for dim in range(3):
        xp = xp.unfold(2 + dim, d[dim] * (k[dim] - 1) + 1, s[dim])[..., ::d[dim]]
    n, c, do, ho, wo = xp.shape[:5]
    return xp.reshape(n, c, do, ho, wo, -1)


def _plan(k, s, p, d, ceil, shape, avg=False, include=True, div=0):
    return mps_ext._C._pool_plan(k, s, p, d, ceil, list(shape), avg, include, div)


@pytest.mark.parametrize("spatial", [1, 2, 3])
@pytest.mark.parametrize("k,s,p,d,ceil", [(3, 2, 1, 1, False), (3, 2, 1, 1, True), (2, 3, 1, 2, True),
                                          (4, 3, 2, 1, True), (3, 1, 0, 2, False), (2, 2, 0, 1, True)])
def test_mpsgraph_plan_emulated_max(spatial, k, s, p, d, ceil):
    shape = (2, 3) + (9, 8, 7)[:spatial]
    x = torch.randn(shape, dtype=torch.float64)
    n = spatial
    plan = _plan([k] * n, [s] * n, [p] * n, [d] * n, ceil, shape)
    assert plan["in5"] == [2, 3] + [1] * (3 - n) + list(shape[2:])
    assert min(plan["padding"]) >= 0 and plan["kernel"][0] == 1
    win = _windows(x.reshape(plan["in5"]), plan, float("-inf"))
    got = win.amax(-1).reshape(plan["out5"])
    pool = {1: F.max_pool1d, 2: F.max_pool2d, 3: F.max_pool3d}[n]
    want = pool(x, k, s, p, d, ceil_mode=ceil)
    assert list(want.shape) == [2, 3] + plan["out5"][5 - n:]
    torch.testing.assert_close(got.reshape(want.shape), want)


@pytest.mark.parametrize("spatial", [1, 2, 3])
@pytest.mark.parametrize("k,s,p,ceil,include,div", [(3, 2, 1, False, True, 0), (3, 2, 1, True, True, 0),
                                                    (3, 2, 1, True, False, 0), (4, 3, 2, True, True, 0),
                                                    (3, 2, 1, False, True, 5), (2, 3, 1, True, False, 3)])
def test_mpsgraph_plan_emulated_avg(spatial, k, s, p, ceil, include, div):
    shape = (2, 3) + (9, 8, 7)[:spatial]
    x = torch.randn(shape, dtype=torch.float64)
    n = spatial
    plan = _plan([k] * n, [s] * n, [p] * n, [1] * n, ceil, shape, True, include, div)
    x5 = x.reshape(plan["in5"])
    sums = _windows(x5, plan, 0.0).sum(-1)
    counts = _windows(torch.ones_like(x5), plan, 0.0).sum(-1)  # includeZeroPadToAverage = NO
    mean = sums / counts
    corr = torch.tensor(plan["correction"], dtype=torch.float64).reshape(plan["out5"][2:])
    got = mean * corr
    pool = {1: F.avg_pool1d, 2: F.avg_pool2d, 3: F.avg_pool3d}[n]
    kwargs = {} if n == 1 else {"divisor_override": div or None}
    if n == 1 and div:
        pytest.skip("avg_pool1d has no divisor_override")
    want = pool(x, k, s, p, ceil, include, **kwargs)
    torch.testing.assert_close(got.reshape(want.shape), want, rtol=1e-6, atol=1e-7)  # the map is float32


# --- integer floor_divide / remainder ---------------------------------------------------------
@pytest.mark.parametrize("dtype", INTS)
def test_integer_floor_divide_and_remainder(dtype):
    info = torch.iinfo(dtype)
    lo, hi = max(info.min, -120), min(info.max, 120)
    a = torch.randint(lo, hi, (6, 7)).to(dtype)
    b = torch.randint(lo, hi, (7,)).to(dtype)
    b[b == 0] = 3
    check(lambda x, y: (torch.floor_divide(x, y), torch.remainder(x, y), x // y, x % y), a, b)  # signs of both
    check(lambda x: (x // 4, x % 4, torch.remainder(x, 7)), a)
    if dtype != torch.uint8:
        check(lambda x: (x // -3, x % -3), a)
    edge = torch.tensor([info.min, info.max, -1, 1, 0], dtype=torch.int64).clamp(info.min, info.max).to(dtype)
    check(lambda x: (x // 5, x % 5, x // 1), edge)


def test_integer_division_by_zero_raises_like_the_cpu():
    a = torch.tensor([1, 2, 3])
    z = torch.tensor([1, 0, 1])
    for fn in [torch.floor_divide, torch.remainder]:
        with pytest.raises(RuntimeError, match="ZeroDivisionError"):
            fn(a, z)
        with pytest.raises(RuntimeError, match="ZeroDivisionError"):
            fn(a.to(DEV), z.to(DEV)).cpu()
