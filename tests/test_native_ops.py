"""Native aten ops on the mpsgraph device (csrc/ops/aten/): every case runs on
the device and on the CPU, must agree, and must not touch the CPU fallback
(torch.ops.mps_ext._fallback_count() unchanged: the MPS_EXT_FALLBACK=error
contract). Training runs in a subprocess with MPS_EXT_FALLBACK=error."""
import os
import pathlib
import subprocess
import sys
import textwrap

import pytest
import torch
import torch.nn.functional as F

import mps_ext  # noqa: F401
from conftest import supports_dtype

DEV = "mpsgraph"
ROOT = pathlib.Path(__file__).resolve().parents[1]


def fallbacks():
    return torch.ops.mps_ext._fallback_count()


def to_dev(v):
    if isinstance(v, torch.Tensor):
        return v.to(DEV)
    if isinstance(v, (list, tuple)):
        return type(v)(to_dev(e) for e in v)
    return v


def check(fn, *args, native=True, atol=None, rtol=None):
    """fn on CPU vs on the device; no fallback when `native`."""
    expected = fn(*args)
    before = fallbacks()
    got = fn(*to_dev(args))
    if native:
        assert fallbacks() == before, "the op fell back to the CPU"
    exp = expected if isinstance(expected, (tuple, list)) else [expected]
    res = got if isinstance(got, (tuple, list)) else [got]
    for e, r in zip(exp, res):
        assert r.device.type == DEV
        torch.testing.assert_close(r.cpu(), e, atol=atol, rtol=rtol, equal_nan=True)


def rnd(*shape, dtype=torch.float32):
    return torch.randn(*shape).to(dtype)


UNARY = ["abs", "neg", "sign", "floor", "ceil", "round", "trunc", "frac", "exp", "expm1", "log", "log2", "log10",
         "log1p", "sqrt", "rsqrt", "reciprocal", "sin", "cos", "tan", "sinh", "cosh", "tanh", "sigmoid", "erf",
         "relu", "isnan", "isinf", "isposinf", "isneginf", "isfinite", "logical_not"]


@pytest.mark.parametrize("name", UNARY)
def test_unary(name):
    fn = getattr(torch, name)
    x = rnd(3, 5)
    if name in ("log", "log2", "log10", "sqrt", "rsqrt", "log1p"):
        x = x.abs() + 0.1
    check(fn, x)
    check(fn, x.t())          # non-contiguous
    check(fn, torch.empty(0, 3))  # empty


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16, torch.float64, torch.int64, torch.bool])
def test_infinity_and_nan_tests(dtype):
    x = torch.tensor([0.0, -0.0, 1.0, -float("inf"), float("inf"), float("nan"), -3.0])
    x = x.to(dtype) if dtype.is_floating_point else x.nan_to_num(5.0, 9.0, -9.0).to(dtype)
    for fn in (torch.isposinf, torch.isneginf, torch.isinf, torch.isnan, torch.isfinite):
        check(fn, x)
        check(fn, x.view(1, -1).expand(3, -1).t())  # broadcast, non-contiguous


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16, torch.float64, torch.int64])
@pytest.mark.parametrize("kw", [{}, {"nan": 2.5}, {"posinf": 1e5, "neginf": -0.25}, {"nan": 0.1, "posinf": 3.0, "neginf": -3.0}])
def test_nan_to_num(dtype, kw):
    # The defaults are the result dtype's own finite extremes (65504 in float16).
    x = torch.tensor([0.0, -0.0, 1.5, -float("inf"), float("inf"), float("nan"), -3.0, 7e4])
    x = x.to(dtype) if dtype.is_floating_point else x.nan_to_num(5.0, 9.0, -9.0).to(dtype)
    check(lambda t: torch.nan_to_num(t, **kw), x)
    check(lambda t: torch.nan_to_num(t, **kw), x.view(2, 4).t())
    check(lambda t: t.clone().nan_to_num_(**kw), x)
    check(lambda t: torch.nan_to_num(t, **kw, out=torch.empty(0, dtype=dtype, device=t.device)), x)


DIVISIONS = {"fmod": torch.fmod, "remainder": torch.remainder, "floor_divide": torch.floor_divide,
             "div_floor": lambda a, b: torch.div(a, b, rounding_mode="floor"),
             "div_trunc": lambda a, b: torch.div(a, b, rounding_mode="trunc"),
             "remainder_": lambda a, b: a.clone().remainder_(b), "fmod_row": lambda a, b: torch.fmod(a, b[:1])}


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16])
@pytest.mark.parametrize("name", list(DIVISIONS))
def test_float_division_semantics(dtype, name):
    # torch's (Python's) rules: the quotient from an exact fmod (1 // 0.1 == 9),
    # x % inf and x // inf, zero signs, division by zero. Bit for bit on the
    # reference runtime; the decomposition (MPSGraph's) agrees where the
    # quotient is not huge.
    fn = DIVISIONS[name]
    v = torch.tensor([0.0, -0.0, 1.0, -1.0, 2.5, -7.0, 3.0, 0.1, -5.5, 1e7, float("inf"), -float("inf"), float("nan")])
    a, b = v.view(-1, 1).expand(13, 13).to(dtype), v.view(1, -1).expand(13, 13).to(dtype)
    expected = fn(a, b)
    before = fallbacks()
    got = fn(a.to(DEV), b.to(DEV)).cpu()
    assert fallbacks() == before
    same = (got.isnan() & expected.isnan()) | ((got == expected) & (got.signbit() == expected.signbit()))
    assert same.all(), (a[~same], b[~same], expected[~same], got[~same])
    moderate = (a.abs() < 1e3) & (b.abs() >= 0.5) | b.isinf() | (b == 0)
    with mps_ext.graph.decompositions():
        approx = fn(a.to(DEV), b.to(DEV)).cpu()
    torch.testing.assert_close(approx[moderate], expected[moderate], equal_nan=True)


def test_hypot_and_lerp():
    v = torch.tensor([0.0, 3.0, -4.0, 1e-30, 1e30, float("inf"), float("nan")])
    a, b = v.view(-1, 1).expand(7, 7), v.view(1, -1).expand(7, 7)
    check(torch.hypot, a, b, rtol=2e-7, atol=0)  # no overflow or underflow in the squares
    for d in ("cpu", DEV):  # integers: torch's own error (the CPU fallback raises it)
        with pytest.raises(NotImplementedError, match="not implemented for 'Long'"):
            torch.hypot(torch.tensor([3], device=d), torch.tensor([4], device=d))
        with pytest.raises(NotImplementedError, match="not implemented for 'Long'"):
            torch.lerp(torch.tensor([3], device=d), torch.tensor([4], device=d), 0.5)


ACCURATE = [torch.log1p, torch.expm1, torch.sinh, F.elu, F.selu, lambda t: F.celu(t, 0.5), F.softplus, F.logsigmoid, F.mish,
            lambda t: torch.logaddexp(t, t.flip(0)), lambda t: torch.logaddexp2(t, -t)]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("i", range(len(ACCURATE)))
