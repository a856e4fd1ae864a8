"""nll_loss / cross_entropy on the mpsgraph device (csrc/ops/aten/nn.cpp
build_nll: a gather of each target column, no one-hot): every reduction,
class weights, ignore_index, 1-d and spatial [N, C, H, W] input, dtypes,
out-of-range targets, against the CPU, without the CPU fallback. float32/float64 run as kernel nodes
(ATen's nll_loss on the reference runtime); the decomposition (what MPSGraph
runs, mps_ext.graph.decompositions()) is checked the same way."""
import pytest
import torch
import torch.nn.functional as F

import mps_ext

DEV = "mpsgraph"


def fallbacks():
    return torch.ops.mps_ext._fallback_count()


def run_both(fn, x, t, w=None, decompose=False, **kw):
    """fn(x, t, weight=w) forward + backward on the CPU and the device."""
    res = []
    for dev in ("cpu", DEV):
        if dev == DEV and decompose:
            with mps_ext.graph.decompositions():
                res.append(run_both(fn, x, t, w, **kw)[1])
            continue
        xs = x.detach().to(dev).requires_grad_()
        before = fallbacks()
        loss = fn(xs, t.to(dev), weight=None if w is None else w.to(dev), **kw)
        loss.sum().backward()
        if dev == DEV:
            assert fallbacks() == before, "nll_loss fell back to the CPU"
        res.append((loss.detach().cpu(), xs.grad.cpu()))
    return res


@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("ignore_index", [-100, 2])
@pytest.mark.parametrize("decompose", [False, True])
def test_nll_loss_matches_cpu(reduction, weighted, ignore_index, decompose):
    torch.manual_seed(0)
    x = torch.randn(7, 5).log_softmax(-1)
    t = torch.tensor([0, 2, 4, 1, 2, 3, -100 if ignore_index == -100 else 2])
    w = torch.rand(5) + 0.5 if weighted else None
    (lc, gc), (ld, gd) = run_both(F.nll_loss, x, t, w, decompose, reduction=reduction, ignore_index=ignore_index)
    torch.testing.assert_close(ld, lc)
    torch.testing.assert_close(gd, gc)


@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
def test_nll_loss_1d_input(reduction):
    x = torch.randn(6).log_softmax(-1)
    for target in (torch.tensor(4), torch.tensor(-100)):
        (lc, gc), (ld, gd) = run_both(F.nll_loss, x, target, torch.rand(6) + 0.5, reduction=reduction)
        torch.testing.assert_close(ld, lc, equal_nan=True)
        torch.testing.assert_close(gd, gc, equal_nan=True)


def test_nll_loss_all_ignored_and_inf():
    x = torch.randn(4, 3).log_softmax(-1)
    x[1, 0] = -float("inf")  # an -inf elsewhere in a row must not leak into the loss
    t = torch.full((4,), -100)
    (lc, gc), (ld, gd) = run_both(F.nll_loss, x, t)
    assert torch.isnan(lc) and torch.isnan(ld)
    torch.testing.assert_close(gd, gc)
    t = torch.tensor([1, 2, 0, 1])
    (lc, gc), (ld, gd) = run_both(F.nll_loss, x, t, reduction="none")
    torch.testing.assert_close(ld, lc)
    torch.testing.assert_close(gd, gc)


def test_nll_loss_total_weight():
    x, t, w = torch.randn(5, 4), torch.tensor([0, 3, -100, 1, 1]), torch.rand(4)
    for red in (0, 1, 2):
        exp = torch.ops.aten.nll_loss_forward(x, t, w, red, -100)
        got = torch.ops.aten.nll_loss_forward(x.to(DEV), t.to(DEV), w.to(DEV), red, -100)
        for e, g in zip(exp, got):
            torch.testing.assert_close(g.cpu(), e)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64])
def test_cross_entropy_dtypes(dtype):
    x, t = torch.randn(6, 5).to(dtype), torch.tensor([0, 2, 4, 1, -100, 3])
    for kw in ({}, {"label_smoothing": 0.1}, {"reduction": "none"}):
        (lc, gc), (ld, gd) = run_both(F.cross_entropy, x, t, **kw)
        tol = {} if dtype == torch.float64 else dict(atol=1e-2, rtol=1e-2)
        torch.testing.assert_close(ld, lc, **tol)
        torch.testing.assert_close(gd, gc, **tol)


