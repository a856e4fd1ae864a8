"""Attention: mps_ext.scaled_dot_product_attention, the decode kernel, the KV cache,
and F.scaled_dot_product_attention on the mpsgraph device, against torch's math
path in float64."""
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

import mps_ext
from conftest import supports_dtype

sdpa = torch.ops.mps_ext.scaled_dot_product_attention

TOL = {
    torch.float32: dict(atol=2e-5, rtol=2e-5),
    torch.float64: dict(atol=1e-10, rtol=1e-10),
    torch.float16: dict(atol=2e-3, rtol=2e-3),
    torch.bfloat16: dict(atol=1.6e-2, rtol=1.6e-2),
}


def math_reference(q, k, v, attn_mask=None, **kw):
    """torch's math path, upcast to float64, on the CPU."""
    if attn_mask is not None:
        attn_mask = attn_mask.cpu() if attn_mask.dtype == torch.bool else attn_mask.cpu().double()
    with sdpa_kernel(SDPBackend.MATH):
        return F.scaled_dot_product_attention(q.cpu().double(), k.cpu().double(), v.cpu().double(),
                                              attn_mask=attn_mask, **kw)


def rand(*shape, dtype=torch.float32, device="cpu"):
    return torch.randn(*shape, dtype=dtype).to(device)


# (q shape, k shape, v shape, kwargs builder): shapes (N..., L|S, E|Ev)
CASES = {
    "plain": ((2, 3, 10, 16), (2, 3, 12, 16), (2, 3, 12, 16), {}),
    "bool_mask": ((2, 3, 10, 16), (2, 3, 12, 16), (2, 3, 12, 16),
                  {"attn_mask": lambda: torch.rand(10, 12) > 0.3}),
    "bool_mask_full_row_masked": ((1, 2, 10, 8), (1, 2, 12, 8), (1, 2, 12, 8),
                                  {"attn_mask": lambda: torch.arange(10)[:, None] % 3 != 0}),
    "additive_mask_per_head": ((2, 3, 10, 16), (2, 3, 12, 16), (2, 3, 12, 16),
                               {"attn_mask": lambda: torch.randn(3, 1, 12)}),
    "additive_mask_per_batch": ((2, 3, 10, 16), (2, 3, 12, 16), (2, 3, 12, 16),
                                {"attn_mask": lambda: torch.randn(2, 1, 10, 12)}),
    "causal_L<S": ((1, 2, 6, 16), (1, 2, 11, 16), (1, 2, 11, 16), {"is_causal": True}),
    "causal_L>S": ((1, 2, 11, 16), (1, 2, 6, 16), (1, 2, 6, 16), {"is_causal": True}),
    "scale": ((2, 2, 9, 16), (2, 2, 9, 16), (2, 2, 9, 16), {"scale": 0.37}),
    "gqa_8_2": ((2, 8, 12, 16), (2, 2, 12, 16), (2, 2, 12, 16), {"enable_gqa": True}),
    "gqa_causal_mask": ((1, 8, 12, 16), (1, 2, 14, 16), (1, 2, 14, 24),
                        {"enable_gqa": True, "attn_mask": lambda: torch.randn(8, 12, 14)}),
    "head_dim_64": ((1, 2, 16, 64), (1, 2, 16, 64), (1, 2, 16, 64), {"is_causal": True}),
    "head_dim_80": ((1, 2, 16, 80), (1, 2, 16, 80), (1, 2, 16, 80), {}),
    "head_dim_128_ev_64": ((1, 2, 16, 128), (1, 2, 20, 128), (1, 2, 20, 64), {}),
    "broadcast_batch_heads": ((2, 3, 10, 16), (1, 3, 12, 16), (2, 1, 12, 16), {}),
    "rank3": ((4, 10, 16), (4, 12, 16), (4, 12, 8), {}),
    "rank2": ((10, 16), (12, 16), (12, 8), {"is_causal": True}),
    "rank5": ((2, 2, 2, 5, 8), (2, 2, 2, 7, 8), (2, 2, 2, 7, 8), {"attn_mask": lambda: torch.randn(2, 1, 1, 5, 7)}),
    "decode_L1_S8192": ((1, 2, 1, 64), (1, 2, 8192, 64), (1, 2, 8192, 64), {}),
    "decode_L4_gqa": ((2, 8, 4, 32), (2, 2, 700, 32), (2, 2, 700, 32), {"enable_gqa": True}),
    "decode_L3_mask": ((2, 2, 3, 16), (2, 2, 600, 16), (2, 2, 600, 16),
                       {"attn_mask": lambda: torch.rand(2, 1, 3, 600) > 0.5}),
    "decode_L5_causal": ((1, 2, 5, 16), (1, 2, 9, 16), (1, 2, 9, 16), {"is_causal": True}),
}