def test_no_cancellation_near_zero(dtype, i):
    # log(1 + x), exp(x) - 1, log(1 + exp(z)) written naively lose every digit
    # for tiny x (log1p(1e-10) came out 0): relative error against float64
    # truth within a few ulps of the dtype, and never much worse than torch's.
    fn = ACCURATE[i]
    vals = [1e-10, -3e-8, 1e-5, -1e-3, 0.5, -0.5, 0.0, -0.0, -1.0, 30.0, -30.0, 88.0, -100.0, 1e30,
            float("inf"), -float("inf"), float("nan")]
    x = torch.tensor(vals, dtype=torch.float64).to(dtype)
    before = fallbacks()
    got = fn(x.to(DEV)).cpu().double()
    assert fallbacks() == before
    truth, cpu = fn(x.double()).to(dtype).double(), fn(x).double()  # truth rounded to the dtype
    exact = (got == truth) | (got.isnan() & truth.isnan())
    finite = truth.isfinite() & (truth != 0)  # zeros and infinities must come out exactly
    rel = (got - truth).abs() / truth.abs()
    bound = torch.maximum(4 * (cpu - truth).abs() / truth.abs(), torch.tensor(4 * torch.finfo(dtype).eps))
    assert (exact | (finite & (rel <= bound))).all(), (got, truth)


ACTIVATIONS = [
    ("gelu", lambda x: F.gelu(x)), ("gelu_tanh", lambda x: F.gelu(x, approximate="tanh")), ("silu", F.silu),
    ("mish", F.mish), ("softplus", lambda x: F.softplus(x, beta=2.0, threshold=3.0)), ("elu", F.elu),
    ("selu", F.selu), ("celu", F.celu), ("leaky_relu", lambda x: F.leaky_relu(x, 0.1)), ("hardtanh", F.hardtanh),
    ("relu6", F.relu6), ("hardsigmoid", F.hardsigmoid), ("hardswish", F.hardswish),
    ("threshold", lambda x: F.threshold(x, 0.2, -1.0)), ("hardshrink", F.hardshrink), ("softshrink", F.softshrink),
]


@pytest.mark.parametrize("name,fn", ACTIVATIONS, ids=[a[0] for a in ACTIVATIONS])
def test_activation_and_backward(name, fn):
    x = rnd(4, 6) * 3
    check(fn, x)
    xc = x.clone().requires_grad_()
    xd = x.to(DEV).requires_grad_()
    g = rnd(4, 6)
    fn(xc).backward(g)
    before = fallbacks()
    fn(xd).backward(g.to(DEV))
    assert fallbacks() == before
    torch.testing.assert_close(xd.grad.cpu(), xc.grad)


BINARY = [torch.add, torch.sub, torch.mul, torch.div, torch.maximum, torch.minimum, torch.pow, torch.eq, torch.ne,
          torch.lt, torch.le, torch.gt, torch.ge, torch.fmax, torch.fmin, torch.hypot, torch.remainder, torch.fmod,
          torch.logical_and, torch.logical_or, torch.logical_xor, torch.xlogy,
          lambda a, b: torch.add(a, b, alpha=0.5), lambda a, b: torch.rsub(a, b),
          lambda a, b: torch.div(a, b, rounding_mode="floor"), lambda a, b: torch.div(a, b, rounding_mode="trunc")]


@pytest.mark.parametrize("fn", BINARY)
def test_binary_broadcast(fn):
    a, b = rnd(3, 1, 4), rnd(5, 1).abs() + 0.5
    check(fn, a, b)
    try:
        fn(a, 2.5)
    except TypeError:  # this op takes no Scalar operand
        pass
    else:
        check(fn, a, 2.5)                  # Scalar operand
    check(fn, a.transpose(0, 2), rnd(3))   # non-contiguous + broadcast


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64, torch.int64, torch.int32])
def test_type_promotion(dtype):
    if not supports_dtype(DEV, dtype):
        pytest.skip("no float64 on MPSGraph")
    a = (torch.randn(4, 3) * 4).to(dtype)
    check(torch.add, a, rnd(3), atol=1e-2, rtol=1e-2)   # promotes with float32
    check(torch.mul, a, 3)
    check(torch.eq, a, a)
    check(torch.div, a, torch.full((3,), 2).to(dtype), atol=1e-2, rtol=1e-2)  # integer true division -> float
    check(lambda t: t.sum(), a, atol=1e-1, rtol=1e-2)


def test_ternary_and_masks():
    c = torch.rand(3, 4) > 0.5
    a, b = rnd(3, 4), rnd(4)
    check(torch.where, c, a, b)
    check(lambda x, m: x.masked_fill(m, -1.5), a, c)
    check(lambda x: torch.clamp(x, -0.5, 0.5), a)
    check(lambda x, lo: torch.clamp(x, min=lo), a, b)
    check(torch.lerp, a, b.expand(3, 4), 0.3)
    check(lambda x, y: torch.lerp(x, y, 0.8), a, b.expand(3, 4))
    check(lambda x, y, z: torch.addcmul(x, y, z, value=0.5), a, b, a)
    check(lambda x, y, z: torch.addcdiv(x, y, z.abs() + 1, value=2), a, b, a)


def test_inplace_and_out():
    a, b = rnd(3, 4), rnd(4)
    check(lambda x, y: x.clone().add_(y, alpha=2), a, b)
    check(lambda x: x.clone().mul_(3).sigmoid_(), a)
    check(lambda x: x.t().clone().t().exp_(), a)  # in-place on a non-contiguous tensor
    check(lambda x, y: torch.add(x, y, out=torch.empty(0, device=x.device)), a, b)
    check(lambda x: x.clone().fill_(2.5), a)
    check(lambda x: x.clone().zero_(), a)
    x = a.to(DEV)
    with pytest.raises(RuntimeError, match="doesn't match the broadcast shape"):
        x[:1].add_(x)
    with pytest.raises(RuntimeError, match="can't be cast"):
        torch.ones(3, dtype=torch.long, device=DEV).add_(0.5)
    # an operand overlapping the output with another layout is read before it is written
    sq = rnd(4, 4)
    check(lambda t: t.clone().add_(t.clone().t()), sq)
    check(lambda t: t.clone().mul_(t[0]), sq)


def test_factories():
    before = fallbacks()
    for t in [torch.zeros(2, 3, device=DEV), torch.ones(4, device=DEV), torch.full((2, 2), 7.0, device=DEV),
              torch.arange(5, device=DEV), torch.arange(1.0, 2.0, 0.25, device=DEV), torch.zeros_like(rnd(3).to(DEV))]:
        assert t.device.type == DEV
    assert fallbacks() == before
    torch.testing.assert_close(torch.arange(1.0, 2.0, 0.25, device=DEV).cpu(), torch.arange(1.0, 2.0, 0.25))
    torch.testing.assert_close(torch.arange(3, 17, 4, device=DEV).cpu(), torch.arange(3, 17, 4))


