"""Mixed precision: autocast rules (aten on the mpsgraph device, the mps_ext op
table on cpu/mps/mpsgraph), rules() read back from the dispatcher, and
torch.amp.GradScaler("mpsgraph") with its two device kernels.

The dtype tests run on `cpu` (PyTorch's own AutocastCPU lists) and `mpsgraph`
(our AutocastPrivateUse1 rules) with the same expectations: the device's
rules mirror PyTorch's CUDA/CPU/MPS classes.
"""
import os
import warnings

import pytest
import torch
import torch.nn.functional as F

import mps_ext
from mps_ext import autocast as ac

LOW = [torch.bfloat16, torch.float16]


@pytest.fixture(autouse=True)
def _quiet_fallback(monkeypatch):
    monkeypatch.setenv("MPS_EXT_FALLBACK", "silent")  # aten ops without device kernels run on the CPU bytes


def t(*shape, device, dtype=torch.float32):
    return torch.randn(*shape, dtype=dtype).to(device)


# --- aten rules: output dtypes per policy class ------------------------------------------

def lower_cases(d):
    x, w, b = t(4, 8, device=d), t(6, 8, device=d), t(6, device=d)
    q, k, v = t(1, 2, 5, 8, device=d), t(1, 2, 5, 8, device=d), t(1, 2, 5, 8, device=d)
    b3, c3, a3 = t(2, 4, 8, device=d), t(2, 8, 3, device=d), t(2, 4, 3, device=d)
    return {
        "mm": lambda: torch.mm(x, w.t()),
        "linear": lambda: F.linear(x, w, b),
        "matmul": lambda: x @ w.t(),
        "addmm": lambda: torch.addmm(b, x, w.t()),
        "bmm": lambda: torch.bmm(b3, c3),
        "baddbmm": lambda: torch.baddbmm(a3, b3, c3),
        "sdpa": lambda: F.scaled_dot_product_attention(q, k, v),
        "einsum": lambda: torch.einsum("ij,kj->ik", x, w),
    }


def fp32_cases(d, low):
    x = t(4, 8, device=d, dtype=low)
    target = torch.randint(0, 8, (4,)).to(d)
    return {
        "softmax": lambda: torch.softmax(x, -1),
        "log_softmax": lambda: F.log_softmax(x, -1),
        "layer_norm": lambda: F.layer_norm(x, (8,)),
        "group_norm": lambda: F.group_norm(x.view(4, 8, 1), 2),
        "norm": lambda: torch.norm(x),
        "sum": lambda: x.sum(),
        "cumsum": lambda: torch.cumsum(x, 0),
        "exp": lambda: torch.exp(x),
        "log": lambda: torch.log(x.abs() + 1),
        "pow": lambda: torch.pow(x, 2),
        "mse_loss": lambda: F.mse_loss(x, x * 0.5),
        "cross_entropy": lambda: F.cross_entropy(x, target),
        "nll_loss": lambda: F.nll_loss(x, target),
        "binary_cross_entropy_with_logits": lambda: F.binary_cross_entropy_with_logits(x, torch.rand(4, 8).to(d).to(low)),
    }


@pytest.mark.parametrize("low", LOW)
def test_lower_precision_ops_run_in_the_autocast_dtype(device, low):
    for name, fn in lower_cases(device).items():
        expected = fn()
        assert expected.dtype == torch.float32
        with torch.autocast(device_type=device, dtype=low):
            out = fn()
        assert out.dtype == low, (name, out.dtype)
        assert out.device.type == device
        torch.testing.assert_close(out.float().cpu(), expected.cpu(), atol=0.1, rtol=0.05, msg=name)


def conv_cases(d):
    img, ker = t(1, 3, 6, 6, device=d), t(4, 3, 3, 3, device=d)
    sig, ker1 = t(1, 3, 10, device=d), t(4, 3, 3, device=d)
    return {
        "conv1d": lambda: F.conv1d(sig, ker1),
        "conv2d": lambda: F.conv2d(img, ker),
        "conv2d(padding='same')": lambda: F.conv2d(img, ker, padding="same"),
        "conv_transpose2d": lambda: F.conv_transpose2d(img, ker.transpose(0, 1)),
    }


