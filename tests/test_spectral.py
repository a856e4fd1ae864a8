"""mps_ext.fft, mps_ext.stft/istft and complex tensors on the device, against torch.fft/stft/istft.

Results in float32/complex64 are compared with torch computed in float64/complex128
(the tolerance scales with the spectrum's magnitude).
"""
import os
import subprocess
import sys
import warnings

import pytest
import torch
from torch.testing._internal.optests import opcheck

import mps_ext
from conftest import supports_dtype

ops = torch.ops.mps_ext
SIZES = [1, 2, 7, 64, 100, 512, 1000, 4096]
NORMS = [None, "backward", "forward", "ortho"]


def close(actual, expected, rtol=2e-5):
    """actual (float32/complex64, any device) vs a float64/complex128 reference."""
    actual = actual.cpu()
    assert actual.shape == expected.shape, (actual.shape, expected.shape)
    scale = max(expected.abs().max().item() if expected.numel() else 0.0, 1e-30)
    torch.testing.assert_close(actual.to(expected.dtype), expected, rtol=rtol, atol=rtol * scale)


def ref_input(shape, complex_):
    dtype = torch.complex128 if complex_ else torch.float64
    return torch.randn(shape, dtype=dtype)


def low(x):
    return x.to(torch.complex64 if x.is_complex() else torch.float32)


# --- 1-D transforms -------------------------------------------------------------------
ONE_D = {  # name: input is complex
    "fft": True, "ifft": True, "rfft": False, "irfft": True, "hfft": True, "ihfft": False,
}


@pytest.mark.parametrize("name", list(ONE_D))
@pytest.mark.parametrize("norm", NORMS)
def test_1d_all_sizes(device, name, norm):
    fn, ref = getattr(mps_ext.fft, name), getattr(torch.fft, name)
    for n in SIZES:
        if name in ("irfft", "hfft") and n == 1:
            continue  # the default output size 2*(1-1) is invalid (an error test covers it)
        x = ref_input((3, n), ONE_D[name])
        close(fn(low(x).to(device), norm=norm), ref(x, norm=norm))


@pytest.mark.parametrize("name", list(ONE_D))
def test_1d_n_pads_and_truncates(device, name):
    fn, ref = getattr(mps_ext.fft, name), getattr(torch.fft, name)
    x = ref_input((4, 5, 12), ONE_D[name])
    for n, dim in [(5, -1), (20, -1), (1, 1), (9, 0), (12, -1), (3, -2)]:
        close(fn(low(x).to(device), n=n, dim=dim, norm="ortho"), ref(x, n=n, dim=dim, norm="ortho"))


def test_1d_float64_and_promotion():
    x = torch.randn(4, 33, dtype=torch.float64)
    torch.testing.assert_close(mps_ext.fft.rfft(x), torch.fft.rfft(x))
    assert mps_ext.fft.rfft(x).dtype == torch.complex128
    xi = torch.arange(12).reshape(3, 4)
    assert mps_ext.fft.fft(xi).dtype == torch.complex64
    torch.testing.assert_close(mps_ext.fft.fft(xi), torch.fft.fft(xi))
    torch.testing.assert_close(mps_ext.fft.irfft(xi), torch.fft.irfft(xi))  # real input promoted to complex


def test_empty_and_out(device):
    e = torch.empty(0, 8, dtype=torch.complex64)
    assert mps_ext.fft.fft(e.to(device)).shape == (0, 8)
    z = mps_ext.fft.fft(torch.empty(0).to(device), n=4).cpu()  # zero-padded empty signal
    torch.testing.assert_close(z, torch.fft.fft(torch.empty(0), n=4))
    x = torch.randn(6, 10)
    out = torch.empty(0, dtype=torch.complex64, device=device)
    r = mps_ext.fft.rfft(x.to(device), out=out)
    assert r is out and out.shape == (6, 6)
    close(out, torch.fft.rfft(x.double()))


