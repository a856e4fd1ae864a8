"""The graph IR: builder, shape/dtype inference, text dumps, compiled-graph cache."""
import json

import pytest
import torch

import mps_ext
from mps_ext._C import Graph

f32 = torch.float32


def test_placeholders_and_broadcast_inference():
    g = Graph()
    a = g.placeholder([-1, 1, 4], f32, "a")
    b = g.placeholder([3, 1], f32, "b")
    assert g.type(g.binary("add", a, b)) == ("float32", [-1, 3, 4])
    assert g.type(g.binary("less", a, b)) == ("bool", [-1, 3, 4])


@pytest.mark.parametrize(
    "build, message",
    [
        (lambda g, x: g.binary("add", x, g.placeholder([5], f32)), "cannot be broadcast"),
        (lambda g, x: g.binary("add", x, g.placeholder([4], torch.float16)), "dtypes differ"),
        (lambda g, x: g.reshape(x, [3, 3]), "cannot reshape"),
        (lambda g, x: g.reshape(x, [-1, -1]), "at most one dimension"),
        (lambda g, x: g.transpose(x, [0, 0]), "repeats an axis"),
        (lambda g, x: g.transpose(x, [0]), "does not match rank"),
        (lambda g, x: g.softmax(x, 2), "out of range"),
        (lambda g, x: g.matmul(x, g.placeholder([3, 2], f32)), "inner dimensions differ"),
        (lambda g, x: g.select(x, x, x), "predicate must be bool"),
        (lambda g, x: g.unary("logical_not", x), "expects a bool tensor"),
        (lambda g, x: g.slice(x, [0], [1], [1]), "one entry per dimension"),
        (lambda g, x: g.concat([x, g.placeholder([2, 5], f32)], 0), "differ outside axis"),
        (lambda g, x: g.assign(x, x), "must be a variable"),
        (lambda g, x: g.unary("no_such_op", x), "unknown node kind"),
    ],
)
def test_bad_graphs_raise_clear_errors(build, message):
    g = Graph()
    x = g.placeholder([2, 4], f32, "x")
    with pytest.raises(ValueError, match=message):
        build(g, x)


def test_shape_inference_of_structural_nodes():
    g = Graph()
    x = g.placeholder([2, 6, 4], f32, "x")
    assert g.type(g.transpose(x, [2, 0, 1])) == ("float32", [4, 2, 6])
    assert g.type(g.reshape(x, [-1, 4])) == ("float32", [-1, 4])
    assert g.type(g.slice(x, [0, 1, 0], [2, 6, 4], [1, 2, 3])) == ("float32", [2, 3, 2])
    assert g.type(g.concat([x, x], 1)) == ("float32", [2, 12, 4])
    assert g.type(g.reduce("reduce_sum", x, [1])) == ("float32", [2, 1, 4])
    assert g.type(g.matmul(x, g.placeholder([4, 5], f32))) == ("float32", [2, 6, 5])
    assert g.type(g.cast(x, torch.float16)) == ("float16", [2, 6, 4])
    assert g.type(g.broadcast(g.placeholder([1, 4], f32), [3, 1, 4])) == ("float32", [3, 1, 4])


def test_json_and_dot_dumps():
    g = Graph()
    x = g.placeholder([-1], f32, "x")
    g.output(g.unary("exp", x))
    doc = json.loads(g.to_json())
    assert [n["op"] for n in doc["nodes"]] == ["placeholder", "exp"]
    assert doc["nodes"][0]["name"] == "x" and doc["nodes"][0]["shape"] == [-1]
    assert doc["outputs"] == [1]
    dot = g.to_dot()
    assert dot.startswith("digraph") and "n0 -> n1" in dot and "out0" in dot


def test_node_kinds_are_listed():
    kinds = mps_ext._C._node_kinds()
    assert len(kinds) == len(set(kinds))
    for k in ["placeholder", "slice_update", "select", "softmax", "matmul", "reduce_sum"]:
        assert k in kinds


def test_cache_counts_hits_and_misses():
    mps_ext.graph.cache_clear()
    assert mps_ext.graph.cache_info() == (0, 0, 0)
    x = torch.randn(10)
    torch.ops.mps_ext.softshrink(x, 0.5)
    torch.ops.mps_ext.softshrink(torch.randn(99), 0.1)  # same rank and dtype: hit
    assert mps_ext.graph.cache_info() == (1, 1, 1)
    torch.ops.mps_ext.softshrink(torch.randn(3, 3), 0.5)  # new rank: miss
    torch.ops.mps_ext.softshrink(x.double(), 0.5)  # new dtype: miss
    info = mps_ext.graph.cache_info()
    assert (info.hits, info.misses, info.size) == (1, 3, 3)


def test_dump_shows_the_graph_an_op_runs():
    doc = mps_ext.graph.dump(torch.ops.mps_ext.softshrink, torch.randn(4, 4), 0.5)
    assert doc["key"] == "reference:softshrink|float32[-1,-1]"
    ops = [n["op"] for n in doc["nodes"]]
    assert ops == ["placeholder", "placeholder", "negative", "minimum", "maximum", "subtract"]
    assert [n["name"] for n in doc["nodes"][:2]] == ["self", "lambd"]
    dot = mps_ext.graph.dump(torch.ops.mps_ext.softshrink, torch.randn(4), format="dot")
    assert "minimum" in dot and "n3 -> n4" in dot
    with pytest.raises(ValueError, match="format"):
        mps_ext.graph.dump(torch.ops.mps_ext.softshrink, torch.randn(4), format="png")
    with pytest.raises(ValueError, match="ran no mps_ext graph"):
        mps_ext.graph.dump(torch.ops.mps_ext.softshrink, torch.randn(0))


def test_runtime_choice():
    assert mps_ext.runtime() in ("reference", "mpsgraph")
    if not mps_ext.has_mpsgraph():
        assert mps_ext.runtime() == "reference"


def test_with_input_shapes_infers_concrete_types():
    # What the mpsgraph runtime uses to size its outputs before encoding.
    g = Graph()
    x = g.placeholder([-1, 4], f32, "x")
    w = g.placeholder([4, -1], f32, "w")
    y = g.reduce("reduce_sum", g.matmul(x, w), [0])
    g.output(y)
    concrete = g.with_input_shapes([[3, 4], [4, 7]])
    assert concrete.type(y) == ("float32", [1, 7])
    assert json.loads(concrete.to_json())["outputs"] == [y]
    with pytest.raises(ValueError, match="the graph expects \\[-1,4\\]"):
        g.with_input_shapes([[3, 5], [4, 7]])
    with pytest.raises(ValueError, match="has 2 inputs, got 1"):
        g.with_input_shapes([[3, 4]])