REDUCTIONS = [
    lambda x: x.sum(), lambda x: x.sum(1), lambda x: x.sum((0, 2), keepdim=True), lambda x: x.mean(-1),
    lambda x: x.amax(1), lambda x: x.amin((0, 1)), lambda x: x.max(), lambda x: x.min(), lambda x: x.max(1),
    lambda x: x.min(2, keepdim=True), lambda x: x.argmax(), lambda x: x.argmax(1), lambda x: x.argmin(0),
    lambda x: x.var(1), lambda x: x.std(), lambda x: x.var(2, correction=0), lambda x: x.norm(),
    lambda x: torch.linalg.vector_norm(x, 1, dim=1), lambda x: torch.linalg.vector_norm(x, float("inf")),
    lambda x: (x > 0).any(), lambda x: (x > 0).all(1), lambda x: x.cumsum(1), lambda x: x.cumsum(0),
    lambda x: torch.var_mean(x, 1), lambda x: torch.std_mean(x, (0, 2), correction=0, keepdim=True),
    lambda x: torch.var_mean(x), lambda x: torch.aminmax(x), lambda x: torch.aminmax(x, dim=1, keepdim=True),
    lambda x: torch.aminmax(x, dim=-1),
]


@pytest.mark.parametrize("i", range(len(REDUCTIONS)))
def test_reductions(i):
    fn = REDUCTIONS[i]
    x = rnd(3, 4, 5)
    check(fn, x, atol=1e-5, rtol=1e-5)
    check(fn, x.transpose(0, 2).contiguous().transpose(0, 2), atol=1e-5, rtol=1e-5)


EDGE_REDUCTIONS = [
    lambda t: t.sum(), lambda t: t.sum(0), lambda t: t.sum(1, keepdim=True), lambda t: t.mean(0), lambda t: t.mean(),
    lambda t: t.prod(1), lambda t: (t > 0).any(0), lambda t: (t > 0).all(), lambda t: torch.count_nonzero(t, 1),
    lambda t: torch.nansum(t), lambda t: torch.nansum(t, 1), lambda t: torch.nansum(t.long(), 0),
    lambda t: torch.nansum(t, 0, dtype=torch.float64), torch.trace, lambda t: t.cumsum(1), lambda t: t.long().cumsum(0),
    lambda t: (t > 0).cumsum(1), lambda t: t.int().cumsum(1, dtype=torch.int32), lambda t: t.flatten()[:1].sum(0).cumsum(0),  # 0-d
    lambda t: t.roll(1, 0), F.logsigmoid,
]


@pytest.mark.parametrize("i", range(len(EDGE_REDUCTIONS)))
def test_reductions_of_empty_integer_and_nan_inputs(i):
    # Empty inputs give the identity (0, 1, NaN for mean), NaN counts as 0 in
    # nansum, integer scans run natively on the reference runtime.
    x = rnd(4, 5)
    x[1, 2] = float("nan")
    for t in (x, torch.empty(0, 5), torch.empty(4, 0)):
        check(EDGE_REDUCTIONS[i], t)


def test_max_nan():
    x = rnd(3, 4)
    x[1, 2] = float("nan")
    check(lambda t: t.max(1), x)
    check(lambda t: t.amax(), x)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.int64, torch.bool])
def test_count_nonzero(dtype):
    # NaN counts, -0.0 does not; dims wrap; an empty input counts zero per slice.
    x = torch.tensor([[0.0, 1.5, float("nan")], [-0.0, -2.0, 0.0]]).repeat(2, 2)
    x = x.nan_to_num(3.0).to(dtype) if not dtype.is_floating_point else x.to(dtype)
    for fn in [torch.count_nonzero, lambda t: torch.count_nonzero(t, 0), lambda t: torch.count_nonzero(t, (-1, 0)),
               lambda t: torch.count_nonzero(t.t(), 1), lambda t: torch.count_nonzero(t[:0], 1),
               lambda t: torch.count_nonzero(t[:0])]:
        check(fn, x)
    with pytest.raises(RuntimeError, match="appears multiple times"):
        torch.count_nonzero(x.to(DEV), (0, 0))


MATMUL = [
    (torch.mm, (rnd(3, 4), rnd(4, 5))), (torch.bmm, (rnd(2, 3, 4), rnd(2, 4, 5))),
    (lambda c, a, b: torch.addmm(c, a, b, beta=0.5, alpha=2), (rnd(5), rnd(3, 4), rnd(4, 5))),
    (torch.baddbmm, (rnd(2, 3, 5), rnd(2, 3, 4), rnd(2, 4, 5))), (torch.dot, (rnd(6), rnd(6))),
    (torch.mv, (rnd(3, 4), rnd(4))), (torch.addmv, (rnd(3), rnd(3, 4), rnd(4))),
    (torch.matmul, (rnd(2, 3, 4), rnd(4, 5))), (F.linear, (rnd(3, 4), rnd(5, 4), rnd(5))),
    (lambda a, b: a.t() @ b, (rnd(4, 3), rnd(4, 5))),
]


@pytest.mark.parametrize("i", range(len(MATMUL)))
def test_matmul_family(i):
    fn, args = MATMUL[i]
    check(fn, *args, atol=1e-5, rtol=1e-5)


def test_matmul_errors():
    with pytest.raises(RuntimeError, match="cannot be multiplied"):
        torch.mm(torch.ones(2, 3, device=DEV), torch.ones(4, 2, device=DEV))
    with pytest.raises(RuntimeError, match="expanded size"):  # torch's words for a bias that does not broadcast
        torch.addmm(torch.ones(3, device=DEV), torch.ones(4, 5, device=DEV), torch.ones(5, 8, device=DEV))


