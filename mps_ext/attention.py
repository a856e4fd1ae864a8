"""The attention family's part of ``python -m mps_ext``: a tiny causal
transformer trained a few steps with mps_ext's scaled-dot-product attention,
then a few tokens generated through :class:`mps_ext.nn.KVCache`."""
from __future__ import annotations

import time

import torch
from torch import nn

from .nn import KVCache
from .nn.functional import scaled_dot_product_attention


class _Block(nn.Module):
    """Pre-norm decoder block with grouped-query attention."""

    def __init__(self, dim: int, n_heads: int, n_kv_heads: int) -> None:
        super().__init__()
        self.n_heads, self.n_kv_heads, self.head_dim = n_heads, n_kv_heads, dim // n_heads
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.q = nn.Linear(dim, dim)
        self.kv = nn.Linear(dim, 2 * n_kv_heads * self.head_dim)
        self.out = nn.Linear(dim, dim)
        self.mlp = nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, dim))

    def forward(self, x: torch.Tensor, cache: KVCache | None = None, start_pos: int = 0) -> torch.Tensor:
        b, t, _ = x.shape
        h = self.norm1(x)
        q = self.q(h).view(b, t, self.n_heads, self.head_dim).transpose(1, 2)
        k, v = self.kv(h).view(b, t, 2, self.n_kv_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        if cache is not None:
            k, v = cache.update(k, v, start_pos)
        # A prompt attends causally; one new token attends to the whole prefix.
        a = scaled_dot_product_attention(q, k, v, is_causal=start_pos == 0 and t > 1, enable_gqa=True)
        x = x + self.out(a.transpose(1, 2).reshape(b, t, -1))
        return x + self.mlp(self.norm2(x))


class TinyCausalLM(nn.Module):
    def __init__(self, vocab: int = 16, dim: int = 32, n_heads: int = 4, n_kv_heads: int = 2, layers: int = 2,
                 max_len: int = 64) -> None:
        super().__init__()
        self.embed, self.pos = nn.Embedding(vocab, dim), nn.Embedding(max_len, dim)
        self.blocks = nn.ModuleList(_Block(dim, n_heads, n_kv_heads) for _ in range(layers))
        self.head = nn.Linear(dim, vocab)

    def forward(self, tokens: torch.Tensor, caches: list[KVCache] | None = None, start_pos: int = 0) -> torch.Tensor:
        positions = torch.arange(start_pos, start_pos + tokens.shape[1], device=tokens.device)
        x = self.embed(tokens) + self.pos(positions)
        for i, block in enumerate(self.blocks):
            x = block(x, caches[i] if caches else None, start_pos)
        return self.head(x)


@torch.no_grad()
def generate(model: TinyCausalLM, prompt: torch.Tensor, new_tokens: int, max_len: int = 64) -> torch.Tensor:
    """Greedy decoding: the prompt once (prefill), then one token per step
    against the cached keys/values."""
    blk = model.blocks[0]
    caches = [KVCache(prompt.shape[0], blk.n_kv_heads, max_len, blk.head_dim, device=prompt.device)
              for _ in model.blocks]
    logits = model(prompt, caches, 0)
    out, pos = [logits[:, -1].argmax(-1)], prompt.shape[1]
    for _ in range(new_tokens - 1):
        logits = model(out[-1][:, None], caches, pos)
        out.append(logits[:, -1].argmax(-1))
        pos += 1
    return torch.stack(out, 1)


def _demo(device: str, steps: int = 30) -> bool:
    """Trains on a repeating sequence, then checks that cached generation
    continues it and equals generation that recomputes the whole prefix."""
    torch.manual_seed(0)
    period, length = 5, 24
    seq = torch.arange(length + 1) % period
    data = torch.stack([seq.roll(-s)[: length + 1] for s in range(period)]).to(device)
    model = TinyCausalLM().to(device)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    start, losses = time.perf_counter(), []
    for _ in range(steps):
        opt.zero_grad()
        logits = model(data[:, :-1])
        loss = nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), data[:, 1:].reshape(-1))
        loss.backward()
        opt.step()
        losses.append(loss.item())
    prompt = data[:1, :7]
    cached = generate(model, prompt, 8)
    with torch.no_grad():  # the same greedy tokens without a cache
        tokens = prompt
        for _ in range(8):
            tokens = torch.cat([tokens, model(tokens)[:, -1].argmax(-1, keepdim=True)], 1)
    same = torch.equal(cached.cpu(), tokens[:, 7:].cpu())
    print(f"\ncausal transformer (2 layers, GQA 4/2 heads) on {device}: loss {losses[0]:.3f} -> {losses[-1]:.3f} "
          f"in {steps} steps ({time.perf_counter() - start:.2f}s)")
    print(f"  prompt {prompt[0].tolist()} -> KV-cache generation {cached[0].tolist()} "
          f"(matches recomputing the prefix: {same})")
    return same and losses[-1] < losses[0]
