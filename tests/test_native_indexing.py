"""Indexing and sorting on the mpsgraph device (csrc/ops/aten/indexing.cpp):
gather, scatter(_add/_reduce), index_select/embedding, index_add/index_copy,
x[idx] / x[idx] = v / x[idx] += v, sort/argsort/topk, randperm. Every case
runs on the device and on the CPU, must agree and must not touch the CPU
fallback (the counter is unchanged); the same ops with every kernel node
decomposed agree too, and bad indices raise torch's errors before anything is
written."""
import pytest
import torch
import torch.nn.functional as F

import mps_ext
from test_native_ops import DEV, fallbacks, to_dev

DTYPES = [torch.float32, torch.float16, torch.bfloat16, torch.int64, torch.bool]


def check(fn, *args, atol=None, rtol=None):
    """fn on the CPU vs the device: equal results, no fallback; then the same
    with every kernel node decomposed (what MPSGraph runs)."""
    expected = fn(*args)
    for decomposed in (False, True):
        before = fallbacks()
        if decomposed:
            with mps_ext.graph.decompositions():
                got = fn(*to_dev(args))
        else:
            got = fn(*to_dev(args))
        assert fallbacks() == before, "the op fell back to the CPU"
        exp = expected if isinstance(expected, (tuple, list)) else [expected]
        res = got if isinstance(got, (tuple, list)) else [got]
        for e, r in zip(exp, res):
            assert r.device.type == DEV
            torch.testing.assert_close(r.cpu(), e, equal_nan=True, atol=atol, rtol=rtol)


def values(shape, dtype):
    if dtype == torch.bool:
        return torch.rand(shape) > 0.5
    if dtype == torch.int64:
        return torch.randint(-50, 50, shape)
    return torch.randn(shape).to(dtype)


def distinct(shape, dtype=torch.float32):
    """A random permutation of 0..n-1 (no ties: sort/topk indices are unique)."""
    n = 1
    for s in shape:
        n *= s
    return torch.randperm(n).reshape(shape).to(dtype)


# --- gather / scatter ----------------------------------------------------------------
@pytest.mark.parametrize("dtype", DTYPES)
def test_gather(dtype):
    x = values((4, 5), dtype)
    check(lambda a, i: torch.gather(a, 1, i), x, torch.randint(0, 5, (4, 7)))
    check(lambda a, i: torch.gather(a, 0, i), x, torch.randint(0, 4, (2, 3)))  # smaller index off the axis
    check(lambda a, i: torch.gather(a, -1, i), x.t(), torch.randint(-0, 4, (5, 2)))  # non-contiguous, negative dim
    check(lambda a, i: torch.gather(a, 1, i), x, torch.empty(4, 0, dtype=torch.long))
    check(lambda a, i: torch.gather(a, 1, i), x, torch.randint(0, 5, (4, 3), dtype=torch.int32))


@pytest.mark.parametrize("dtype", DTYPES)
def test_scatter_forms(dtype):
    x = values((4, 5), dtype)
    src = values((4, 5), dtype)
    perm = torch.stack([torch.randperm(5)[:3] for _ in range(4)])  # no duplicates per row: set is deterministic
    check(lambda a, i, s: a.scatter(1, i, s), x, perm, src)
    check(lambda a, i, s: a.clone().scatter_(1, i, s), x, perm, src)
    check(lambda a, i: a.scatter(1, i, True if dtype == torch.bool else 3), x, perm)
    check(lambda a, i, s: a.scatter(-1, i, s), x.t().contiguous().t(), perm[:2], src)  # smaller index off the axis
    check(lambda a, i, s: a.scatter(1, i, s), x, perm[:, :0], src)  # empty index
    if dtype not in (torch.bool,):
        dup = torch.randint(0, 5, (4, 6))
        check(lambda a, i, s: a.scatter_add(1, i, s), x, dup, values((4, 6), dtype))
        check(lambda a, i, s: a.clone().scatter_add_(0, i, s), x, torch.randint(0, 4, (3, 5)), values((3, 5), dtype))


@pytest.mark.parametrize("reduce", ["sum", "prod", "amax", "amin"])
def test_scatter_reduce(reduce):
    x, src = torch.randn(3, 6), torch.randn(3, 8)
    idx = torch.randint(0, 6, (3, 8))
    check(lambda a, i, s: a.scatter_reduce(1, i, s, reduce), x, idx, src)
    check(lambda a, i, s: a.clone().scatter_reduce_(1, i, s, reduce, include_self=True), x, idx, src)