def build(case, dtype, device):
    qs, ks, vs, kw = CASES[case]
    q, k, v = (rand(*s, dtype=dtype, device=device) for s in (qs, ks, vs))
    kw = {n: (a() if callable(a) else a) for n, a in kw.items()}
    if "attn_mask" in kw and kw["attn_mask"].dtype != torch.bool:
        kw["attn_mask"] = kw["attn_mask"].to(dtype)
    if "attn_mask" in kw:
        kw["attn_mask"] = kw["attn_mask"].to(device)
    return q, k, v, kw


@pytest.mark.parametrize("case", CASES)
def test_matches_math_path_fp32(device, case):
    q, k, v, kw = build(case, torch.float32, device)
    out = sdpa(q, k, v, **kw)
    assert out.device.type == torch.device(device).type and out.dtype == torch.float32
    torch.testing.assert_close(out.cpu().double(), math_reference(q, k, v, **kw), **TOL[torch.float32])
    # the functional wrapper is the same op
    torch.testing.assert_close(mps_ext.nn.functional.scaled_dot_product_attention(q, k, v, **kw), out)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64])
@pytest.mark.parametrize("case", ["plain", "gqa_causal_mask", "causal_L<S", "decode_L4_gqa", "decode_L3_mask"])
def test_matches_math_path_other_dtypes(device, case, dtype):
    if not supports_dtype(device, dtype):
        pytest.skip("no float64 on MPSGraph")
    q, k, v, kw = build(case, dtype, device)
    out = sdpa(q, k, v, **kw)
    assert out.dtype == dtype
    torch.testing.assert_close(out.cpu().double(), math_reference(q, k, v, **kw), **TOL[dtype])


def test_non_contiguous_inputs(device):
    q = rand(2, 10, 3, 16, device=device).transpose(1, 2)
    k = rand(2, 12, 3, 16, device=device).transpose(1, 2)
    v = rand(2, 3, 16, 12, device=device).transpose(-1, -2)
    torch.testing.assert_close(sdpa(q, k, v).cpu().double(), math_reference(q, k, v), **TOL[torch.float32])
    qd = q[:, :, :2]  # decode path on strided views
    torch.testing.assert_close(sdpa(qd, k, v).cpu().double(), math_reference(qd, k, v), **TOL[torch.float32])


@pytest.mark.parametrize("shapes", [
    ((0, 2, 5, 8), (0, 2, 6, 8), (0, 2, 6, 8)),   # empty batch
    ((1, 2, 0, 8), (1, 2, 6, 8), (1, 2, 6, 8)),   # no queries
    ((1, 2, 5, 8), (1, 2, 0, 8), (1, 2, 0, 4)),   # no keys: zeros, as torch
])
def test_empty(device, shapes):
    q, k, v = (rand(*s, device=device) for s in shapes)
    out = sdpa(q, k, v)
    ref = math_reference(q, k, v)
    assert out.shape == ref.shape
    torch.testing.assert_close(out.cpu().double(), ref)


def test_decode_kernel_matches_its_decomposition():
    q, k, v = rand(2, 8, 3, 32), rand(2, 2, 1000, 32), rand(2, 2, 1000, 32)
    mask = torch.randn(2, 1, 3, 1000)
    fast = sdpa(q, k, v, attn_mask=mask, enable_gqa=True)
    with mps_ext.graph.decompositions():
        slow = sdpa(q, k, v, attn_mask=mask, enable_gqa=True)
    torch.testing.assert_close(fast, slow, atol=1e-5, rtol=1e-5)
    graph = mps_ext.graph.dump(sdpa, q[:, :2], k, v)
    kernels = [n for n in graph["nodes"] if n["op"] != "placeholder"]
    assert [n["op"] for n in kernels] == ["kernel"] and kernels[0]["attrs"]["kernel"] == "sdpa_decode"
    key = next(n for n in graph["nodes"] if n.get("name") == "key")
    assert key["shape"][2] == -1  # one graph for every key length
    assert "sdpa_decode" in mps_ext.graph.kernels()