@pytest.mark.parametrize("bias_shape", [(8,), (1, 8), (4, 1), (), (4, 8)])
@pytest.mark.parametrize("beta, alpha", [(1, 1), (0.5, 2), (0, 1)])
@pytest.mark.parametrize("k", [5, 0])
def test_addmm_broadcasts_its_bias(bias_shape, beta, alpha, k):
    # The bias enters the graph as it is (a Linear's [n]); beta=0 ignores it, NaN included.
    bias = torch.randn(bias_shape) if beta else torch.full(bias_shape, float("nan"))
    check(lambda c, a, b: torch.addmm(c, a, b, beta=beta, alpha=alpha), bias, rnd(4, k), rnd(k, 8), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_softmax_layer_norm_with_backward(dtype):
    tol = dict(atol=1e-2, rtol=1e-2) if dtype == torch.float16 else {}
    x = rnd(4, 7, dtype=dtype)
    w, b = rnd(7, dtype=dtype), rnd(7, dtype=dtype)
    fns = [lambda t: F.softmax(t, -1), lambda t: F.log_softmax(t, 0),
           lambda t: F.layer_norm(t, (7,), w.to(t.device), b.to(t.device)), lambda t: F.layer_norm(t, (4, 7))]
    for fn in fns:
        check(fn, x, **tol)
        xc, xd = x.clone().requires_grad_(), x.to(DEV).requires_grad_()
        fn(xc).square().sum().backward()
        before = fallbacks()
        fn(xd).square().sum().backward()
        assert fallbacks() == before
        torch.testing.assert_close(xd.grad.cpu(), xc.grad, **tol)


@pytest.mark.parametrize("kw", [{}, {"label_smoothing": 0.1}, {"reduction": "sum"}, {"reduction": "none"},
                                {"ignore_index": 2}, {"weight": "w"}])
def test_cross_entropy_and_backward(kw):
    kw = dict(kw)
    if kw.get("weight") == "w":
        kw["weight"] = torch.rand(5) + 0.5
    x, t = rnd(6, 5), torch.tensor([0, 2, 4, 1, 2, 3])
    xc = x.clone().requires_grad_()
    xd = x.to(DEV).requires_grad_()
    kd = {k: to_dev(v) for k, v in kw.items()}
    lc = F.cross_entropy(xc, t, **kw)
    before = fallbacks()
    ld = F.cross_entropy(xd, t.to(DEV), **kd)
    ld.sum().backward()
    assert fallbacks() == before
    lc.sum().backward()
    torch.testing.assert_close(ld.cpu(), lc)
    torch.testing.assert_close(xd.grad.cpu(), xc.grad)


@pytest.mark.parametrize("red", ["mean", "sum", "none"])
def test_mse_loss_and_backward(red):
    x, t = rnd(3, 4), rnd(3, 4)
    xc, xd = x.clone().requires_grad_(), x.to(DEV).requires_grad_()
    F.mse_loss(xc, t, reduction=red).sum().backward()
    before = fallbacks()
    F.mse_loss(xd, t.to(DEV), reduction=red).sum().backward()
    assert fallbacks() == before
    torch.testing.assert_close(xd.grad.cpu(), xc.grad)


def test_embedding_index_select_cat_tril():
    w, idx = rnd(10, 4), torch.tensor([[1, 3, 3], [9, 0, 1]])
    wc, wd = w.clone().requires_grad_(), w.to(DEV).requires_grad_()
    F.embedding(idx, wc, padding_idx=3).square().sum().backward()
    before = fallbacks()
    out = F.embedding(idx.to(DEV), wd, padding_idx=3)
    out.square().sum().backward()
    assert fallbacks() == before
    torch.testing.assert_close(wd.grad.cpu(), wc.grad)
    check(lambda a, i: a.index_select(1, i), rnd(3, 5), torch.tensor([4, 0, 0]))
    check(lambda a, b: torch.cat([a, b], 1), rnd(2, 3), rnd(2, 1))
    check(lambda a, b: torch.stack([a, b]), rnd(2, 3), rnd(2, 3))
    check(lambda a: torch.tril(a, -1), rnd(2, 4, 4))
    check(lambda a: torch.roll(a, (1, -2), (0, 1)), rnd(3, 5))
    check(lambda a: torch.flip(a, (0, 2)), rnd(3, 2, 4))
    check(lambda a, i: torch.gather(a, 1, i), rnd(3, 5), torch.tensor([[0, 4], [1, 1], [3, 2]]))
    check(lambda a, i: torch.gather(a, 0, i), rnd(3, 2), torch.tensor([[2, 0], [1, 1]]).expand(2, 2).contiguous()[:, :].t().contiguous()[:2])
    check(lambda a: torch.triu(a, 1), rnd(3, 5))
    with pytest.raises(IndexError, match="index out of range"):
        rnd(3, 2).to(DEV).index_select(0, torch.tensor([5], device=DEV))


def test_foreach_ops():
    xs = [rnd(3), rnd(2, 2)]
    ys = [rnd(3), rnd(2, 2)]
    for fn in [lambda a, b: torch._foreach_add(a, b, alpha=0.5), lambda a, b: torch._foreach_mul(a, 2.0),
               lambda a, b: torch._foreach_lerp(a, b, 0.1), lambda a, b: torch._foreach_addcmul(a, b, b, value=0.3),
               lambda a, b: torch._foreach_sqrt([t.abs() for t in a]), lambda a, b: torch._foreach_norm(a)]:
        check(fn, xs, ys)


@pytest.mark.parametrize("case", ["same_shapes", "mixed_shapes", "mixed_dtypes", "strided", "duplicate", "alias"])
def test_foreach_inplace_lists_match_the_per_element_loop(case):
    # A list runs as one graph when its elements allow it; elements that read
    # memory another element writes keep the loop's order (fall back to it).
    base = [rnd(4), rnd(4), rnd(4)]
    if case == "mixed_shapes":
        base = [rnd(4), rnd(2, 3), rnd(1)]
    if case == "mixed_dtypes":
        base = [rnd(4), rnd(4, dtype=torch.float16), rnd(4)]
    if case == "strided":
        base = [rnd(4), rnd(4, 2)[:, 0], rnd(4)]

    def run(ts):
        if case == "duplicate":
            ts = [ts[0], ts[1], ts[0]]
        if case == "alias":
            ts = [ts[0], ts[1], ts[0].view(2, 2)]
        others = [t * 0 + 0.5 for t in ts]
        torch._foreach_mul_(ts, 1.5)
        torch._foreach_add_(ts, others, alpha=0.25)
        torch._foreach_addcmul_(ts, others, others, value=0.1)
        torch._foreach_lerp_(ts, others, 0.3)

    cpu = [t.clone() for t in base]
    dev = [t.to(DEV) for t in base]
    run(cpu)
    before = fallbacks()
    run(dev)
    assert fallbacks() == before
    for c, d in zip(cpu, dev):
        torch.testing.assert_close(d.cpu(), c, atol=1e-3, rtol=1e-3)


@pytest.mark.parametrize("k", [0, 1, 2, 3, 0.5, -0.5, -1, -2, 1.7])
def test_pow_by_a_scalar_matches_torch_bit_for_bit(k):
    # ATen's pow(Tensor, Scalar) computes these exponents as exact cheaper math
    # (x.square() is pow(x, 2)); the fused interpreter takes the same shortcuts.
    x = torch.rand(1000) * 4 + 0.25
    x[:3] = torch.tensor([float("nan"), float("inf"), 0.0])
    expected = x.pow(k)
    got = x.to(DEV).pow(k).cpu()
    # sqrt (0.5) is MKL's on both sides where torch has MKL; a general pow may differ in the last place.
    if k == 1.7 or (k == 0.5 and not torch.backends.mkl.is_available()):
        torch.testing.assert_close(got, expected, equal_nan=True)
    else:  # pure arithmetic: the same roundings
        assert torch.equal(got.nan_to_num(7.0), expected.nan_to_num(7.0))


def test_python_float_operand_computes_in_the_tensor_dtype():
    # A Python float is a 0-d float64 operand: it must not turn a float32 op
    # into float64 math (rounding would then differ from torch's).
    x = torch.randn(4096)
    for fn in (lambda t: t * 0.1, lambda t: t + 1 / 3, lambda t: t / 7.3, lambda t: t.square()):
        assert torch.equal(fn(x.to(DEV)).cpu(), fn(x))


# ATen casts every operand to the common dtype before computing in float32:
# a Python scalar or 0-d tensor meeting a float16/bfloat16 tensor is rounded
# to it first (x + 0.1 adds float16(0.1)), and so is add's alpha; mul, div and
# floor division read a scalar second operand unrounded, as addcmul reads its
# value. Each case differs from torch in hundreds of 4096 elements if the
# scalar's rounding is wrong.
REDUCED_SCALAR_OPS = {
    "add": lambda x, s: x + s, "sub": lambda x, s: x - s, "rsub": lambda x, s: s - x,
    "add_alpha": lambda x, s: torch.add(x, x, alpha=s), "sub_alpha": lambda x, s: torch.sub(x, x * 3, alpha=s),
    "remainder": lambda x, s: x % s, "fmod": lambda x, s: torch.fmod(x, s), "pow": lambda x, s: x.abs() ** s,
    "rpow": lambda x, s: s ** x, "eq": lambda x, s: x == x.new_tensor(s), "lt": lambda x, s: x < s,
    "xlogy": lambda x, s: torch.xlogy(x.abs(), s), "xlogy_tensors": lambda x, s: torch.xlogy(x.abs(), x.abs() + s),
    "mul": lambda x, s: x * s, "div": lambda x, s: x / s, "floor_divide": lambda x, s: x // s,
    "div_trunc": lambda x, s: torch.div(x, s, rounding_mode="trunc"),
    "mul_0d_float32": lambda x, s: x * torch.tensor(s), "add_0d_float32": lambda x, s: x + torch.tensor(s),
    "int_tensor": lambda x, s: torch.arange(4096, device=x.device) * 7 + x,
    "addcmul": lambda x, s: torch.addcmul(x, x, x, value=s), "lerp": lambda x, s: torch.lerp(x, x * 2, s),
    "foreach_add": lambda x, s: torch._foreach_add([x, x * 2], s)[1],
    "foreach_mul": lambda x, s: torch._foreach_mul([x, x * 2], s)[1],
}


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("name", list(REDUCED_SCALAR_OPS))
def test_scalars_round_to_a_reduced_float_dtype_as_aten_does(name, dtype):
    fn = REDUCED_SCALAR_OPS[name]
    torch.manual_seed(0)
    x = (torch.randn(4096) * 3).to(dtype)
    for s in (0.1, 1 / 3, 7.3):
        expected = fn(x, s)
        before = fallbacks()
        got = fn(x.to(DEV), s)
        assert fallbacks() == before, "the op fell back to the CPU"
        assert got.dtype == expected.dtype
        assert torch.equal(got.cpu().nan_to_num(7.0), expected.nan_to_num(7.0)), f"scalar {s}"


# ATen computes lerp, add/sub with alpha and addcmul as one fused multiply-add
# (fmadd: one rounding) and addcdiv as (value * t1) / t2 + self; the device
# must round the same way for the optimizers' arithmetic to match torch.
FMA_OPS = {
    "lerp_low": lambda a, b, c: torch.lerp(a, b, 0.3), "lerp_high": lambda a, b, c: torch.lerp(a, b, 0.7),
    "lerp_tensor": lambda a, b, c: torch.lerp(a, b, c.abs() / (c.abs() + 1)), "lerp_": lambda a, b, c: a.clone().lerp_(b, 0.1),
    "add_alpha": lambda a, b, c: torch.add(a, b, alpha=0.3), "sub_alpha": lambda a, b, c: torch.sub(a, b, alpha=0.3),
    "rsub_alpha": lambda a, b, c: torch.rsub(a, b, alpha=0.3), "add_": lambda a, b, c: a.clone().add_(b, alpha=-1e-3),
    "addcmul": lambda a, b, c: torch.addcmul(a, b, c, value=0.3), "addcmul_unit": lambda a, b, c: torch.addcmul(a, b, c),
    "addcmul_": lambda a, b, c: a.clone().addcmul_(b, b, value=1e-3),
    "addcdiv": lambda a, b, c: torch.addcdiv(a, b, c.abs() + 1, value=0.3),
    "foreach_lerp_": lambda a, b, c: torch._foreach_lerp_([a.clone(), b.clone()], [b, c], 0.1)[0],
    "foreach_addcmul": lambda a, b, c: torch._foreach_addcmul([a, c], [b, b], [b, c], value=0.01)[0],
    "foreach_add": lambda a, b, c: torch._foreach_add([a, c], [b, b], alpha=-0.01)[0],
    "tanh_backward": lambda a, b, c: torch.ops.aten.tanh_backward(a, b.abs() / (b.abs() + 1)),
}


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("name", list(FMA_OPS))
def test_fused_multiply_adds_round_once_like_aten(name, dtype):
    torch.manual_seed(0)
    a, b, c = (torch.randn(10003, dtype=dtype) for _ in range(3))  # a vector tail too
    expected = FMA_OPS[name](a, b, c)
    got = FMA_OPS[name](a.to(DEV), b.to(DEV), c.to(DEV)).cpu()
    assert torch.equal(got, expected), f"{int((got != expected).sum())} of {a.numel()} differ"


@pytest.mark.parametrize("optimizer, kwargs", [("AdamW", {}), ("Adam", {"weight_decay": 0.1}),
                                               ("SGD", {"lr": 0.1, "momentum": 0.9, "nesterov": True})])
def test_optimizer_steps_match_the_cpu_bit_for_bit(optimizer, kwargs):
    # The device runs the foreach path; the CPU's step runs ATen's kernels.
    torch.manual_seed(0)
    params = [torch.randn(s) for s in [(64, 32), (32,), (10, 64)]]
    grads = [[torch.randn_like(p) for p in params] for _ in range(5)]
    result = {}
    for dev in ("cpu", DEV):
        q = [torch.nn.Parameter(p.clone().to(dev)) for p in params]
        opt = getattr(torch.optim, optimizer)(q, **kwargs)
        for step in grads:
            for p, g in zip(q, step):
                p.grad = g.to(dev)
            opt.step()
        result[dev] = [p.detach().cpu() for p in q]
    for cpu, dev in zip(result["cpu"], result[DEV]):
        assert torch.equal(cpu, dev)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32])