def test_scatter_reduce_string_forms():
    x, src, idx = torch.randn(3, 6), torch.randn(3, 8), torch.randint(0, 6, (3, 8))
    check(lambda a, i, s: a.scatter(1, i, s, reduce="add"), x, idx, src)
    check(lambda a, i, s: a.scatter(1, i, s, reduce="multiply"), x, idx, src)
    check(lambda a, i: a.scatter(1, i, 2.0, reduce="multiply"), x, idx)


def test_scatter_reduce_mean_falls_back_and_is_counted():
    x, src, idx = torch.randn(3, 6), torch.randn(3, 8), torch.randint(0, 6, (3, 8))
    before = fallbacks()
    got = x.to(DEV).scatter_reduce(1, idx.to(DEV), src.to(DEV), "mean")
    assert fallbacks() == before + 1
    torch.testing.assert_close(got.cpu(), x.scatter_reduce(1, idx, src, "mean"))


# --- index_select / embedding / index_add / index_copy ---------------------------------
@pytest.mark.parametrize("dtype", DTYPES)
def test_index_select(dtype):
    x = values((4, 3, 5), dtype)
    check(lambda a, i: a.index_select(0, i), x, torch.tensor([3, 0, 0, 2]))
    check(lambda a, i: a.index_select(-1, i), x.transpose(0, 2), torch.tensor([1, 1], dtype=torch.int32))
    check(lambda a, i: a.index_select(1, i), x, torch.tensor(2))  # 0-d index
    check(lambda a, i: a.index_select(1, i), x, torch.empty(0, dtype=torch.long))
    s = x[0, 0, 0]  # a 0-d self: its value, for one index 0
    check(lambda a, i: a.index_select(0, i), s, torch.tensor([0]))
    check(lambda a, i: a.index_select(-1, i), s, torch.tensor(0, dtype=torch.int32))
    for i, error, message in [([1], IndexError, "index out of range"), ([0, 0], RuntimeError, "can have only 1 value")]:
        with pytest.raises(error, match=message):
            s.to(DEV).index_select(0, torch.tensor(i, device=DEV))


def test_nonzero_of_a_scalar():
    # one row of no coordinates, or none
    for v in (0.0, 2.5):
        check(torch.nonzero, torch.tensor(v))
        check(torch.argwhere, torch.tensor(v))


def test_embedding_forward_backward_with_padding_and_duplicates():
    w, idx = torch.randn(50, 8), torch.randint(0, 50, (6, 9))
    idx[0, :4] = 7  # duplicates accumulate
    for pad in (None, 7):
        wc, wd = w.clone().requires_grad_(), w.to(DEV).requires_grad_()
        g = torch.randn(6, 9, 8)
        F.embedding(idx, wc, padding_idx=pad).backward(g)
        before = fallbacks()
        out = F.embedding(idx.to(DEV), wd, padding_idx=pad)
        out.backward(g.to(DEV))
        assert fallbacks() == before
        torch.testing.assert_close(out.detach().cpu(), F.embedding(idx, w))
        torch.testing.assert_close(wd.grad.cpu(), wc.grad)
    for dt in (torch.float16, torch.bfloat16):
        check(lambda gr, i: torch.ops.aten.embedding_dense_backward(gr, i, 50, -1, False), torch.randn(6, 8).to(dt),
              idx[0, :6])


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16, torch.int64])
def test_index_add(dtype):
    x, src = values((5, 4), dtype), values((6, 4), dtype)
    idx = torch.tensor([0, 4, 4, 1, 0, 0])  # duplicates accumulate
    check(lambda a, i, s: a.index_add(0, i, s), x, idx, src)
    check(lambda a, i, s: a.index_add(0, i, s, alpha=2), x, idx, src)
    check(lambda a, i, s: a.clone().index_add_(-1, i, s), x.t(), idx, src.t())
    check(lambda a, i, s: a.index_add(0, i, s), x, idx[:0], src[:0])


@pytest.mark.parametrize("dtype", DTYPES)
def test_index_copy(dtype):
    x, src = values((5, 4), dtype), values((3, 4), dtype)
    idx = torch.tensor([4, 0, 2])
    check(lambda a, i, s: a.index_copy(0, i, s), x, idx, src)
    check(lambda a, i, s: a.clone().index_copy_(-1, i, s), x, torch.tensor([3, 0]), values((5, 2), dtype).t().contiguous().t())


