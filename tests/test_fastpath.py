"""The per-op fast path of the graph seam: binary cache keys built from typed
spec fields, pooled 0-d scalar inputs, device tensors handed to the reference
executor as they are (CPU views only where ATen computes), results written
straight into caller memory, single-node fused regions.

Every test here would fail if the mechanism it covers reused a wrong graph,
a live scalar, or wrote to the wrong memory."""
import json
import os
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F

import mps_ext
from mps_ext import _C
from mps_ext.graph import Graph

DEV = "mpsgraph"


def misses():
    return mps_ext.graph.cache_info().misses


def same(cpu_fn, *args, atol=1e-6, rtol=1e-5):
    expected = cpu_fn(*args)
    got = cpu_fn(*[a.to(DEV) if isinstance(a, torch.Tensor) else a for a in args])
    torch.testing.assert_close(got.cpu(), expected, atol=atol, rtol=rtol)
    return got


# --- keys: every field the builder reads tells graphs apart ------------------------
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.int32, torch.int64])
def test_cached_hit_with_another_dtype_builds_its_own_graph(dtype):
    mps_ext.graph.cache_clear()
    x = torch.arange(12, dtype=torch.float32).reshape(3, 4)
    same(lambda t: t + t, x)  # float32 graph cached
    before = misses()
    same(lambda t: t + t, x.to(dtype))
    assert misses() == before + 1
    same(lambda t: t + t, x.to(dtype) * 2)  # same types: a hit
    assert misses() == before + 1


def test_rank_and_scalar_type_are_part_of_the_key():
    x = torch.randn(2, 3)
    same(lambda t: t * 3, x)
    for fn, arg in [(lambda t: t * 3, torch.randn(2, 3, 4)),            # rank
                    (lambda t: t * 3, torch.randn(5)),
                    (lambda t: t * 2.5, x.to(torch.float16)),           # float scalar into half
                    (lambda t: t * 2, torch.arange(6).reshape(2, 3)),   # int scalar into int64
                    (lambda t: t * 2.5, torch.arange(6).reshape(2, 3)),  # float scalar promotes int64 -> float
                    (lambda t: t * True, torch.ones(2, 3, dtype=torch.bool))]:
        same(fn, arg, atol=1e-2, rtol=1e-2)


def test_attribute_values_are_part_of_the_key():
    mps_ext.graph.cache_clear()
    x = torch.randn(4, 5)
    before = misses()
    a = same(lambda t: F.gelu(t), x)
    b = same(lambda t: F.gelu(t, approximate="tanh"), x)
    assert not torch.equal(a.cpu(), b.cpu())
    y = torch.randn(4, 5) + 3
    for mode in (None, "floor", "trunc"):
        same(lambda t, u: torch.div(t, u, rounding_mode=mode), x * 10, y)
    assert misses() >= before + 5  # gelu x2 + div x3, none shared


def test_readable_key_decodes_the_binary_key():
    x, y = torch.randn(2, 3, device=DEV), torch.randn(3, device=DEV)
    key, _, _ = mps_ext.graph.capture(lambda: torch.add(x, y, alpha=2))[-1]
    assert key == ('reference:aten::elementwise|float32[-1,-1]|float32[-1]|float32[]'
                   '|op="add"|compute="float32"|result="float32"|present=7')


def test_cache_check_rebuilds_on_hits():
    # conftest sets MPS_EXT_CHECK_CACHE=1: a hit decodes the key and rebuilds.
    x = torch.randn(3, 3)
    for _ in range(3):
        same(lambda t: F.leaky_relu(t, 0.2).sigmoid(), x)


# --- memoized calls: a repeat call reuses its graph without a spec or lookup -----------
MEMOIZED = {  # one family each: elementwise, reduction, matmul
    "mul": lambda x, y: x * y,
    "sum": lambda x, y: x.sum(0),
    "mm": lambda x, y: x @ y.t(),
}


@pytest.mark.parametrize("name", MEMOIZED)
def test_memoized_calls_count_as_hits_and_follow_the_cache(name):
    op = MEMOIZED[name]
    x, y = torch.randn(4, 5), torch.randn(4, 5)
    dx, dy = x.to(DEV), y.to(DEV)
    mps_ext.graph.cache_clear()
    op(dx, dy)
    assert mps_ext.graph.cache_info()[:3] == (0, 1, 1)  # hits, misses, size
    torch.testing.assert_close(op(dx, dy).cpu(), op(x, y))
    assert mps_ext.graph.cache_info()[:3] == (1, 1, 1)  # the repeat call: a hit
    mps_ext.graph.cache_clear()  # a memo must not outlive the cache's graphs
    op(dx, dy)
    assert mps_ext.graph.cache_info()[:3] == (0, 1, 1)
    with mps_ext.graph.decompositions():  # nor run kernels where decompositions are asked for
        op(dx, dy)
    assert mps_ext.graph.cache_info().misses == 2
    torch.testing.assert_close(op(dx, dy).cpu(), op(x, y))
    assert mps_ext.graph.cache_info().hits >= 1