def test_prod_rounds_like_aten(dtype):
    # ATen multiplies float16/bfloat16 in that dtype, rounding every step (the
    # float32 product differs by up to 4% over 64 bfloat16 values).
    torch.manual_seed(0)
    for shape in [(3,), (100,), (5, 7, 9), (16, 64)]:
        x = (torch.rand(*shape) + 0.5).to(dtype)
        assert torch.equal(x.to(DEV).prod().cpu(), x.prod())
        for dim in range(len(shape)):
            assert torch.equal(x.to(DEV).prod(dim).cpu(), x.prod(dim))
            assert torch.equal(x.to(DEV).prod(dim, keepdim=True, dtype=torch.float32).cpu(),
                               x.prod(dim, keepdim=True, dtype=torch.float32))


ACTIVATION_FORMS = {  # ATen's own expression for each, rounding included
    "hardswish": lambda dy, x: F.hardswish(x),  # x * min(max(x + 3, 0), 6) / 6
    "hardsigmoid_backward": lambda dy, x: torch.ops.aten.hardsigmoid_backward(dy, x),  # dy * (1.0f / 6.0f)
    "silu_backward": lambda dy, x: torch.ops.aten.silu_backward(dy, x),  # dy * s * fmadd(x, 1 - s, 1)
}


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("name", list(ACTIVATION_FORMS))
def test_activation_forms_round_like_aten(name, dtype):
    torch.manual_seed(0)
    x, dy = torch.randn(4096, dtype=dtype) * 3, torch.randn(4096, dtype=dtype)  # a multiple of the vector width
    expected = ACTIVATION_FORMS[name](dy, x)
    assert torch.equal(ACTIVATION_FORMS[name](dy.to(DEV), x.to(DEV)).cpu(), expected)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64])
