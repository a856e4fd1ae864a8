"""Weight quantization: packed int4/int8 affine and LUT (palettized) weights.

Formats (``torch.ops.mps_ext.*``; the tests pin them):

**Affine group-wise** (``quantize_groupwise``, ``dequantize_groupwise``, ``quantized_matmul``)::

    W[n, k] = scales[n, g] * (q[n, k] - zero_points[n, g]),   g = k // group_size

* ``q`` are unsigned codes in ``[0, 2**bits - 1]``, stored in ``qweight`` (uint8):
  bits 8 -> ``[N, K]``; bits 4 -> ``[N, K // 2]``, two codes per byte along the
  input dimension, **low nibble first** (``byte = q[2j] | q[2j + 1] << 4``).
* ``scales``, ``zero_points``: ``[N, K // group_size]`` in the activations' dtype
  (float32/float16/bfloat16); zero points are integers stored as floats.
* Asymmetric (default): the min/max range (widened to include 0) maps onto
  ``[0, 2**bits - 1]``; every element is within ``scale / 2`` of its float value.
* Symmetric: ``zero_points == 2**(bits - 1)`` (8 or 128), i.e. signed codes in
  ``[-(2**(bits-1) - 1), 2**(bits-1) - 1]`` stored offset-binary, scale = max|w| / (2**(bits-1) - 1).
* ``group_size``: a multiple of 32 dividing ``in_features`` (32, 64, 128, 256 tested).

**LUT / palettized** (``quantize_lut``, ``dequantize_lut``, ``lut_matmul``)::

    W[n, k] = lut[n // group_size, indices[n, k]]

* ``indices`` packed like ``qweight`` (bits 4 or 8); ``lut`` is ``[N // group_size, 2**bits]``
  in the weight's dtype: ``group_size`` output channels share one table (default 1).
* Tables come from 1-D k-means (8 Lloyd iterations seeded at the quantiles
  ``(i + 0.5) / 2**bits``); each weight gets its nearest table entry.

**Per-tensor / per-channel int8** (``quantize_per_tensor``, ``quantize_per_channel``, ``dequantize``)::

    x = scale * (q - zero_point)

* symmetric: int8 ``q`` in ``[-127, 127]``, ``zero_point`` 0; asymmetric: uint8 ``q`` in ``[0, 255]``.
* ``scale``/``zero_point``: 0-d (per tensor) or ``[C]`` along ``axis`` (per channel), the input's dtype.
* ``dequantize`` is differentiable w.r.t. ``scale`` and ``zero_point``
  (``dequantize_groupwise`` w.r.t. ``scales``/``zero_points``, ``dequantize_lut`` w.r.t. ``lut``).

``quantized_matmul(x, qweight, scales, zero_points, bits, group_size)`` is
``x @ dequantize_groupwise(...).T`` for ``x`` of any leading shape, computed
without building the float weight (CPU: the packed weight is unpacked in
registers); ``lut_matmul(x, indices, lut, bits)`` likewise. Both are
differentiable w.r.t. ``x``.
"""
from __future__ import annotations

import fnmatch
import time
import warnings
from typing import Iterable

import torch

from .nn.quantized import QuantizedLinear

__all__ = ["quantize_model", "weight_bytes", "QuantizedLinear"]


def quantize_model(model: torch.nn.Module, bits: int = 4, group_size: int = 64, mode: str = "affine",
                   skip: Iterable[str] = (), symmetric: bool = False) -> torch.nn.Module:
    """Replaces every ``nn.Linear`` of ``model`` by a :class:`~mps_ext.nn.QuantizedLinear`
    in place and returns ``model``.

    ``skip``: module names (``fnmatch`` patterns, e.g. ``"lm_head"``, ``"*.out"``) left in float.
    Only modules whose type is exactly ``nn.Linear`` are swapped (subclasses such as
    ``nn.MultiheadAttention``'s ``out_proj`` are read as raw weights by their owner).
    Layers whose ``in_features`` the format cannot split into groups stay float, with a warning.
    """
    skip = tuple(skip)
    targets = []
    for name, module in model.named_modules():
        for child_name, child in module.named_children():
            full = f"{name}.{child_name}" if name else child_name
            if type(child) is not torch.nn.Linear or any(fnmatch.fnmatchcase(full, p) for p in skip):
                continue
            k = child.in_features
            if (mode == "affine" and k % group_size) or (bits == 4 and k % 2):
                warnings.warn(f"quantize_model: leaving {full!r} in float: in_features={k} does not split into "
                              f"groups of {group_size}" + (" / pairs of int4 values" if bits == 4 else ""))
                continue
            targets.append((module, child_name, child))
    for module, child_name, child in targets:
        setattr(module, child_name, QuantizedLinear.from_float(child, bits=bits, group_size=group_size, mode=mode,
                                                              symmetric=symmetric))
    return model


def weight_bytes(model: torch.nn.Module) -> int:
    """Bytes of every parameter and buffer of ``model`` (what its weights occupy in memory)."""
    tensors = list(model.parameters()) + list(model.buffers())
    return sum(t.numel() * t.element_size() for t in tensors)


def _time_forward(model: torch.nn.Module, x: torch.Tensor, repeat: int = 20) -> float:
    with torch.no_grad():
        model(x)
        best = float("inf")
        for _ in range(repeat):
            start = time.perf_counter()
            model(x)
            best = min(best, time.perf_counter() - start)
    return best


def _demo(steps: int = 120) -> None:
    """Trains a small MLP classifier, quantizes it to int4 (gs 64) and prints the change."""
    import copy

    torch.manual_seed(0)
    dim, hidden, classes = 256, 1024, 10
    teacher = torch.randn(dim, classes)
    x = torch.randn(8192, dim)
    y = (x @ teacher).argmax(1)
    model = torch.nn.Sequential(torch.nn.Linear(dim, hidden), torch.nn.GELU(), torch.nn.Linear(hidden, hidden),
                                torch.nn.GELU(), torch.nn.Linear(hidden, classes))
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    for _ in range(steps):
        idx = torch.randint(0, 7680, (256,))
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x[idx]), y[idx]).backward()
        opt.step()

    def accuracy(m: torch.nn.Module) -> float:
        with torch.no_grad():
            return (m(x[7680:]).argmax(1) == y[7680:]).float().mean().item()

    quantized = quantize_model(copy.deepcopy(model), bits=4, group_size=64, skip=("4",))  # keep the 10-way head
    one = x[:1]
    t_float, t_int4 = _time_forward(model, one), _time_forward(quantized, one)
    print("\nQuantizing the trained MLP (256-1024-1024-10) to int4, group size 64 (mps_ext.quantize_model):")
    print(f"  accuracy  : float {accuracy(model):.3f} -> int4 {accuracy(quantized):.3f} (held-out 512)")
    print(f"  weights   : {weight_bytes(model) / 2**20:.2f} MiB -> {weight_bytes(quantized) / 2**20:.2f} MiB "
          f"({weight_bytes(model) / weight_bytes(quantized):.1f}x smaller)")
    print(f"  batch-1   : {t_float * 1e3:.3f} ms -> {t_int4 * 1e3:.3f} ms per forward on the CPU "
          f"({t_float / t_int4:.2f}x)")