# --- advanced indexing -------------------------------------------------------------------
INDEXINGS = [
    ("x[i]", lambda x, i, j: x[i]),
    ("x[:, i]", lambda x, i, j: x[:, i]),
    ("x[..., i]", lambda x, i, j: x[..., i]),
    ("x[i, j]", lambda x, i, j: x[i, j]),
    ("x[i, :, j]", lambda x, i, j: x[i, :, j]),  # non-adjacent: result dims first
    ("x[:, i2d]", lambda x, i, j: x[:, i.reshape(2, 2)]),
    ("x[i, j2d]", lambda x, i, j: x[i[:2], j.reshape(2, 2)]),  # broadcast index tensors
]


@pytest.mark.parametrize("name,fn", INDEXINGS, ids=[n for n, _ in INDEXINGS])
@pytest.mark.parametrize("dtype", DTYPES)
def test_index(name, fn, dtype):
    x = values((4, 4, 5), dtype)
    i, j = torch.tensor([3, -1, 0, 0]), torch.tensor([2, -3, 1, 2])  # negative indices wrap
    check(fn, x, i, j)


def test_index_noncontiguous_empty_and_cpu_indices():
    x = torch.randn(4, 3, 5)
    check(lambda a, i: a.transpose(0, 2)[i], x, torch.tensor([4, 0]))
    check(lambda a, i: a[i], x, torch.empty(0, dtype=torch.long))
    check(lambda a, i: a[i], torch.empty(4, 0), torch.tensor([1, 2]))
    before = fallbacks()
    got = x.to(DEV)[torch.tensor([1, -4])]  # index on the CPU, as torch allows
    assert fallbacks() == before
    torch.testing.assert_close(got.cpu(), x[torch.tensor([1, -4])])


def put(x, idx, v, accumulate):
    x = x.clone()
    x.index_put_(idx, v, accumulate=accumulate)
    return x


def setitem(index):
    def fn(a, *args):
        a = a.clone()
        a[index(*args[:-1])] = args[-1]
        return a
    return fn


@pytest.mark.parametrize("dtype", DTYPES)
def test_index_put(dtype):
    x = values((4, 3, 5), dtype)
    i, j = torch.tensor([3, -1, 1]), torch.tensor([2, -5, 1])
    check(lambda a, i, v: put(a, (i,), v, False), x, i[:2], values((2, 3, 5), dtype))
    check(setitem(lambda i, j: (i, slice(None), j)), x, i, j, values((3, 3), dtype))  # non-adjacent
    check(setitem(lambda i: (slice(None), i)), x, torch.tensor([2, 0]), values((5,), dtype))  # broadcast values
    check(setitem(lambda i: (slice(None), i)), x, torch.tensor([0, 2]), values((4, 1, 5), dtype))
    check(setitem(lambda i: (i,)), x, torch.tensor([0, 2]), values((), dtype))  # 0-d value


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16, torch.int64])
def test_index_put_accumulate_duplicates(dtype):
    x = values((6, 4), dtype)
    idx = torch.tensor([0, 5, 5, 5, -1, 2])  # duplicates (incl. -1 == 5) add up
    # low precision: the order of the additions differs from the CPU's
    tol = {"atol": 2e-2, "rtol": 2e-2} if dtype in (torch.float16, torch.bfloat16) else {}
    check(lambda a, i, v: put(a, (i,), v, True), x, idx, values((6, 4), dtype), **tol)
    check(lambda a, i, j, v: put(a, (i, j), v, True), x, idx, torch.tensor([1, 1, 1, 0, 1, 3]), values((6,), dtype),
          **tol)

    def iadd(a, i, v):
        a = a.clone()
        a[i] += v  # index, add, index_put (no accumulate: torch's semantics)
        return a

    check(iadd, x, torch.tensor([1, 3]), values((2, 4), dtype))


def test_index_put_inplace_on_a_view():
    x, idx = torch.randn(4, 6), torch.tensor([0, 2])

    def fn(a, i, v):
        a = a.clone()
        a[:, 1:5].index_put_((i,), v, accumulate=True)
        return a

    check(fn, x, idx, torch.randn(2, 4))