def test_sigmoid_backward_rounds_like_aten(dtype):
    # (grad * (1 - y)) * y; ATen's float16 kernel rounds each step to float16.
    torch.manual_seed(0)
    g, y = torch.randn(4096).to(dtype), torch.randn(4096).sigmoid().to(dtype)
    got = torch.ops.aten.sigmoid_backward(g.to(DEV), y.to(DEV)).cpu()
    assert torch.equal(got, torch.ops.aten.sigmoid_backward(g, y))


LAYOUTS = {
    "row_view": lambda a, b: (a[:, 8:16], b[:, :8]),           # an LSTM gate's chunk: rows of a wider tensor
    "inner_stride": lambda a, b: (a[:, ::2], b[:, 1::2]),
    "transposed": lambda a, b: (a[:8, :8].t(), b[:8, :8]),
    "bias_row": lambda a, b: (a, b[0]),                          # [N, C] + [C]
    "column": lambda a, b: (a, b[:, :1]),                        # [N, C] * [N, 1]
    "outer": lambda a, b: (a[:, :1], b[:1]),                     # [N, 1] + [1, C]
    "expanded_3d": lambda a, b: (a.reshape(4, 6, 16), b[0].reshape(1, 1, 16)),
    "permuted_3d": lambda a, b: (a.reshape(4, 6, 16).permute(2, 0, 1), b.reshape(4, 6, 16).permute(2, 0, 1)),
    "channel_bias_4d": lambda a, b: (a.reshape(2, 3, 4, 16), b[0, :3].reshape(1, 3, 1, 1)),
}


@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_elementwise_over_strided_and_broadcast_layouts(layout):
    # The fused interpreter runs strided/broadcast operands that coalesce to
    # two dims without TensorIterator; others through it. Same bits as torch.
    a, b = rnd(24, 16), rnd(24, 16)
    x, y = LAYOUTS[layout](a, b)
    xd, yd = LAYOUTS[layout](a.to(DEV), b.to(DEV))
    for fn in (lambda s, t: s + t, lambda s, t: s * t - 0.5, lambda s, t: torch.where(s > t, s, t * 2),
               lambda s, t: torch.sigmoid(s) * torch.tanh(t)):
        before = fallbacks()
        got = fn(xd, yd)
        assert fallbacks() == before
        torch.testing.assert_close(got.cpu(), fn(x, y), atol=1e-6, rtol=1e-6)
    out = torch.empty(0, device=DEV)
    torch.add(xd, yd, out=out)
    assert torch.equal(out.cpu(), x + y)


def test_foreach_list_runs_as_one_graph():
    ts = [rnd(4).to(DEV), rnd(2, 3).to(DEV), rnd(5).to(DEV)]
    keys = [k for k, _, _ in mps_ext.graph.capture(lambda: torch._foreach_mul_(ts, 2.0))]
    assert len(keys) == 1 and "aten::foreach" in keys[0]


def test_fallback_for_unsupported_input_is_counted():
    before = fallbacks()
    x = torch.tensor([5, 7], device=DEV)
    torch.testing.assert_close(torch.div(x, 2, rounding_mode="floor").cpu(), torch.tensor([2, 3]))  # integer floor div
    assert fallbacks() == before + 1


# --- training with MPS_EXT_FALLBACK=error -------------------------------------------
TRAIN = textwrap.dedent("""
    import sys, torch, torch.nn as nn, torch.nn.functional as F, mps_ext
    kind = sys.argv[1]
    torch.manual_seed(0)
    if kind == "mlp":
        make = lambda: nn.Sequential(nn.Linear(8, 32), nn.GELU(), nn.LayerNorm(32), nn.Linear(32, 4))
        x, y = torch.randn(16, 8), torch.randint(0, 4, (16,))
        loss_fn = lambda m, x, y: F.cross_entropy(m(x), y, label_smoothing=0.1)
    elif kind == "gpt":
        class GPT(nn.Module):
            def __init__(self, v=17, d=16, t=8):
                super().__init__()
                self.tok, self.pos = nn.Embedding(v, d), nn.Embedding(t, d)
                self.ln1, self.ln2, self.lnf = nn.LayerNorm(d), nn.LayerNorm(d), nn.LayerNorm(d)
                self.qkv, self.proj = nn.Linear(d, 3 * d), nn.Linear(d, d)
                self.mlp = nn.Sequential(nn.Linear(d, 4 * d), nn.GELU(), nn.Linear(4 * d, d))
                self.head = nn.Linear(d, v, bias=False)
                self.head.weight = self.tok.weight  # tied
            def forward(self, idx):
                b, t = idx.shape
                h = self.tok(idx) + self.pos(torch.arange(t, device=idx.device))
                q, k, v = self.qkv(self.ln1(h)).view(b, t, 3, 2, 8).permute(2, 0, 3, 1, 4)
                att = (q @ k.transpose(-2, -1)) / 8 ** 0.5
                mask = torch.tril(torch.ones(t, t, device=idx.device)) == 0
                att = att.masked_fill(mask, float("-inf")).softmax(-1)
                h = h + self.proj((att @ v).transpose(1, 2).reshape(b, t, 16))
                h = h + self.mlp(self.ln2(h))
                return self.head(self.lnf(h))
        make = GPT
        x = torch.randint(0, 17, (4, 8)); y = torch.randint(0, 17, (4, 8))
        loss_fn = lambda m, x, y: F.cross_entropy(m(x).flatten(0, 1), y.flatten())
    elif kind == "cnn":
        class Net(nn.Module):
            def __init__(self):
                super().__init__()
                self.c1, self.bn, self.c2 = nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.Conv2d(8, 8, 3, padding=1)
                self.fc = nn.Linear(8 * 2 * 2, 5)
            def forward(self, x):
                h = F.max_pool2d(F.relu(self.bn(self.c1(x))), 2)
                h = F.adaptive_avg_pool2d(F.relu(self.c2(h)), 2)
                return self.fc(F.dropout(h.flatten(1), 0.1, self.training))
        make = Net
        x, y = torch.randn(4, 3, 8, 8), torch.randint(0, 5, (4,))
        loss_fn = lambda m, x, y: F.cross_entropy(m(x), y)
    elif kind == "nn_lstm":
        class Seq(nn.Module):
            def __init__(self):
                super().__init__()
                self.lstm, self.out = nn.LSTM(6, 12), nn.Linear(12, 3)
            def forward(self, x):
                return self.out(self.lstm(x)[0][-1])
        make = Seq
        x, y = torch.randn(5, 4, 6), torch.randn(4, 3)
        loss_fn = lambda m, x, y: F.mse_loss(m(x), y)
    elif kind == "bn_pool":  # a CNN's other layers (batch_norm, pooling, dropout) around Linear stand-ins for conv
        class Net(nn.Module):
            def __init__(self):
                super().__init__()
                self.inp, self.bn, self.gn = nn.Linear(12, 4 * 8 * 8), nn.BatchNorm2d(4), nn.GroupNorm(2, 4)
                self.fc = nn.Linear(4 * 2 * 2, 3)
            def forward(self, x):
                h = self.inp(x).view(-1, 4, 8, 8)
                h = F.max_pool2d(F.relu(self.bn(h)), 2)
                h = F.adaptive_avg_pool2d(self.gn(h), 2)
                return self.fc(F.dropout(h.flatten(1), 0.2, self.training))
        make = Net
        x, y = torch.randn(6, 12), torch.randint(0, 3, (6,))
        loss_fn = lambda m, x, y: F.cross_entropy(m(x), y)
    elif kind == "lstm":
        # The LSTM recurrence written out (nn.LSTMCell on a PrivateUse1 device
        # calls the fused _thnn_fused_lstm_cell, which is not native yet).
        class Seq(nn.Module):
            def __init__(self):
                super().__init__()
                self.ih, self.hh, self.out = nn.Linear(6, 48), nn.Linear(12, 48), nn.Linear(12, 3)
            def forward(self, x):
                h = c = torch.zeros(x.shape[1], 12, device=x.device)
                for t in range(x.shape[0]):
                    i, f, g, o = (self.ih(x[t]) + self.hh(h)).chunk(4, 1)
                    c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
                    h = torch.sigmoid(o) * torch.tanh(c)
                return self.out(h)
        make = Seq
        x, y = torch.randn(5, 4, 6), torch.randn(4, 3)
        loss_fn = lambda m, x, y: F.mse_loss(m(x), y)
    ref = make(); dev = make(); dev.load_state_dict(ref.state_dict()); dev.to("mpsgraph")
    if kind == "gpt":  # Module.to() unties shared parameters on PrivateUse1 devices (torch's
        dev.head.weight = dev.tok.weight  # _has_compatible_shallow_copy_type lists no PrivateUse1): tie again
    opt_r = torch.optim.AdamW(ref.parameters(), lr=1e-2); opt_d = torch.optim.AdamW(dev.parameters(), lr=1e-2)
    torch.manual_seed(1)  # the CPU and device generators start equal: dropout masks match
    for step in range(int(sys.argv[2])):
        out = []
        for m, o, d in [(ref, opt_r, "cpu"), (dev, opt_d, "mpsgraph")]:
            o.zero_grad()
            loss = loss_fn(m, x.to(d), y.to(d))
            loss.backward()
            torch.nn.utils.clip_grad_norm_(m.parameters(), 1.0)
            o.step()
            out.append(loss.item())
        print(step, repr(out[0]), repr(out[1]))
""")


