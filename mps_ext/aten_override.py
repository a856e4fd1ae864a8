"""Route aten ops on the native ``mps`` device to mps_ext kernels.

Existing scripts gain the kernels without edits::

    mps_ext.override_aten(["softshrink"])
    torch.nn.functional.softshrink(x_on_mps)   # now runs torch.ops.mps_ext.softshrink

The override is process-wide and registers Python kernels for the ``MPS``
dispatch key with ``torch.library`` (torch warns once that it replaces its own
kernel). Other devices are untouched.
"""
from __future__ import annotations

from typing import Callable, Iterable

import torch

# aten op -> (schema-compatible kernel). Later op families add their rows.
_KERNELS: dict[str, Callable] = {
    "softshrink": lambda self, lambd=0.5: torch.ops.mps_ext.softshrink(self, lambd),
    "softshrink_backward": lambda grad_output, self, lambd: torch.ops.mps_ext.softshrink_backward(
        grad_output, self, lambd),
    # Composite in aten (no autograd formula of its own): registered for
    # AutogradMPS so the mps_ext op records its own backward.
    "scaled_dot_product_attention": lambda query, key, value, attn_mask=None, dropout_p=0.0, is_causal=False,
    scale=None, enable_gqa=False: torch.ops.mps_ext.scaled_dot_product_attention(
        query, key, value, attn_mask, dropout_p, is_causal, scale=scale, enable_gqa=enable_gqa),
}
# Overriding an op also overrides the ops its autograd formula calls.
_IMPLIES = {"softshrink": ["softshrink_backward"]}
# The dispatch key each override is registered for (default "MPS").
_KEYS = {"scaled_dot_product_attention": "AutogradMPS"}

_library: torch.library.Library | None = None
_overridden: set[str] = set()


def overridable_aten_ops() -> list[str]:
    """Names accepted by :func:`override_aten`."""
    return sorted(_KERNELS)


def overridden_aten_ops() -> list[str]:
    """The aten ops currently routed to mps_ext on the ``mps`` device."""
    return sorted(_overridden)


def override_aten(ops: Iterable[str]) -> list[str]:
    """Routes each aten op in ``ops`` on the ``mps`` device to its mps_ext kernel.

    Returns the ops now overridden (implied backward ops included). Unknown
    names raise ``ValueError`` before anything is registered; calling again with
    the same op is a no-op.
    """
    global _library
    if isinstance(ops, str):
        raise TypeError("override_aten: expected a list of op names, e.g. ['softshrink'], not a string")
    names = list(ops)
    unknown = [n for n in names if n not in _KERNELS]
    if unknown:
        raise ValueError(f"override_aten: no mps_ext kernel for {unknown}; "
                         f"overridable ops are {overridable_aten_ops()}")
    wanted = []
    for name in names:
        wanted += [name, *_IMPLIES.get(name, [])]
    if _library is None:
        _library = torch.library.Library("aten", "IMPL")
    for name in wanted:
        if name not in _overridden:
            _library.impl(name, _KERNELS[name], _KEYS.get(name, "MPS"))
            _overridden.add(name)
    return overridden_aten_ops()
