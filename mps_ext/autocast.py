"""Mixed precision: autocast rules for ``torch.ops.mps_ext.*`` and for aten ops
on the ``mpsgraph`` device.

``import mps_ext`` installs them, so the usual PyTorch API works::

    with torch.autocast(device_type="mpsgraph", dtype=torch.bfloat16):  # or "cpu", or "mps" on a Mac
        loss = model(x)
    scaler = torch.amp.GradScaler("mpsgraph")                              # fp16 training

Policies (PyTorch's autocast cast policies):

- ``lower_precision``: floating inputs are cast to the autocast dtype (matmul, conv, attention)
- ``fp32``: floating inputs are cast to float32 (softmax, norms, reductions, losses, FFT/STFT)
- ``promote``: floating inputs are cast to the widest among them
- ``match_inplace``: floating inputs follow the dtype of the tensor the op
  updates in place (``kv_cache_update_``: the cache keeps its dtype)
- ``fallthrough``: no cast; the op runs in its inputs' dtypes (dtype-agnostic ops)

Only eligible tensors are cast, as in PyTorch: floating point, not float64, on
the autocast's device type. Tensors an op writes in place and non-tensor
arguments are never changed.

``torch.get_autocast_dtype("mpsgraph")`` is ``torch.float16`` by default
(PyTorch's default for a PrivateUse1 device, as for CUDA and MPS); pass
``dtype=torch.bfloat16`` for bf16. Both are supported
(``torch.mpsgraph.get_amp_supported_dtype()``); any other dtype (float64)
gets PyTorch's warning and autocast stays off.
"""
from __future__ import annotations

import re

import torch

from . import _C  # noqa: F401  (defines torch.ops.mps_ext._autocast_register)

# mps_ext op -> policy, registered on AutocastCPU, AutocastMPS and
# AutocastPrivateUse1. One row per op; rows for ops this build does not have
# are skipped at registration. "name.overload" selects an overload.
OP_RULES: dict[str, str] = {
    # Attention: matmul-bound, runs in the autocast dtype (softmax accumulates in fp32 inside).
    "scaled_dot_product_attention": "lower_precision",
    # In place on the cache: the cache keeps its dtype, the new rows are cast to it.
    "kv_cache_update_": "match_inplace",
    # Quantized matmuls: activations (and the float scales / LUT) in the autocast dtype.
    "quantized_matmul": "lower_precision",
    "lut_matmul": "lower_precision",
    # Quantizing computes scales from the float weight: in fp32. Dequantized
    # values feed accumulations: fp32.
    "quantize_per_tensor": "fp32",
    "quantize_per_channel": "fp32",
    "quantize_groupwise": "fp32",
    "quantize_lut": "fp32",
    "dequantize": "fp32",
    "dequantize_groupwise": "fp32",
    "dequantize_lut": "fp32",
    # Spectral: FFTs lose too much in 16-bit floats (and complex32 is not a device type).
    "fft_c2c": "fp32",
    "fft_r2c": "fp32",
    "fft_c2r": "fp32",
    "stft": "fp32",
    "istft": "fp32",
    # Elementwise, exact in any float dtype.
    "softshrink": "fallthrough",
    # Backward ops run in the dtypes autograd saved from the forward (as PyTorch's own backward ops).
    "softshrink_backward": "fallthrough",
    "quantized_matmul_backward": "fallthrough",
    "lut_matmul_backward": "fallthrough",
}

POLICIES = ("lower_precision", "fp32", "promote", "match_inplace", "fallthrough")

_AUTOCAST_KEYS = {"cpu": "AutocastCPU", "mps": "AutocastMPS", "mpsgraph": "AutocastPrivateUse1"}
_POLICY_IN_DEBUG = re.compile(r"\[autocast policy: (\w+)\]")
_registered: dict[str, bool] = {}


def register() -> dict[str, bool]:
    """Installs :data:`OP_RULES` (idempotent). Returns ``{op: registered}``;
    False marks an op this build does not have."""
    for name, policy in OP_RULES.items():
        _registered[name] = bool(torch.ops.mps_ext._autocast_register(f"mps_ext::{name}", policy))
    return dict(_registered)


