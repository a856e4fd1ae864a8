"""Device-native factories (eye, linspace), products and logsumexp, out=
reductions and the unfold view (repeat): device vs CPU, no CPU fallback."""
import pytest
import torch

import mps_ext  # noqa: F401
from test_native_ops import DEV, check, fallbacks, rnd


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16, torch.float64, torch.int64])
@pytest.mark.parametrize("dims", [None, 0, 1, -1])
@pytest.mark.parametrize("keepdim", [False, True])
def test_prod(dtype, dims, keepdim):
    x = (torch.rand(3, 5) + 0.5).to(dtype) if dtype.is_floating_point else torch.randint(-3, 4, (3, 5))
    if dims is None:
        check(lambda t: t.prod(), x)
        check(lambda t: t.prod(dtype=torch.float64), x)
    else:
        check(lambda t: t.prod(dims, keepdim=keepdim), x)
        check(lambda t: t.t().prod(dims, keepdim=keepdim), x)  # non-contiguous


def test_prod_out_and_edge_values():
    x = torch.tensor([[1.0, float("nan"), 2.0], [0.0, float("inf"), -1.0], [3.0, -2.0, 0.5]])
    check(lambda t: t.prod(1), x)
    check(lambda t: torch.prod(t, 0, out=torch.empty(3, dtype=torch.float64, device=t.device)), x)
    check(lambda t: torch.prod(t, 1, out=torch.empty(0, device=t.device)), x)  # out is resized
    b = torch.tensor([[True, False], [True, True]])
    check(lambda t: t.prod(1), b.long())
    assert torch.tensor([1, 2, 3], device=DEV).prod().dtype == torch.int64


def test_prod_gradient_matches_cpu():
    x = torch.rand(4, 3, dtype=torch.float64) + 0.5
    d = x.to(DEV).requires_grad_()
    d.prod(1).sum().backward()
    c = x.clone().requires_grad_()
    c.prod(1).sum().backward()
    torch.testing.assert_close(d.grad.cpu(), c.grad)


@pytest.mark.parametrize("dim", [0, 1, (0, 1), -1])
@pytest.mark.parametrize("keepdim", [False, True])
def test_logsumexp(dim, keepdim):
    x = rnd(4, 6) * 10
    x[1] = float("-inf")  # an all -inf row gives -inf, not NaN
    x[2, 3] = float("inf")
    check(lambda t: torch.logsumexp(t, dim, keepdim=keepdim), x)
    check(lambda t: torch.logsumexp(t, dim), rnd(4, 6, dtype=torch.float16) * 5, atol=1e-2, rtol=1e-2)
    check(lambda t: torch.logsumexp(t, dim), torch.randint(-5, 5, (4, 6)))  # ints give float


def test_logsumexp_gradient():
    x = torch.randn(3, 5, dtype=torch.float64)
    d = x.to(DEV).requires_grad_()
    torch.logsumexp(d, 1).sum().backward()
    c = x.clone().requires_grad_()
    torch.logsumexp(c, 1).sum().backward()
    torch.testing.assert_close(d.grad.cpu(), c.grad)


def test_sum_out():
    x = rnd(3, 4)
    check(lambda t: torch.sum(t, 1, out=torch.empty(3, device=t.device)), x)
    check(lambda t: torch.sum(t, (0, 1), keepdim=True, out=torch.empty(0, dtype=torch.float64, device=t.device)), x)
    check(lambda t: torch.sum(t, 0, dtype=torch.float64, out=torch.empty(4, dtype=torch.float64, device=t.device)), x)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.int64, torch.bool])
@pytest.mark.parametrize("n,m", [(3, None), (2, 5), (5, 2), (0, 3), (1, 1)])
def test_eye(n, m, dtype):
    args = (n,) if m is None else (n, m)
    before = fallbacks()
    got = torch.eye(*args, dtype=dtype, device=DEV)
    assert fallbacks() == before
    torch.testing.assert_close(got.cpu(), torch.eye(*args, dtype=dtype))
    out = torch.empty(0, dtype=dtype, device=DEV)
    torch.eye(*args, out=out)
    torch.testing.assert_close(out.cpu(), torch.eye(*args, dtype=dtype))


def test_eye_errors():
    with pytest.raises(RuntimeError, match="n must be greater or equal to 0, got -1"):
        torch.eye(-1, device=DEV)
    with pytest.raises(RuntimeError, match="m must be greater or equal to 0, got -2"):
        torch.eye(2, -2, device=DEV)


@pytest.mark.parametrize("start,end,steps", [(0, 1, 5), (-3.5, 7.25, 11), (10, -2, 7), (0, 1, 1), (2, 2, 4),
                                             (0, 1, 0), (1e-3, 1e3, 100)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16, torch.int64])
def test_linspace(start, end, steps, dtype):
    before = fallbacks()
    got = torch.linspace(start, end, steps, dtype=dtype, device=DEV)
    assert fallbacks() == before
    exp = torch.linspace(start, end, steps, dtype=dtype)
    tol = {"atol": 1e-2, "rtol": 1e-3} if dtype == torch.float16 else {}
    torch.testing.assert_close(got.cpu(), exp, **tol)


def test_linspace_errors():
    with pytest.raises(RuntimeError, match="number of steps must be non-negative"):
        torch.linspace(0, 1, -1, device=DEV)


def test_repeat_and_unfold_are_native():
    x = rnd(2, 3)
    check(lambda t: t.repeat(2, 3), x)
    check(lambda t: t.repeat(2, 1, 2), x.t())
    check(lambda t: t.repeat(0, 2), x)
    check(lambda t: t.unfold(1, 2, 1), x)
    check(lambda t: t.unfold(0, 1, 2).contiguous(), x)
    base = x.to(DEV)
    view = base.unfold(1, 2, 1)
    assert view.untyped_storage().data_ptr() == base.untyped_storage().data_ptr()  # a view, not a copy


@pytest.mark.parametrize("dtype, value", [
    (torch.int64, 2**62 + 1), (torch.int64, -(2**63)), (torch.int32, -7), (torch.float32, -0.0),
    (torch.float32, float("nan")), (torch.float16, float("-inf")), (torch.bfloat16, 3.0e38), (torch.float64, 0.1),
    (torch.bool, True), (torch.uint8, 255),
])
@pytest.mark.parametrize("shape", [(3, 5), (0, 4), ()])
def test_full_and_fill_are_exact(dtype, value, shape):
    # One value everywhere is ATen's fill_ with that value: integers beyond
    # 2**53 and -0.0 keep every bit.
    def bits(t):
        return t.reshape(-1).view(torch.uint8)

    expected = torch.full(shape, value, dtype=dtype)
    assert torch.equal(bits(torch.full(shape, value, dtype=dtype, device=DEV).cpu()), bits(expected))
    filled = torch.empty(shape, dtype=dtype, device=DEV).fill_(value)
    assert torch.equal(bits(filled.cpu()), bits(expected))
    assert torch.equal(bits(torch.zeros(shape, dtype=dtype, device=DEV).fill_(value).cpu()), bits(expected))