@pytest.mark.parametrize("low", LOW)
def test_convolutions_run_in_the_autocast_dtype(device, low):
    cases = conv_cases(device)
    expected = {name: fn() for name, fn in cases.items()}
    for name, fn in cases.items():
        with torch.autocast(device_type=device, dtype=low):
            out = fn()
        assert out.dtype == low, (name, out.dtype)
        torch.testing.assert_close(out.float().cpu(), expected[name].cpu(), atol=0.1, rtol=0.05, msg=name)


# PyTorch's AutocastCPU fp32 list is shorter than the CUDA/MPS lists the
# mpsgraph device mirrors: on the CPU softmax, norms, sum, exp... follow their input.
CPU_FP32 = {"mse_loss", "cross_entropy", "nll_loss", "binary_cross_entropy_with_logits"}


@pytest.mark.parametrize("low", LOW)
def test_fp32_ops_run_in_float32(device, low):
    for name, fn in fp32_cases(device, low).items():
        with torch.autocast(device_type=device, dtype=low):
            out = fn()
        expected = torch.float32 if device != "cpu" or name in CPU_FP32 else low
        assert out.dtype == expected, (name, out.dtype)
        torch.testing.assert_close(out.float().cpu(), fn().float().cpu(), atol=0.05, rtol=0.02, msg=name)


@pytest.mark.parametrize("low", LOW)
def test_promote_and_fallthrough(device, low):
    a, b = t(8, device=device, dtype=low), t(8, device=device)
    with torch.autocast(device_type=device, dtype=low):
        if device != "cpu":  # PyTorch's CPU list has no dot: dot(bf16, fp32) raises there as without autocast
            assert torch.dot(a, b).dtype == torch.float32  # promote: widest input
            assert torch.dot(a, a).dtype == low
        assert torch.relu(b).dtype == torch.float32  # fallthrough: the input's dtype
        assert (a + a).dtype == low
        assert torch.ops.mps_ext.softshrink(b, 0.5).dtype == torch.float32
        assert torch.ops.mps_ext.softshrink(a, 0.5).dtype == low


def test_without_autocast_mixed_dot_raises_on_the_device():
    a, b = t(8, device="mpsgraph", dtype=torch.bfloat16), t(8, device="mpsgraph")
    with pytest.raises(RuntimeError, match="dtype"):
        torch.dot(a, b)


def test_default_autocast_dtype_and_float64_warning():
    assert torch.get_autocast_dtype("mpsgraph") == torch.float16  # PyTorch's PrivateUse1 default, documented
    x, w = t(2, 4, device="mpsgraph"), t(3, 4, device="mpsgraph")
    with torch.autocast("mpsgraph"):
        assert F.linear(x, w).dtype == torch.float16
    with pytest.warns(UserWarning, match="not supported"):
        with torch.autocast("mpsgraph", dtype=torch.float64):
            assert not torch.is_autocast_enabled("mpsgraph")
            assert F.linear(x, w).dtype == torch.float32
    with pytest.warns(UserWarning):
        with torch.autocast("cpu", dtype=torch.float64):
            assert F.linear(x.cpu(), w.cpu()).dtype == torch.float32


def test_nested_and_disabled_regions_behave_like_torch():
    d = "mpsgraph"
    x, w = t(2, 4, device=d), t(3, 4, device=d)
    assert not torch.is_autocast_enabled(d)
    with torch.autocast(d, dtype=torch.bfloat16):
        assert torch.is_autocast_enabled(d) and torch.get_autocast_dtype(d) == torch.bfloat16
        assert F.linear(x, w).dtype == torch.bfloat16
        with torch.autocast(d, enabled=False):
            assert not torch.is_autocast_enabled(d)
            assert F.linear(x, w).dtype == torch.float32
            with torch.autocast(d, dtype=torch.float16):
                assert F.linear(x, w).dtype == torch.float16
            assert F.linear(x, w).dtype == torch.float32
        assert F.linear(x, w).dtype == torch.bfloat16
        # autocast on one device type leaves the other's tensors alone
        assert F.linear(x.cpu(), w.cpu()).dtype == torch.float32
    assert not torch.is_autocast_enabled(d)
    assert torch.get_autocast_dtype(d) == torch.float16
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert F.linear(x, w).dtype == torch.float32
    # the decorator form, as torch.autocast supports it
    f = torch.autocast(d, dtype=torch.bfloat16)(lambda: F.linear(x, w))
    assert f().dtype == torch.bfloat16


