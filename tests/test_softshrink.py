"""softshrink and softshrink_backward against torch's own implementation."""
import pytest
import torch
import torch.nn.functional as F
from torch.testing._internal.optests import opcheck

import mps_ext
from conftest import supports_dtype

FLOAT_DTYPES = [torch.float32, torch.float64, torch.float16, torch.bfloat16]
ops = torch.ops.mps_ext


def edge_values(dtype):
    info = torch.finfo(dtype)
    vals = [0.0, -0.0, 0.5, -0.5, 0.49, -0.51, 1.0, -3.0, info.max, -info.max, info.tiny,
            float("inf"), float("-inf"), float("nan")]
    return torch.tensor(vals, dtype=dtype)


def assert_same(actual, expected):
    """Bit-exact values and NaN positions. Zero signs are checked separately:
    torch's own CPU kernel gives +0 in its vector loop and -0 in its tail."""
    assert actual.dtype == expected.dtype and actual.shape == expected.shape
    torch.testing.assert_close(actual, expected, rtol=0, atol=0, equal_nan=True)


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@pytest.mark.parametrize("lambd", [0.0, 0.5, 1.7, 1e4])
def test_forward_matches_torch(device, dtype, lambd):
    if not supports_dtype(device, dtype):
        pytest.skip("MPSGraph has no float64 (mps, or the mpsgraph device on the mpsgraph runtime)")
    x = torch.randn(257, 33, dtype=dtype) * 3
    x = torch.cat([edge_values(dtype), x.flatten()])
    expected = F.softshrink(x, lambd)
    actual = ops.softshrink(x.to(device), lambd).cpu()
    assert_same(actual, expected)


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
def test_backward_matches_torch(device, dtype):
    if not supports_dtype(device, dtype):
        pytest.skip("MPSGraph has no float64 (mps, or the mpsgraph device on the mpsgraph runtime)")
    x = torch.cat([torch.randn(1000, dtype=dtype), edge_values(dtype), torch.tensor([0.5, -0.5], dtype=dtype)])
    g = torch.randn_like(x)
    expected = torch.ops.aten.softshrink_backward(g, x, 0.5)
    actual = ops.softshrink_backward(g.to(device), x.to(device), 0.5).cpu()
    # At NaN inputs torch's CPU loops disagree with each other (vector: 0,
    # scalar tail and CUDA: grad); we pass grad through, checked below.
    finite = ~torch.isnan(x)
    assert_same(actual[finite], expected[finite])
    assert torch.equal(actual[~finite], g[~finite])


@pytest.mark.parametrize(
    "make",
    [
        pytest.param(lambda: torch.randn(0), id="empty"),
        pytest.param(lambda: torch.randn(3, 0, 4), id="empty-3d"),
        pytest.param(lambda: torch.tensor(0.7), id="0-d"),
        pytest.param(lambda: torch.randn(8, 6).t(), id="transposed"),
        pytest.param(lambda: torch.randn(20, 9)[::3, 1::2], id="strided-slice"),
        pytest.param(lambda: torch.randn(5, 1).expand(5, 7), id="broadcast-expand"),
        pytest.param(lambda: torch.randn(4, 3, 8, 8).to(memory_format=torch.channels_last), id="channels-last"),
        pytest.param(lambda: torch.randn(2, 3, 4, 5, 6), id="5-d"),
    ],
)
def test_layouts(device, make):
    x = make()
    expected = F.softshrink(x, 0.3)
    actual = ops.softshrink(x.to(device), 0.3)
    assert actual.device.type == device
    assert_same(actual.cpu(), expected)
    g = torch.randn_like(expected)
    assert_same(ops.softshrink_backward(g.to(device), x.to(device), 0.3).cpu(),
                torch.ops.aten.softshrink_backward(g, x, 0.3))


def test_backward_broadcasts_like_torch():
    g, x = torch.randn(4, 1), torch.randn(1, 5)
    assert_same(ops.softshrink_backward(g, x, 0.5), torch.ops.aten.softshrink_backward(g, x, 0.5))


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
def test_dead_zone_is_positive_zero_and_nan_propagates(device, dtype):
    if not supports_dtype(device, dtype):
        pytest.skip("MPSGraph has no float64 (mps, or the mpsgraph device on the mpsgraph runtime)")
    x = torch.tensor([-0.3, -0.0, 0.0, 0.2, float("nan")] * 40, dtype=dtype)
    y = ops.softshrink(x.to(device), 0.5).cpu()
    assert torch.isnan(y[4::5]).all()
    zeros = torch.cat([y[0::5], y[1::5], y[2::5], y[3::5]])
    assert (zeros == 0).all() and not torch.signbit(zeros).any()
    # torch's vectorized loop agrees on the bulk of a long tensor
    assert not torch.signbit(F.softshrink(x, 0.5)[:160][x[:160] == x[:160]]).any()


