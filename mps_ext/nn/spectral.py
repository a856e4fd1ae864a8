"""``mps_ext.nn.STFT`` / ``mps_ext.nn.ISTFT``: the transforms as modules holding their window."""
from __future__ import annotations

from typing import Optional

import torch

from .. import spectral as _spectral


def _set_window(module: torch.nn.Module, window: Optional[torch.Tensor], length: int, trainable: bool) -> None:
    """``module.window``: a copy of ``window`` (default: ones of ``length``), a
    Parameter when ``trainable`` else a buffer (moves with ``.to()``)."""
    window = torch.ones(length) if window is None else window.clone()
    if trainable:
        module.window = torch.nn.Parameter(window)
    else:
        module.register_buffer("window", window)


class STFT(torch.nn.Module):
    """:func:`mps_ext.stft` with fixed parameters; the window is a buffer (moves with ``.to()``,
    saved in the state dict) or, with ``trainable_window=True``, a parameter.

    ``forward(input)`` returns the complex spectrogram ``[..., n_fft // 2 + 1, frames]``.
    """

    def __init__(self, n_fft: int, hop_length: Optional[int] = None, win_length: Optional[int] = None,
                 window: Optional[torch.Tensor] = None, center: bool = True, pad_mode: str = "reflect",
                 normalized: bool = False, onesided: Optional[bool] = None, trainable_window: bool = False):
        super().__init__()
        self.n_fft, self.hop_length, self.win_length = n_fft, hop_length, win_length
        self.center, self.pad_mode, self.normalized, self.onesided = center, pad_mode, normalized, onesided
        _set_window(self, window, win_length if win_length is not None else n_fft, trainable_window)

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        return torch.ops.mps_ext.stft(input, self.n_fft, self.hop_length, self.win_length, self.window, self.center,
                                      self.pad_mode, self.normalized, self.onesided, True)

    def extra_repr(self) -> str:
        return (f"n_fft={self.n_fft}, hop_length={self.hop_length}, win_length={self.win_length}, "
                f"center={self.center}, pad_mode={self.pad_mode!r}, normalized={self.normalized}")


class ISTFT(torch.nn.Module):
    """:func:`mps_ext.istft` with fixed parameters; ``forward(spec, length=None)``."""

    def __init__(self, n_fft: int, hop_length: Optional[int] = None, win_length: Optional[int] = None,
                 window: Optional[torch.Tensor] = None, center: bool = True, normalized: bool = False,
                 onesided: Optional[bool] = None, return_complex: bool = False, trainable_window: bool = False):
        super().__init__()
        self.n_fft, self.hop_length, self.win_length = n_fft, hop_length, win_length
        self.center, self.normalized, self.onesided, self.return_complex = center, normalized, onesided, return_complex
        _set_window(self, window, win_length if win_length is not None else n_fft, trainable_window)

    def forward(self, input: torch.Tensor, length: Optional[int] = None) -> torch.Tensor:
        return _spectral.istft(input, self.n_fft, self.hop_length, self.win_length, self.window, self.center,
                               self.normalized, self.onesided, length, self.return_complex)

    def extra_repr(self) -> str:
        return (f"n_fft={self.n_fft}, hop_length={self.hop_length}, win_length={self.win_length}, "
                f"center={self.center}, normalized={self.normalized}")
