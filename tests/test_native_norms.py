"""layer_norm, group_norm, batch_norm and (log_)softmax on the mpsgraph device, forward and
backward. float32/float64 graphs hold kernel nodes whose reference kernels are
ATen's fused CPU kernels (several results: Graph::kernels), float16/bfloat16
run the plain decomposition; both must match torch on the CPU, and each kernel
must match its own decomposition (mps_ext.graph.decompositions()), which is
what MPSGraph runs."""
import json

import pytest
import torch
import torch.nn.functional as F

import mps_ext

DEV = "mpsgraph"
DTYPES = [torch.float32, torch.float64, torch.float16, torch.bfloat16]


def tol(dtype):
    return {torch.float16: dict(atol=2e-2, rtol=2e-2), torch.bfloat16: dict(atol=5e-2, rtol=5e-2)}.get(dtype, {})


def fallbacks():
    return torch.ops.mps_ext._fallback_count()


def grads_of(fn, tensors):
    """fn(*tensors) and the gradients of (out * seed).sum() for every tensor,
    seed drawn from a fixed generator (the same on both devices)."""
    leaves = [t.detach().clone().requires_grad_() for t in tensors]
    out = fn(*leaves)
    seed = torch.randn(out.shape, generator=torch.Generator().manual_seed(0)).to(out)
    out.backward(seed)
    return [out.detach()] + [t.grad for t in leaves]


def compare_with_cpu(fn, tensors, dtype, decompose=False):
    expected = grads_of(fn, tensors)
    before = fallbacks()
    dev = [t.to(DEV) for t in tensors]
    if decompose:
        with mps_ext.graph.decompositions():
            got = grads_of(fn, dev)
    else:
        got = grads_of(fn, dev)
    assert fallbacks() == before, "a norm fell back to the CPU"
    for e, g in zip(expected, got):
        assert g.device.type == DEV and g.dtype == e.dtype
        torch.testing.assert_close(g.cpu(), e, **tol(dtype))


def kernel_names(fn, *args):
    names = []
    for _, doc, _ in mps_ext.graph.capture(fn, *args):
        names += [n["attrs"]["kernel"] for n in json.loads(doc)["nodes"] if n["op"] == "kernel"]
    return names


# --- layer_norm ------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("affine", ["both", "weight", "none"])
@pytest.mark.parametrize("decompose", [False, True], ids=["kernel", "decomposition"])
def test_layer_norm_forward_backward(dtype, affine, decompose):
    x = torch.randn(6, 5, 8).to(dtype)
    w, b = torch.randn(8).to(dtype), torch.randn(8).to(dtype)
    params = {"both": [w, b], "weight": [w], "none": []}[affine]

    def fn(x, *p):
        return F.layer_norm(x, (8,), *(list(p) + [None] * (2 - len(p))), eps=1e-5)

    compare_with_cpu(fn, [x, *params], dtype, decompose)


def test_layer_norm_over_two_dims_and_non_contiguous_input():
    x = torch.randn(5, 4, 6).transpose(0, 2)  # [6, 4, 5], strided
    w, b = torch.randn(4, 5), torch.randn(4, 5)
    compare_with_cpu(lambda x, w, b: F.layer_norm(x, (4, 5), w, b), [x, w, b], torch.float32)


def test_layer_norm_statistics_match_aten():
    x, w, b = torch.randn(3, 7), torch.randn(7), torch.randn(7)
    expected = torch.native_layer_norm(x, [7], w, b, 1e-5)
    got = torch.native_layer_norm(x.to(DEV), [7], w.to(DEV), b.to(DEV), 1e-5)
    for e, g in zip(expected, got):
        assert g.shape == e.shape and g.dtype == e.dtype
        torch.testing.assert_close(g.cpu(), e)


def test_layer_norm_runs_as_one_multi_result_kernel():
    x, w, b = torch.randn(3, 7, device=DEV), torch.randn(7, device=DEV), torch.randn(7, device=DEV)
    names = kernel_names(lambda: torch.native_layer_norm(x, [7], w, b, 1e-5))
    assert names == ["aten.layer_norm", "aten.layer_norm#1", "aten.layer_norm#2"]
    assert "aten.layer_norm" in mps_ext.graph.kernels()
    # float16 has no kernel: the decomposition (reductions + elementwise) runs
    assert kernel_names(lambda: F.layer_norm(x.half(), (7,))) == []