# --- n-D transforms ---------------------------------------------------------------------
ND = {  # name: (input complex, default dim)
    "fft2": (True, (-2, -1)), "ifft2": (True, (-2, -1)), "rfft2": (False, (-2, -1)), "irfft2": (True, (-2, -1)),
    "hfft2": (True, (-2, -1)), "ihfft2": (False, (-2, -1)), "fftn": (True, None), "ifftn": (True, None),
    "rfftn": (False, None), "irfftn": (True, None), "hfftn": (True, None), "ihfftn": (False, None),
}
ND_CASES = [  # (shape, s, dim): 1-4 transformed dims, padding, truncation, far-out dims
    ((6, 10), None, None),
    ((3, 7, 9), (5, 12), None),
    ((4, 6, 8), None, (0, 2)),
    ((2, 3, 4, 5), (3, -1, 6, 7), (0, 1, 2, 3)),
    ((2, 3, 4, 5, 6), (4, 5), (0, 2)),          # axes outside the last four: transposed in the graph
    ((2, 2, 3, 2, 4, 5), None, (0, 1, 2, 3, 5)),  # five axes: two FFT node groups
]


@pytest.mark.parametrize("name", list(ND))
def test_nd_transforms(device, name):
    complex_, default_dim = ND[name]
    fn, ref = getattr(mps_ext.fft, name), getattr(torch.fft, name)
    for shape, s, dim in ND_CASES:
        if name.endswith("2"):
            if len(shape) > 3:
                continue
            dim = default_dim if dim is None else dim[-2:] if len(dim) >= 2 else None
            s = s[-2:] if s is not None else None
            if dim is None:
                continue
        x = ref_input(shape, complex_)
        for norm in ("backward", "ortho", "forward"):
            close(fn(low(x).to(device), s=s, dim=dim, norm=norm), ref(x, s=s, dim=dim, norm=norm))


def test_non_contiguous_and_conj_inputs(device):
    x = ref_input((8, 12, 10), True)
    xt = low(x).to(device).transpose(0, 2)[:, ::2]  # transposed, strided
    close(mps_ext.fft.fftn(xt, dim=(0, 1)), torch.fft.fftn(x.transpose(0, 2)[:, ::2], dim=(0, 1)))
    close(mps_ext.fft.ifft(low(x).to(device).conj(), dim=1), torch.fft.ifft(x.conj(), dim=1))
    r = ref_input((5, 16), False)
    close(mps_ext.fft.rfft(low(r).to(device)[:, 1::2]), torch.fft.rfft(r[:, 1::2]))


# --- errors: torch's types (and messages where they are torch's) ----------------------
BAD_FFT_CALLS = [
    ("fft", lambda m, x: m.fft(x, n=0)),
    ("fft", lambda m, x: m.fft(x, n=-1)),
    ("fft", lambda m, x: m.fft(x, dim=2)),
    ("fft", lambda m, x: m.fft(x, norm="unitary")),
    ("fft", lambda m, x: m.fft(torch.tensor(1.0))),
    ("fft", lambda m, x: m.fft(x.half())),
    ("rfft", lambda m, x: m.rfft(x.to(torch.complex64))),
    ("ihfft", lambda m, x: m.ihfft(x.to(torch.complex64))),
    ("irfft", lambda m, x: m.irfft(x[:, :1].to(torch.complex64))),
    ("fftn", lambda m, x: m.fftn(x, s=(3, 4, 5))),
    ("fftn", lambda m, x: m.fftn(x, s=(3, 4), dim=(0,))),
    ("fftn", lambda m, x: m.fftn(x, dim=(0, 0))),
    ("fftn", lambda m, x: m.fftn(x, dim=(0, -2))),
    ("rfftn", lambda m, x: m.rfftn(x, dim=())),
    ("irfftn", lambda m, x: m.irfftn(x.to(torch.complex64), s=(0, 4))),
]


@pytest.mark.parametrize("case", range(len(BAD_FFT_CALLS)))
def test_fft_errors_match_torch(case):
    _, call = BAD_FFT_CALLS[case]
    x = torch.randn(2, 10)
    with pytest.raises(Exception) as theirs:
        call(torch.fft, x)
    with pytest.raises(type(theirs.value)) as ours:
        call(mps_ext.fft, x)
    # torch's message for the canonical argument errors is kept word for word
    for phrase in ("Invalid number of data points", "Invalid normalization mode", "FFT dims must be unique",
                   "same length", "only has", "must transform at least one axis", "Dimension",
                   "expects a real input tensor", "Unsupported dtype"):
        if phrase in str(theirs.value):
            assert phrase in str(ours.value), (str(theirs.value), str(ours.value))