def test_dropout():
    q, k = rand(1, 2, 16, 8), rand(1, 2, 64, 8)
    v = torch.ones(1, 2, 64, 4)
    torch.manual_seed(3)
    a = sdpa(q, k, v, dropout_p=0.4)
    torch.manual_seed(3)
    b = sdpa(q, k, v, dropout_p=0.4)
    assert torch.equal(a, b)                        # the generator decides the mask
    assert not torch.allclose(a, torch.ones_like(a))  # some probabilities were dropped
    assert abs(a.mean().item() - 1.0) < 0.15        # kept ones are scaled by 1 / (1 - p)
    assert torch.equal(sdpa(q, k, v, dropout_p=1.0), torch.zeros_like(a))
    assert torch.equal(sdpa(q, k, v, dropout_p=0.0), sdpa(q, k, v))


def test_dropout_forward_and_backward_with_a_given_mask():
    """The internal op with an explicit keep mask against the formula."""
    torch.manual_seed(1)
    q, k, v = (rand(1, 4, 5, 8, dtype=torch.float64).requires_grad_() for _ in range(3))
    keep = (torch.rand(1, 4, 5, 5) > 0.3).double() / 0.7
    out = torch.ops.mps_ext._sdpa(q, k, v, None, keep, True, 0.3, 0.3)
    causal = torch.ones(5, 5, dtype=torch.bool).tril()
    p = torch.softmax((q @ k.transpose(-1, -2) * 0.3).masked_fill(~causal, float("-inf")), -1)
    ref = (p * keep) @ v
    torch.testing.assert_close(out, ref)
    g = torch.randn_like(out)
    torch.testing.assert_close(torch.autograd.grad(out, (q, k, v), g), torch.autograd.grad(ref, (q, k, v), g))


GRAD_CASES = {
    "plain": ((1, 2, 4, 3), (1, 2, 5, 3), (1, 2, 5, 2), {}),
    "causal": ((1, 2, 5, 3), (1, 2, 4, 3), (1, 2, 4, 3), {"is_causal": True}),
    "gqa": ((1, 4, 3, 3), (1, 2, 5, 3), (1, 2, 5, 3), {"enable_gqa": True}),
    "bool_mask": ((2, 1, 4, 3), (2, 1, 5, 3), (2, 1, 5, 3), {"attn_mask": torch.rand(4, 5) > 0.3}),
    "broadcast": ((2, 2, 4, 3), (1, 2, 5, 3), (2, 1, 5, 3), {"scale": 0.7}),
    "long_prefill": ((1, 1, 10, 3), (1, 1, 10, 3), (1, 1, 10, 3), {"is_causal": True}),
}


@pytest.mark.parametrize("case", GRAD_CASES)
def test_gradcheck(device, case):
    if not supports_dtype(device, torch.float64):
        pytest.skip("no float64 on MPSGraph")
    qs, ks, vs, kw = GRAD_CASES[case]
    kw = {n: (a.to(device) if torch.is_tensor(a) else a) for n, a in kw.items()}
    q, k, v = (rand(*s, dtype=torch.float64, device=device).requires_grad_() for s in (qs, ks, vs))
    assert torch.autograd.gradcheck(lambda q, k, v: sdpa(q, k, v, **kw), (q, k, v))


def test_gradcheck_additive_mask(device):
    if not supports_dtype(device, torch.float64):
        pytest.skip("no float64 on MPSGraph")
    q, k, v = (rand(1, 2, 3, 4, dtype=torch.float64, device=device).requires_grad_() for _ in range(3))
    mask = rand(2, 1, 3, dtype=torch.float64, device=device).requires_grad_()
    assert torch.autograd.gradcheck(lambda q, k, v, m: sdpa(q, k, v, attn_mask=m), (q, k, v, mask))


@pytest.mark.parametrize("kw", [{"is_causal": True, "enable_gqa": True}, {"attn_mask": "additive", "enable_gqa": True},
                                {"enable_gqa": True}])
