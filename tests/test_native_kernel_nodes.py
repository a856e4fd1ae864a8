"""Kernel nodes of the matmul and norm families, and results written in place,
on the mpsgraph device.

float32/float64 addmm and baddbmm are one kernel node ("aten.addmm": the
BLAS GEMM call ATen's CPU addmm makes, with beta, on the reference runtime; its
matmul+add decomposition on MPSGraph), and so are vector norms ("aten.vector_norm"); kernel and
decomposition must both match torch on the CPU. Results of reductions, concats,
fills and products are written by ATen straight into the
device tensor: no copy event in the profiler. Other results ATen allocates
itself (a convolution, a max pool) become device memory without a copy on the
reference runtime, whose device memory is host memory: counted by the device
allocator while alive, never aliasing an input."""
import json

import pytest
import torch
import torch.nn.functional as F

import mps_ext

DEV = "mpsgraph"


def tol(dtype):
    return {torch.float16: dict(atol=2e-2, rtol=2e-2), torch.bfloat16: dict(atol=6e-2, rtol=6e-2),
            torch.float32: dict(atol=1e-5, rtol=1e-5)}.get(dtype, {})


def kernel_names(fn, *args):
    names = []
    for _, doc, _ in mps_ext.graph.capture(fn, *args):
        names += [n["attrs"]["kernel"] for n in json.loads(doc)["nodes"] if n["op"] == "kernel"]
    return names


def rnd(*shape, dtype):
    return torch.randn(*shape).to(dtype)


def addmm_cases(dtype):
    nan_bias = rnd(5, dtype=dtype)
    nan_bias[1] = float("nan")
    return [
        ("addmm", lambda c, a, b: torch.addmm(c, a, b), (rnd(5, dtype=dtype), rnd(3, 4, dtype=dtype), rnd(4, 5, dtype=dtype))),
        ("addmm alpha beta", lambda c, a, b: torch.addmm(c, a, b, beta=0.5, alpha=-2),
         (rnd(3, 1, dtype=dtype), rnd(3, 4, dtype=dtype), rnd(4, 5, dtype=dtype))),
        # beta=0 ignores self, NaN included (torch's rule)
        ("addmm beta 0", lambda c, a, b: torch.addmm(c, a, b, beta=0), (nan_bias, rnd(3, 4, dtype=dtype), rnd(4, 5, dtype=dtype))),
        ("addmm transposed", lambda c, a, b: torch.addmm(c, a.t(), b.t()),
         (rnd(3, 5, dtype=dtype), rnd(4, 3, dtype=dtype), rnd(5, 4, dtype=dtype))),
        ("baddbmm", lambda c, a, b: torch.baddbmm(c, a, b, beta=2, alpha=0.5),
         (rnd(5, dtype=dtype), rnd(2, 3, 4, dtype=dtype), rnd(2, 4, 5, dtype=dtype))),
        ("addmv", lambda c, a, b: torch.addmv(c, a, b, alpha=3), (rnd(3, dtype=dtype), rnd(3, 4, dtype=dtype), rnd(4, dtype=dtype))),
        ("linear", F.linear, (rnd(6, 4, dtype=dtype), rnd(5, 4, dtype=dtype), rnd(5, dtype=dtype))),
    ]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("case", range(7))
def test_addmm_family_matches_cpu_and_its_decomposition(dtype, case):
    name, fn, args = addmm_cases(dtype)[case]
    expected = fn(*args)
    dev = [a.to(DEV) for a in args]
    before = torch.ops.mps_ext._fallback_count()
    got = fn(*dev)
    assert torch.ops.mps_ext._fallback_count() == before
    torch.testing.assert_close(got.cpu(), expected, equal_nan=True, **tol(dtype))
    with mps_ext.graph.decompositions():
        decomposed = fn(*dev)
    torch.testing.assert_close(decomposed.cpu(), expected, equal_nan=True, **tol(dtype))
    if dtype in (torch.float32, torch.float64) and name != "addmv":
        assert "aten.addmm" in kernel_names(fn, *dev)


def test_addmm_gradients():
    args = [torch.randn(5, dtype=torch.float64), torch.randn(3, 4, dtype=torch.float64), torch.randn(4, 5, dtype=torch.float64)]
    dev = [a.to(DEV).requires_grad_() for a in args]
    assert torch.autograd.gradcheck(lambda c, a, b: torch.addmm(c, a, b, beta=0.5, alpha=2), dev)