# --- operators: opcheck, Meta, autograd -----------------------------------------------
def test_opcheck_fft_ops():
    x = torch.randn(3, 8, dtype=torch.complex64)
    r = torch.randn(3, 8)
    opcheck(ops.fft_c2c, (x, [5, 10], None, "ortho", True))
    opcheck(ops.fft_c2c, (r, None, [0], None, False))
    opcheck(ops.fft_r2c, (r, [4, 9], [0, 1], "forward", True))
    opcheck(ops.fft_r2c, (r, None, [1], None, False))
    opcheck(ops.fft_c2r, (x, [3, 11], None, "backward"))
    opcheck(ops.fft_c2r, (x, None, [1], None))


def test_meta_shapes():
    x = torch.empty(3, 8, 10, device="meta", dtype=torch.complex64)
    assert ops.fft_c2r(x, [6, 7], [0, 2]).shape == (6, 8, 7)
    assert ops.fft_r2c(torch.empty(3, 9, device="meta"), None, [1], None, True).shape == (3, 5)
    with pytest.raises(RuntimeError, match="Invalid number of data points"):
        ops.fft_c2c(x, [0], None)


def test_gradcheck_fft_ops():
    r = torch.randn(4, 6, dtype=torch.float64, requires_grad=True)
    c = torch.randn(4, 6, dtype=torch.complex128, requires_grad=True)
    for norm in ("backward", "ortho", "forward"):
        assert torch.autograd.gradcheck(lambda t: ops.fft_r2c(t, [8, 5], None, norm, True), (r,))
        assert torch.autograd.gradcheck(lambda t: ops.fft_r2c(t, None, [1], norm, False), (r,))
        assert torch.autograd.gradcheck(lambda t: ops.fft_c2c(t, [3, 9], None, norm, False), (c,))
        assert torch.autograd.gradcheck(lambda t: ops.fft_c2c(t, None, [0], norm, True), (r,))
        # (ATen's multi-dim c2r with an odd last size is very slow: odd sizes in 1-D)
        assert torch.autograd.gradcheck(lambda t: ops.fft_c2r(t, [5, 8], None, norm), (c,))
        assert torch.autograd.gradcheck(lambda t: ops.fft_c2r(t, [3, 4], None, norm), (c,))
        assert torch.autograd.gradcheck(lambda t: ops.fft_c2r(t, [9], [1], norm), (c,))
    assert torch.autograd.gradgradcheck(lambda t: ops.fft_c2r(t, [7], [0], "ortho"), (c,))


def test_grad_matches_torch(device):
    x = torch.randn(3, 10, dtype=torch.complex64)
    a = x.clone().to(device).requires_grad_()
    b = x.clone().requires_grad_()
    (mps_ext.fft.hfft(a, n=13).cpu() ** 2).sum().backward()
    (torch.fft.hfft(b, n=13) ** 2).sum().backward()
    torch.testing.assert_close(a.grad.cpu(), b.grad, rtol=1e-4, atol=1e-4)


# --- STFT / ISTFT ------------------------------------------------------------------------
STFT_CASES = [  # (length, n_fft, hop, win_length, center, pad_mode, onesided, normalized, batched)
    (4096, 512, 256, 512, True, "reflect", None, False, True),
    (4000, 512, 256, 512, False, "reflect", None, False, True),
    (1000, 512, 256, 400, True, "constant", None, True, False),
    (1000, 64, 16, 64, True, "reflect", False, False, True),
    (777, 64, 24, 50, True, "constant", True, False, False),
    (513, 32, 7, 31, False, "reflect", False, True, True),
    (100, 16, 5, 12, True, "replicate", None, False, True),
    (100, 16, 5, 16, True, "circular", None, False, True),
]


@pytest.mark.parametrize("case", STFT_CASES, ids=lambda c: "-".join(map(str, c)))
def test_stft_matches_torch(device, case):
    length, n_fft, hop, win, center, mode, onesided, normalized, batched = case
    x = torch.randn((3, length) if batched else (length,), dtype=torch.float64)
    w = torch.hann_window(win, dtype=torch.float64)
    expected = torch.stft(x, n_fft, hop, win, w, center, mode, normalized, onesided, return_complex=True)
    actual = mps_ext.stft(low(x).to(device), n_fft, hop, win, low(w).to(device), center, mode, normalized,
                          onesided, return_complex=True)
    assert actual.dtype == torch.complex64
    close(actual, expected)
    # the same layout as torch: frequencies contiguous
    assert actual.cpu().stride() == torch.stft(low(x), n_fft, hop, win, low(w), center, mode, normalized, onesided,
                                               return_complex=True).stride()


