"""Native ops of the mpsgraph device checked against torch on the CPU: the
convolution graphs (IR nodes, forward, backward, transposed, gradcheck), the
fused LSTM/GRU cells behind nn.LSTM/GRU, and the smaller op gaps of issue 8
(tensor_split with index tensors, as_strided over partial views, quantized
tensors refused clearly)."""
import copy

import re

import pytest
import torch
import torch.nn.functional as F

import mps_ext
from mps_ext.graph import Graph
from mps_ext._C import _run_reference

from conftest import supports_dtype

DEV = "mpsgraph"
TOL = {torch.float32: dict(rtol=1e-4, atol=1e-5), torch.float64: dict(rtol=1e-10, atol=1e-10),
       torch.float16: dict(rtol=2e-2, atol=2e-2), torch.bfloat16: dict(rtol=5e-2, atol=5e-2)}


@pytest.fixture(autouse=True)
def _quiet_fallback(monkeypatch):
    monkeypatch.setenv("MPS_EXT_FALLBACK", "silent")


def need(dtype):
    if not supports_dtype(DEV, dtype):
        pytest.skip(f"{dtype} is not supported by the device's runtime ({mps_ext.runtime()})")


# --- the IR nodes, on the reference runtime ----------------------------------------------

def test_convolution_nodes_infer_shapes_and_match_aten():
    torch.manual_seed(0)
    x, w = torch.randn(2, 4, 9, 7), torch.randn(6, 2, 3, 2)
    stride, padding, dilation, groups = [2, 1], [1, 0], [1, 2], 2
    g = Graph()
    xi = g.placeholder(list(x.shape), torch.float32, "x")
    wi = g.placeholder(list(w.shape), torch.float32, "w")
    y = g.convolution(xi, wi, stride=stride, padding=padding, dilation=dilation, groups=groups)
    ref = F.conv2d(x, w, None, stride, padding, dilation, groups)
    assert g.type(y) == ("float32", list(ref.shape))
    gy = g.placeholder(list(ref.shape), torch.float32, "gy")
    gx = g.convolution_data_gradient(gy, wi, input_shape=list(x.shape), stride=stride, padding=padding, dilation=dilation, groups=groups)
    gw = g.convolution_weight_gradient(gy, xi, weight_shape=list(w.shape), stride=stride, padding=padding, dilation=dilation, groups=groups)
    for t in (y, gx, gw):
        g.output(t)
    assert g.type(gx) == ("float32", list(x.shape)) and g.type(gw) == ("float32", list(w.shape))
    assert g.attrs(gx)["input_shape"] == list(x.shape) and g.attrs(gw)["groups"] == 2

    upstream = torch.randn(ref.shape)
    xr, wr = x.clone().requires_grad_(), w.clone().requires_grad_()
    F.conv2d(xr, wr, None, stride, padding, dilation, groups).backward(upstream)
    out = _run_reference(g, [x, w, upstream], fuse=True)
    torch.testing.assert_close(out[0], ref)
    torch.testing.assert_close(out[1], xr.grad)
    torch.testing.assert_close(out[2], wr.grad, rtol=1e-5, atol=1e-5)
    rebuilt = g.with_input_shapes([list(x.shape), list(w.shape), list(ref.shape)])
    assert rebuilt.to_json() == g.to_json()


@pytest.mark.parametrize("build, message", [
    (lambda g, x, w: g.convolution(x, w, stride=[1, 1], padding=[0, 0], dilation=[1, 1], groups=4), "groups must be positive and divide"),
    (lambda g, x, w: g.convolution(x, w, stride=[1], padding=[0], dilation=[1], groups=1), "one entry per spatial dim"),
    (lambda g, x, w: g.convolution(x, g.placeholder([6, 4, 9, 9], torch.float32, "big"), stride=[1, 1], padding=[0, 0], dilation=[1, 1], groups=1),
     "larger than the padded input"),
    (lambda g, x, w: g.convolution(x, g.placeholder([6, 4, 3, 3], torch.float16, "h"), stride=[1, 1], padding=[0, 0], dilation=[1, 1], groups=1),
     "operand dtypes differ"),
    (lambda g, x, w: g.convolution_data_gradient(x, w, input_shape=[2, 4, 9, 7], stride=[1, 1], padding=[0, 0], dilation=[1, 1], groups=1),
     "is not the output shape"),
])
def test_bad_convolution_graphs_raise_clear_errors(build, message):
    g = Graph()
    x = g.placeholder([2, 4, 5, 5], torch.float32, "x")
    w = g.placeholder([6, 4, 3, 3], torch.float32, "w")
    with pytest.raises(ValueError, match=message):  # GraphError, as the bindings raise it
        build(g, x, w)


