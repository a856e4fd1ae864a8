"""Functional forms of the mps_ext operators, with torch's names and defaults."""
from __future__ import annotations

import torch

from .. import _C


def softshrink(input: torch.Tensor, lambd: float = 0.5) -> torch.Tensor:
    r"""Soft shrinkage, like :func:`torch.nn.functional.softshrink`.

    .. math::
        \text{softshrink}(x) = x - \lambda \text{ if } x > \lambda;\;
        x + \lambda \text{ if } x < -\lambda;\; 0 \text{ otherwise}

    Differentiable; runs as one fused graph.
    """
    if torch.compiler.is_compiling():  # traceable form
        return torch.ops.mps_ext.softshrink(input, lambd)
    return _C._softshrink(input, lambd)  # eager: the same op, minus torch.ops' Python overhead


def scaled_dot_product_attention(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                                 attn_mask: torch.Tensor | None = None, dropout_p: float = 0.0,
                                 is_causal: bool = False, scale: float | None = None,
                                 enable_gqa: bool = False) -> torch.Tensor:
    r"""Like :func:`torch.nn.functional.scaled_dot_product_attention`, as one graph.

    ``query`` (N..., L, E), ``key`` (N..., S, E), ``value`` (N..., S, Ev) ->
    (N..., L, Ev). ``attn_mask``: bool (True takes part) or additive, of
    query's dtype, broadcastable to (N..., L, S). ``is_causal``: upper-left
    aligned, as torch. ``enable_gqa``: key/value heads (dim -3) divide the
    query heads and are shared by groups of them without being copied.
    Dropout draws from the device's generator. Differentiable in query, key,
    value and an additive mask. One to eight queries against a long key
    sequence (decoding) run the split-K decode kernel.
    """
    return torch.ops.mps_ext.scaled_dot_product_attention(
        query, key, value, attn_mask, dropout_p, is_causal, scale=scale, enable_gqa=enable_gqa)


__all__ = ["softshrink", "scaled_dot_product_attention"]