# --- sort / argsort / topk ----------------------------------------------------------------
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16, torch.int64])
def test_sort_argsort(dtype):
    x = distinct((4, 7), dtype)
    for dim in (0, 1, -1):
        for desc in (False, True):
            check(lambda a: torch.sort(a, dim=dim, descending=desc), x)
            check(lambda a: torch.argsort(a, dim=dim, descending=desc), x)
    check(lambda a: torch.sort(a, dim=0), x.t())  # non-contiguous
    check(lambda a: torch.sort(a), torch.empty(3, 0, dtype=dtype))
    check(lambda a: torch.sort(a, 0), torch.tensor(3.0).to(dtype))  # 0-d


def test_sort_stable_ties_nan_and_bool():
    x = torch.tensor([[2.0, 1.0, 2.0, float("nan"), 1.0, -float("inf"), 2.0], [0.0, -0.0, 5.0, 0.0, 5.0, 1.0, 0.0]])
    for desc in (False, True):
        check(lambda a: torch.sort(a, stable=True, descending=desc), x)
    check(lambda a: torch.sort(a, stable=True), torch.tensor([True, False, True, False]))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.int64])
def test_topk(dtype):
    x = distinct((5, 9), dtype)
    for k, dim, largest in [(3, 1, True), (3, -1, False), (2, 0, True), (9, 1, True), (0, 1, True)]:
        check(lambda a: torch.topk(a, k, dim=dim, largest=largest), x)
    check(lambda a: torch.topk(a, 2, dim=0), x.t())


def test_topk_ties_give_torch_values_and_consistent_indices():
    x = torch.tensor([[1.0, 3.0, 3.0, 2.0, 3.0]])
    v, i = torch.topk(x.to(DEV), 2)
    torch.testing.assert_close(v.cpu(), torch.topk(x, 2).values)
    torch.testing.assert_close(x.gather(1, i.cpu()), v.cpu())


def test_gradients():
    x = torch.randn(5, 6)
    idx = torch.tensor([4, 0, 4, 1])
    gidx = torch.randint(0, 6, (5, 3))
    cases = [
        lambda a: a[idx.to(a.device)].square().sum(),
        lambda a: a[idx.to(a.device), idx.to(a.device)].sum(),
        lambda a: torch.gather(a, 1, gidx.to(a.device)).square().sum(),
        lambda a: torch.zeros(5, 8, device=a.device).scatter_add(1, gidx.to(a.device), a[:, :3]).square().sum(),
        lambda a: (torch.sort(a, 1).values * torch.arange(6.0, device=a.device)).sum(),
        lambda a: torch.topk(a, 2, dim=0).values.square().sum(),
        lambda a: a.index_select(1, idx.to(a.device)).square().sum(),
    ]
    for fn in cases:
        xc, xd = x.clone().requires_grad_(), x.to(DEV).requires_grad_()
        fn(xc).backward()
        before = fallbacks()
        fn(xd).backward()
        assert fallbacks() == before
        torch.testing.assert_close(xd.grad.cpu(), xc.grad)


def test_gradcheck_gather_and_index():
    x = torch.randn(3, 4, dtype=torch.float32, device=DEV, requires_grad=True)
    idx = torch.tensor([[0, 3], [1, 1], [2, 0]], device=DEV)
    # float32 on the device: compare the analytical gradient with CPU double's
    for fn in (lambda a: torch.gather(a, 1, idx.to(a.device)), lambda a: a[idx.to(a.device)[:, 0]]):
        y = fn(x)
        g = torch.randn_like(y)
        (gx,) = torch.autograd.grad(y, x, g)
        xc = x.detach().cpu().double().requires_grad_()
        (gc,) = torch.autograd.grad(fn(xc), xc, g.cpu().double())
        torch.testing.assert_close(gx.cpu().double(), gc)