def _policy_in_force(op: str, key: str) -> str | None:
    """The policy of `op`'s kernel for dispatch key `key`, read from the
    dispatcher's record of that registration (its debug string)."""
    for line in torch._C._dispatch_dump(op).splitlines():
        if line.startswith(key + ":"):
            m = _POLICY_IN_DEBUG.search(line)
            if m is None:
                return None  # a kernel mps_ext did not register (PyTorch's own lists)
            policy = m.group(1)
            fallthrough = torch._C._dispatch_kernel_for_dispatch_key_is_fallthrough(op, key)
            if fallthrough != (policy == "fallthrough"):
                raise RuntimeError(f"mps_ext.autocast: {op} on {key} is registered as '{policy}' but its "
                                   f"kernel is {'' if fallthrough else 'not '}a fallthrough")
            return policy
    return None


def rules(device_type: str = "mpsgraph", *, include_torch: bool = False) -> dict[str, str]:
    """``{op: policy}`` of the autocast rules in force for ``device_type``
    (``"cpu"``, ``"mps"`` or ``"mpsgraph"``), read back from the dispatcher.

    Lists every op mps_ext registers a rule for: the ``mps_ext::`` ops on all
    three device types, and the aten ops on ``mpsgraph`` (whose fallback for
    all other ops, ``"_"``, is ``fallthrough``). With ``include_torch=True``
    the aten ops PyTorch itself registers for that device type are added with
    the policy ``"torch"`` (PyTorch records no policy to read back).
    """
    if device_type not in _AUTOCAST_KEYS:
        raise ValueError(f"rules(): device_type must be one of {sorted(_AUTOCAST_KEYS)}, but got {device_type!r}")
    key = _AUTOCAST_KEYS[device_type]
    table: dict[str, str] = {}
    for op in sorted(torch._C._dispatch_get_registrations_for_dispatch_key(key)):
        policy = _policy_in_force(op, key)
        if policy is not None:
            table[op] = policy
        elif include_torch and op.startswith("aten::"):
            table[op] = "torch"
    if device_type == "mpsgraph" and torch._C._dispatch_has_backend_fallback(torch._C.DispatchKey.AutocastPrivateUse1):
        table["_"] = "fallthrough"
    return table


def format_rules(device_type: str = "mpsgraph") -> str:
    """The rules as a Markdown table grouped by policy (what the README shows)."""
    by_policy: dict[str, list[str]] = {}
    for op, policy in rules(device_type).items():
        by_policy.setdefault(policy, []).append(op)
    lines = [f"| policy | ops on {device_type} |", "|---|---|"]
    for policy in POLICIES:
        if policy in by_policy:
            lines.append(f"| {policy} | {', '.join(f'`{op}`' for op in by_policy[policy])} |")
    return "\n".join(lines)


def supported(device: str, dtype: torch.dtype = torch.bfloat16) -> bool:
    """Whether autocast to ``dtype`` is supported for ``device`` in this process."""
    device_type = torch.device(device).type
    if device_type == "mpsgraph":
        return dtype in torch.mpsgraph.get_amp_supported_dtype()
    if device_type == "mps":  # PyTorch's MPS autocast: bf16 needs macOS 14
        return torch.backends.mps.is_available() and (
            dtype == torch.float16 or torch.backends.mps.is_macos_or_newer(14, 0))
    return device_type == "cpu" and dtype in (torch.bfloat16, torch.float16)


def _demo(device: str) -> torch.dtype | None:
    """The demo's training precision: bf16 autocast where ``device`` supports
    it (says which), else None (fp32)."""
    if not supported(device):
        print(f"autocast : bf16 autocast is not supported on {device}; training in fp32")
        return None
    print(f"autocast : training under torch.autocast('{torch.device(device).type}', dtype=torch.bfloat16): "
          f"linear layers in bf16, the loss in fp32 (mps_ext.autocast.rules())")
    return torch.bfloat16


__all__ = ["OP_RULES", "POLICIES", "register", "rules", "format_rules", "supported"]
