"""``torch.fft`` backed by mps_ext graphs: same functions, signatures, defaults and errors.

Every transform is one of three operators (``torch.ops.mps_ext.fft_c2c``,
``fft_r2c``, ``fft_c2r``: ``fftn``/``ifftn``, ``rfftn``, ``irfftn`` with ``s``,
``dim`` and ``norm``), each a single graph that zero-pads or truncates to ``s``
and transforms. They run on ``cpu`` (the reference runtime, ATen's pocketfft
underneath), on the ``mpsgraph`` device and, on a Mac, as MPSGraph FFTs; all
are differentiable. The Hermitian transforms are the real ones of the
conjugate with the adjoint normalization, as in torch.
"""
from __future__ import annotations

from typing import Optional, Sequence

import torch

__all__ = ["fft", "ifft", "rfft", "irfft", "hfft", "ihfft", "fft2", "ifft2", "rfft2", "irfft2", "hfft2",
           "ihfft2", "fftn", "ifftn", "rfftn", "irfftn", "hfftn", "ihfftn",
           "fftfreq", "rfftfreq", "fftshift", "ifftshift"]

_ops = torch.ops.mps_ext

# Frequencies and shifts involve no transform: torch's own.
fftfreq = torch.fft.fftfreq
rfftfreq = torch.fft.rfftfreq
fftshift = torch.fft.fftshift
ifftshift = torch.fft.ifftshift

_ADJOINT = {None: "forward", "backward": "forward", "forward": "backward", "ortho": "ortho"}


def _adjoint(norm):
    # The Hermitian transforms scale as the opposite direction (torch's
    # hfft is irfft(conj(x)) with the forward transform's normalization).
    return _ADJOINT.get(norm, norm)  # an invalid norm is reported by the operator


def _n(n: Optional[int]):
    if n is None:
        return None
    if n < 1:
        raise RuntimeError(f"Invalid number of data points ({n}) specified")
    return [n]


def _list(v):
    if v is None:
        return None
    return [v] if isinstance(v, int) else list(v)


def _real_only(name, input):
    if input.is_complex():
        raise RuntimeError(f"{name} expects a real input tensor, but got {str(input.dtype).replace('torch.', '').title().replace('complex', 'Complex')}")


def _out(result, out):
    if out is None:
        return result
    if out.dtype != result.dtype:
        raise RuntimeError(f"Expected out tensor to have dtype {result.dtype}, but got {out.dtype} instead")
    if out.shape != result.shape:
        out.resize_(result.shape)
    return out.copy_(result)


def fft(input: torch.Tensor, n: Optional[int] = None, dim: int = -1, norm: Optional[str] = None, *, out=None):
    """Like :func:`torch.fft.fft`."""
    return _out(_ops.fft_c2c(input, _n(n), [dim], norm, True), out)


def ifft(input: torch.Tensor, n: Optional[int] = None, dim: int = -1, norm: Optional[str] = None, *, out=None):
    """Like :func:`torch.fft.ifft`."""
    return _out(_ops.fft_c2c(input, _n(n), [dim], norm, False), out)


def rfft(input: torch.Tensor, n: Optional[int] = None, dim: int = -1, norm: Optional[str] = None, *, out=None):
    """Like :func:`torch.fft.rfft`."""
    _real_only("rfft", input)
    return _out(_ops.fft_r2c(input, _n(n), [dim], norm, True), out)


def irfft(input: torch.Tensor, n: Optional[int] = None, dim: int = -1, norm: Optional[str] = None, *, out=None):
    """Like :func:`torch.fft.irfft`."""
    return _out(_ops.fft_c2r(input, _n(n), [dim], norm), out)


def hfft(input: torch.Tensor, n: Optional[int] = None, dim: int = -1, norm: Optional[str] = None, *, out=None):
    """Like :func:`torch.fft.hfft`."""
    return _out(_ops.fft_c2r(input.conj(), _n(n), [dim], _adjoint(norm)), out)