def test_backward_under_autocast_gives_parameter_dtype_grads():
    model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.GELU(), torch.nn.Linear(16, 4)).to("mpsgraph")
    x = t(5, 8, device="mpsgraph")
    with torch.autocast("mpsgraph", dtype=torch.bfloat16):
        out = model(x)
        loss = F.mse_loss(out, torch.zeros_like(out))
    assert out.dtype == torch.bfloat16 and loss.dtype == torch.float32
    loss.backward()
    for p in model.parameters():
        assert p.grad.dtype == torch.float32 and p.grad.device.type == "mpsgraph"
        assert torch.isfinite(p.grad.cpu()).all()


# --- the mps_ext op table: policies through test ops ----------------------------------------

SEEN = []
NS = "mps_ext_autocast_test"
_lib = torch.library.Library(NS, "DEF")
_lib.define("probe(Tensor x, Tensor? w, Tensor[] xs, Tensor idx, int n, float s) -> Tensor")
_lib.define("update_(Tensor(a!) cache, Tensor new, int start_pos) -> Tensor(a!)")
_lib.define("ints(Tensor q, int bits) -> Tensor")
_lib.define("double(Tensor x) -> Tensor")


def _probe(x, w, xs, idx, n, s):
    SEEN.append([x.dtype, None if w is None else w.dtype, [e.dtype for e in xs], idx.dtype])
    return x.clone()


def _update(cache, new, start_pos):
    SEEN.append([cache.dtype, new.dtype])
    cache[start_pos:start_pos + new.shape[0]] = new  # a dtype mismatch would be the op's error
    return cache


def _ints(q, bits):
    return q.to(torch.float32) * (2.0 ** -bits)


def _double(x):
    return x * 2


for _key in ("CPU", "MPS", "PrivateUse1"):
    _lib.impl("probe", _probe, _key)
    _lib.impl("update_", _update, _key)
    _lib.impl("ints", _ints, _key)
    _lib.impl("double", _double, _key)
torch.library.register_autograd(f"{NS}::double", lambda ctx, grad: grad * 2, lib=_lib)


def register(op, policy):
    assert torch.ops.mps_ext._autocast_register(f"{NS}::{op}", policy)


def probe(device, x_dtype=torch.float32, w_dtype=torch.float32, list_dtypes=(torch.float32,)):
    SEEN.clear()
    torch.ops.mps_ext_autocast_test.probe(
        t(2, device=device, dtype=x_dtype), t(2, device=device, dtype=w_dtype),
        [t(2, device=device, dtype=dt) for dt in list_dtypes], torch.arange(2).to(device), 3, 0.5)
    return SEEN[-1]


@pytest.mark.parametrize("low", LOW)
def test_op_policies(device, low):
    f32 = torch.float32
    # a float64 tensor is never cast (mps has no float64: there a second float32 stands in)
    f64 = torch.float64 if device != "mps" else torch.float32
    cases = [  # policy, inputs (x, w, list), expected dtypes seen by the kernel
        ("lower_precision", (f32, f32, (f32, f64)), [low, low, [low, f64 if f64 == torch.float64 else low],
                                                     torch.int64]),
        ("fp32", (low, f32, (low, f64)), [f32, f32, [f32, f64], torch.int64]),
        ("promote", (low, low, (low,)), [low, low, [low], torch.int64]),
        ("promote", (low, f32, (low, f64)), [f32, f32, [f32, f64], torch.int64]),  # float64 is ignored, not widest
        ("promote", (low, low, (low, f64)), [low, low, [low, f64] if f64 == torch.float64 else [f32, f32],
                                             torch.int64]),
        ("fallthrough", (low, f32, (f64,)), [low, f32, [f64], torch.int64]),
    ]
    for policy, (x, w, xs), expected in cases:
        register("probe", policy)
        with torch.autocast(device_type=device, dtype=low):
            assert probe(device, x, w, xs) == expected, policy
        assert probe(device, x, w, xs) == [x, w, list(xs), torch.int64]  # autocast off: untouched