def test_addmm_out_and_empty():
    before = torch.ops.mps_ext._fallback_count()
    a, b, c = torch.randn(3, 4), torch.randn(4, 5), torch.randn(3, 5)
    out = torch.empty(3, 5, device=DEV)
    torch.addmm(c.to(DEV), a.to(DEV), b.to(DEV), out=out)
    torch.testing.assert_close(out.cpu(), torch.addmm(c, a, b))
    out = torch.empty(0, device=DEV)  # resized, as ATen's out=
    torch.addmm(c[0].to(DEV), a.to(DEV), b.to(DEV), beta=0.5, alpha=2, out=out)
    torch.testing.assert_close(out.cpu(), torch.addmm(c[0], a, b, beta=0.5, alpha=2))
    # Empty products: K = 0 sums nothing (beta * self; beta = 0 ignores self, NaN too); empty results
    nan = torch.full((3, 5), float("nan"))
    cases = [(torch.ones(3, 5), torch.ones(3, 0), torch.ones(0, 5), 2), (nan, torch.ones(3, 0), torch.ones(0, 5), 0),
             (torch.ones(5), torch.ones(3, 0), torch.ones(0, 5), 1), (torch.ones(0, 5), torch.ones(0, 4), b, 1),
             (torch.ones(3, 0), a, torch.ones(4, 0), 1)]
    for c_, a_, b_, beta in cases:
        z = torch.addmm(c_.to(DEV), a_.to(DEV), b_.to(DEV), beta=beta)
        torch.testing.assert_close(z.cpu(), torch.addmm(c_, a_, b_, beta=beta))
    torch.testing.assert_close(torch.mm(torch.ones(2, 0, device=DEV), torch.ones(0, 3, device=DEV)).cpu(), torch.zeros(2, 3))
    assert torch.ops.mps_ext._fallback_count() == before
    with pytest.raises(RuntimeError, match="Expected out tensor to have dtype float, but got double instead"):
        torch.addmm(c.to(DEV), a.to(DEV), b.to(DEV), out=torch.empty(3, 5, dtype=torch.float64, device=DEV))


def gemm_layouts(dtype):
    """Operands in every layout the reference runtime hands BLAS as they lie
    (row-major, transposed, rows of a wider matrix) or leaves to ATen (a
    column of one, a matrix ATen copies first), with each bias shape."""
    g = torch.Generator().manual_seed(0)

    def r(*shape):
        return torch.randn(*shape, generator=g, dtype=dtype)

    a, b, wide_a, wide_b = r(6, 4), r(4, 5), r(6, 9), r(4, 11)
    nan_bias = r(5)
    nan_bias[2] = float("nan")
    return [
        ("mm", lambda: (None, a, b)), ("a transposed", lambda: (None, r(4, 6).t(), b)),
        ("b transposed", lambda: (None, a, r(5, 4).t())), ("both transposed", lambda: (None, r(4, 6).t(), r(5, 4).t())),
        ("rows of wider matrices", lambda: (None, wide_a[:, 2:6], wide_b[:, 3:8])),
        ("every other column", lambda: (None, r(6, 8)[:, ::2], b)),  # ATen copies it: not BLAS-ready
        ("one row", lambda: (None, a[:1], b)), ("inner size 1", lambda: (None, a[:, :1], b[:1])),
        ("one column", lambda: (None, a, b[:, :1])),
        ("bias [n]", lambda: (r(5), a, b)), ("bias [1, n]", lambda: (r(1, 5), a, b)), ("bias [m, n]", lambda: (r(6, 5), a, b)),
        ("bias [m, 1]", lambda: (r(6, 1), a, b)), ("beta 0 ignores a NaN bias", lambda: (nan_bias, a, b)),
    ]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("case", range(14))
@pytest.mark.parametrize("alpha,beta", [(1, 1), (-2, 0.5)])
def test_products_are_bitwise_torchs_cpu_products(dtype, case, alpha, beta):
    # The same GEMM call as torch's CPU kernel (or torch's kernel itself):
    # equal bits, not just close, in every layout and with every bias.
    name, make = gemm_layouts(dtype)[case]
    c, a, b = make()
    if name.startswith("beta 0"):
        beta = 0
    if c is None:
        fn, args = torch.mm, (a, b)
    else:
        fn, args = (lambda c, a, b: torch.addmm(c, a, b, beta=beta, alpha=alpha)), (c, a, b)
    expected = fn(*args)
    got = fn(*[t.to(DEV) for t in args]).cpu()
    assert torch.equal(got.isnan(), expected.isnan()) and torch.equal(got.nan_to_num(), expected.nan_to_num()), name


def test_reduced_float32_matmul_precision_is_left_to_aten():
    a, b, c = torch.randn(6, 32), torch.randn(32, 16), torch.randn(16)
    before = torch.get_float32_matmul_precision()
    try:
        torch.set_float32_matmul_precision("medium")
        expected = torch.addmm(c, a, b)
        got = torch.addmm(c.to(DEV), a.to(DEV), b.to(DEV)).cpu()
    finally:
        torch.set_float32_matmul_precision(before)
    assert torch.equal(got, expected)