@pytest.mark.parametrize("L", [3, 24])
def test_gradients_match_math_path_fp32(device, kw, L):
    q = rand(2, 8, L, 32, device=device).requires_grad_()
    k = rand(2, 2, 24, 32, device=device).requires_grad_()
    v = rand(2, 2, 24, 16, device=device).requires_grad_()
    kw = dict(kw)
    leaves = [q, k, v]
    if kw.get("attn_mask") == "additive":
        kw["attn_mask"] = rand(8, L, 24, device=device).requires_grad_()
        leaves.append(kw["attn_mask"])
    out = sdpa(q, k, v, **kw)
    g = torch.randn(out.shape)
    grads = torch.autograd.grad(out, leaves, g.to(device))
    ref_leaves = [t.detach().cpu().double().requires_grad_() for t in leaves]
    ref_kw = dict(kw, attn_mask=ref_leaves[3]) if len(leaves) == 4 else kw
    with sdpa_kernel(SDPBackend.MATH):
        ref = F.scaled_dot_product_attention(*ref_leaves[:3], **ref_kw)
    ref_grads = torch.autograd.grad(ref, ref_leaves, g.double())
    for a, b in zip(grads, ref_grads):
        assert a.shape == b.shape and a.device.type == torch.device(device).type
        torch.testing.assert_close(a.cpu().double(), b, atol=1e-4, rtol=1e-4)


def test_opcheck():
    q, k, v = rand(2, 4, 5, 8), rand(2, 2, 7, 8), rand(2, 2, 7, 8)
    mask = torch.randn(4, 5, 7)
    for args, kwargs in [((q, k, v), {"enable_gqa": True}), ((q, k, v, mask), {"enable_gqa": True}),
                         ((q, k, v), {"is_causal": True, "enable_gqa": True}),
                         ((q[:, :, :2], k, v), {"enable_gqa": True})]:
        torch.library.opcheck(sdpa, args, kwargs)
    qg, kg, vg = (t.clone().requires_grad_() for t in (q, k, v))
    torch.library.opcheck(torch.ops.mps_ext._sdpa, (qg, kg, vg, None, None, True, 0.4, 0.0))
    torch.library.opcheck(torch.ops.mps_ext._sdpa, (qg, kg, vg, mask[None].requires_grad_(), None, False, 0.4, 0.0))
    torch.library.opcheck(torch.ops.mps_ext._sdpa_backward,
                          (torch.randn(2, 4, 5, 8), q, k, v, mask[None], None, False, 0.4, 0.0, True))
    # The schema returns the cache (Tensor(a!)): AOT functionalization
    # rejects custom ops returning aliases, so that one check is left out.
    cache = torch.zeros(2, 2, 16, 8)
    torch.library.opcheck(torch.ops.mps_ext.kv_cache_update_, (cache, torch.randn(2, 2, 3, 8), 5),
                          test_utils=("test_schema", "test_autograd_registration", "test_faketensor"))


# --- bad input -------------------------------------------------------------------------
@pytest.mark.parametrize("args,kwargs,err,match", [
    (((1, 2, 4, 8), (1, 2, 5, 6), (1, 2, 5, 6)), {}, RuntimeError, "same embedding dim"),
    (((1, 2, 4, 8), (1, 2, 5, 8), (1, 2, 6, 8)), {}, RuntimeError, "same sequence length"),
    (((1, 6, 4, 8), (1, 4, 5, 8), (1, 4, 5, 8)), {"enable_gqa": True}, RuntimeError, "must divide"),
    (((1, 6, 4, 8), (1, 2, 5, 8), (1, 2, 5, 8)), {}, RuntimeError, "do not broadcast"),
    (((1, 2, 4, 8), (1, 2, 5, 8), (1, 2, 5, 8)), {"attn_mask": torch.zeros(3, 5)}, RuntimeError,
     "not broadcastable"),
    (((1, 2, 4, 8), (1, 2, 5, 8), (1, 2, 5, 8)), {"attn_mask": torch.zeros(4, 5, dtype=torch.float64)},
     TypeError, "attn_mask dtype"),
    (((1, 2, 4, 8), (1, 2, 5, 8), (1, 2, 5, 8)), {"attn_mask": torch.zeros(4, 5), "is_causal": True},
     RuntimeError, "attn_mask should not be set"),
    (((1, 2, 4, 8), (1, 2, 5, 8), (1, 2, 5, 8)), {"dropout_p": 1.5}, ValueError, "dropout_p"),
    (((8,), (5, 8), (5, 8)), {}, RuntimeError, "at least 2 dimensions"),
])
def test_bad_inputs(device, args, kwargs, err, match):
    q, k, v = (rand(*s, device=device) for s in args)
    kwargs = {n: (a.to(device) if torch.is_tensor(a) else a) for n, a in kwargs.items()}
    with pytest.raises(err, match=match):
        sdpa(q, k, v, **kwargs)