def test_memoized_calls_compile_again_after_an_eviction():
    code = (
        "import torch, mps_ext\n"
        "x = torch.randn(3, 3).to('mpsgraph')\n"
        "for _ in range(3): x * x; x + x\n"  # a cache of one: each call evicts the other's graph
        "i = mps_ext.graph.cache_info()\n"
        "print(i.hits, i.misses, i.evictions)\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                       env={**os.environ, "MPS_EXT_GRAPH_CACHE_SIZE": "1"})
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["0", "6", "5"]


def test_a_step_worth_of_memoized_ops_all_stay_memoized():
    # Sixteen elementwise graphs in turn (a training step's forward has about as
    # many): each keeps its memo entry, whatever slots their keys hash to. A
    # direct-mapped memo of 64 slots made some of them collide and rebuild their
    # spec on every call in most processes.
    ops = [torch.exp, torch.log, torch.sin, torch.cos, torch.tanh, torch.sigmoid, torch.abs, torch.neg,
           torch.sqrt, torch.floor, torch.ceil, torch.round, torch.trunc, torch.reciprocal, torch.sign, torch.erf]
    x = torch.rand(4, 5).add_(0.5).to(DEV)
    for _ in range(2):
        for op in ops:
            op(x)
    before = mps_ext._C._memo_hits()
    for op in ops:
        op(x)
    assert mps_ext._C._memo_hits() - before == len(ops)


@pytest.mark.parametrize("shape", [(8, 16), (4, 8, 16)])
def test_a_layer_norm_and_cross_entropy_step_runs_only_memoized_graphs(shape):
    # After the first step, every graph of layer_norm, log_softmax, nll_loss,
    # the backward's seed (ones_like) and their backwards is found through its
    # op's memo: no spec built, no cache lock. Checked against the cache's
    # total of graph runs, so an op that misses its memo fails here.
    x = torch.randn(*shape, device=DEV, requires_grad=True)
    t = torch.randint(0, 16, shape[:-1], device=DEV)
    ln = torch.nn.LayerNorm(16).to(DEV)

    def step():
        loss = F.cross_entropy(ln(x).flatten(0, -2), t.flatten(), label_smoothing=0.1)
        return torch.autograd.grad(loss, (x, *ln.parameters()))

    step()
    runs, memo_hits = mps_ext.graph.cache_info().hits, mps_ext._C._memo_hits()
    grads = step()
    runs, memo_hits = mps_ext.graph.cache_info().hits - runs, mps_ext._C._memo_hits() - memo_hits
    assert runs >= 7 and memo_hits == runs
    xc = x.detach().cpu().requires_grad_()
    lc = torch.nn.LayerNorm(16)
    expected = torch.autograd.grad(F.cross_entropy(lc(xc).flatten(0, -2), t.cpu().flatten(), label_smoothing=0.1),
                                   (xc, *lc.parameters()))
    for got, want in zip(grads, expected):
        torch.testing.assert_close(got.cpu(), want)


def test_cat_is_memoized_per_shapes_dim_and_dtype():
    # An LSTM's backward concatenates its four gate gradients on every step:
    # a repeated cat runs its memoized graph; other sizes, dims or dtypes are
    # other graphs, with the right results.
    a, b = torch.randn(3, 4), torch.randn(3, 2)
    da, db = a.to(DEV), b.to(DEV)
    torch.cat([da, db, da], 1)
    before = mps_ext._C._memo_hits()
    got = torch.cat([da, db, da], 1)
    assert mps_ext._C._memo_hits() - before == 1
    assert torch.equal(got.cpu(), torch.cat([a, b, a], 1))
    for xs, dim in (([a, b], 1), ([a, a, a], 0), ([a, a.double()], 0), ([b, a, a], 1)):
        assert torch.equal(torch.cat([x.to(DEV) for x in xs], dim).cpu(), torch.cat(xs, dim))
        assert torch.equal(torch.cat([x.to(DEV) for x in xs], dim).cpu(), torch.cat(xs, dim))


# --- borrowed inputs: graph runs lend the caller's tensors -------------------------
BORROWING_OPS = {
    "mul": (lambda a, b: a * b, [(16, 64), (16, 64)]),
    "sigmoid of a column slice": (lambda a: torch.sigmoid(a[:, 8:24]), [(16, 64)]),
    "mm": (lambda a, b: a @ b, [(16, 32), (32, 8)]),
    "addmm": (lambda c, a, b: torch.addmm(c, a, b), [(8,), (16, 32), (32, 8)]),
    "sum": (lambda a: a.sum(0, keepdim=True), [(16, 64)]),
    "cat": (lambda a, b: torch.cat([a, b, a], 1), [(4, 3), (4, 5)]),
    "layer_norm": (lambda x, w, b: F.layer_norm(x, (8,), w, b), [(4, 8), (8,), (8,)]),
    "softmax": (lambda x: torch.softmax(x, -1), [(4, 8)]),
    "softmax of a 0-d tensor (reshaped input)": (lambda x: torch.log_softmax(x, 0), [()]),
    "softmax backward": (lambda g, y: torch._softmax_backward_data(g, y, 1, torch.float32), [(4, 8), (4, 8)]),
    "nll_loss of one sample (reshaped input)": (lambda x: F.nll_loss(x, torch.tensor(2, device=x.device)), [(5,)]),
    "_foreach_add": (lambda a, b: torch._foreach_add([a, b], [b, a])[1], [(3, 4), (3, 4)]),
    "batch_norm updating running stats": (lambda x, w, b, m, v: F.batch_norm(x, m, v, w, b, training=True),
                                          [(4, 3, 2, 2), (3,), (3,), (3,), (3,)]),
}


@pytest.mark.parametrize("name", list(BORROWING_OPS))
def test_graph_runs_borrow_inputs_without_leaking_or_dropping_references(name):
    """Inputs are lent to graph runs uncounted (runtime::BorrowedTensors, the
    executor's input slots): a borrow released as an owner would free a
    tensor the caller still holds, one never released would leak it. Either
    shows in the inputs' reference counts after many calls."""
    fn, shapes = BORROWING_OPS[name]
    torch.manual_seed(0)
    cpu = [torch.randn(s) for s in shapes]
    dev = [t.to(DEV) for t in cpu]
    before = [(t._use_count(), sys.getrefcount(t)) for t in dev]
    for _ in range(20):
        got = fn(*dev)
    assert [(t._use_count(), sys.getrefcount(t)) for t in dev] == before
    torch.testing.assert_close(got.cpu(), fn(*cpu))
    del got
    assert [(t._use_count(), sys.getrefcount(t)) for t in dev] == before


@pytest.mark.parametrize("inplace", [False, True])
@pytest.mark.parametrize("other", ["tensor", "scalar"])
def test_unboxed_elementwise_kernels_fall_back_with_their_arguments(inplace, other):
    # Integer fmod has no graph: the typed kernel hands its untouched arguments to the CPU fallback.
    a, b = torch.tensor([7, -7, 5, 9, -3]), torch.tensor([2, 3, -2, 4, 5])
    b = b if other == "tensor" else 3
    expected = a.clone().fmod_(b) if inplace else torch.fmod(a, b)
    da = a.to(DEV)
    db = b.to(DEV) if other == "tensor" else b
    before = torch.ops.mps_ext._fallback_count()
    got = da.fmod_(db) if inplace else torch.fmod(da, db)
    assert torch.ops.mps_ext._fallback_count() == before + 1
    assert (got is da) == inplace
    assert got.device.type == DEV and torch.equal(got.cpu(), expected)


# --- pooled 0-d scalars ----------------------------------------------------------------
def test_several_scalars_of_one_dtype_in_one_op_stay_distinct():
    x = torch.randn(4, 4)
    same(lambda t: F.elu(t, alpha=0.5), x)
    same(lambda t: torch.ops.aten.elu(t, 0.7, 1.3, 0.9), x)  # alpha, scale, input_scale: three float scalars
    same(lambda t: torch.clamp(t, -0.25, 0.5), x)
    same(lambda t: torch.addcmul(t, t, t, value=0.3), x)


def test_scalar_values_change_between_calls_of_one_graph():
    x = torch.randn(8)
    d = x.to(DEV)
    outs = [(d + v).cpu() for v in (1.0, -2.0, 3.5)]
    for v, o in zip((1.0, -2.0, 3.5), outs):
        torch.testing.assert_close(o, x + v)


# --- device tensors through the executor -----------------------------------------------
def test_in_place_result_is_written_into_self():
    acc = torch.zeros(5, 5, device=DEV)
    ptr = acc.data_ptr()
    y = torch.randn(5, 5)
    r = acc.add_(y.to(DEV), alpha=0.5)
    assert r is acc and acc.data_ptr() == ptr
    torch.testing.assert_close(acc.cpu(), 0.5 * y)


def test_overlapping_in_place_operands_still_correct():
    x = torch.randn(4, 4)
    d = x.to(DEV)
    d.add_(d.t())
    torch.testing.assert_close(d.cpu(), x + x.t())


def test_graphs_mixing_fused_and_aten_nodes_on_device_views():
    x = torch.randn(6, 8)
    w = torch.randn(8, 3)
    same(lambda a, b: torch.softmax(a @ b + 1, -1), x, w, atol=1e-5)
    same(lambda a, b: (a.t()[2:] @ b[:4].t()), x, torch.randn(3, 6).t().contiguous().t(), atol=1e-5)
    same(lambda a: a.t().sum(0), x, atol=1e-5)
    same(lambda a: F.layer_norm(a[:, ::2], (4,)), x, atol=1e-5)


def test_functional_results_do_not_alias_inputs():
    x = torch.randn(3, 4, device=DEV)
    y = x * 1  # a graph whose output equals its input's values
    assert y.data_ptr() != x.data_ptr()
    y.add_(1)
    assert not torch.equal(x.cpu(), y.cpu())


# --- fusion ------------------------------------------------------------------------------
def test_single_streaming_node_is_a_fused_region():
    g = Graph()
    a = g.placeholder([4], torch.float32, "a")
    b = g.placeholder([4], torch.float32, "b")
    g.output(g.multiply(a, b))
    assert _C._fusion_plan(g) == [[2]]


@pytest.mark.parametrize("shape,big", [([2, 1], [2, 4]), ([1, 1, 2, 2, 1], [1, 1, 2, 2, 4])])
def test_select_on_a_compare_computed_outside_the_region(shape, big):
    # An integer compare runs in ATen; the select after it must read its bool
    # result, not fold the compare's (unregistered) operands into itself.
    g = Graph()
    d = g.placeholder(shape, torch.float32, "d")
    zero = g.constant(0.0, torch.float32)
    b = g.broadcast(d, shape=big)
    i = g.placeholder(big, torch.int64, "i")
    j = g.placeholder(big, torch.int64, "j")
    g.output(g.select(g.equal(i, j), b, zero))
    torch.manual_seed(0)
    ins = [torch.randn(shape), (torch.rand(big) > 0.5).long(), torch.ones(big, dtype=torch.long)]
    fused = _C._run_reference(g, ins, fuse=True)[0]
    plain = _C._run_reference(g, ins, fuse=False)[0]
    torch.testing.assert_close(fused, plain)
    torch.testing.assert_close(plain, torch.where(ins[1] == ins[2], ins[0].expand(big), 0.0))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.float64])
