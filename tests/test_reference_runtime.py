"""The reference runtime: fused elementwise regions must equal node-by-node ATen."""
import pytest
import torch

from mps_ext._C import Graph, _fusion_plan, _run_reference

UNARY = ["identity", "abs", "negative", "sign", "exp", "log", "sqrt", "rsqrt", "reciprocal",
         "square", "sin", "cos", "tanh", "sigmoid", "floor", "ceil", "round"]
BINARY = ["add", "subtract", "multiply", "divide", "maximum", "minimum", "power"]
COMPARE = ["equal", "not_equal", "less", "less_equal", "greater", "greater_equal"]
DTYPES = [torch.float32, torch.float64, torch.float16, torch.bfloat16]


def values(shape, dtype):
    x = torch.randn(shape) * 3
    flat = x.view(-1)
    special = torch.tensor([0.0, -0.0, 2.5, -2.5, float("nan"), float("inf"), -float("inf")])
    flat[: min(len(special), flat.numel())] = special[: flat.numel()]
    return x.to(dtype)


def run_both(g, inputs):
    fused = _run_reference(g, inputs, fuse=True)
    unfused = _run_reference(g, inputs, fuse=False)
    return fused, unfused


def close(a, b, dtype):
    # Fused regions compute reduced-precision dtypes in float32 (like ATen's
    # opmath), node-by-node rounds after every op: allow a couple of rounding steps.
    tol = {torch.float16: 5e-3, torch.bfloat16: 3e-2}.get(dtype, 1e-6 if dtype == torch.float32 else 1e-12)
    torch.testing.assert_close(a, b, rtol=tol, atol=tol, equal_nan=True)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("op", UNARY)
