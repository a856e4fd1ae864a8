"""Quantization: packed formats, round-trip bounds, quantized/LUT matmul against
x @ dequantize(W).T, kernels against their decompositions, QuantizedLinear,
quantize_model, opcheck, bad input."""
import io
import itertools

import pytest
import torch
from torch.testing._internal.optests import opcheck

import mps_ext
from mps_ext.nn import QuantizedLinear

ops = torch.ops.mps_ext
GROUP_SIZES = [32, 64, 128, 256]


def groupwise(w, bits, gs, symmetric=False):
    return ops.quantize_groupwise(w, bits, gs, symmetric)


def unpack(q, bits):
    """The documented layout, spelled out independently of the op: low nibble first."""
    if bits == 8:
        return q.long()
    return torch.stack([q & 0xF, q >> 4], -1).reshape(q.shape[0], -1).long()


# --- formats and round trips ----------------------------------------------------------
@pytest.mark.parametrize("bits", [4, 8])
@pytest.mark.parametrize("gs", GROUP_SIZES)
@pytest.mark.parametrize("symmetric", [False, True])
def test_groupwise_round_trip_bound(bits, gs, symmetric):
    w = torch.randn(24, 512) * torch.rand(24, 1) * 3
    w[0, :gs] = 0  # an all-zero group
    w[1, :gs] = torch.rand(gs) + 1  # an all-positive group
    q, s, z = groupwise(w, bits, gs, symmetric)
    assert q.dtype == torch.uint8 and q.shape == (24, 512 * bits // 8)
    assert s.shape == z.shape == (24, 512 // gs) and s.dtype == z.dtype == torch.float32
    codes = unpack(q, bits)
    assert codes.max() <= 2**bits - 1
    assert torch.equal(z, z.round())
    if symmetric:
        assert torch.all(z == 2 ** (bits - 1)) and codes.min() >= 1
    # Pin the format: W = scale * (q - zero_point) per group of consecutive inputs.
    expected = (s.repeat_interleave(gs, 1) * (codes - z.repeat_interleave(gs, 1)))
    w_hat = ops.dequantize_groupwise(q, s, z, bits, gs)
    torch.testing.assert_close(w_hat, expected, rtol=0, atol=1e-6)
    bound = s.repeat_interleave(gs, 1) / 2
    assert torch.all((w_hat - w).abs() <= bound * (1 + 1e-5) + 1e-7)
    assert torch.all(w_hat[0, :gs] == 0)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_groupwise_reduced_precision_bound(dtype):
    w = (torch.randn(16, 256) * 2).to(dtype)
    q, s, z = groupwise(w, 4, 64)
    assert s.dtype == z.dtype == dtype
    w_hat = ops.dequantize_groupwise(q, s, z, 4, 64).float()
    exact = s.float().repeat_interleave(64, 1) * (unpack(q, 4) - z.float().repeat_interleave(64, 1))
    # the stored scale covers the range: scale / 2 per element, plus the dtype's rounding of the product
    assert torch.all((exact - w.float()).abs() <= s.float().repeat_interleave(64, 1) / 2 * (1 + 1e-3))
    torch.testing.assert_close(w_hat, exact, rtol=2 * torch.finfo(dtype).eps, atol=0)


def test_int4_packing_is_low_nibble_first():
    w = torch.arange(64, dtype=torch.float32).reshape(1, 64) % 16  # codes 0..15, min 0 -> zero point 0
    q, s, z = groupwise(w, 4, 64)
    assert z.item() == 0 and s.item() == pytest.approx(1.0)
    assert q[0, 0].item() == 0x10 and q[0, 1].item() == 0x32 and q[0, 7].item() == 0xFE


@pytest.mark.parametrize("symmetric", [False, True])
def test_per_tensor_and_per_channel(symmetric):
    x = torch.randn(6, 40) * 4
    q, s, z = ops.quantize_per_tensor(x, symmetric)
    assert q.dtype == (torch.int8 if symmetric else torch.uint8) and s.dim() == 0 and z.dim() == 0
    if symmetric:
        assert z.item() == 0 and q.abs().max() <= 127
    x_hat = ops.dequantize(q, s, z)
    torch.testing.assert_close(x_hat, s * (q.float() - z))
    assert torch.all((x_hat - x).abs() <= s / 2 * (1 + 1e-5))
    for axis in (0, 1, -1):
        q, s, z = ops.quantize_per_channel(x, axis, symmetric)
        assert s.shape == (x.shape[axis],)
        shape = [1, 1]
        shape[axis] = -1
        x_hat = ops.dequantize(q, s, z, axis)
        torch.testing.assert_close(x_hat, s.view(shape) * (q.float() - z.view(shape)))
        assert torch.all((x_hat - x).abs() <= s.view(shape) / 2 * (1 + 1e-5))


def test_dequantize_gradients():
    x = torch.randn(5, 7)
    q, s, z = ops.quantize_per_channel(x, 1)
    s64, z64 = s.double().requires_grad_(), z.double().requires_grad_()
    torch.autograd.gradcheck(lambda a, b: ops.dequantize(q, a, b, 1), (s64, z64))
    q, s, z = ops.quantize_per_tensor(x)
    torch.autograd.gradcheck(lambda a, b: ops.dequantize(q, a, b), (s.double().requires_grad_(),
                                                                     z.double().requires_grad_()))
    qw, sw, zw = groupwise(torch.randn(4, 64), 4, 32)
    torch.autograd.gradcheck(lambda a, b: ops.dequantize_groupwise(qw, a, b, 4, 32),
                             (sw.double().requires_grad_(), zw.double().requires_grad_()))
    idx, lut = ops.quantize_lut(torch.randn(4, 32), 4, 2)
    torch.autograd.gradcheck(lambda t: ops.dequantize_lut(idx, t, 4), (lut.double().requires_grad_(),))


@pytest.mark.parametrize("bits", [4, 8])
@pytest.mark.parametrize("tables", ["per-channel", "shared"])
def test_lut_round_trip(bits, tables):
    w = torch.randn(8, 128) ** 3  # heavy-tailed: k-means should beat a uniform grid
    group = 1 if tables == "per-channel" else 4
    idx, lut = ops.quantize_lut(w, bits, group)
    assert idx.dtype == torch.uint8 and idx.shape == (8, 128 * bits // 8)
    assert lut.shape == (8 // group, 2**bits)
    w_hat = ops.dequantize_lut(idx, lut, bits)
    # the format: W[n, k] = lut[n // group, idx[n, k]]
    torch.testing.assert_close(w_hat, lut.repeat_interleave(group, 0).gather(1, unpack(idx, bits)), rtol=0, atol=0)
    # every weight maps to its nearest entry
    table = lut.repeat_interleave(group, 0)
    nearest = (w.unsqueeze(-1) - table.unsqueeze(1)).abs().min(-1).values
    torch.testing.assert_close((w_hat - w).abs(), nearest, rtol=0, atol=1e-6)
    # and beats uniform per-channel affine quantization of the same bits in MSE
    if tables == "per-channel":
        q, s, z = groupwise(w, bits, 128)
        affine_mse = (ops.dequantize_groupwise(q, s, z, bits, 128) - w).pow(2).mean()
        assert (w_hat - w).pow(2).mean() < affine_mse


# --- matmuls ---------------------------------------------------------------------------
@pytest.mark.parametrize("bits", [4, 8])
@pytest.mark.parametrize("gs", GROUP_SIZES)
@pytest.mark.parametrize("m", [1, 7, 64])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_quantized_matmul_matches_dequantized(bits, gs, m, dtype):
    n, k = 40, 512
    q, s, z = groupwise(torch.randn(n, k).to(dtype), bits, gs)
    x = torch.randn(m, k, dtype=dtype)
    expected = x.float() @ ops.dequantize_groupwise(q, s.float(), z.float(), bits, gs).T
    actual = ops.quantized_matmul(x, q, s, z, bits, gs)
    assert actual.dtype == dtype and actual.shape == (m, n)
    if dtype == torch.float32:
        torch.testing.assert_close(actual, expected, rtol=1e-5, atol=1e-4)
    else:  # accumulates in fp32, one rounding at the end
        torch.testing.assert_close(actual.float(), expected, rtol=1e-2, atol=1e-2)
        torch.testing.assert_close(actual, expected.to(dtype), rtol=0, atol=0.02 * expected.abs().max().item())


@pytest.mark.parametrize("bits", [4, 8])
@pytest.mark.parametrize("m", [1, 7, 64])
def test_kernel_matches_decomposition(bits, m):
    q, s, z = groupwise(torch.randn(36, 256), bits, 64)
    x = torch.randn(m, 256)
    y = ops.quantized_matmul(x, q, s, z, bits, 64)
    with mps_ext.graph.decompositions():
        y_ref = ops.quantized_matmul(x, q, s, z, bits, 64)
    torch.testing.assert_close(y, y_ref, rtol=1e-5, atol=1e-4)
    idx, lut = ops.quantize_lut(torch.randn(36, 256), bits)
    y = ops.lut_matmul(x, idx, lut, bits)
    with mps_ext.graph.decompositions():
        y_ref = ops.lut_matmul(x, idx, lut, bits)
    torch.testing.assert_close(y, y_ref, rtol=1e-5, atol=1e-4)


def test_kernel_nodes_are_registered_and_dumped():
    assert {"quantized_matmul", "lut_matmul"} <= set(mps_ext.graph.kernels())
    q, s, z = groupwise(torch.randn(8, 64), 4, 32)
    g = mps_ext.graph.dump(ops.quantized_matmul, torch.randn(2, 64), q, s, z, 4, 32)
    (node,) = [n for n in g["nodes"] if n["op"] == "kernel"]
    assert node["attrs"]["kernel"] == "quantized_matmul" and node["attrs"]["bits"] == 4
    inner = [n["op"] for n in node["decomposition"]["nodes"]]
    assert inner[-1] == "matmul" and "dequantize" in inner  # the oracle: Dequantize -> MatMul


@pytest.mark.parametrize("bits", [4, 8])
@pytest.mark.parametrize("shared", [1, 8])
@pytest.mark.parametrize("m", [1, 7])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_lut_matmul_matches_dequantized(bits, shared, m, dtype):
    idx, lut = ops.quantize_lut(torch.randn(24, 96).to(dtype), bits, shared)
    x = torch.randn(m, 96, dtype=dtype)
    expected = x.float() @ ops.dequantize_lut(idx, lut.float(), bits).T
    actual = ops.lut_matmul(x, idx, lut, bits)
    tol = dict(rtol=1e-5, atol=1e-4) if dtype == torch.float32 else dict(rtol=1e-2, atol=2e-2)
    torch.testing.assert_close(actual.float(), expected, **tol)


def test_matmul_layouts_and_empty():
    q, s, z = groupwise(torch.randn(10, 64), 4, 32)
    w = ops.dequantize_groupwise(q, s, z, 4, 32)
    x = torch.randn(3, 5, 128)[..., ::2]  # non-contiguous, 3-D leading shape
    torch.testing.assert_close(ops.quantized_matmul(x, q, s, z, 4, 32), x @ w.T, rtol=1e-5, atol=1e-4)
    assert ops.quantized_matmul(torch.randn(0, 64), q, s, z, 4, 32).shape == (0, 10)
    assert ops.quantized_matmul(torch.randn(2, 0, 64), q, s, z, 4, 32).shape == (2, 0, 10)
    x1 = torch.randn(64)  # 1-D x like F.linear
    torch.testing.assert_close(ops.quantized_matmul(x1, q, s, z, 4, 32), w @ x1, rtol=1e-5, atol=1e-4)


def test_matmul_backward_wrt_x():
    q, s, z = groupwise(torch.randn(12, 64), 4, 32)
    w = ops.dequantize_groupwise(q, s, z, 4, 32)
    x = torch.randn(2, 3, 64, requires_grad=True)
    g = torch.randn(2, 3, 12)
    ops.quantized_matmul(x, q, s, z, 4, 32).backward(g)
    torch.testing.assert_close(x.grad, g @ w, rtol=1e-5, atol=1e-5)
    idx, lut = ops.quantize_lut(torch.randn(12, 64), 4)
    x.grad = None
    ops.lut_matmul(x, idx, lut, 4).backward(g)
    torch.testing.assert_close(x.grad, g @ ops.dequantize_lut(idx, lut, 4), rtol=1e-5, atol=1e-5)
    with pytest.raises(RuntimeError, match="'scales'"):
        ops.quantized_matmul(x, q, s.requires_grad_(), z, 4, 32)


def test_on_device(device):
    w = torch.randn(16, 128)
    q, s, z = groupwise(w, 4, 64)
    x = torch.randn(3, 128)
    expected = ops.quantized_matmul(x, q, s, z, 4, 64)
    d = [t.to(device) for t in (x, q, s, z)]
    y = ops.quantized_matmul(*d, 4, 64)
    assert y.device.type == device
    torch.testing.assert_close(y.cpu(), expected, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(ops.dequantize_groupwise(*d[1:], 4, 64).cpu(), ops.dequantize_groupwise(q, s, z, 4, 64))
    qd, sd, zd = groupwise(w.to(device), 4, 64)
    assert qd.device.type == device and torch.equal(qd.cpu(), q)
    idx, lut = ops.quantize_lut(w, 4)
    torch.testing.assert_close(ops.lut_matmul(x.to(device), idx.to(device), lut.to(device), 4).cpu(),
                               ops.lut_matmul(x, idx, lut, 4), rtol=1e-5, atol=1e-5)
    qt, st, zt = ops.quantize_per_tensor(w)
    torch.testing.assert_close(ops.dequantize(qt.to(device), st.to(device), zt.to(device)).cpu(),
                               ops.dequantize(qt, st, zt))


# --- modules ---------------------------------------------------------------------------
@pytest.mark.parametrize("bits,mode,bound", [(4, "affine", 0.12), (8, "affine", 0.01), (4, "lut", 0.12),
                                             (8, "lut", 0.01)])
def test_quantized_linear_close_to_float(bits, mode, bound):
    linear = torch.nn.Linear(128, 48)
    layer = QuantizedLinear.from_float(linear, bits=bits, group_size=64, mode=mode)
    x = torch.randn(9, 128)
    with torch.no_grad():
        ref, out = linear(x), layer(x)
    rel = (out - ref).norm() / ref.norm()
    assert rel < bound, rel
    torch.testing.assert_close(layer.bias, linear.bias)
    torch.testing.assert_close(out, x @ layer.dequantized_weight().T + linear.bias, rtol=1e-5, atol=1e-5)
    assert "bits=" in repr(layer)


def test_quantized_linear_state_dict_round_trip():
    layer = QuantizedLinear.from_float(torch.nn.Linear(64, 16, bias=False), bits=4, group_size=32)
    buf = io.BytesIO()
    torch.save(layer.state_dict(), buf)
    buf.seek(0)
    fresh = QuantizedLinear(64, 16, bias=False, bits=4, group_size=32)
    fresh.load_state_dict(torch.load(buf))
    x = torch.randn(2, 64)
    assert torch.equal(fresh(x), layer(x))
    assert set(layer.state_dict()) == {"qweight", "scales", "zero_points"}


def small_transformer():
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Linear(32, 64),
        torch.nn.TransformerEncoderLayer(64, 4, dim_feedforward=128, batch_first=True, dropout=0.0),
        torch.nn.Linear(64, 64),
    ).eval()


def test_quantize_model_transformer_and_state_dict():
    model = small_transformer()
    x = torch.randn(2, 5, 32)
    with torch.no_grad():
        ref = model(x)
    fp32_bytes = mps_ext.quantization.weight_bytes(model)
    qmodel = mps_ext.quantize_model(model, bits=8, group_size=32)
    assert qmodel is model
    swapped = [n for n, m in model.named_modules() if isinstance(m, QuantizedLinear)]
    assert swapped == ["0", "1.linear1", "1.linear2", "2"]  # MHA's out_proj is read raw by its owner: kept
    with torch.no_grad():
        out = model(x)
    assert (out - ref).norm() / ref.norm() < 0.02
    assert mps_ext.quantization.weight_bytes(model) < fp32_bytes
    buf = io.BytesIO()
    torch.save(model.state_dict(), buf)
    buf.seek(0)
    other = mps_ext.quantize_model(small_transformer(), bits=8, group_size=32)
    other.load_state_dict(torch.load(buf))
    with torch.no_grad():
        assert torch.equal(other(x), out)


def test_quantize_model_skip_and_int4_memory():
    model = torch.nn.Sequential(torch.nn.Linear(256, 256, bias=False), torch.nn.Linear(256, 256, bias=False))
    fp32 = mps_ext.quantization.weight_bytes(model)
    mps_ext.quantize_model(model, bits=4, group_size=64, skip=("1",))
    assert isinstance(model[0], QuantizedLinear) and type(model[1]) is torch.nn.Linear
    q_bytes = mps_ext.quantization.weight_bytes(model[0])
    assert q_bytes <= fp32 / 2 / 6  # int4 gs=64 with fp32 scales + zero points: 1/6.4 of fp32
    with pytest.warns(UserWarning, match="leaving"):
        mps_ext.quantize_model(torch.nn.Sequential(torch.nn.Linear(48, 8)), bits=4, group_size=64)


def test_adapter_trains_on_frozen_quantized_base():
    base = QuantizedLinear.from_float(torch.nn.Linear(64, 64), bits=4, group_size=32)
    lora_a = torch.nn.Parameter(torch.randn(4, 64) * 0.01)
    lora_b = torch.nn.Parameter(torch.zeros(64, 4))
    x = torch.randn(16, 64)
    loss = (base(x) + x @ lora_a.T @ lora_b.T).pow(2).mean()
    loss.backward()
    assert lora_b.grad is not None and lora_b.grad.abs().sum() > 0
    assert base.qweight.grad is None


# --- opcheck ---------------------------------------------------------------------------
def opcheck_cases():
    w = torch.randn(8, 64)
    q, s, z = groupwise(w, 4, 32)
    q8, s8, z8 = groupwise(w, 8, 32)
    idx, lut = ops.quantize_lut(w, 4)
    qt, st, zt = ops.quantize_per_channel(w, 0, False)
    x = torch.randn(3, 64, requires_grad=True)
    g = torch.randn(3, 8, requires_grad=True)
    return [
        (ops.quantize_per_tensor, (w, False)),
        (ops.quantize_per_channel, (w, 1, True)),
        (ops.quantize_groupwise, (w, 4, 32, False)),
        (ops.quantize_lut, (w, 4, 2)),
        (ops.dequantize, (qt, st.requires_grad_(), zt, 0)),
        (ops.dequantize_groupwise, (q, s.clone().requires_grad_(), z, 4, 32)),
        (ops.dequantize_lut, (idx, lut.clone().requires_grad_(), 4)),
        (ops.quantized_matmul, (x, q, s, z, 4, 32)),
        (ops.quantized_matmul, (x, q8, s8, z8, 8, 32)),
        (ops.quantized_matmul_backward, (g, q, s, z, 4, 32)),
        (ops.lut_matmul, (x, idx, lut, 4)),
        (ops.lut_matmul_backward, (g, idx, lut, 4)),
    ]


@pytest.mark.parametrize("case", range(12))
def test_opcheck(case):
    op, args = opcheck_cases()[case]
    opcheck(op, args)


# --- bad input -------------------------------------------------------------------------
def test_bad_input():
    w = torch.randn(8, 64)
    q, s, z = groupwise(w, 4, 32)
    x = torch.randn(2, 64)
    with pytest.raises(ValueError, match="bits must be 4 or 8"):
        ops.quantize_groupwise(w, 3, 32)
    with pytest.raises(ValueError, match="bits must be 4 or 8"):
        ops.quantized_matmul(x, q, s, z, 2, 32)
    with pytest.raises(ValueError, match="group_size 128 must divide in_features"):
        ops.quantize_groupwise(w, 4, 128)
    with pytest.raises(ValueError, match="group_size must be a positive multiple of 32"):
        ops.quantize_groupwise(w, 4, 48)
    with pytest.raises(ValueError, match="in_features must be even"):
        ops.quantize_groupwise(torch.randn(4, 33), 4, 32)
    with pytest.raises(TypeError, match="'w'"):
        ops.quantize_groupwise(torch.randint(0, 4, (8, 64)), 4, 32)
    with pytest.raises(TypeError, match="'scales' of dtype"):
        ops.quantized_matmul(x, q, s.double(), z, 4, 32)
    with pytest.raises(TypeError, match="'zero_points' of dtype"):
        ops.quantized_matmul(x, q, s, z.bfloat16(), 4, 32)
    with pytest.raises(RuntimeError, match="'scales' of shape"):
        ops.quantized_matmul(x, q, s[:, :1], z, 4, 32)
    with pytest.raises(RuntimeError, match="'x' with last dimension 64"):
        ops.quantized_matmul(torch.randn(2, 32), q, s, z, 4, 32)
    with pytest.raises(TypeError, match="'x' of dtype"):
        ops.quantized_matmul(x.double(), q, s, z, 4, 32)
    with pytest.raises(TypeError, match="'qweight' of dtype torch.uint8"):
        ops.quantized_matmul(x, q.to(torch.int8), s, z, 4, 32)
    with pytest.raises(RuntimeError, match="'qweight' to be 2-D"):
        ops.quantized_matmul(x, q.flatten(), s, z, 4, 32)
    with pytest.raises(RuntimeError, match="same device"):
        ops.quantized_matmul(x.to("mpsgraph"), q, s, z, 4, 32)
    idx, lut = ops.quantize_lut(w, 4)
    with pytest.raises(RuntimeError, match="'lut' of shape"):
        ops.lut_matmul(x, idx, lut[:, :8], 4)
    with pytest.raises(RuntimeError, match="must divide out_features"):
        ops.lut_matmul(x, idx, lut[:3], 4)
    with pytest.raises(ValueError, match="divide out_features"):
        ops.quantize_lut(w, 4, 3)
    with pytest.raises(TypeError, match="'input' of dtype torch.int8 or torch.uint8"):
        ops.dequantize(w, torch.tensor(1.0), torch.tensor(0.0))
    with pytest.raises(RuntimeError, match="'scale' of 32 entries"):
        ops.dequantize(q, torch.ones(3), torch.zeros(3), 1)
    with pytest.raises(ValueError, match="mode must be"):
        QuantizedLinear.from_float(torch.nn.Linear(64, 8), mode="nf4")
    with pytest.raises(TypeError, match="nn.Linear"):
        QuantizedLinear.from_float(torch.nn.Conv1d(4, 4, 1))


def test_meta_shapes():
    w = torch.randn(8, 64, device="meta")
    q, s, z = ops.quantize_groupwise(w, 4, 32)
    assert q.shape == (8, 32) and q.dtype == torch.uint8 and s.shape == (8, 2)
    y = ops.quantized_matmul(torch.randn(5, 64, device="meta"), q, s, z, 4, 32)
    assert y.shape == (5, 8) and y.device.type == "meta"
