"""A key/value cache for autoregressive decoding, updated in place."""
from __future__ import annotations

import operator

import torch


class KVCache(torch.nn.Module):
    r"""Preallocated key and value buffers ``k_cache``/``v_cache`` of shape
    ``[max_batch_size, n_kv_heads, max_seq_len, head_dim]``.

    :meth:`update` writes new keys/values at ``start_pos`` in place with
    ``torch.ops.mps_ext.kv_cache_update_`` (only the new rows are written, so a
    decode step costs the same at any cache length, and one compiled graph
    serves every position) and returns views of the valid prefix, ready for
    :func:`mps_ext.nn.functional.scaled_dot_product_attention`.

    Args:
        max_batch_size, n_kv_heads, max_seq_len, head_dim: the buffer shape.
        dtype: buffer dtype (default: ``torch.get_default_dtype()``).
        device: buffer device.
    """

    def __init__(self, max_batch_size: int, n_kv_heads: int, max_seq_len: int, head_dim: int,
                 dtype: torch.dtype | None = None, device: torch.device | str | None = None) -> None:
        super().__init__()
        shape = []
        for name, value in (("max_batch_size", max_batch_size), ("n_kv_heads", n_kv_heads),
                            ("max_seq_len", max_seq_len), ("head_dim", head_dim)):
            try:
                value = operator.index(value)
            except TypeError:
                raise TypeError(f"KVCache: {name} must be an int, got {type(value).__name__}") from None
            if value <= 0:
                raise ValueError(f"KVCache: {name} must be positive, got {value}")
            shape.append(value)
        dtype = torch.get_default_dtype() if dtype is None else dtype
        if not dtype.is_floating_point:
            raise TypeError(f"KVCache: dtype must be a floating-point dtype, got {dtype}")
        self.register_buffer("k_cache", torch.zeros(shape, dtype=dtype, device=device), persistent=False)
        self.register_buffer("v_cache", torch.zeros(shape, dtype=dtype, device=device), persistent=False)

    @property
    def max_seq_len(self) -> int:
        return self.k_cache.shape[2]

    def _check(self, name: str, new: torch.Tensor, start_pos: int) -> None:
        cache = self.k_cache
        if not isinstance(new, torch.Tensor):
            raise TypeError(f"KVCache.update: {name} must be a Tensor, got {type(new).__name__}")
        if new.dim() != 4:
            raise ValueError(f"KVCache.update: expected {name} of shape [B, n_kv_heads, L, head_dim], "
                             f"got {list(new.shape)}")
        if new.dtype != cache.dtype:
            raise TypeError(f"KVCache.update: {name} has dtype {new.dtype}, the cache holds {cache.dtype}")
        if new.shape[3] != cache.shape[3]:
            raise ValueError(f"KVCache.update: {name} has head_dim {new.shape[3]}, the cache has {cache.shape[3]}")
        if new.shape[1] != cache.shape[1]:
            raise ValueError(f"KVCache.update: {name} has {new.shape[1]} kv heads, the cache has {cache.shape[1]}")
        if new.shape[0] > cache.shape[0]:
            raise ValueError(f"KVCache.update: {name} has batch size {new.shape[0]}, the cache holds at most "
                             f"{cache.shape[0]}")
        if start_pos < 0 or start_pos + new.shape[2] > cache.shape[2]:
            raise ValueError(f"KVCache.update: start_pos ({start_pos}) + {name} length ({new.shape[2]}) exceeds "
                             f"max_seq_len ({cache.shape[2]})" if start_pos >= 0 else
                             f"KVCache.update: start_pos must be non-negative, got {start_pos}")

    def update(self, k_new: torch.Tensor, v_new: torch.Tensor, start_pos: int
               ) -> tuple[torch.Tensor, torch.Tensor]:
        """Writes ``k_new``/``v_new`` ``[B, n_kv_heads, L, head_dim]`` at rows
        ``start_pos .. start_pos + L`` and returns ``(k_valid, v_valid)``: views
        ``[B, n_kv_heads, start_pos + L, head_dim]`` of the caches. Bad
        arguments raise before either cache is touched.
        """
        start_pos = operator.index(start_pos)
        self._check("k_new", k_new, start_pos)
        self._check("v_new", v_new, start_pos)
        if v_new.shape != k_new.shape:
            raise ValueError(f"KVCache.update: k_new {list(k_new.shape)} and v_new {list(v_new.shape)} differ")
        torch.ops.mps_ext.kv_cache_update_(self.k_cache, k_new, start_pos)
        torch.ops.mps_ext.kv_cache_update_(self.v_cache, v_new, start_pos)
        end, batch = start_pos + k_new.shape[2], k_new.shape[0]
        return self.k_cache[:batch, :, :end], self.v_cache[:batch, :, :end]

    def extra_repr(self) -> str:
        b, h, s, d = self.k_cache.shape
        return f"max_batch_size={b}, n_kv_heads={h}, max_seq_len={s}, head_dim={d}, dtype={self.k_cache.dtype}"