NORMS = [(2, None, False), (1, None, False), (float("inf"), None, False), (2, 1, True), (1, (0, 2), False),
         (float("inf"), -1, True)]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16])
@pytest.mark.parametrize("ord,dim,keepdim", NORMS)
def test_vector_norm_matches_cpu_and_its_decomposition(dtype, ord, dim, keepdim):
    x = torch.randn(3, 4, 5).to(dtype)
    x[0, 0, 0] = -7  # the inf-norm's maximum is an absolute value
    xt = x.permute(2, 0, 1) if dim is None else x  # non-contiguous too
    fn = lambda t: torch.linalg.vector_norm(t, ord, dim, keepdim)  # noqa: E731
    expected = fn(xt)
    got = fn(xt.to(DEV))
    torch.testing.assert_close(got.cpu(), expected, **tol(dtype))
    with mps_ext.graph.decompositions():
        torch.testing.assert_close(fn(xt.to(DEV)).cpu(), expected, **tol(dtype))
    assert ("aten.vector_norm" in kernel_names(fn, xt.to(DEV))) == (dtype != torch.float16)


def test_clip_grad_norm_matches_cpu():
    params = [torch.randn(4, 3, requires_grad=True), torch.randn(3, requires_grad=True)]
    grads = [torch.randn(4, 3), torch.randn(3)]
    dev = [p.detach().to(DEV).requires_grad_() for p in params]
    for p, d, g in zip(params, dev, grads):
        p.grad, d.grad = g.clone(), g.to(DEV)
    for max_norm, norm_type in [(0.5, 2.0), (0.5, float("inf")), (100.0, 1.0)]:
        total = torch.nn.utils.clip_grad_norm_(params, max_norm, norm_type)
        total_dev = torch.nn.utils.clip_grad_norm_(dev, max_norm, norm_type)
        torch.testing.assert_close(total_dev.cpu(), total)
        for p, d in zip(params, dev):
            torch.testing.assert_close(d.grad.cpu(), p.grad)


IN_PLACE = [
    ("sum over dim 0", lambda x, y: x.sum(0)),
    ("amax keepdim", lambda x, y: x.amax(1, keepdim=True)),
    ("mean of all", lambda x, y: x.mean()),
    ("norm", lambda x, y: torch.linalg.vector_norm(x, 2, 0)),
    ("cat", lambda x, y: torch.cat([x, y, x], 1)),
    ("zeros", lambda x, y: torch.zeros(3, 4, device=x.device)),
    ("full", lambda x, y: torch.full((2, 3), 1.5, device=x.device)),
    ("mm", lambda x, y: x @ y.t()),
    ("bmm", lambda x, y: torch.bmm(x.expand(2, 4, 6), y.t().expand(2, 6, 4))),
    ("addmm", lambda x, y: torch.addmm(x[:, :4], x, y.t())),
    ("conv2d", lambda x, y: F.conv2d(x.view(1, 1, 4, 6), y.view(4, 1, 2, 3))),
    ("max_pool2d", lambda x, y: F.max_pool2d(x.view(1, 1, 4, 6), 2, return_indices=True)[1]),
    ("batch_norm", lambda x, y: F.batch_norm(x, None, None, training=True)),
]


@pytest.mark.parametrize("case", range(len(IN_PLACE)))
def test_results_are_written_into_device_memory(case):
    _, fn = IN_PLACE[case]
    x, y = torch.randn(4, 6), torch.randn(4, 6)
    expected = fn(x, y)
    xd, yd = x.to(DEV), y.to(DEV)
    fn(xd, yd)  # compiled: a miss may build constants
    with mps_ext.profiler.profile():
        got = fn(xd, yd)
    copies = [e.name for e in mps_ext.profiler.events() if e.kind == "copy"]
    torch.testing.assert_close(got.cpu(), expected)
    assert copies == [], f"the result was computed elsewhere and copied: {copies}"


def test_adopted_results_are_device_memory_and_never_alias_inputs():
    x = torch.randn(2, 4, 16, 16)
    w = torch.randn(8, 4, 3, 3)
    xd, wd = x.to(DEV), w.to(DEV)
    F.conv2d(xd, wd)
    base = torch.mpsgraph.memory_allocated()
    y = F.conv2d(xd, wd)  # ATen's result, taken over
    assert torch.mpsgraph.memory_allocated() - base >= y.nbytes
    torch.testing.assert_close(y.cpu(), F.conv2d(x, w))
    y.add_(1)  # device memory like any other: in-place ops, views, copies
    torch.testing.assert_close(y[:, :2].cpu(), F.conv2d(x, w)[:, :2] + 1)
    del y
    assert torch.mpsgraph.memory_allocated() == base
    # A graph that returns its input unchanged (zero padding) gives a new tensor.
    p = F.pad(xd, (0, 0))
    p.fill_(0)
    torch.testing.assert_close(xd.cpu(), x)