def test_layer_norm_gradcheck():
    x = torch.randn(3, 4, dtype=torch.float64).to(DEV).requires_grad_()
    w = torch.randn(4, dtype=torch.float64).to(DEV).requires_grad_()
    b = torch.randn(4, dtype=torch.float64).to(DEV).requires_grad_()
    assert torch.autograd.gradcheck(lambda x, w, b: F.layer_norm(x, (4,), w, b), (x, w, b))


# --- group_norm ------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("affine", ["both", "weight", "none"])
@pytest.mark.parametrize("decompose", [False, True], ids=["kernel", "decomposition"])
def test_group_norm_forward_backward(dtype, affine, decompose):
    x = torch.randn(3, 6, 5, 4).to(dtype)
    w, b = torch.randn(6).to(dtype), torch.randn(6).to(dtype)
    params = {"both": [w, b], "weight": [w], "none": []}[affine]

    def fn(x, *p):
        return F.group_norm(x, 3, *(list(p) + [None] * (2 - len(p))), eps=1e-5)

    compare_with_cpu(fn, [x, *params], dtype, decompose)


def test_group_norm_statistics_and_kernels():
    x, w, b = torch.randn(2, 6, 7), torch.randn(6), torch.randn(6)
    expected = torch.native_group_norm(x, w, b, 2, 6, 7, 3, 1e-5)
    xd, wd, bd = x.to(DEV), w.to(DEV), b.to(DEV)
    for e, g in zip(expected, torch.native_group_norm(xd, wd, bd, 2, 6, 7, 3, 1e-5)):
        torch.testing.assert_close(g.cpu(), e)
    names = kernel_names(lambda: torch.native_group_norm(xd, wd, bd, 2, 6, 7, 3, 1e-5))
    assert names == ["aten.group_norm", "aten.group_norm#1", "aten.group_norm#2"]
    y, mean, rstd = expected
    dy = torch.randn_like(x)
    names = kernel_names(lambda: torch.ops.aten.native_group_norm_backward(
        dy.to(DEV), xd, mean.to(DEV), rstd.to(DEV), wd, 2, 6, 7, 3, [True, True, True]))
    assert names == ["aten.group_norm_backward", "aten.group_norm_backward#1", "aten.group_norm_backward#2"]
    assert kernel_names(lambda: F.group_norm(xd.half(), 3)) == []  # float16: the decomposition


def test_group_norm_gradcheck():
    x = torch.randn(2, 4, 3, dtype=torch.float64).to(DEV).requires_grad_()
    w = torch.randn(4, dtype=torch.float64).to(DEV).requires_grad_()
    b = torch.randn(4, dtype=torch.float64).to(DEV).requires_grad_()
    assert torch.autograd.gradcheck(lambda x, w, b: F.group_norm(x, 2, w, b), (x, w, b))


# --- batch_norm ------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("affine", [True, False])
@pytest.mark.parametrize("decompose", [False, True], ids=["kernel", "decomposition"])
def test_batch_norm_training_forward_backward_and_running_stats(dtype, affine, decompose):
    x = torch.randn(4, 3, 5, 2).to(dtype)
    w, b = torch.randn(3).to(dtype), torch.randn(3).to(dtype)
    stats = [torch.randn(3).to(dtype), torch.rand(3).to(dtype) + 0.5]
    cpu_stats = [s.clone() for s in stats]
    dev_stats = [s.to(DEV) for s in stats]

    def fn(x, *p):
        running = cpu_stats if x.device.type == "cpu" else dev_stats
        return F.batch_norm(x, *running, *(p or [None, None]), training=True, momentum=0.3, eps=1e-4)

    compare_with_cpu(fn, [x] + ([w, b] if affine else []), dtype, decompose)
    for c, d in zip(cpu_stats, dev_stats):  # updated in place
        torch.testing.assert_close(d.cpu(), c, **tol(dtype))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
