"""Graph tools: the IR builder, the compiled-graph cache and a text "viewer".

>>> import torch, mps_ext
>>> print(mps_ext.graph.dump(torch.ops.mps_ext.softshrink, torch.randn(4), format="dot"))

Building IR by hand (tests, exploration): every node kind is a method taking
its input node ids and its attrs by name, checked by the kind's spec:

>>> g = mps_ext.graph.Graph()
>>> x = g.placeholder([-1, 8], torch.float32, "x")
>>> g.output(g.reduce_sum(g.abs(x), axes=[1]))
"""
from __future__ import annotations

import contextlib
import functools
import json
from typing import Any, Callable, Iterator, NamedTuple

from . import _C


class Graph(_C.Graph):
    """An IR graph. Sources: ``placeholder(shape, dtype, name)``,
    ``variable(...)``, ``constant(value, dtype, shape)``; every other node kind
    (``mps_ext._C._node_kinds()``) is ``g.<kind>(*inputs, **attrs)``, e.g.
    ``g.fft(x, axes=[-1], norm="ortho")`` -- one generic path (``apply``), so a
    new kind needs no binding. Nodes are ints; ``type(id)`` gives
    ``(dtype name, shape)``, ``attrs(id)`` the normalised attrs."""

    def __getattr__(self, kind: str) -> Callable[..., int]:
        if kind.startswith("_") or kind not in _node_kinds():
            raise AttributeError(f"'Graph' has no attribute or node kind '{kind}'")

        def build(*inputs: int | None, **attrs: Any) -> int:
            # An optional trailing input (an SDPA mask) may be passed as None.
            return self.apply(kind, [i for i in inputs if i is not None], attrs)

        build.__name__ = kind
        return build


@functools.lru_cache(maxsize=None)
def _node_kinds() -> frozenset[str]:
    return frozenset(_C._node_kinds())


class CacheInfo(NamedTuple):
    hits: int
    misses: int
    size: int
    maxsize: int
    evictions: int


def cache_info() -> CacheInfo:
    """Counters of the process-wide compiled-graph cache (LRU).

    ``maxsize`` is ``MPS_EXT_GRAPH_CACHE_SIZE`` (default 1024 graphs); the least
    recently used graph is evicted past it. The mpsgraph runtime keeps, per
    graph, one compiled executable per concrete input-shape set, bounded the
    same way.
    """
    return CacheInfo(*_C._cache_info())


def cache_clear() -> None:
    """Drops every compiled graph and resets the counters."""
    _C._cache_clear()


def capture(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> list[tuple[str, str, str]]:
    """Runs ``fn(*args, **kwargs)`` and returns ``(cache_key, json, dot)`` for every graph it ran."""
    _C._begin_capture()
    try:
        fn(*args, **kwargs)
    finally:
        graphs = _C._end_capture()
    return graphs


def dump(op: Callable[..., Any], *example_inputs: Any, format: str = "json", **kwargs: Any):
    """Returns the graph ``op`` runs on ``example_inputs``.

    ``format="json"`` gives a dict ``{"key", "nodes", "outputs"}``; ``format="dot"``
    gives Graphviz source. The op is run once on the example inputs to find it.
    """
    if format not in ("json", "dot"):
        raise ValueError(f"dump: format must be 'json' or 'dot', but got {format!r}")
    graphs = capture(op, *example_inputs, **kwargs)
    if not graphs:
        raise ValueError(f"dump: {getattr(op, '__name__', op)!r} ran no mps_ext graph on these inputs "
                         "(empty inputs skip the graph)")
    key, as_json, as_dot = graphs[-1]
    if format == "dot":
        return as_dot
    return {"key": key, **json.loads(as_json)}


@contextlib.contextmanager
def decompositions() -> Iterator[None]:
    """Within the block, every kernel node runs its decomposition instead of its
    hand-written kernel (process-wide). The decomposition is the kernel's test
    oracle: ``op(x)`` inside and outside the block must agree.
    """
    previous = _C._use_kernels()
    _C._set_use_kernels(False)
    try:
        yield
    finally:
        _C._set_use_kernels(previous)


def kernels() -> list[str]:
    """Names of the hand-written CPU kernels the reference runtime has."""
    return list(_C._reference_kernels())