# --- errors --------------------------------------------------------------------------------
def test_out_of_range_indices_raise_before_writing():
    x = torch.arange(10.0).reshape(2, 5).to(DEV)
    keep = x.clone()
    bad = torch.tensor([[0, 5]], device=DEV)
    with pytest.raises(RuntimeError, match="index 5 is out of bounds for dimension 1 with size 5"):
        torch.gather(x, 1, bad)
    with pytest.raises(RuntimeError, match="index -1 is out of bounds"):
        torch.gather(x, 1, -bad[:, :1] - 1)
    with pytest.raises(RuntimeError, match="index 5 is out of bounds for dimension 1 with size 5"):
        x.scatter_(1, bad, 1.0)
    with pytest.raises(RuntimeError, match="out of bounds"):
        x.scatter_add_(1, bad, torch.ones(1, 2, device=DEV))
    with pytest.raises(IndexError, match="index out of range in self"):
        x.index_select(1, torch.tensor([-1], device=DEV))
    with pytest.raises(IndexError, match="index out of range in self"):
        x.index_add_(1, torch.tensor([5], device=DEV), torch.ones(2, 1, device=DEV))
    with pytest.raises(IndexError, match="index 7 is out of bounds for dimension 1 with size 5"):
        x.index_copy_(1, torch.tensor([7], device=DEV), torch.ones(2, 1, device=DEV))
    with pytest.raises(IndexError, match="index 2 is out of bounds for dimension 0 with size 2"):
        x[torch.tensor([2], device=DEV)]
    with pytest.raises(IndexError, match="index -6 is out of bounds for dimension 1 with size 5"):
        x[:, torch.tensor([-6], device=DEV)] = 1.0
    with pytest.raises(IndexError, match="index 9 is out of bounds for dimension 1 with size 5"):
        x.index_put_((torch.tensor([0], device=DEV), torch.tensor([9], device=DEV)), torch.tensor(1.0, device=DEV),
                     accumulate=True)
    with pytest.raises(RuntimeError, match="selected index k out of range"):
        torch.topk(x, 6)
    with pytest.raises(RuntimeError, match="dtypes match"):
        x.index_put_((torch.tensor([0], device=DEV),), torch.ones(5, dtype=torch.float64, device=DEV))
    torch.testing.assert_close(x.cpu(), keep.cpu())


# --- randperm: the CPU generator's stream ---------------------------------------------
def test_randperm_matches_the_cpu_stream():
    for n, dtype in [(10, torch.int64), (37, torch.int32), (5, torch.float32), (0, torch.int64)]:
        torch.manual_seed(3)
        expected = torch.randperm(n, dtype=dtype)
        torch.manual_seed(3)
        before = fallbacks()
        got = torch.randperm(n, dtype=dtype, device=DEV)
        assert fallbacks() == before
        torch.testing.assert_close(got.cpu(), expected)
    with mps_ext.graph.decompositions():  # MPSGraph's form: a permutation, not the CPU stream
        p = torch.randperm(50, device=DEV).cpu()
    assert sorted(p.tolist()) == list(range(50))


def test_graphs_use_gather_scatter_nodes_not_one_hot_matmuls():
    import json
    w = torch.randn(100, 4, device=DEV)
    idx = torch.tensor([3, 99, 3], device=DEV)

    def run():
        w.index_select(0, idx)
        torch.ops.aten.embedding_dense_backward(torch.randn(3, 4, device=DEV), idx, 100, -1, False)
        w[idx] = 1.0
        torch.sort(w, 0)

    kinds = set()
    for _, as_json, _ in mps_ext.graph.capture(run):
        kinds |= {n["op"] for n in json.loads(as_json)["nodes"]}
    assert {"gather", "scatter", "arg_sort", "gather_along_axis"} <= kinds
    assert "matmul" not in kinds and "iota" not in kinds


# --- nonzero / masked_select / x[mask]: data-dependent sizes ---------------------------
@pytest.mark.parametrize("dtype", DTYPES)
def test_nonzero_masked_select_and_mask_indexing(dtype):
    x = values((4, 6), dtype)
    x[1] = 0  # a row of zeros
    m = torch.rand(4, 6) > 0.5
    check(torch.nonzero, x)
    check(torch.nonzero, x.t())  # non-contiguous
    check(lambda a: torch.nonzero(a, as_tuple=True), x)
    check(torch.argwhere, x)
    check(torch.masked_select, x, m)
    check(torch.masked_select, x, m[:1])  # broadcast mask
    check(lambda a, b: a[b], x, m)
    check(lambda a, b: a[:, b[0]], x, m)  # mask on a later dim
    check(lambda a, b: a[b[:, 0]], x, m)

    def set_masked(a, b, v):
        a = a.clone()
        a[b] = v
        return a

    check(set_masked, x, m, values((), dtype))
    check(torch.nonzero, torch.zeros(3, 0, dtype=dtype))
    check(torch.nonzero, torch.zeros(5, dtype=dtype))  # nothing selected