@pytest.mark.parametrize("kind", ["mlp", "gpt", "lstm", "bn_pool", "cnn", "nn_lstm"])
def test_training_without_fallback(kind):
    env = dict(os.environ, MPS_EXT_FALLBACK="error", PYTHONPATH=str(ROOT))
    r = subprocess.run([sys.executable, "-c", TRAIN, kind, "20"], env=env, capture_output=True, text=True, cwd=ROOT,
                       timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    rows = [line.split() for line in r.stdout.strip().splitlines()]
    assert len(rows) == 20
    first, last = rows[0], rows[-1]
    # On failure, every step's (step, CPU loss, device loss): where the two part.
    assert abs(float(first[1]) - float(first[2])) <= 1e-6 * abs(float(first[1])) + 1e-7, r.stdout
    assert abs(float(last[1]) - float(last[2])) <= 1e-4 * abs(float(last[1])), r.stdout


@pytest.mark.parametrize("bounds", [(-1.0, 1.0), (0.0, 0.0), (-0.0, 2.0), (1.0, -1.0), (float("nan"), 1.0),
                                    (-1.0, float("nan")), (-float("inf"), 0.5)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_clamp_is_bit_exact(bounds, dtype):
    # Number bounds take ATen's clamp kernel form (NaN in x propagates, the
    # sign of a zero as ATen gives it); NaN bounds make every element NaN.
    x = torch.tensor([0.0, -0.0, 1.5, -1.5, 0.5, float("nan"), float("inf"), -float("inf")] * 600, dtype=dtype)
    lo, hi = bounds
    expected, got = x.clamp(lo, hi), x.to(DEV).clamp(lo, hi).cpu()
    bits = torch.int64 if dtype == torch.float64 else torch.int32
    assert torch.equal(got.isnan(), expected.isnan())
    assert torch.equal(got.nan_to_num(7.0).view(bits), expected.nan_to_num(7.0).view(bits))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16])
def test_one_sided_clamp_and_relu_are_bit_exact(dtype):
    # x unless past the bound: relu / clamp(min=0) keep -0.0 (maximum would
    # give +0.0), clamp(max=-0.0) keeps +0.0; a NaN bound gives NaN.
    x = torch.tensor([-0.0, 0.0, -1.0, float("nan"), 2.0, float("inf"), -float("inf")], dtype=dtype)
    bound = torch.tensor([0.0, -0.0, 1.0, 2.0, float("nan"), 0.0, -0.0], dtype=dtype)
    bits = {torch.float32: torch.int32, torch.float64: torch.int64, torch.float16: torch.int16}[dtype]
    cases = [torch.relu, lambda t: t.clamp(min=0), lambda t: t.clamp(max=-0.0), lambda t: t.clamp_min(float("nan")),
             lambda t: t.clone().clamp_(min=0), lambda t: torch.clamp(t, min=bound.to(t.device)),
             lambda t: torch.clamp_max(t, bound.to(t.device))]
    for fn in cases:
        expected, got = fn(x), fn(x.to(DEV)).cpu()
        assert torch.equal(got.isnan(), expected.isnan())
        assert torch.equal(got.nan_to_num(7.0).view(bits), expected.nan_to_num(7.0).view(bits))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16])
@pytest.mark.parametrize("shape,dim", [((3, 8), -1), ((4, 6, 5), 1), ((6,), 0), ((0, 4), 1)])
def test_glu_and_backward(dtype, shape, dim):
    x = torch.randn(*shape).to(dtype)
    tol = {"atol": 1e-3, "rtol": 1e-3} if dtype == torch.float16 else {}
    check(lambda t: F.glu(t, dim), x, **tol)
    check(lambda t: F.glu(t.transpose(0, -1).contiguous().transpose(0, -1), dim), x, **tol)  # non-contiguous
    g = torch.randn(F.glu(x, dim).shape).to(dtype)
    check(lambda gg, t: torch.ops.aten.glu_backward(gg, t, dim), g, x, **tol)
    if dtype == torch.float64 and x.numel():
        assert torch.autograd.gradcheck(lambda t: F.glu(t, dim), (x.to(DEV).requires_grad_(),))
    for d in ("cpu", DEV):
        with pytest.raises(RuntimeError, match="Halving dimension must be even"):
            F.glu(torch.ones(2, 3, device=d))
        with pytest.raises(RuntimeError, match="glu does not support scalars"):
            F.glu(torch.tensor(1.0, device=d), 0)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16])
