"""``mps_ext.stft`` / ``mps_ext.istft``: torch.stft / torch.istft as one fused graph each.

STFT: center padding, framing and the window multiply in one pass (no padded
copy of the signal), then a batched real-to-complex FFT. ISTFT: complex-to-real
FFT, then window, overlap-add and window-envelope normalisation in one pass.
Gradients flow to the input and to the window.
"""
from __future__ import annotations

import warnings
from typing import Optional

import torch

__all__ = ["stft", "istft"]


def stft(input: torch.Tensor, n_fft: int, hop_length: Optional[int] = None, win_length: Optional[int] = None,
         window: Optional[torch.Tensor] = None, center: bool = True, pad_mode: str = "reflect",
         normalized: bool = False, onesided: Optional[bool] = None, return_complex: Optional[bool] = None,
         align_to_window: Optional[bool] = None) -> torch.Tensor:
    """Like :func:`torch.stft` (same arguments, defaults, output layout and errors)."""
    if align_to_window is not None and center:
        raise ValueError("stft align_to_window should only be set when center = False")
    if align_to_window and (win_length is not None and win_length < n_fft):
        raise NotImplementedError("mps_ext.stft: align_to_window=True with win_length < n_fft is not supported")
    if window is None:
        warnings.warn("A window was not provided. A rectangular window will be applied, which is known to cause "
                      "spectral leakage. Other windows such as torch.hann_window or torch.hamming_window are "
                      "recommended to reduce spectral leakage. To suppress this warning and use a rectangular "
                      "window, explicitly set `window=torch.ones(n_fft, device=<device>)`.", UserWarning,
                      stacklevel=2)
    return torch.ops.mps_ext.stft(input, n_fft, hop_length, win_length, window, center, pad_mode, normalized,
                                  onesided, return_complex)


def istft(input: torch.Tensor, n_fft: int, hop_length: Optional[int] = None, win_length: Optional[int] = None,
          window: Optional[torch.Tensor] = None, center: bool = True, normalized: bool = False,
          onesided: Optional[bool] = None, length: Optional[int] = None,
          return_complex: bool = False) -> torch.Tensor:
    """Like :func:`torch.istft` (same arguments, defaults and errors, including the NOLA check)."""
    return torch.ops.mps_ext.istft(input, n_fft, hop_length, win_length, window, center, normalized, onesided,
                                   length, return_complex)


def _demo(device: str) -> None:
    """An audio toy: a tiny spectral-mask denoiser trained through stft/istft."""
    import time

    from . import nn as mnn

    torch.manual_seed(0)
    sr, n_fft, hop = 8000, 256, 64
    t = torch.arange(sr // 2) / sr
    freqs = torch.tensor([[440.0], [660.0], [880.0], [550.0]])
    clean = (torch.sin(2 * torch.pi * freqs * t) * torch.hann_window(t.numel(), periodic=False)).to(device)
    stft_layer = mnn.STFT(n_fft, hop, window=torch.hann_window(n_fft)).to(device)
    istft_layer = mnn.ISTFT(n_fft, hop, window=torch.hann_window(n_fft)).to(device)
    bins = n_fft // 2 + 1
    # A per-bin gain from the log-magnitude of each frame: spectral masking.
    mask_net = torch.nn.Sequential(torch.nn.Linear(bins, 64), torch.nn.ReLU(), torch.nn.Linear(64, bins),
                                   torch.nn.Sigmoid()).to(device)
    opt = torch.optim.Adam(mask_net.parameters(), lr=3e-3)

    def denoise(noisy):
        spec = stft_layer(noisy)                                  # [B, F, T] complex
        mag = spec.abs().clamp_min(1e-6).log().transpose(1, 2)    # [B, T, F]
        gain = mask_net(mag).transpose(1, 2)
        return istft_layer(spec * gain, length=noisy.shape[-1])

    def snr(est, ref):
        return (10 * torch.log10(ref.pow(2).sum() / (est - ref).pow(2).sum())).item()

    noise = 0.5 * torch.randn(clean.shape, device=device)
    print(f"  noisy input SNR {snr(clean + noise, clean):5.1f} dB")
    start = time.perf_counter()
    for step in range(1, 81):
        noisy = clean + 0.5 * torch.randn(clean.shape, device=device)
        loss = torch.nn.functional.mse_loss(denoise(noisy), clean)
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        est = denoise(clean + noise)
    print(f"  after 80 steps through mps_ext stft/istft: SNR {snr(est, clean):5.1f} dB "
          f"({time.perf_counter() - start:.1f} s, device {device})")