def test_double_backward_is_an_error_not_a_silent_zero():
    q = torch.randn(1, 2, 3, 4, dtype=torch.float64, requires_grad=True)
    (g,) = torch.autograd.grad(sdpa(q, q, q).sum(), q, create_graph=False)
    assert g.grad_fn is None
    with pytest.raises(RuntimeError, match="double backward"):
        torch.autograd.grad(sdpa(q, q, q).sum(), q, create_graph=True)


def test_bad_dtypes():
    with pytest.raises(TypeError, match="same dtype"):
        sdpa(torch.randn(1, 2, 3, 4), torch.randn(1, 2, 3, 4).half(), torch.randn(1, 2, 3, 4))
    with pytest.raises(TypeError, match="floating-point"):
        sdpa(*(torch.ones(1, 2, 3, 4, dtype=torch.int32) for _ in range(3)))


# --- KV cache ----------------------------------------------------------------------------
def test_kv_cache_autoregressive_decode_matches_full_attention(device):
    B, H, Hkv, D, prefix, steps = 2, 8, 2, 16, 5, 32
    cache = mps_ext.nn.KVCache(B, Hkv, 64, D, device=device)
    k_all, v_all = rand(B, Hkv, prefix + steps, D), rand(B, Hkv, prefix + steps, D)
    q_prefill = rand(B, H, prefix, D)
    k_valid, v_valid = cache.update(k_all[:, :, :prefix].to(device), v_all[:, :, :prefix].to(device), 0)
    out = sdpa(q_prefill.to(device), k_valid, v_valid, is_causal=True, enable_gqa=True)
    torch.testing.assert_close(out.cpu().double(), math_reference(q_prefill, k_all[:, :, :prefix],
                                                                  v_all[:, :, :prefix], is_causal=True,
                                                                  enable_gqa=True), **TOL[torch.float32])
    ptr = cache.k_cache.data_ptr()
    misses = None
    for step in range(steps):
        pos = prefix + step
        q = rand(B, H, 1, D)
        k_valid, v_valid = cache.update(k_all[:, :, pos:pos + 1].to(device), v_all[:, :, pos:pos + 1].to(device), pos)
        assert k_valid.shape == (B, Hkv, pos + 1, D) and k_valid.data_ptr() == ptr  # a view of the cache
        out = sdpa(q.to(device), k_valid, v_valid, enable_gqa=True)
        ref = math_reference(q, k_all[:, :, :pos + 1], v_all[:, :, :pos + 1], enable_gqa=True)
        torch.testing.assert_close(out.cpu().double(), ref, **TOL[torch.float32])
        if step == 2:
            misses = mps_ext.graph.cache_info().misses
    # no graph was compiled after the first steps: one graph serves every position
    assert mps_ext.graph.cache_info().misses == misses
    assert cache.k_cache.data_ptr() == ptr
    assert torch.equal(cache.k_cache[:, :, :prefix + steps].cpu(), k_all)
    assert torch.count_nonzero(cache.k_cache[:, :, prefix + steps:]) == 0


def test_kv_cache_update_is_in_place_and_touches_only_the_new_rows(device):
    cache = rand(2, 2, 10, 4, device=device)
    before = cache.cpu().clone()
    new = rand(1, 2, 3, 4, device=device)
    out = torch.ops.mps_ext.kv_cache_update_(cache, new, 4)
    assert out.data_ptr() == cache.data_ptr()
    expected = before.clone()
    expected[:1, :, 4:7] = new.cpu()
    assert torch.equal(cache.cpu(), expected)