def test_nll_loss_gradcheck():
    x = torch.randn(5, 4, dtype=torch.float64).to(DEV).requires_grad_()
    t = torch.tensor([0, 3, -100, 1, 1], device=DEV)
    w = torch.rand(4, dtype=torch.float64).to(DEV)
    for red in ("mean", "sum", "none"):
        assert torch.autograd.gradcheck(lambda v: F.nll_loss(v, t, weight=w, reduction=red), (x,))


def test_nll_loss_errors():
    x = torch.randn(3, 4).to(DEV)
    with pytest.raises(IndexError, match="Target 5 is out of bounds."):
        F.nll_loss(x, torch.tensor([0, 5, 1], device=DEV))
    with pytest.raises(IndexError, match="Target -3 is out of bounds."):
        F.nll_loss(x, torch.tensor([0, -3, -100], device=DEV))
    with pytest.raises(IndexError, match="Target 7 is out of bounds."):
        F.nll_loss(x[0], torch.tensor(7, device=DEV))
    with pytest.raises(RuntimeError, match="expected target dtype to be Long or Byte"):
        F.nll_loss(x, torch.tensor([0, 1, 1], dtype=torch.int32, device=DEV))
    with pytest.raises(RuntimeError, match="weight tensor should be defined either for all 4 classes"):
        F.nll_loss(x, torch.tensor([0, 1, 1], device=DEV), weight=torch.ones(3, device=DEV))


@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("decompose", [False, True])
@pytest.mark.parametrize("layout", ["contiguous", "strided"])
def test_nll_loss_2d_spatial_input(reduction, weighted, decompose, layout):
    # [N, C, H, W] scores with [N, H, W] targets (nll_loss2d): ignored pixels too.
    # (Not channels_last: torch's own CPU backward rejects it.)
    torch.manual_seed(0)
    x = torch.randn(2, 3, 4, 10).log_softmax(1)
    x = x[..., ::2] if layout == "strided" else x[..., :5].contiguous()
    t = torch.randint(0, 3, (2, 4, 5))
    t[0, 1, 2] = -100
    w = torch.rand(3) if weighted else None
    (loss, grad), (dloss, dgrad) = run_both(F.nll_loss, x, t, w, decompose=decompose, reduction=reduction)
    torch.testing.assert_close(dloss, loss)
    torch.testing.assert_close(dgrad, grad)
    assert dgrad.shape == x.shape


def test_cross_entropy_2d_and_its_errors():
    torch.manual_seed(0)
    x = torch.randn(2, 3, 4, 5, dtype=torch.float64)
    t = torch.randint(0, 3, (2, 4, 5))
    for kw in [{}, {"label_smoothing": 0.2}, {"reduction": "none"}]:
        (loss, grad), (dloss, dgrad) = run_both(F.cross_entropy, x, t, **kw)
        torch.testing.assert_close(dloss, loss)
        torch.testing.assert_close(dgrad, grad)
    w = torch.rand(3, dtype=torch.float64).to(DEV)
    assert torch.autograd.gradcheck(lambda a: F.nll_loss(a, t.to(DEV), weight=w), (x.log_softmax(1).to(DEV).requires_grad_(),))
    xd = x.to(DEV)
    cases = [(torch.randint(0, 3, (2, 4, 6)), None, RuntimeError, r"size mismatch \(got input: \[2, 3, 4, 5\]"),
             (torch.randint(0, 3, (2, 4, 5)), torch.ones(4, dtype=torch.float64), RuntimeError, "for all or no classes"),
             (torch.full((2, 4, 5), 7), None, IndexError, "Target 7 is out of bounds")]
    for target, weight, error, message in cases:
        with pytest.raises(error, match=message):
            torch.ops.aten.nll_loss2d_forward(xd, target.to(DEV), None if weight is None else weight.to(DEV), 1, -100)