@pytest.mark.parametrize("case", STFT_CASES[:3] + STFT_CASES[5:6], ids=lambda c: "-".join(map(str, c)))
def test_stft_kernel_matches_its_decomposition(device, case):
    length, n_fft, hop, win, center, mode, onesided, normalized, batched = case
    x = torch.randn(2, length).to(device)
    w = torch.hann_window(win).to(device)
    fused = mps_ext.stft(x, n_fft, hop, win, w, center, mode, normalized, onesided, return_complex=True)
    with mps_ext.graph.decompositions():
        oracle = mps_ext.stft(x, n_fft, hop, win, w, center, mode, normalized, onesided, return_complex=True)
    torch.testing.assert_close(fused.cpu(), oracle.cpu(), rtol=1e-5, atol=1e-4)
    spec = fused
    if center and win == n_fft and (onesided is None or onesided):  # (hann is not NOLA uncentred)
        y = mps_ext.istft(spec, n_fft, hop, win, w, center, normalized, onesided, length)
        with mps_ext.graph.decompositions():
            y_oracle = mps_ext.istft(spec, n_fft, hop, win, w, center, normalized, onesided, length)
        torch.testing.assert_close(y.cpu(), y_oracle.cpu(), rtol=1e-5, atol=1e-5)
    assert {"stft_frames", "istft_overlap_add"} <= set(mps_ext.graph.kernels())