def test_unary_chain_fused_equals_aten(op, dtype):
    g = Graph()
    x = g.placeholder([-1, -1], dtype, "x")
    y = g.unary(op, g.unary("negative", x))  # two nodes (the first exact): one region
    g.output(y)
    assert _fusion_plan(g) == [[1, 2]]
    fused, unfused = run_both(g, [values((37, 41), dtype)])
    close(fused[0], unfused[0], dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("op", BINARY + COMPARE)
def test_binary_fused_equals_aten(op, dtype):
    g = Graph()
    a = g.placeholder([-1], dtype, "a")
    b = g.placeholder([-1], dtype, "b")
    s = g.placeholder([], dtype, "s")
    r1 = g.binary(op, a, b)
    r2 = g.binary(op, a, s)  # uniform (broadcast scalar) operand
    r3 = g.binary(op, s, b)
    for r in (r1, r2, r3):
        g.output(r)
    a_val, b_val = values((1003,), dtype), values((1003,), dtype).flip(0)
    fused, unfused = run_both(g, [a_val, b_val, torch.tensor(1.5, dtype=dtype)])
    for f, u in zip(fused, unfused):
        assert f.dtype == u.dtype
        close(f, u, dtype)


def test_select_logic_and_casts():
    g = Graph()
    x = g.placeholder([-1], torch.float16, "x")
    xf = g.cast(x, torch.float32)
    p = g.binary("logical_or", g.unary("isnan", xf), g.binary("greater", xf, g.constant(1.0, torch.float32)))
    y = g.select(g.unary("logical_not", p), xf, g.constant(-7.0, torch.float32))
    g.output(g.cast(y, torch.float16))
    g.output(p)  # a bool output of the region
    assert len(_fusion_plan(g)) == 1
    x_val = values((513,), torch.float16)
    fused, unfused = run_both(g, [x_val])
    assert torch.equal(fused[0], unfused[0]) and torch.equal(fused[1], unfused[1])


@pytest.mark.parametrize(
    "a_shape, b_shape",
    [((4, 1), (1, 5)), ((3, 1, 2), (2,)), ((6,), (1,)), ((0, 3), (1, 3)), ((2, 3), (2, 3))],
)
def test_broadcasting_regions(a_shape, b_shape):
    g = Graph()
    a = g.placeholder([-1] * len(a_shape), torch.float32, "a")
    b = g.placeholder([-1] * len(b_shape), torch.float32, "b")
    t = g.binary("multiply", a, g.constant(2.0, torch.float32))
    g.output(g.binary("add", t, b))
    g.output(t)  # a region output narrower than the iteration space
    a_val, b_val = torch.randn(a_shape), torch.randn(b_shape)
    fused, unfused = run_both(g, [a_val, b_val])
    torch.testing.assert_close(fused[0], a_val * 2 + b_val)
    torch.testing.assert_close(fused[1], a_val * 2)
    assert [f.shape for f in fused] == [u.shape for u in unfused]


def test_non_contiguous_inputs():
    g = Graph()
    x = g.placeholder([-1, -1], torch.float32, "x")
    g.output(g.unary("exp", g.unary("negative", x)))
    base = torch.randn(30, 40)
    for view in (base.t(), base[::2, 1::3], base[:, :1].expand(30, 9)):
        torch.testing.assert_close(_run_reference(g, [view])[0], torch.exp(-view))


def test_structural_and_reduction_nodes_match_aten():
    g = Graph()
    x = g.placeholder([2, 3, 4], torch.float32, "x")
    w = g.placeholder([4, 5], torch.float32, "w")
    g.output(g.softmax(g.matmul(x, w), -1))
    g.output(g.reduce("reduce_max", g.transpose(x, [2, 0, 1]), [0]))
    g.output(g.slice(x, [0, 1, 0], [2, 3, 4], [1, 1, 2]))
    upd = g.placeholder([2, 1, 4], torch.float32, "u")
    g.output(g.slice_update(x, upd, [0, 0, 0], [2, 1, 4], [1, 1, 1]))
    g.output(g.concat([x, x], 1))
    g.output(g.reduce("reduce_prod", x, [0, 2]))
    g.output(g.reduce("reduce_mean", x, [1]))
    xv, wv, uv = torch.randn(2, 3, 4), torch.randn(4, 5), torch.randn(2, 1, 4)
    out = _run_reference(g, [xv, wv, uv])
    torch.testing.assert_close(out[0], torch.softmax(xv @ wv, -1))
    torch.testing.assert_close(out[1], xv.permute(2, 0, 1).amax(0, keepdim=True))
    torch.testing.assert_close(out[2], xv[:, 1:3, ::2])
    expected = xv.clone()
    expected[:, :1] = uv
    torch.testing.assert_close(out[3], expected)
    torch.testing.assert_close(out[4], torch.cat([xv, xv], 1))
    torch.testing.assert_close(out[5], xv.prod(0, keepdim=True).prod(2, keepdim=True))
    torch.testing.assert_close(out[6], xv.mean(1, keepdim=True))
    assert out[2].data_ptr() != xv.data_ptr()  # results never alias inputs


def test_variable_assign_updates_in_place():
    g = Graph()
    cache = g.variable([2, 4], torch.float32, "cache")
    new = g.placeholder([2, 1], torch.float32, "new")
    g.assign(cache, g.slice_update(cache, new, [0, 2], [2, 3], [1, 1]))
    c, n = torch.zeros(2, 4), torch.ones(2, 1)
    _run_reference(g, [c, n])
    assert c[:, 2].eq(1).all() and c.sum() == 2


def test_softshrink_is_one_fused_region():
    # The graph ops/softshrink.cpp builds: everything after the placeholders
    # runs as one pass; the -lambd node is computed once, not streamed.
    g = Graph()
    x = g.placeholder([-1], torch.float32, "self")
    lam = g.placeholder([], torch.float32, "lambd")
    neg = g.unary("negative", lam)
    clamped = g.binary("maximum", g.binary("minimum", x, lam), neg)
    g.output(g.binary("subtract", x, clamped))
    assert _fusion_plan(g) == [[2, 3, 4, 5]]
    xv = torch.tensor([-2.0, -0.5, -0.1, 0.0, 0.3, 0.5, 0.7, float("nan"), float("inf")])
    out = _run_reference(g, [xv, torch.tensor(0.5)])[0]
    torch.testing.assert_close(out, torch.nn.functional.softshrink(xv, 0.5), equal_nan=True)


@pytest.mark.parametrize("order", ["min-then-max", "max-then-min"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
def test_clamp_peephole(order, dtype):
    g = Graph()
    x = g.placeholder([-1], dtype, "x")
    lo = g.placeholder([], dtype, "lo")
    hi = g.placeholder([], dtype, "hi")
    if order == "min-then-max":
        y = g.binary("maximum", g.binary("minimum", x, hi), lo)
    else:
        y = g.binary("minimum", g.binary("maximum", x, lo), hi)
    g.output(g.binary("multiply", y, y))
    xv = values((999,), dtype)
    inputs = [xv, torch.tensor(-0.5, dtype=dtype), torch.tensor(0.75, dtype=dtype)]
    fused, unfused = run_both(g, inputs)
    expected = torch.clamp(xv.float(), -0.5, 0.75).square().to(dtype)
    torch.testing.assert_close(fused[0], expected, equal_nan=True)
    close(fused[0], unfused[0], dtype)


def test_clamp_peephole_keeps_a_shared_intermediate():
    g = Graph()
    x = g.placeholder([-1], torch.float32, "x")
    hi = g.constant(1.0, torch.float32)
    m = g.binary("minimum", x, hi)  # also an output: must not vanish into the clamp
    g.output(g.binary("maximum", m, g.constant(-1.0, torch.float32)))
    g.output(m)
    xv = torch.randn(300) * 3
    out = _run_reference(g, [xv])
    torch.testing.assert_close(out[0], xv.clamp(-1, 1))
    torch.testing.assert_close(out[1], xv.clamp(max=1))


def test_large_results_are_correct_on_huge_pages():
    # >= 32 MiB results take the huge-page allocator path.
    x = torch.randn(9 << 20)
    y = torch.ops.mps_ext.softshrink(x, 0.5)
    assert y.is_contiguous() and y.device.type == "cpu"
    torch.testing.assert_close(y, torch.nn.functional.softshrink(x, 0.5))
    y.resize_(10)  # storage from another allocator still behaves like any CPU tensor
    del y
