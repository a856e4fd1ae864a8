"""QuantizedLinear: an nn.Linear whose weight is stored packed (int4/int8 affine or LUT)."""
from __future__ import annotations

import torch

_ops = torch.ops.mps_ext
MODES = ("affine", "lut")


class QuantizedLinear(torch.nn.Module):
    r"""Drop-in for a frozen :class:`torch.nn.Linear`: ``y = x @ W^T + bias`` with ``W``
    stored packed and multiplied without ever being materialised as floats.

    Build one from a float layer with :meth:`from_float`. Formats (see
    :mod:`mps_ext.quantization`):

    * ``mode="affine"``: ``W[n, k] = scales[n, g] * (q[n, k] - zero_points[n, g])``
      with ``g = k // group_size``; buffers ``qweight`` (uint8 ``[out, in * bits / 8]``,
      int4 two per byte, low nibble first), ``scales`` and ``zero_points``
      (``[out, in / group_size]``, the layer's dtype). Runs
      ``torch.ops.mps_ext.quantized_matmul``.
    * ``mode="lut"``: ``W[n, k] = lut[n, indices[n, k]]``, a k-means table of
      ``2**bits`` entries per output channel; buffers ``indices`` (packed like
      ``qweight``) and ``lut`` (``[out, 2**bits]``). ``group_size`` is unused.
      Runs ``torch.ops.mps_ext.lut_matmul``.

    The packed weight is a buffer (saved in ``state_dict``, moved by ``.to()``,
    never trained); ``bias`` stays a float parameter. Gradients flow to the
    input, so adapters (LoRA) can be trained on top of a frozen quantized base.

    Args:
        in_features, out_features, bias: as :class:`torch.nn.Linear`.
        bits: 4 or 8. group_size: input features per scale (a multiple of 32
            dividing ``in_features``; affine only). mode: ``"affine"`` or ``"lut"``.
        device, dtype: of the scales / table and bias (the activations' dtype).
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True, *, bits: int = 4,
                 group_size: int = 64, mode: str = "affine", device=None, dtype=None) -> None:
        super().__init__()
        if mode not in MODES:
            raise ValueError(f"QuantizedLinear: mode must be one of {MODES}, but got {mode!r}")
        if bits not in (4, 8):
            raise ValueError(f"QuantizedLinear: bits must be 4 or 8, but got {bits}")
        self.in_features, self.out_features = in_features, out_features
        self.bits, self.group_size, self.mode = bits, group_size, mode
        dtype = dtype or torch.get_default_dtype()
        packed = (out_features, in_features * bits // 8)
        if mode == "affine":
            if group_size <= 0 or group_size % 32 or in_features % group_size:
                raise ValueError(f"QuantizedLinear: group_size must be a multiple of 32 dividing in_features "
                                 f"({in_features}), but got {group_size}")
            groups = (out_features, in_features // group_size)
            self.register_buffer("qweight", torch.zeros(packed, dtype=torch.uint8, device=device))
            self.register_buffer("scales", torch.ones(groups, dtype=dtype, device=device))
            self.register_buffer("zero_points", torch.zeros(groups, dtype=dtype, device=device))
        else:
            self.register_buffer("indices", torch.zeros(packed, dtype=torch.uint8, device=device))
            self.register_buffer("lut", torch.zeros((out_features, 1 << bits), dtype=dtype, device=device))
        if bias:
            self.bias = torch.nn.Parameter(torch.zeros(out_features, dtype=dtype, device=device))
        else:
            self.register_parameter("bias", None)

    @classmethod
    def from_float(cls, linear: torch.nn.Linear, bits: int = 4, group_size: int = 64, mode: str = "affine",
                   symmetric: bool = False) -> "QuantizedLinear":
        """Quantizes ``linear.weight`` (keeps ``linear.bias``). ``symmetric`` applies to affine mode."""
        if not isinstance(linear, torch.nn.Linear):
            raise TypeError(f"QuantizedLinear.from_float: expected an nn.Linear, but got {type(linear).__name__}")
        w = linear.weight.detach()
        layer = cls(linear.in_features, linear.out_features, linear.bias is not None, bits=bits,
                    group_size=group_size, mode=mode, device=w.device, dtype=w.dtype)
        if mode == "affine":
            q, s, z = _ops.quantize_groupwise(w, bits, group_size, symmetric)
            layer.qweight.copy_(q)
            layer.scales.copy_(s)
            layer.zero_points.copy_(z)
        else:
            indices, lut = _ops.quantize_lut(w, bits)
            layer.indices.copy_(indices)
            layer.lut.copy_(lut)
        if linear.bias is not None:
            with torch.no_grad():
                layer.bias.copy_(linear.bias)
        return layer

    def dequantized_weight(self) -> torch.Tensor:
        """The float weight ``[out_features, in_features]`` the packed buffers encode."""
        if self.mode == "affine":
            return _ops.dequantize_groupwise(self.qweight, self.scales, self.zero_points, self.bits, self.group_size)
        return _ops.dequantize_lut(self.indices, self.lut, self.bits)

    @property
    def weight(self) -> torch.Tensor:
        """The dequantized float weight, for code that reads ``layer.weight`` directly
        (e.g. ``nn.TransformerEncoderLayer``'s inference fast path). Built on each access."""
        return self.dequantized_weight()

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        if self.mode == "affine":
            y = _ops.quantized_matmul(input, self.qweight, self.scales, self.zero_points, self.bits, self.group_size)
        else:
            y = _ops.lut_matmul(input, self.indices, self.lut, self.bits)
        return y if self.bias is None else y + self.bias

    def extra_repr(self) -> str:
        extra = f", group_size={self.group_size}" if self.mode == "affine" else ""
        return (f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}, "
                f"bits={self.bits}, mode={self.mode!r}{extra}")