@pytest.mark.parametrize("new_shape,start,dtype,err,match", [
    ((1, 2, 3, 4), 8, torch.float32, ValueError, "exceeds the cache's max_seq_len"),
    ((1, 2, 3, 5), 0, torch.float32, ValueError, "head dim"),
    ((1, 3, 3, 4), 0, torch.float32, ValueError, "kv heads"),
    ((3, 2, 3, 4), 0, torch.float32, ValueError, "batch size"),
    ((1, 2, 3, 4), 0, torch.float16, TypeError, "dtype"),
    ((1, 2, 3, 4), -1, torch.float32, ValueError, "non-negative"),
])
def test_kv_cache_update_errors_leave_the_cache_untouched(device, new_shape, start, dtype, err, match):
    cache = rand(2, 2, 10, 4, device=device)
    before = cache.cpu().clone()
    with pytest.raises(err, match=match):
        torch.ops.mps_ext.kv_cache_update_(cache, rand(*new_shape, dtype=dtype, device=device), start)
    assert torch.equal(cache.cpu(), before)


def test_kv_cache_update_needs_a_contiguous_cache():
    cache = torch.zeros(2, 10, 2, 4).transpose(1, 2)
    with pytest.raises(RuntimeError, match="'cache' must be contiguous"):
        torch.ops.mps_ext.kv_cache_update_(cache, torch.ones(2, 2, 1, 4), 0)


def test_kv_cache_module_errors_leave_both_caches_untouched():
    cache = mps_ext.nn.KVCache(1, 2, 8, 4)
    cache.update(torch.ones(1, 2, 2, 4), torch.ones(1, 2, 2, 4), 0)
    k0, v0 = cache.k_cache.clone(), cache.v_cache.clone()
    with pytest.raises(ValueError, match="head_dim"):  # v_new is bad: k_cache must not be written either
        cache.update(torch.full((1, 2, 1, 4), 5.0), torch.ones(1, 2, 1, 3), 2)
    with pytest.raises(ValueError, match="exceeds max_seq_len"):
        cache.update(torch.ones(1, 2, 2, 4), torch.ones(1, 2, 2, 4), 7)
    with pytest.raises(TypeError, match="dtype"):
        cache.update(torch.ones(1, 2, 1, 4, dtype=torch.float64), torch.ones(1, 2, 1, 4), 2)
    assert torch.equal(cache.k_cache, k0) and torch.equal(cache.v_cache, v0)
    with pytest.raises(ValueError, match="max_seq_len must be positive"):
        mps_ext.nn.KVCache(1, 2, 0, 4)
    with pytest.raises(TypeError, match="floating-point"):
        mps_ext.nn.KVCache(1, 2, 4, 4, dtype=torch.int32)
    assert "max_seq_len=8" in repr(cache)


# --- F.scaled_dot_product_attention on the mpsgraph device ----------------------------------
def test_torch_sdpa_routes_to_mps_ext_on_the_mpsgraph_device():
    q, k, v = rand(2, 8, 6, 16), rand(2, 2, 9, 16), rand(2, 2, 9, 16)
    mask = torch.randn(2, 1, 6, 9, requires_grad=True)
    qd, kd, vd = (t.to("mpsgraph").requires_grad_() for t in (q, k, v))
    md = mask.detach().to("mpsgraph").requires_grad_()
    for kw, kwd in [({"is_causal": True}, {"is_causal": True}), ({"attn_mask": mask}, {"attn_mask": md}),
                    ({"attn_mask": torch.rand(6, 9) > 0.3}, None)]:
        kwd = kwd or {n: a.to("mpsgraph") for n, a in kw.items()}
        out = F.scaled_dot_product_attention(qd, kd, vd, enable_gqa=True, **kwd)
        assert type(out.grad_fn).__name__ == "ScaledDotProductFusedAttentionOverrideableBackward0"
        leaves_d, leaves = [qd, kd, vd], [q.double().requires_grad_(), k.double().requires_grad_(),
                                          v.double().requires_grad_()]
        ref_kw = dict(kw)
        if kw.get("attn_mask") is mask:
            leaves_d.append(md)
            leaves.append(mask.detach().double().requires_grad_())
            ref_kw["attn_mask"] = leaves[3]
        with sdpa_kernel(SDPBackend.MATH):
            ref = F.scaled_dot_product_attention(*leaves[:3], enable_gqa=True, **ref_kw)
        torch.testing.assert_close(out.cpu().double(), ref, **TOL[torch.float32])
        g = torch.randn(out.shape)
        for a, b in zip(torch.autograd.grad(out, leaves_d, g.to("mpsgraph")), torch.autograd.grad(ref, leaves, g.double())):
            torch.testing.assert_close(a.cpu().double(), b, atol=1e-4, rtol=1e-4)