def test_convolution_node_takes_a_bias():
    torch.manual_seed(0)
    for x, w in ((torch.randn(2, 4, 6, 5), torch.randn(6, 2, 3, 2)), (torch.randn(1, 2, 4, 5, 3), torch.randn(3, 2, 2, 3, 2))):
        b = torch.randn(w.shape[0])
        spatial = x.dim() - 2
        params = dict(stride=[1] * spatial, padding=[1] * spatial, dilation=[1] * spatial, groups=x.shape[1] // w.shape[1])
        g = Graph()
        xi, wi, bi = (g.placeholder(list(t.shape), torch.float32, n) for t, n in ((x, "x"), (w, "w"), (b, "b")))
        g.output(g.convolution(xi, wi, bi, **params))
        conv = F.conv2d if spatial == 2 else F.conv3d
        torch.testing.assert_close(_run_reference(g, [x, w, b], fuse=True)[0],
                                   conv(x, w, b, params["stride"], params["padding"], params["dilation"], params["groups"]))
    g = Graph()
    xi, wi = g.placeholder([2, 4, 5, 5], torch.float32, "x"), g.placeholder([6, 4, 3, 3], torch.float32, "w")
    conv = dict(stride=[1, 1], padding=[0, 0], dilation=[1, 1], groups=1)
    with pytest.raises(ValueError, match=r"bias \[4\] must be \[C_out\]"):
        g.convolution(xi, wi, g.placeholder([4], torch.float32, "b"), **conv)
    with pytest.raises(ValueError, match="bias dtype differs"):
        g.convolution(xi, wi, g.placeholder([6], torch.float16, "b"), **conv)
    with pytest.raises(ValueError):
        g.convolution(xi, wi, g.placeholder([6], torch.float32, "b"), g.placeholder([6], torch.float32, "c"), **conv)
    # conv2d with a bias on the device is one Convolution node, no separate add
    x, w, b = torch.randn(1, 2, 5, 5).to(DEV), torch.randn(3, 2, 3, 3).to(DEV), torch.randn(3).to(DEV)
    ops = re.findall(r'"op": "(\w+)"', mps_ext.graph.capture(F.conv2d, x, w, b)[-1][1])
    assert ops == ["placeholder"] * 3 + ["convolution"]


@pytest.mark.parametrize("mask", [(True, True, True), (False, True, True), (True, True, False)])
@pytest.mark.parametrize("groups", [1, 2])
def test_convolution_backward_is_one_kernel_matching_its_decomposition(mask, groups):
    # Two or more gradients of a forward convolution run as one multi-result
    # kernel (ATen's convolution_backward, oneDNN's single pass); the
    # decomposition (DataGradient / WeightGradient / ReduceSum) is its oracle.
    torch.manual_seed(0)
    x, w = torch.randn(2, 4, 7, 6), torch.randn(6, 4 // groups, 3, 2)
    gy = F.conv2d(x, w, stride=2, padding=1, dilation=1, groups=groups)
    gy = torch.randn_like(gy)
    args = ([6], [2, 2], [1, 1], [1, 1], False, [0, 0], groups, list(mask))
    expected = torch.ops.aten.convolution_backward(gy, x, w, *args)
    dev = [t.to(DEV) for t in (gy, x, w)]
    graphs = mps_ext.graph.capture(torch.ops.aten.convolution_backward, *dev, *args)
    kernels = re.findall(r'"kernel": "([\w.#]+)"', graphs[-1][1])
    assert kernels == ["aten.convolution_backward"] + [f"aten.convolution_backward#{k}" for k in range(1, sum(mask))]
    for decompose in (False, True):
        if decompose:
            with mps_ext.graph.decompositions():
                got = torch.ops.aten.convolution_backward(*dev, *args)
        else:
            got = torch.ops.aten.convolution_backward(*dev, *args)
        for e, g, wanted in zip(expected, got, mask):
            if wanted:
                torch.testing.assert_close(g.cpu(), e, atol=1e-4, rtol=1e-4)
            else:
                assert e is None and g is None


@pytest.mark.parametrize("case", ["2d", "3d"])
def test_conv_transpose_with_output_padding_beyond_the_stride(case):
    # output_padding may reach the dilation: the forward convolution of the
    # result is then larger than the transposed input (its extra positions
    # carry zero gradient), which the graph pads and cuts back.
    torch.manual_seed(0)
    if case == "2d":
        x, w, f = torch.randn(2, 2, 4, 4), torch.randn(2, 2, 4, 5), F.conv_transpose2d
        kw = dict(stride=(3, 2), padding=(1, 2), output_padding=(2, 3), groups=2, dilation=(4, 4))
    else:
        x, w, f = torch.randn(1, 2, 3, 3, 3), torch.randn(2, 1, 2, 2, 2), F.conv_transpose3d
        kw = dict(stride=1, padding=0, output_padding=1, groups=1, dilation=2)
    b = torch.randn(w.shape[1] * kw["groups"])
    cpu = [t.clone().requires_grad_() for t in (x, w, b)]
    dev = [t.to(DEV).requires_grad_() for t in (x, w, b)]
    yc, yd = f(*cpu, **kw), f(*dev, **kw)
    seed = torch.randn_like(yc)
    yc.backward(seed)
    yd.backward(seed.to(DEV))
    torch.testing.assert_close(yd.cpu(), yc, atol=1e-5, rtol=1e-5)
    for c, d in zip(cpu, dev):
        torch.testing.assert_close(d.grad.cpu(), c.grad, atol=1e-4, rtol=1e-4)


def test_fused_region_of_unrelated_shapes_runs_node_by_node():
    # Two casts of differently shaped inputs share a fusion region (the fused
    # LSTM cell in bfloat16 builds this): the region has no common iteration
    # space and must fall back to node-by-node evaluation, not fail.
    g = Graph()
    x = g.placeholder([3, 28], torch.bfloat16, "x")
    c = g.placeholder([3, 7], torch.bfloat16, "c")
    xf, cf = g.cast(x, dtype=torch.float32), g.cast(c, dtype=torch.float32)
    gate = g.sigmoid(g.slice(xf, starts=[0, 7], ends=[3, 14], strides=[1, 1]))
    g.output(g.cast(g.multiply(gate, cf), dtype=torch.bfloat16))
    a, b = torch.randn(3, 28).bfloat16(), torch.randn(3, 7).bfloat16()
    want = (torch.sigmoid(a.float()[:, 7:14]) * b.float()).bfloat16()
    assert torch.equal(_run_reference(g, [a, b], fuse=True)[0], want)


def test_device_convolution_runs_as_a_graph():
    x = torch.randn(1, 2, 5, 5, device=DEV)
    w = torch.randn(3, 2, 3, 3, device=DEV)
    graphs = mps_ext.graph.capture(F.conv2d, x, w)
    assert graphs and '"op": "convolution"' in graphs[-1][1]


# --- convolution on the device -----------------------------------------------------------

CONVS = [
    ("conv1d", lambda: torch.nn.Conv1d(4, 6, 3, stride=2, padding=1), (2, 4, 9)),
    ("conv1d_dilated_nobias", lambda: torch.nn.Conv1d(3, 4, 2, dilation=3, bias=False), (2, 3, 11)),
    ("conv2d_grouped", lambda: torch.nn.Conv2d(4, 6, 3, stride=2, padding=1, groups=2), (2, 4, 9, 8)),
    ("conv2d_rect", lambda: torch.nn.Conv2d(4, 6, (3, 2), stride=(1, 2), padding=(2, 0), dilation=(2, 1)), (2, 4, 9, 8)),
    ("conv2d_depthwise", lambda: torch.nn.Conv2d(4, 4, 3, padding=1, groups=4), (1, 4, 6, 6)),
    ("conv3d", lambda: torch.nn.Conv3d(2, 4, 3, padding=1, stride=(1, 2, 1)), (1, 2, 5, 6, 4)),
    ("convT1d", lambda: torch.nn.ConvTranspose1d(4, 6, 3, stride=2, padding=1, output_padding=1), (2, 4, 7)),
    ("convT2d_grouped", lambda: torch.nn.ConvTranspose2d(4, 6, 3, stride=2, padding=1, output_padding=1, groups=2),
     (2, 4, 5, 6)),
    ("convT2d_dilated", lambda: torch.nn.ConvTranspose2d(3, 2, 2, stride=3, dilation=2), (1, 3, 4, 3)),
    ("convT3d", lambda: torch.nn.ConvTranspose3d(2, 4, 3, stride=2), (1, 2, 3, 4, 3)),
]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("name, make, shape", CONVS, ids=[c[0] for c in CONVS])
def test_convolution_forward_and_backward_match_cpu(name, make, shape, dtype):
    need(dtype)
    torch.manual_seed(0)
    ref = make().to(dtype)
    dev = copy.deepcopy(ref).to(DEV)
    x = torch.randn(shape, dtype=dtype, requires_grad=True)
    xd = x.detach().to(DEV).requires_grad_()
    y, yd = ref(x), dev(xd)
    assert yd.device.type == DEV and yd.shape == y.shape and yd.dtype == dtype
    torch.testing.assert_close(yd.cpu(), y, **TOL[dtype])
    upstream = torch.randn_like(y)
    y.backward(upstream)
    yd.backward(upstream.to(DEV))
    torch.testing.assert_close(xd.grad.cpu(), x.grad, **TOL[dtype])
    for p, q in zip(ref.parameters(), dev.parameters()):
        assert q.grad.device.type == DEV
        torch.testing.assert_close(q.grad.cpu(), p.grad, **TOL[dtype])


def test_convolution_on_non_contiguous_and_channels_last_inputs():
    torch.manual_seed(0)
    x = torch.randn(2, 3, 8, 9)
    w = torch.randn(5, 3, 3, 3)
    xd, wd = x.to(DEV), w.to(DEV)
    ref = F.conv2d(x.transpose(2, 3), w, padding=1)
    torch.testing.assert_close(F.conv2d(xd.transpose(2, 3), wd, padding=1).cpu(), ref)
    cl = xd.to(memory_format=torch.channels_last)
    torch.testing.assert_close(F.conv2d(cl, wd).cpu(), F.conv2d(x, w))
    torch.testing.assert_close(F.conv2d(xd[:, :, ::2], wd).cpu(), F.conv2d(x[:, :, ::2], w))


def test_convolution_empty_batch_and_bias_only_grad():
    w = torch.randn(4, 3, 3, 3, device=DEV)
    b = torch.randn(4, device=DEV)
    y = F.conv2d(torch.randn(0, 3, 5, 5, device=DEV), w, b)
    assert y.shape == (0, 4, 3, 3) and y.device.type == DEV
    yt = F.conv_transpose2d(torch.randn(0, 4, 3, 3, device=DEV), w, b[:3])
    assert yt.shape == (0, 3, 5, 5)
    bias = torch.zeros(4, device=DEV, requires_grad=True)
    F.conv2d(torch.randn(2, 3, 5, 5, device=DEV), w, bias).sum().backward()
    torch.testing.assert_close(bias.grad.cpu(), torch.full((4,), 2 * 9.0))


def test_convolution_gradcheck_on_the_device():
    need(torch.float64)
    torch.manual_seed(0)
    x = torch.randn(1, 2, 5, 4, dtype=torch.float64, device=DEV, requires_grad=True)
    w = torch.randn(4, 1, 2, 3, dtype=torch.float64, device=DEV, requires_grad=True)
    b = torch.randn(4, dtype=torch.float64, device=DEV, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x, w, b: F.conv2d(x, w, b, stride=(2, 1), padding=1, groups=2),
                                    (x, w, b), fast_mode=True)
    wt = torch.randn(2, 3, 3, 2, dtype=torch.float64, device=DEV, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x, w: F.conv_transpose2d(x, w, stride=2, output_padding=1),
                                    (x, wt), fast_mode=True)


@pytest.mark.parametrize("call, message", [
    (lambda x, w: F.conv2d(x, w.double()), "same dtype"),
    (lambda x, w: F.conv2d(x.int(), w.int()), "floating-point"),
    (lambda x, w: F.conv2d(x, w, torch.zeros(3, device=DEV)), "bias to be 1-dimensional with 4 elements"),
    (lambda x, w: F.conv2d(x[:, :, :1, :1], w), "Kernel size|larger than|does not fit"),
])
def test_convolution_bad_arguments_raise(call, message):
    x = torch.randn(1, 3, 5, 5, device=DEV)
    w = torch.randn(4, 3, 3, 3, device=DEV)
    with pytest.raises((RuntimeError, TypeError), match=message):
        call(x, w)


# --- recurrent layers (fused LSTM/GRU cells as graphs) -----------------------------------

RNNS = [
    ("lstm", lambda: torch.nn.LSTM(5, 7, num_layers=2)),
    ("lstm_nobias_batch_first", lambda: torch.nn.LSTM(5, 7, bias=False, batch_first=True)),
    ("lstm_bidirectional_proj", lambda: torch.nn.LSTM(5, 8, bidirectional=True, proj_size=3)),
    ("gru", lambda: torch.nn.GRU(5, 7, num_layers=2)),
    ("gru_nobias_bidirectional", lambda: torch.nn.GRU(5, 7, bias=False, bidirectional=True)),
    ("rnn_tanh", lambda: torch.nn.RNN(5, 7)),
    ("rnn_relu", lambda: torch.nn.RNN(5, 7, nonlinearity="relu", num_layers=2)),
]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
@pytest.mark.parametrize("name, make", RNNS, ids=[r[0] for r in RNNS])
def test_recurrent_layers_match_cpu(name, make, dtype):
    need(dtype)
    torch.manual_seed(0)
    ref = make().to(dtype)
    dev = copy.deepcopy(ref).to(DEV)
    x = torch.randn(4, 3, 5, dtype=dtype, requires_grad=True)
    xd = x.detach().to(DEV).requires_grad_()
    (y, h), (yd, hd) = ref(x), dev(xd)
    torch.testing.assert_close(yd.cpu(), y, **TOL[dtype])
    for a, b in zip(h if isinstance(h, tuple) else (h,), hd if isinstance(hd, tuple) else (hd,)):
        torch.testing.assert_close(b.cpu(), a, **TOL[dtype])
    upstream = torch.randn_like(y)
    y.backward(upstream)
    yd.backward(upstream.to(DEV))
    torch.testing.assert_close(xd.grad.cpu(), x.grad, **TOL[dtype])
    for p, q in zip(ref.parameters(), dev.parameters()):
        torch.testing.assert_close(q.grad.cpu(), p.grad, **TOL[dtype])


@pytest.mark.parametrize("cell", [torch.nn.LSTMCell, torch.nn.GRUCell])
def test_cells_match_cpu_including_missing_state_gradients(cell):
    torch.manual_seed(0)
    ref = cell(4, 6)
    dev = copy.deepcopy(ref).to(DEV)
    x = torch.randn(3, 4)
    out, outd = ref(x), dev(x.to(DEV))
    if cell is torch.nn.LSTMCell:
        # only the cell state feeds the loss: the fused backward gets no grad_hy
        out[1].sum().backward()
        outd[1].sum().backward()
        torch.testing.assert_close(outd[0].cpu(), out[0])
    else:
        out.sum().backward()
        outd.sum().backward()
    for p, q in zip(ref.parameters(), dev.parameters()):
        torch.testing.assert_close(q.grad.cpu(), p.grad, rtol=1e-5, atol=1e-6)


def test_fused_cells_gradcheck_and_double_backward():
    need(torch.float64)
    torch.manual_seed(0)
    opts = dict(dtype=torch.float64, device=DEV, requires_grad=True)
    ig, hg, cx = torch.randn(2, 12, **opts), torch.randn(2, 12, **opts), torch.randn(2, 3, **opts)
    bi, bh = torch.randn(12, **opts), torch.randn(12, **opts)
    assert torch.autograd.gradcheck(lambda *a: torch.ops.aten._thnn_fused_lstm_cell(*a)[:2], (ig, hg, cx, bi, bh),
                                    fast_mode=True)
    hx = torch.randn(2, 4, **opts)
    assert torch.autograd.gradcheck(lambda *a: torch.ops.aten._thnn_fused_gru_cell(*a)[0], (ig, hg, hx, bi, bh),
                                    fast_mode=True)
    # create_graph: autograd switches to ATen's differentiable decomposition
    lstm = torch.nn.LSTM(3, 4).double().to(DEV)
    x = torch.randn(2, 1, 3, **opts)
    (g,) = torch.autograd.grad(lstm(x)[0].square().sum(), x, create_graph=True)
    g.sum().backward()
    assert torch.isfinite(x.grad).all()


def test_fused_cell_argument_errors():
    ig = torch.randn(2, 8, device=DEV)
    with pytest.raises(RuntimeError, match="must be \\[batch, 4 \\* hidden\\]"):
        torch.ops.aten._thnn_fused_lstm_cell(ig, ig, torch.randn(2, 3, device=DEV))
    with pytest.raises(RuntimeError, match="pass both biases or neither"):
        torch.ops.aten._thnn_fused_gru_cell(ig[:, :6], ig[:, :6], torch.randn(2, 2, device=DEV), torch.randn(6, device=DEV))


# --- smaller gaps --------------------------------------------------------------------------

def test_tensor_split_with_index_tensors_matches_cpu():
    x = torch.arange(24.0).reshape(4, 6)
    xd = x.to(DEV)
    for idx in (torch.tensor([1, 4]), torch.tensor(3), torch.tensor([0, 2, 2, 5])):
        for dim in (0, 1):
            got = torch.tensor_split(xd, idx, dim=dim)
            want = torch.tensor_split(x, idx, dim=dim)
            assert len(got) == len(want)
            for a, b in zip(got, want):
                assert a.device.type == DEV
                torch.testing.assert_close(a.cpu(), b)
    # like CUDA: the index tensor itself must be on the CPU
    with pytest.raises(RuntimeError, match="tensor_indices_or_sections to be on cpu"):
        torch.tensor_split(xd, torch.tensor([1, 2], device=DEV))


@pytest.mark.parametrize("view", [lambda b: b[3:15], lambda b: b.view(4, 5)[1:, 2:], lambda b: b[5:].t() if b.dim() > 1
                                  else b[5:]])
@pytest.mark.parametrize("size, stride, offset", [((3, 3), (2, 1), None), ((2, 3), (1, 2), 4), ((2, 2), (0, 1), 1)])
def test_as_strided_over_partial_views_matches_cpu(view, size, stride, offset):
    base = torch.arange(20.0)
    vb, vd = view(base), view(base.to(DEV))
    torch.testing.assert_close(vd.as_strided(size, stride, offset).cpu(), vb.as_strided(size, stride, offset))
    torch.testing.assert_close(torch.as_strided_copy(vd, size, stride, offset).cpu(),
                               torch.as_strided_copy(vb, size, stride, offset))
    if 0 in stride:
        return  # overlapping: scatter refuses on every device
    src = torch.full(size, -1.0)
    torch.testing.assert_close(torch.as_strided_scatter(vd, src.to(DEV), size, stride, offset).cpu(),
                               torch.as_strided_scatter(vb, src, size, stride, offset))


def test_quantized_tensors_are_refused_clearly():
    x = torch.randn(3, device=DEV)
    with pytest.raises(NotImplementedError, match="quantized tensors are not supported on the mpsgraph device"):
        torch.quantize_per_tensor(x, 0.1, 0, torch.quint8)
    with pytest.raises(NotImplementedError, match="quantize_per_channel"):
        torch.quantize_per_channel(x, torch.ones(3), torch.zeros(3, dtype=torch.long), 0, torch.qint8)
    with pytest.raises(NotImplementedError, match="quantized tensors are not supported"):
        torch._empty_affine_quantized([2], scale=0.1, zero_point=0, dtype=torch.quint8, device=DEV)