def test_default_lambd_is_half():
    x = torch.randn(100)
    assert_same(ops.softshrink(x), F.softshrink(x))
    assert_same(mps_ext.nn.functional.softshrink(x), F.softshrink(x))


@pytest.mark.parametrize("lambd", [-0.5, float("nan"), 1e39])
def test_bad_lambd_raises_like_torch(lambd):
    x = torch.randn(4)
    with pytest.raises(RuntimeError, match="lambd must be in range"):
        ops.softshrink(x, lambd)
    with pytest.raises(RuntimeError, match="lambd must be in range"):
        ops.softshrink_backward(x, x, lambd)


def test_lambd_range_depends_on_dtype():
    with pytest.raises(RuntimeError, match="for input dtype Half"):
        ops.softshrink(torch.randn(4, dtype=torch.half), 70000.0)
    ops.softshrink(torch.randn(4), 70000.0)  # fine in float32


@pytest.mark.parametrize("dtype", [torch.int64, torch.int32, torch.uint8, torch.bool, torch.complex64])
def test_non_float_input_raises(dtype):
    x = torch.ones(3, dtype=dtype)
    with pytest.raises(TypeError, match="expected a floating-point tensor for 'self'"):
        ops.softshrink(x)
    with pytest.raises(TypeError, match="'grad_output'"):
        ops.softshrink_backward(x, torch.ones(3), 0.5)


def test_meta_and_fake_tensors():
    x = torch.empty(3, 4, device="meta", dtype=torch.bfloat16)
    y = ops.softshrink(x, 0.5)
    assert y.device.type == "meta" and y.shape == (3, 4) and y.dtype == torch.bfloat16
    gb = ops.softshrink_backward(torch.empty(3, 1, device="meta"), torch.empty(1, 4, device="meta"), 0.5)
    assert gb.shape == (3, 4)
    with pytest.raises(TypeError):
        ops.softshrink(torch.empty(3, device="meta", dtype=torch.long))


@pytest.mark.parametrize("shape", [(5,), (3, 4), (0, 2)])
def test_opcheck(shape):
    x = torch.randn(shape, requires_grad=True)
    opcheck(ops.softshrink.default, (x, 0.5))
    opcheck(ops.softshrink_backward.default, (torch.randn(shape), x.detach(), 0.5))


def test_gradcheck_and_gradgradcheck():
    # Keep samples away from the kinks at +-lambd, where finite differences lie.
    x = torch.randn(40, dtype=torch.float64)
    x = torch.where((x.abs() - 0.5).abs() < 0.05, x + 0.2, x).requires_grad_()
    assert torch.autograd.gradcheck(lambda t: ops.softshrink(t, 0.5), (x,))
    assert torch.autograd.gradgradcheck(lambda t: ops.softshrink(t, 0.5), (x,))
    g = torch.randn(40, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda gg: ops.softshrink_backward(gg, x.detach(), 0.5), (g,))


def test_autograd_matches_torch(device):
    x = torch.randn(6, 7)
    x_ours = x.clone().to(device).requires_grad_()
    x_ref = x.clone().requires_grad_()
    w = torch.randn(6, 7)
    (mps_ext.nn.Softshrink(0.3)(x_ours) * w.to(device)).sum().backward()
    (torch.nn.Softshrink(0.3)(x_ref) * w).sum().backward()
    assert_same(x_ours.grad.cpu(), x_ref.grad)


def test_module_is_drop_in():
    ours, ref = mps_ext.nn.Softshrink(0.25), torch.nn.Softshrink(0.25)
    assert repr(ours) == repr(ref)
    x = torch.randn(10)
    assert_same(ours(x), ref(x))
    assert_same(mps_ext.nn.Softshrink()(x), torch.nn.Softshrink()(x))


def test_result_does_not_alias_input():
    x = torch.randn(10)
    y = ops.softshrink(x, 0.0)  # identity values, but a fresh tensor
    assert y.data_ptr() != x.data_ptr()
    y.add_(1)
    assert not torch.equal(x, y)


def test_torch_compile_fullgraph():
    f = torch.compile(lambda t: ops.softshrink(t, 0.5) * 2, backend="eager", fullgraph=True)
    x = torch.randn(16)
    assert_same(f(x), F.softshrink(x, 0.5) * 2)