def test_single_node_regions_match_aten(dtype):
    x = torch.randn(3, 5, dtype=dtype)
    m = torch.rand(3, 5) > 0.5
    tol = dict(atol=1e-3, rtol=1e-3) if dtype == torch.float16 else {}
    same(lambda t: t * 0.5, x, **tol)
    same(lambda t, u: torch.where(u, t, t * 2), x, m, **tol)
    same(lambda t: t.t() * torch.ones(5, 1, dtype=dtype, device=t.device), x, **tol)  # strided + broadcast
    same(lambda t: t.exp(), x, **tol)
    same(lambda t: t.to(torch.float32), x, **tol)


def test_max_pool_backward_matches_cpu():
    x = torch.randn(2, 3, 4, 4)
    a = x.clone().requires_grad_()
    b = x.to(DEV).requires_grad_()
    g = torch.randn(2, 3, 2, 2)
    F.max_pool2d(a, 2).backward(g)
    F.max_pool2d(b, 2).backward(g.to(DEV))
    torch.testing.assert_close(b.grad.cpu(), a.grad)


def test_input_independent_values_are_reused_across_runs_and_never_handed_out():
    # Max-pool's window indices are an Iota chain: computed once per compiled
    # graph, then every call (different inputs) must still be right.
    for seed in range(3):
        x = torch.randn(2, 3, 4, 6, generator=torch.Generator().manual_seed(seed))
        v, i = F.max_pool2d(x, 2, return_indices=True)
        dv, di = F.max_pool2d(x.to(DEV), 2, return_indices=True)
        torch.testing.assert_close(dv.cpu(), v)
        assert torch.equal(di.cpu(), i)
        di.zero_()  # a caller writing into a result must not touch the shared values