def test_torch_sdpa_math_path_is_native_on_the_mpsgraph_device():
    # Shapes the fused path leaves to aten's math path (3-d inputs, dropout)
    # run natively too: its _safe_softmax zeroes fully masked rows (isneginf).
    torch.manual_seed(0)
    q, k, v = torch.randn(3, 4, 8), torch.randn(3, 6, 8), torch.randn(3, 6, 8)
    mask = torch.rand(4, 6) > 0.5
    mask[0] = False
    before = torch.ops.mps_ext._fallback_count()
    for kw in [{}, {"is_causal": True}, {"attn_mask": mask}, {"attn_mask": torch.randn(4, 6), "scale": 0.3}]:
        leaves = [t.clone().requires_grad_() for t in (q, k, v)]
        leaves_d = [t.to("mpsgraph").requires_grad_() for t in (q, k, v)]
        kwd = {n: a.to("mpsgraph") if torch.is_tensor(a) else a for n, a in kw.items()}
        ref = F.scaled_dot_product_attention(*leaves, **kw)
        out = F.scaled_dot_product_attention(*leaves_d, **kwd)
        torch.testing.assert_close(out.cpu(), ref, atol=1e-6, rtol=1e-5)
        g = torch.randn(ref.shape)
        for a, b in zip(torch.autograd.grad(out, leaves_d, g.to("mpsgraph")), torch.autograd.grad(ref, leaves, g)):
            torch.testing.assert_close(a.cpu(), b, atol=1e-5, rtol=1e-5)
    torch.manual_seed(1)
    dropped = F.scaled_dot_product_attention(q.to("mpsgraph"), k.to("mpsgraph"), v.to("mpsgraph"), dropout_p=0.5)
    assert dropped.shape == (3, 4, 8) and dropped.isfinite().all()
    assert torch.ops.mps_ext._fallback_count() == before


def test_transformer_modules_on_the_mpsgraph_device():
    torch.manual_seed(0)
    x = torch.randn(2, 7, 16)
    mha = torch.nn.MultiheadAttention(16, 4, batch_first=True)
    ref = mha(x, x, x, need_weights=False)[0]
    out = mha.to("mpsgraph")(*(x.to("mpsgraph"),) * 3, need_weights=False)[0]
    torch.testing.assert_close(out.cpu(), ref, atol=1e-5, rtol=1e-5)
    layer = torch.nn.TransformerEncoderLayer(16, 4, 32, dropout=0.0, batch_first=True)
    causal = torch.nn.Transformer.generate_square_subsequent_mask(7)
    ref = layer(x, src_mask=causal, is_causal=True)
    ref.sum().backward()
    ref_grad = layer.self_attn.in_proj_weight.grad.clone()
    layer.zero_grad()
    layer.to("mpsgraph")
    out = layer(x.to("mpsgraph"), src_mask=causal.to("mpsgraph"), is_causal=True)
    out.sum().backward()
    torch.testing.assert_close(out.cpu(), ref, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(layer.self_attn.in_proj_weight.grad.cpu(), ref_grad, atol=1e-4, rtol=1e-4)


def test_override_aten_registers_sdpa_with_autograd_for_mps():
    code = ("import torch, mps_ext\n"
            "print(mps_ext.override_aten(['scaled_dot_product_attention']))\n"
            "print(torch._C._dispatch_has_kernel_for_dispatch_key('aten::scaled_dot_product_attention', "
            "'AutogradMPS'))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split("\n")[:2] == ["['scaled_dot_product_attention']", "True"]


def test_demo_trains_and_generates_through_the_kv_cache(device, capsys):
    from mps_ext.attention import _demo
    assert _demo(device, steps=15)
    assert "matches recomputing the prefix: True" in capsys.readouterr().out