def test_optional_none_and_other_device_tensors_pass_through(device):
    register("probe", "lower_precision")
    other = "cpu" if device != "cpu" else "mpsgraph"
    SEEN.clear()
    with torch.autocast(device_type=device, dtype=torch.bfloat16):
        torch.ops.mps_ext_autocast_test.probe(t(2, device=device), None, [t(2, device=other)],
                                              torch.arange(2).to(device), 1, 1.0)
    assert SEEN[-1] == [torch.bfloat16, None, [torch.float32], torch.int64]


@pytest.mark.parametrize("policy", ["lower_precision", "fp32", "promote", "match_inplace"])
def test_in_place_argument_is_never_cast(device, policy):
    register("update_", policy)
    cache = torch.zeros(4, 3).to(device)
    new = t(2, 3, device=device, dtype=torch.bfloat16)
    with torch.autocast(device_type=device, dtype=torch.bfloat16):
        if policy in ("lower_precision", "promote"):  # new stays bf16: the kernel sees the mismatch
            out = torch.ops.mps_ext_autocast_test.update_(cache, new, 1)
            assert SEEN[-1] == [torch.float32, torch.bfloat16]
        else:  # fp32 / match_inplace: new follows the cache
            out = torch.ops.mps_ext_autocast_test.update_(cache, new, 1)
            assert SEEN[-1] == [torch.float32, torch.float32]
    assert out is cache and cache.dtype == torch.float32
    torch.testing.assert_close(cache[1:3].cpu(), new.float().cpu())  # the write reached the caller's tensor


def test_match_inplace_follows_a_low_precision_cache(device):
    register("update_", "match_inplace")
    cache = torch.zeros(4, 3, dtype=torch.bfloat16).to(device)
    with torch.autocast(device_type=device, dtype=torch.float16):
        torch.ops.mps_ext_autocast_test.update_(cache, t(1, 3, device=device), 0)
    assert SEEN[-1] == [torch.bfloat16, torch.bfloat16]


@pytest.mark.parametrize("policy", ["lower_precision", "fp32", "promote", "match_inplace", "fallthrough"])
def test_op_with_only_integer_tensors_runs_unchanged(device, policy):
    register("ints", policy)
    q = torch.arange(-4, 4, dtype=torch.int8).to(device)
    expected = torch.ops.mps_ext_autocast_test.ints(q, 4)
    with torch.autocast(device_type=device, dtype=torch.bfloat16):
        out = torch.ops.mps_ext_autocast_test.ints(q, 4)
    assert out.dtype == torch.float32
    assert torch.equal(out.cpu(), expected.cpu())


def test_casts_are_recorded_by_autograd(device):
    register("double", "lower_precision")
    x = t(5, device=device).requires_grad_()
    with torch.autocast(device_type=device, dtype=torch.bfloat16):
        y = torch.ops.mps_ext_autocast_test.double(x)
    assert y.dtype == torch.bfloat16
    y.float().sum().backward()  # back through the op and the autocast cast
    assert x.grad.dtype == torch.float32
    assert torch.equal(x.grad.cpu(), torch.full((5,), 2.0))


def test_register_skips_missing_ops_and_checks_its_arguments():
    assert torch.ops.mps_ext._autocast_register("mps_ext::no_such_op", "fp32") is False
    assert torch.ops.mps_ext._autocast_register("mps_ext::softshrink.no_such_overload", "fp32") is False
    with pytest.raises(ValueError, match="policy must be one of"):
        torch.ops.mps_ext._autocast_register("mps_ext::softshrink", "bf16")
    with pytest.raises(ValueError, match="namespace::name"):
        torch.ops.mps_ext._autocast_register("softshrink", "fp32")


# --- rules(): read back from the dispatcher ---------------------------------------------------