def test_stft_complex_input_and_return_real(device):
    x = torch.randn(2, 300, dtype=torch.complex128)
    w = torch.hann_window(64, dtype=torch.float64)
    close(mps_ext.stft(low(x).to(device), 64, 16, window=low(w).to(device), return_complex=True),
          torch.stft(x, 64, 16, window=w, return_complex=True))
    r = torch.randn(300, dtype=torch.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        close(mps_ext.stft(low(r).to(device), 64, window=low(w).to(device), return_complex=False),
              torch.stft(r, 64, window=w, return_complex=False))


@pytest.mark.parametrize("center,length", [(True, None), (True, 1000), (True, 1100), (False, None)])
@pytest.mark.parametrize("normalized", [False, True])
def test_istft_matches_torch_and_inverts_stft(device, center, length, normalized):
    n_fft, hop = 512, 256
    x = torch.randn(3, 1000, dtype=torch.float64)
    w = torch.hann_window(n_fft, dtype=torch.float64)
    if not center:
        w = w + 0.1  # NOLA holds at the uncentred ends too
    spec = torch.stft(x, n_fft, hop, window=w, center=center, normalized=normalized, return_complex=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "Result is being padded with zeros" (both)
        expected = torch.istft(spec, n_fft, hop, window=w, center=center, normalized=normalized, length=length)
        actual = mps_ext.istft(low(spec).to(device), n_fft, hop, window=low(w).to(device), center=center,
                               normalized=normalized, length=length)
    if length == 1100:  # past the frames: zeros; the last covered samples divide by a vanishing envelope
        assert (actual.cpu()[:, 1024:] == 0).all()
        actual, expected = actual[:, :1000], expected[:, :1000]
    close(actual, expected, rtol=5e-5)
    if center and length == 1000:  # reconstruction
        torch.testing.assert_close(actual.cpu().double(), x, rtol=1e-4, atol=1e-4)
    rt = mps_ext.istft(mps_ext.stft(low(x).to(device), n_fft, hop, window=low(w).to(device), center=center,
                                    normalized=normalized, return_complex=True),
                       n_fft, hop, window=low(w).to(device), center=center, normalized=normalized,
                       length=1000 if center else None)
    torch.testing.assert_close(rt.cpu().double(), x[:, : rt.shape[-1]], rtol=1e-4, atol=1e-4)


def test_istft_onesided_false_and_return_complex(device):
    x = torch.randn(2, 400, dtype=torch.complex128)
    w = torch.hann_window(64, dtype=torch.float64)
    spec = torch.stft(x, 64, 16, window=w, return_complex=True)
    expected = torch.istft(spec, 64, 16, window=w, return_complex=True)
    close(mps_ext.istft(low(spec).to(device), 64, 16, window=low(w).to(device), return_complex=True), expected)


def test_opcheck_stft_istft():
    x = torch.randn(2, 200)
    w = torch.hann_window(32)
    opcheck(ops.stft, (x, 32, 8, None, w, True, "reflect", False, None, True))
    opcheck(ops.stft, (x[0], 32, 8, 20, w[:20], False, "reflect", True, False, True))
    spec = torch.stft(x, 32, 8, window=w, return_complex=True)
    opcheck(ops.istft, (spec, 32, 8, None, w, True, False, None, 200, False))
    opcheck(ops.istft, (spec[1], 32, 8, None, w, True, True, None, None, False))


def test_gradcheck_stft_istft():
    x = torch.randn(2, 40, dtype=torch.float64, requires_grad=True)
    w = torch.hann_window(16, dtype=torch.float64).requires_grad_()
    assert torch.autograd.gradcheck(lambda a, b: mps_ext.stft(a, 16, 4, window=b, return_complex=True), (x, w))
    assert torch.autograd.gradcheck(
        lambda a: mps_ext.stft(a, 16, 5, 12, window=w.detach()[:12], center=False, normalized=True,
                               return_complex=True), (x,))
    spec = torch.stft(x.detach(), 16, 4, window=w.detach(), return_complex=True).requires_grad_()
    assert torch.autograd.gradcheck(lambda s: mps_ext.istft(s, 16, 4, window=w.detach(), length=40), (spec,))
    # the differentiable path computes the fused graph's values
    torch.testing.assert_close(mps_ext.stft(x, 16, 4, window=w, return_complex=True).detach(),
                               mps_ext.stft(x.detach(), 16, 4, window=w.detach(), return_complex=True))


BAD_STFT_CALLS = [
    lambda m, x, w: m.stft(x, 16),                                        # return_complex missing
    lambda m, x, w: m.stft(x, 300, return_complex=True),                  # reflect pad >= length
    lambda m, x, w: m.stft(x, 300, center=False, return_complex=True),    # n_fft > length
    lambda m, x, w: m.stft(x, 16, hop_length=0, return_complex=True),
    lambda m, x, w: m.stft(x, 16, win_length=20, return_complex=True),
    lambda m, x, w: m.stft(x, 16, window=torch.ones(10), return_complex=True),
    lambda m, x, w: m.stft(x, 16, pad_mode="foo", return_complex=True),
    lambda m, x, w: m.stft(x.to(torch.complex64), 16, onesided=True, return_complex=True),
    lambda m, x, w: m.stft(torch.randn(2, 2, 100), 16, return_complex=True),
    lambda m, x, w: m.stft(x, 0, return_complex=True),
    lambda m, x, w: m.istft(w, 16),                                        # real input
    lambda m, x, w: m.istft(m.stft(x, 16, return_complex=True), 16, window=torch.zeros(16)),  # NOLA
    lambda m, x, w: m.istft(m.stft(x, 16, return_complex=True), 16, hop_length=0),
    lambda m, x, w: m.istft(m.stft(x, 16, return_complex=True), 12),      # wrong frequency size
    lambda m, x, w: m.istft(m.stft(x, 16, return_complex=True), 16, window=torch.ones(9)),
]


@pytest.mark.parametrize("case", range(len(BAD_STFT_CALLS)))
def test_stft_errors_match_torch(case):
    call = BAD_STFT_CALLS[case]
    x, w = torch.randn(2, 100), torch.randn(9, 5)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(Exception) as theirs:
            call(torch, x, w)
        with pytest.raises(type(theirs.value)):
            call(mps_ext, x, w)


def test_nn_modules(device):
    w = torch.hann_window(64)
    stft, istft = mps_ext.nn.STFT(64, 16, window=w).to(device), mps_ext.nn.ISTFT(64, 16, window=w).to(device)
    assert stft.window.device.type == torch.device(device).type and "window" in stft.state_dict()
    x = torch.randn(2, 500)
    spec = stft(x.to(device))
    close(spec, torch.stft(x.double(), 64, 16, window=w.double(), return_complex=True))
    torch.testing.assert_close(istft(spec, length=500).cpu(), x, rtol=1e-4, atol=1e-4)
    learned = mps_ext.nn.STFT(64, 16, window=w, trainable_window=True)
    learned(x).abs().sum().backward()
    assert learned.window.grad is not None and learned.window.grad.shape == (64,)


# --- complex tensors and torch.fft on the mpsgraph device ---------------------------
def test_device_complex64_basics():
    z = torch.randn(5, 7, dtype=torch.complex64)
    d = z.to("mpsgraph")
    assert d.device.type == "mpsgraph" and d.dtype == torch.complex64
    torch.testing.assert_close(d.cpu(), z)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # elementwise ops run on the CPU fallback
        torch.testing.assert_close((d * d + d).cpu(), z * z + z)
        for fn in (torch.abs, torch.angle, torch.real, torch.imag, torch.view_as_real, torch.conj_physical):
            torch.testing.assert_close(fn(d).cpu(), fn(z))
        torch.testing.assert_close(d.conj().cpu(), z.conj())
        torch.testing.assert_close(d.conj().imag.cpu(), z.conj().imag)  # a negative-bit view
        torch.testing.assert_close(torch.view_as_complex(torch.view_as_real(d)).cpu(), z)
        torch.testing.assert_close(torch.zeros(3, dtype=torch.complex64, device="mpsgraph").cpu(),
                                   torch.zeros(3, dtype=torch.complex64))
        torch.testing.assert_close(torch.complex(d.real, d.imag).cpu(), z)


@pytest.mark.parametrize("name", ["fft", "ifft", "rfft", "irfft", "fftn", "rfft2", "irfftn", "hfft"])
def test_torch_fft_on_device_runs_mps_ext_graphs(name):
    x = torch.randn(4, 16, dtype=torch.float32 if name.startswith("rfft") else torch.complex64)
    before = mps_ext.graph.cache_info()
    y = getattr(torch.fft, name)(x.to("mpsgraph"))
    after = mps_ext.graph.cache_info()
    assert after.hits + after.misses > before.hits + before.misses  # ran a graph, not the CPU fallback
    close(y, getattr(torch.fft, name)(x.to(torch.complex128 if x.is_complex() else torch.float64)))


def test_torch_stft_istft_on_device():
    # torch.stft/istft on device tensors run mps_ext's fused graphs (gradients included)
    x = torch.randn(2, 2000)
    w = torch.hann_window(256)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.stft's own center padding runs on the CPU fallback
        before = mps_ext.graph.cache_info()
        xd = x.to("mpsgraph").requires_grad_()
        spec = torch.stft(xd, 256, 64, window=w.to("mpsgraph"), return_complex=True)
        y = torch.istft(spec, 256, 64, window=w.to("mpsgraph"), length=2000)
        after = mps_ext.graph.cache_info()
        close(spec.detach(), torch.stft(x.double(), 256, 64, window=w.double(), return_complex=True))
        torch.testing.assert_close(y.detach().cpu(), x, rtol=1e-4, atol=1e-4)
        spec.abs().sum().backward()
    assert after.hits + after.misses >= before.hits + before.misses + 2
    xc = x.clone().requires_grad_()
    torch.stft(xc, 256, 64, window=w, return_complex=True).abs().sum().backward()
    torch.testing.assert_close(xd.grad.cpu(), xc.grad, rtol=1e-4, atol=1e-4)


# These used to kill the process (SIGSEGV: unbounded recursion copying conj views
# on the device). One child process runs them all, reporting each; a crash fails
# the tests of the function that crashed and those after it, not pytest.
CRASHERS = ["ifft", "hfft", "hfft2", "hfftn", "ihfft", "ihfftn", "ihfft2"]
_CHILD = r"""
import sys, warnings, torch, mps_ext
warnings.simplefilter("ignore")
for name in sys.argv[1:]:
    fn = getattr(torch.fft, name)
    for dtype in (torch.float32, torch.complex64):
        if name.startswith("ihfft") and dtype.is_complex:
            continue
        x = torch.randn(4, 6, dtype=dtype)
        got = fn(x.to("mpsgraph")).cpu()
        want = fn(x)
        assert torch.allclose(got, want, rtol=1e-4, atol=1e-4), name
        fn(x.to("mpsgraph")).conj().cpu()
    print("ok", name, flush=True)
"""


@pytest.fixture(scope="module")
def crash_run():
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([os.getcwd()] + sys.path))
    proc = subprocess.run([sys.executable, "-c", _CHILD, *CRASHERS], capture_output=True, text=True, timeout=300,
                          env=env)
    return proc


@pytest.mark.parametrize("name", CRASHERS)
def test_torch_fft_on_device_does_not_crash(crash_run, name):
    assert f"ok {name}" in crash_run.stdout.splitlines(), (
        f"torch.fft.{name} on an mpsgraph tensor failed (exit {crash_run.returncode}):\n{crash_run.stderr[-2000:]}")