@pytest.mark.parametrize("shape,channels", [((2, 3, 4, 5), 3), ((2, 3, 4, 5), 1), ((6,), 1), ((0, 3, 2), 3)])
def test_prelu_and_backward(dtype, shape, channels):
    torch.manual_seed(0)
    x = torch.randn(*shape).to(dtype)
    if x.numel():
        x.view(-1)[:2] = torch.tensor([-0.0, 0.0])  # x > 0 decides: -0.0 takes the weight
    w = torch.rand(channels).to(dtype)
    tol = {"atol": 1e-3, "rtol": 1e-3} if dtype == torch.float16 else {}
    leaves, leaves_d = [x.clone().requires_grad_(), w.clone().requires_grad_()], [x.to(DEV).requires_grad_(), w.to(DEV).requires_grad_()]
    before = fallbacks()
    out, ref = F.prelu(*leaves_d), F.prelu(*leaves)
    g = torch.randn(ref.shape).to(dtype)
    out.backward(g.to(DEV))
    ref.backward(g)
    assert fallbacks() == before
    torch.testing.assert_close(out.cpu(), ref, **tol)
    assert torch.equal(out.cpu().signbit(), ref.signbit())
    for a, b in zip(leaves_d, leaves):
        torch.testing.assert_close(a.grad.cpu(), b.grad, **tol)


def test_readme_lists_native_ops():
    from mps_ext import ops
    readme = (ROOT / "README.md").read_text()
    assert ops.readme_section() in readme, "README's native op list is stale: run `python -m mps_ext.ops --update-readme`"


def test_kernel_nodes_match_their_decompositions():
    """The scans run ATen's CPU op as a kernel node; the mpsgraph runtime runs
    their decompositions: same results. (Gathers are plain gather/scatter IR
    nodes now, tests/test_native_indexing.py; they stay here as a regression.)"""
    x = rnd(3, 5).to(DEV)
    idx = torch.tensor([4, 0, 0, 2], device=DEV)
    cases = [lambda: x.cumsum(1), lambda: x.cumsum(0), lambda: x.index_select(1, idx), lambda: x.index_select(0, idx[1:]),
             lambda: torch.flip(x, (0, 1)), lambda: torch.gather(x, 1, torch.tensor([[0, 4], [1, 1], [3, 2]], device=DEV)),
             lambda: torch.ops.aten.embedding_dense_backward(g, idx, 6, -1, False),
             lambda: F.gelu(x), lambda: F.gelu(x, approximate="tanh"),
             lambda: torch.ops.aten.gelu_backward(g[:3], x), lambda: torch.ops.aten.gelu_backward(g[:3], x, approximate="tanh"),
             lambda: torch.flip(x, (1,)), lambda: torch.flip(x[0], (0,)),
             lambda: special.max(1), lambda: special.min(0, keepdim=True), lambda: special.argmax(1), lambda: special.argmin(),
             lambda: ints.max(0), lambda: torch.nonzero(special > 0), lambda: special.masked_select(special > 0),
             lambda: torch.nonzero(ints), lambda: (special > 0).all(), lambda: (special > 0).any(1),
             lambda: (special > 4).any(), lambda: (special > -5).all(0, keepdim=True)]
    g = rnd(4, 5).to(DEV)
    # ties (the first index wins) and NaN (the extreme, with its first index)
    special = torch.tensor([[1.0, 3.0, 3.0, -2.0], [float("nan"), 0.0, float("nan"), 5.0], [-1.0, -1.0, -4.0, -4.0]]).to(DEV)
    ints = torch.tensor([[3, 0, 7], [7, 0, -2]]).to(DEV)
    for fn in cases:
        expected = fn()
        with mps_ext.graph.decompositions():
            got = fn()
        for e, r in zip(expected if isinstance(expected, tuple) else [expected], got if isinstance(got, tuple) else [got]):
            torch.testing.assert_close(r.cpu(), e.cpu(), equal_nan=True)


@pytest.mark.parametrize("alpha", [1.5, 1.0, True])
def test_add_alpha_rules_match_torch(alpha):
    x = torch.ones(3, dtype=torch.int64)
    with pytest.raises(RuntimeError) as cpu_error:
        x.add(x, alpha=alpha)
    with pytest.raises(RuntimeError, match=str(cpu_error.value).split("\n")[0]):
        x.to(DEV).sub(x.to(DEV), alpha=alpha)
    b = torch.tensor([True, False])
    check(lambda t: t.add(t, alpha=True), b)


def test_a_unit_factor_adds_no_multiply():
    import json
    x, y = rnd(4, 5).to(DEV), rnd(4, 5).to(DEV)

    def kinds(fn):
        (graph,) = mps_ext.graph.capture(fn)
        return [n["op"] for n in json.loads(graph[1])["nodes"]]

    assert "multiply" not in kinds(lambda: x.add(y))
    assert kinds(lambda: torch.addcmul(x, x, y, value=1)).count("multiply") == 1  # x * y only
    assert kinds(lambda: torch.addcmul(x, x, y, value=3)).count("multiply") == 2
    assert "multiply" in kinds(lambda: x.add(y, alpha=2))
    check(lambda a, b: (a.add(b, alpha=2), a.sub(b, alpha=1), torch.addcdiv(a, a, b, value=1),
                        torch.addcdiv(a, a, b, value=-0.5), torch.rsub(a, b, alpha=1)), rnd(4, 5), rnd(4, 5))


@pytest.mark.skipif(not torch.backends.mkl.is_available(), reason="torch computes these with MKL's VML only where built with MKL")
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("name", ["tanh", "exp", "erf", "log", "sin", "cos", "sqrt"])
def test_vector_math_matches_torch_bit_for_bit(name, dtype):
    """The fused interpreter takes these from the same library ATen's CPU kernels use."""
    x = (torch.randn(3000, generator=torch.Generator().manual_seed(0)) * 4).to(dtype)
    if name in ("log", "sqrt"):
        x = x.abs()
    x[:4] = torch.tensor([0.0, -0.0, float("inf"), float("nan")], dtype=dtype)
    fn = getattr(torch, name)
    expected = fn(x)
    got = fn(x.to(DEV)).cpu()
    assert torch.equal(got.isnan(), expected.isnan())
    assert torch.equal(got.nan_to_num(), expected.nan_to_num()), f"{int((got != expected).sum())} elements differ"


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("rows", [1, 3, 37, 300])
def test_short_strided_rows_match_cpu(rows, dtype):
    # Row views of a wider tensor (an LSTM's gate chunks) and broadcast
    # columns: the fused pass packs many short rows into one block.
    torch.manual_seed(0)
    g, col = torch.randn(rows, 256).to(dtype), torch.randn(rows, 1).to(dtype)
    gd, cd = g.to(DEV), col.to(DEV)
    cases = [
        lambda a, c: torch.sigmoid(a.chunk(4, 1)[1]),
        lambda a, c: a.chunk(4, 1)[2] * c + 1,
        lambda a, c: torch.where(a.chunk(4, 1)[0] > 0, a.chunk(4, 1)[3], c),
        lambda a, c: a[:, ::3] - c,
        lambda a, c: torch.tanh(a[:, 5:70]) * a[:, 100:165],
    ]
    for f in cases:
        got, want = f(gd, cd).cpu(), f(g, col)
        assert got.dtype == want.dtype and got.shape == want.shape
        exact = dtype in (torch.float32, torch.float64)
        torch.testing.assert_close(got, want, atol=0 if exact else None, rtol=0 if exact else None)