def ihfft(input: torch.Tensor, n: Optional[int] = None, dim: int = -1, norm: Optional[str] = None, *, out=None):
    """Like :func:`torch.fft.ihfft`."""
    _real_only("ihfft", input)
    return _out(_ops.fft_r2c(input, _n(n), [dim], _adjoint(norm), True).conj(), out)


def fftn(input: torch.Tensor, s: Optional[Sequence[int]] = None, dim: Optional[Sequence[int]] = None,
         norm: Optional[str] = None, *, out=None):
    """Like :func:`torch.fft.fftn`."""
    return _out(_ops.fft_c2c(input, _list(s), _list(dim), norm, True), out)


def ifftn(input: torch.Tensor, s: Optional[Sequence[int]] = None, dim: Optional[Sequence[int]] = None,
          norm: Optional[str] = None, *, out=None):
    """Like :func:`torch.fft.ifftn`."""
    return _out(_ops.fft_c2c(input, _list(s), _list(dim), norm, False), out)


def rfftn(input: torch.Tensor, s: Optional[Sequence[int]] = None, dim: Optional[Sequence[int]] = None,
          norm: Optional[str] = None, *, out=None):
    """Like :func:`torch.fft.rfftn`."""
    _real_only("rfftn", input)
    return _out(_ops.fft_r2c(input, _list(s), _list(dim), norm, True), out)


def irfftn(input: torch.Tensor, s: Optional[Sequence[int]] = None, dim: Optional[Sequence[int]] = None,
           norm: Optional[str] = None, *, out=None):
    """Like :func:`torch.fft.irfftn`."""
    return _out(_ops.fft_c2r(input, _list(s), _list(dim), norm), out)


def hfftn(input: torch.Tensor, s: Optional[Sequence[int]] = None, dim: Optional[Sequence[int]] = None,
          norm: Optional[str] = None, *, out=None):
    """Like :func:`torch.fft.hfftn`."""
    return _out(_ops.fft_c2r(input.conj(), _list(s), _list(dim), _adjoint(norm)), out)


def ihfftn(input: torch.Tensor, s: Optional[Sequence[int]] = None, dim: Optional[Sequence[int]] = None,
           norm: Optional[str] = None, *, out=None):
    """Like :func:`torch.fft.ihfftn`."""
    _real_only("ihfftn", input)
    return _out(_ops.fft_r2c(input, _list(s), _list(dim), _adjoint(norm), True).conj(), out)


def fft2(input: torch.Tensor, s: Optional[Sequence[int]] = None, dim: Sequence[int] = (-2, -1),
         norm: Optional[str] = None, *, out=None):
    """Like :func:`torch.fft.fft2`."""
    return fftn(input, s, dim, norm, out=out)


def ifft2(input: torch.Tensor, s: Optional[Sequence[int]] = None, dim: Sequence[int] = (-2, -1),
          norm: Optional[str] = None, *, out=None):
    """Like :func:`torch.fft.ifft2`."""
    return ifftn(input, s, dim, norm, out=out)


def rfft2(input: torch.Tensor, s: Optional[Sequence[int]] = None, dim: Sequence[int] = (-2, -1),
          norm: Optional[str] = None, *, out=None):
    """Like :func:`torch.fft.rfft2`."""
    _real_only("rfft2", input)
    return rfftn(input, s, dim, norm, out=out)


def irfft2(input: torch.Tensor, s: Optional[Sequence[int]] = None, dim: Sequence[int] = (-2, -1),
           norm: Optional[str] = None, *, out=None):
    """Like :func:`torch.fft.irfft2`."""
    return irfftn(input, s, dim, norm, out=out)


def hfft2(input: torch.Tensor, s: Optional[Sequence[int]] = None, dim: Sequence[int] = (-2, -1),
          norm: Optional[str] = None, *, out=None):
    """Like :func:`torch.fft.hfft2`."""
    return hfftn(input, s, dim, norm, out=out)


def ihfft2(input: torch.Tensor, s: Optional[Sequence[int]] = None, dim: Sequence[int] = (-2, -1),
           norm: Optional[str] = None, *, out=None):
    """Like :func:`torch.fft.ihfft2`."""
    _real_only("ihfft2", input)
    return ihfftn(input, s, dim, norm, out=out)