def test_rules_on_the_device_cover_the_expected_aten_ops():
    r = ac.rules("mpsgraph")
    assert r == ac.rules()  # mpsgraph is the default
    for op in ["aten::mm", "aten::bmm", "aten::addmm", "aten::linear", "aten::matmul", "aten::conv1d",
               "aten::conv2d", "aten::conv3d", "aten::conv_transpose2d.input", "aten::baddbmm", "aten::addbmm",
               "aten::scaled_dot_product_attention", "aten::_convolution", "aten::convolution", "aten::prelu",
               "aten::einsum"]:
        assert r[op] == "lower_precision", op
    for op in ["aten::softmax.int", "aten::log_softmax.int", "aten::layer_norm", "aten::group_norm",
               "aten::norm.Scalar", "aten::sum", "aten::sum.dim_IntList", "aten::cumsum", "aten::exp", "aten::log",
               "aten::pow.Tensor_Scalar", "aten::mse_loss", "aten::cross_entropy_loss", "aten::nll_loss",
               "aten::binary_cross_entropy_with_logits", "aten::stft", "aten::fft_rfft"]:
        assert r[op] == "fp32", op
    for op in ["aten::addcmul", "aten::addcdiv", "aten::dot", "aten::index_put", "aten::scatter_add"]:
        assert r[op] == "promote", op
    assert r["_"] == "fallthrough"
    assert "aten::relu" not in r and "aten::add.Tensor" not in r


def test_rules_list_the_op_table_on_every_device_type():
    registered = ac.register()
    present = {op for op, ok in registered.items() if ok}
    assert {"softshrink", "softshrink_backward"} <= present
    for device_type in ("cpu", "mps", "mpsgraph"):
        r = ac.rules(device_type)
        for op in present:
            assert r[f"mps_ext::{op}"] == ac.OP_RULES[op], (device_type, op)
        for op in set(ac.OP_RULES) - present:
            assert f"mps_ext::{op}" not in r
    assert not any(op.startswith("aten::") for op in ac.rules("cpu"))  # PyTorch's own lists carry no policy
    with_torch = ac.rules("cpu", include_torch=True)
    assert with_torch["aten::mm"] == "torch" and with_torch["mps_ext::softshrink"] == "fallthrough"


def test_rules_reflect_what_is_registered_not_the_table():
    register("probe", "promote")
    assert ac.rules("cpu")[f"{NS}::probe"] == "promote"
    register("probe", "fp32")
    assert all(ac.rules(d)[f"{NS}::probe"] == "fp32" for d in ("cpu", "mps", "mpsgraph"))
    with pytest.raises(ValueError, match="device_type"):
        ac.rules("cuda")


def test_every_public_mps_ext_op_has_a_table_row():
    ops = {name.split("::")[1].split(".")[0] for name in torch._C._dispatch_get_all_op_names()
           if name.startswith("mps_ext::")}
    public = {op for op in ops if not op.startswith("_")}
    assert public, "no mps_ext ops registered"
    missing = public - set(ac.OP_RULES)
    assert not missing, f"mps_ext ops without an autocast rule (add a row to OP_RULES): {sorted(missing)}"
    assert set(ac.OP_RULES.values()) <= set(ac.POLICIES)


def test_format_rules_is_a_markdown_table():
    text = ac.format_rules("cpu")
    assert text.splitlines()[0] == "| policy | ops on cpu |"
    assert "`mps_ext::softshrink`" in text


# --- GradScaler kernels on the device -------------------------------------------------------

@pytest.fixture(params=["kernel", "graph"])
def scaler_path(request):
    """GradScaler kernels: PyTorch's CPU kernels over device memory (the
    reference runtime's 'kernel'), or the graphs the mpsgraph runtime runs
    (their decomposition, selected by mps_ext.graph.decompositions())."""
    if request.param == "kernel":
        yield request.param
    else:
        with mps_ext.graph.decompositions():
            yield request.param


def grads_case(dtype, device):
    """Grads of several ranks, an empty one and two non-contiguous views (built on `device`)."""
    torch.manual_seed(1)
    bases = [torch.randn(3, 4) * 100, torch.randn(7), torch.randn(2, 3), torch.tensor(3.0), torch.empty(0),
             torch.randn(2, 1, 3, 2)]
    views = [lambda a: a, lambda a: a, lambda a: a.t(), lambda a: a, lambda a: a, lambda a: a[:, :, 1:]]
    return [view(b.to(dtype).to(device)) for b, view in zip(bases, views)]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16, torch.float64])