@pytest.mark.parametrize("decompose", [False, True], ids=["kernel", "decomposition"])
def test_batch_norm_eval_and_without_running_stats(dtype, decompose):
    # eval mode's backward (frozen statistics, as when fine-tuning) included
    x, w, b = torch.randn(5, 4, 3).to(dtype), torch.randn(4).to(dtype), torch.randn(4).to(dtype)
    rm, rv = torch.randn(4).to(dtype), torch.rand(4).to(dtype) + 0.5
    compare_with_cpu(lambda x, w, b: F.batch_norm(x, rm.to(x.device), rv.to(x.device), w, b, training=False, eps=1e-3),
                     [x, w, b], dtype, decompose)
    compare_with_cpu(lambda x, w, b: F.batch_norm(x, None, None, w, b, training=True), [x, w, b], dtype, decompose)


def test_batch_norm_modules_keep_their_own_running_stats_over_repeated_calls():
    # Repeat calls reuse one memoized graph: each module's statistics still
    # update in place, its own, with its own momentum, as on the CPU.
    torch.manual_seed(0)
    cpu = [torch.nn.BatchNorm2d(3), torch.nn.BatchNorm2d(3, momentum=0.5), torch.nn.BatchNorm2d(3, affine=False)]
    dev = [torch.nn.BatchNorm2d(3), torch.nn.BatchNorm2d(3, momentum=0.5), torch.nn.BatchNorm2d(3, affine=False)]
    for c, d in zip(cpu, dev):
        d.load_state_dict(c.state_dict())
        d.to(DEV)
    for step in range(4):
        x = torch.randn(4, 3, 5, 5)
        for c, d in zip(cpu, dev):
            torch.testing.assert_close(d(x.to(DEV)).cpu(), c(x))
    for c, d in zip(cpu, dev):
        for name, value in c.state_dict().items():
            torch.testing.assert_close(d.state_dict()[name].cpu(), value, msg=name)


def test_batch_norm_runs_as_multi_result_kernels():
    x = torch.randn(4, 3, 2, 2, device=DEV, requires_grad=True)
    bn = torch.nn.BatchNorm2d(3).to(DEV)
    names = kernel_names(lambda: bn(x).sum().backward())
    assert names[:5] == ["aten.batch_norm"] + [f"aten.batch_norm#{k}" for k in range(1, 5)]
    assert "aten.batch_norm_backward" in names and "aten.batch_norm_backward#2" in names


def test_batch_norm_gradcheck():
    x = torch.randn(3, 2, 4, dtype=torch.float64).to(DEV).requires_grad_()
    w = torch.randn(2, dtype=torch.float64).to(DEV).requires_grad_()
    b = torch.randn(2, dtype=torch.float64).to(DEV).requires_grad_()
    assert torch.autograd.gradcheck(lambda x, w, b: F.batch_norm(x, None, None, w, b, training=True), (x, w, b))


# --- softmax ---------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("log", [False, True], ids=["softmax", "log_softmax"])
@pytest.mark.parametrize("dim", [0, -1])
@pytest.mark.parametrize("decompose", [False, True], ids=["kernel", "decomposition"])
def test_softmax_forward_backward(dtype, log, dim, decompose):
    x = torch.randn(5, 7).to(dtype)
    x[0, 0] = -float("inf")  # a masked position
    fn = (lambda x: F.log_softmax(x, dim)) if log else (lambda x: F.softmax(x, dim))
    if log:  # log_softmax's -inf has a well-defined gradient only through finite positions
        x[0, 0] = -30.0
    compare_with_cpu(fn, [x], dtype, decompose)
    compare_with_cpu(fn, [x.t().contiguous().t()], dtype, decompose)  # strided


def test_log_softmax_and_backwards_are_kernels():
    x = torch.randn(3, 4, device=DEV, requires_grad=True)
    names = kernel_names(lambda: F.log_softmax(x, 1).sum().backward())
    assert names == ["aten.log_softmax", "aten.softmax_backward"]
    names = kernel_names(lambda: F.softmax(x, 1).square().sum().backward())
    assert names == ["aten.softmax_backward"]  # softmax itself is an IR node