@pytest.mark.parametrize("bad", [None, float("inf"), float("-inf"), float("nan")])
def test_unscale_matches_torch_cpu_kernel(dtype, bad, scaler_path):
    ref, dev = grads_case(dtype, "cpu"), grads_case(dtype, "mpsgraph")
    assert not dev[2].is_contiguous() and not dev[5].is_contiguous()
    if bad is not None:
        ref[2][1, 0] = bad
        dev[2][1, 0] = bad
    inv = torch.tensor(1 / 1024.0)
    found_ref, found = torch.zeros(()), torch.zeros((), device="mpsgraph")
    torch._amp_foreach_non_finite_check_and_unscale_(ref, found_ref, inv)
    torch._amp_foreach_non_finite_check_and_unscale_(dev, found, inv.to("mpsgraph"))
    assert found.item() == found_ref.item() == (0.0 if bad is None else 1.0)
    for a, b in zip(dev, ref):
        torch.testing.assert_close(a.cpu(), b, rtol=0, atol=0, equal_nan=True)
        assert a.stride() == b.stride()


def test_unscale_keeps_an_earlier_found_inf_and_runs_natively(monkeypatch, scaler_path):
    gs = [torch.randn(5).to("mpsgraph") for _ in range(3)]
    found = torch.ones(1).to("mpsgraph")
    inv = torch.full((1,), 0.5).to("mpsgraph")
    expected = [g.cpu() * 0.5 for g in gs]
    monkeypatch.setenv("MPS_EXT_FALLBACK", "error")  # no CPU fallback allowed from here
    torch._amp_foreach_non_finite_check_and_unscale_(gs, found, inv)
    torch._amp_foreach_non_finite_check_and_unscale_([], found, inv)
    monkeypatch.setenv("MPS_EXT_FALLBACK", "silent")
    assert found.item() == 1.0
    for g, e in zip(gs, expected):
        assert torch.equal(g.cpu(), e)


def unscale_graph_runs(gs, found, inv):
    """Unscales; returns (graphs compiled, graphs reused) by that call."""
    before = mps_ext.graph.cache_info()
    torch._amp_foreach_non_finite_check_and_unscale_(gs, found, inv)
    after = mps_ext.graph.cache_info()
    return after.misses - before.misses, after.hits - before.hits


def test_unscale_many_grads_in_chunks_and_reuses_its_graph():
    for path in ("graph", "kernel"):
        gs = [torch.randn(i + 1).to("mpsgraph") for i in range(150)]  # > one graph's 64 grads
        gs[140][0] = float("nan")
        found, inv = torch.zeros(()).to("mpsgraph"), torch.tensor(0.25).to("mpsgraph")
        expected = [g.cpu() * 0.25 for g in gs]
        others = [torch.randn(9).to("mpsgraph") for _ in range(150)]
        if path == "graph":
            with mps_ext.graph.decompositions():
                assert sum(unscale_graph_runs(gs, found, inv)) == 3  # 64 + 64 + 22 grads
                assert unscale_graph_runs(others, found, inv) == (0, 3)  # other sizes, same ranks: reused
        elif mps_ext.runtime() == "reference":
            assert unscale_graph_runs(gs, found, inv) == (0, 0)  # torch's CPU kernel over device memory
        else:
            assert sum(unscale_graph_runs(gs, found, inv)) == 3  # the mpsgraph runtime always runs the graphs
        assert found.item() == 1.0
        for g, e in zip(gs, expected):
            torch.testing.assert_close(g.cpu(), e, rtol=0, atol=0, equal_nan=True)


def test_unscale_bad_input(scaler_path):
    g = [torch.randn(3).to("mpsgraph")]
    ok = torch.zeros(()).to("mpsgraph")
    with pytest.raises(RuntimeError, match="found_inf must be a 1-element tensor"):
        torch._amp_foreach_non_finite_check_and_unscale_(g, torch.zeros(2).to("mpsgraph"), ok)
    with pytest.raises(RuntimeError, match="found_inf must be a float tensor"):
        torch._amp_foreach_non_finite_check_and_unscale_(g, torch.zeros((), dtype=torch.float64).to("mpsgraph"), ok)
    with pytest.raises(RuntimeError, match="inv_scale must be a float tensor"):
        torch._amp_foreach_non_finite_check_and_unscale_(g, ok, torch.ones((), dtype=torch.float16).to("mpsgraph"))
    with pytest.raises(RuntimeError, match="inv_scale must be a mpsgraph tensor"):
        torch._amp_foreach_non_finite_check_and_unscale_(g, ok, torch.ones(()))
    with pytest.raises(TypeError, match="floating-point"):
        torch._amp_foreach_non_finite_check_and_unscale_([torch.ones(3, dtype=torch.int32).to("mpsgraph")], ok, ok)
    assert torch.equal(g[0].cpu(), g[0].cpu())  # untouched by the failed calls
    assert ok.item() == 0.0


@pytest.mark.parametrize("found", [0.0, 1.0, float("nan"), 2.0])
@pytest.mark.parametrize("tracker", [0, 1, 2])
@pytest.mark.parametrize("scale", [65536.0, 3e38, 1.0])
@pytest.mark.parametrize("shape", [(), (1,)])
def test_update_scale_matches_torch_cpu_kernel(found, tracker, scale, shape, scaler_path):
    s, tr = torch.full(shape, scale), torch.full(shape, tracker, dtype=torch.int32)
    f = torch.full(shape, found)
    sd, trd = s.to("mpsgraph"), tr.to("mpsgraph")
    torch._amp_update_scale_(s, tr, f, 2.0, 0.5, 3)
    out = torch._amp_update_scale_(sd, trd, f.to("mpsgraph"), 2.0, 0.5, 3)
    assert out is sd
    assert torch.equal(sd.cpu(), s) and torch.equal(trd.cpu(), tr)


def test_update_scale_bad_input(scaler_path):
    s, tr, f = torch.ones(()).to("mpsgraph"), torch.zeros((), dtype=torch.int32).to("mpsgraph"), torch.zeros(()).to("mpsgraph")
    with pytest.raises(RuntimeError, match="growth_tracker must be an int tensor"):
        torch._amp_update_scale_(s, torch.zeros(()).to("mpsgraph"), f, 2.0, 0.5, 2)
    with pytest.raises(RuntimeError, match="current_scale must be a 1-element tensor"):
        torch._amp_update_scale_(torch.ones(2).to("mpsgraph"), tr, f, 2.0, 0.5, 2)
    with pytest.raises(RuntimeError, match="found_inf must be a mpsgraph tensor"):
        torch._amp_update_scale_(s, tr, torch.zeros(()), 2.0, 0.5, 2)
    assert s.item() == 1.0 and tr.item() == 0


def scaler_run(device, steps=6, inject_at=2):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 1)).to(device)
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    scaler = torch.amp.GradScaler(device, init_scale=2.0 ** 10, growth_interval=2)
    x, y = torch.randn(32, 8).to(device), torch.randn(32, 1).to(device)
    scales, skipped = [], []
    for step in range(steps):
        opt.zero_grad()
        with torch.autocast(device, dtype=torch.float16):
            out = model(x)
            loss = F.mse_loss(out, y)
        assert out.dtype == torch.float16
        scaler.scale(loss).backward()
        if step == inject_at:
            model[0].weight.grad[0, 0] = float("inf")
        before = [p.detach().cpu().clone() for p in model.parameters()]
        scaler.step(opt)
        scaler.update()
        after = [p.detach().cpu() for p in model.parameters()]
        skipped.append(all(torch.equal(a, b) for a, b in zip(before, after)))
        scales.append(scaler.get_scale())
    return scales, skipped, [p.detach().cpu() for p in model.parameters()]


def test_grad_scaler_skips_the_inf_step_and_adjusts_the_scale_like_cpu(scaler_path):
    scales, skipped, params = scaler_run("mpsgraph")
    assert skipped == [False, False, True, False, False, False]
    # growth_interval 2: x2 after two good steps, x0.5 on the inf step, tracker reset
    assert scales == [1024.0, 2048.0, 1024.0, 1024.0, 2048.0, 2048.0]
    ref_scales, ref_skipped, ref_params = scaler_run("cpu")
    assert scales == ref_scales and skipped == ref_skipped
    for a, b in zip(params, ref_params):
        torch.testing.assert_close(a, b, atol=1e-3, rtol=1e-3)


def test_grad_scaler_unscale_and_clip_on_device():
    model = torch.nn.Linear(4, 2).to("mpsgraph")
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    scaler = torch.amp.GradScaler("mpsgraph", init_scale=256.0)
    with torch.autocast("mpsgraph", dtype=torch.float16):
        loss = model(torch.randn(3, 4).to("mpsgraph")).float().sum()
    scaler.scale(loss).backward()
    scaled = model.weight.grad.cpu().clone()
    scaler.unscale_(opt)
    torch.testing.assert_close(model.weight.grad.cpu(), scaled / 256.0)
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    scaler.step(opt)
    scaler.update()
    assert scaler.get_scale() == 256.0


# --- a small transformer: bf16 autocast tracks fp32 -----------------------------------------

class TinyLM(torch.nn.Module):
    def __init__(self, vocab=16, d=32, heads=2, seq=8):
        super().__init__()
        self.emb = torch.nn.Embedding(vocab, d)
        self.pos = torch.nn.Parameter(torch.randn(seq, d) * 0.02)
        self.block = torch.nn.TransformerEncoderLayer(d, heads, dim_feedforward=64, dropout=0.0, batch_first=True)
        self.head = torch.nn.Linear(d, vocab)

    def forward(self, tokens):
        mask = torch.nn.Transformer.generate_square_subsequent_mask(tokens.shape[1]).to(tokens.device)
        return self.head(self.block(self.emb(tokens) + self.pos, src_mask=mask, is_causal=True))


def train_tiny(device, dtype, steps=50):
    torch.manual_seed(0)
    model = TinyLM().to(device)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    data = torch.randint(0, 16, (16, 9))
    data[:, 1::2] = (data[:, 0::2][:, :4] + 1) % 16  # learnable: every odd token follows its predecessor
    x, y = data[:, :8].to(device), data[:, 1:].to(device)
    losses, logit_dtypes = [], set()
    for _ in range(steps):
        opt.zero_grad()
        with torch.autocast(device, dtype=dtype or torch.bfloat16, enabled=dtype is not None):
            logits = model(x)
            loss = F.cross_entropy(logits.reshape(-1, 16), y.reshape(-1))
        logit_dtypes.add(logits.dtype)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses, logit_dtypes


def test_small_transformer_under_bf16_autocast_tracks_fp32():
    fp32, fp32_dtypes = train_tiny("mpsgraph", None)
    bf16, bf16_dtypes = train_tiny("mpsgraph", torch.bfloat16)
    assert fp32_dtypes == {torch.float32} and bf16_dtypes == {torch.bfloat16}
    assert fp32[-1] < 0.75 * fp32[0] and bf16[-1] < 0.75 * bf16[0]  # both learn
    # Stated tolerance: after 50 steps the bf16 loss is within 0.03 + 3% of the fp32 loss
    # (measured here: 0.4308 fp32 vs 0.4311 bf16, from 2.81).
    assert abs(bf16[-1] - fp32[-1]) <= 0.03 + 0.03 * fp32[-1], (fp32[-1], bf16[-1])
    assert abs(bf16[0] - fp32[0]) <= 0.02  # same start: only rounding differs


# --- the demo -------------------------------------------------------------------------------

def test_demo_trains_under_bf16_autocast_and_says_so(capsys):
    import subprocess
    import sys
    out = subprocess.run([sys.executable, "-m", "mps_ext", "--steps", "8"], capture_output=True, text=True,
                         timeout=120, cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    assert out.returncode == 0, out.stderr
    assert "training under torch.autocast(" in out.stdout and "dtype=torch.bfloat16" in out.stdout
    assert ac._demo("mpsgraph") == torch.bfloat16
    if not torch.backends.mps.is_available():
        assert ac._demo("mps") is None
        assert "not supported on mps; training in fp32" in capsys.readouterr().out
    assert not ac.supported("cpu", torch.float64)


def test_readme_shows_the_op_table():
    import re
    readme = open(os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "README.md")).read()
    table = readme[readme.index("| policy | mps_ext ops |"):].split("\n\n")[0]
    shown = {}
    for line in table.splitlines()[2:]:
        policy, ops = line.strip("|").split("|", 1)
        for op in re.findall(r"`(\w+)`", ops):
            shown[op] = policy.strip()
    assert shown == ac.OP_RULES
