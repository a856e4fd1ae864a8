"""The graph IR: builder, shape/dtype inference, text dumps, compiled-graph cache."""
import json

import pytest
import torch

import mps_ext
from mps_ext.graph import Graph

f32 = torch.float32
u8 = torch.uint8
c64 = torch.complex64


def test_placeholders_and_broadcast_inference():
    g = Graph()
    a = g.placeholder([-1, 1, 4], f32, "a")
    b = g.placeholder([3, 1], f32, "b")
    assert g.type(g.add(a, b)) == ("float32", [-1, 3, 4])
    assert g.type(g.less(a, b)) == ("bool", [-1, 3, 4])


@pytest.mark.parametrize(
    "build, message",
    [
        (lambda g, x: g.add(x, g.placeholder([5], f32)), "cannot be broadcast"),
        (lambda g, x: g.add(x, g.placeholder([4], torch.float16)), "dtypes differ"),
        (lambda g, x: g.reshape(x, shape=[3, 3]), "cannot reshape"),
        (lambda g, x: g.reshape(x, shape=[-1, -1]), "at most one dimension"),
        (lambda g, x: g.transpose(x, perm=[0, 0]), "repeats an axis"),
        (lambda g, x: g.transpose(x, perm=[0]), "does not match rank"),
        (lambda g, x: g.softmax(x, axis=2), "out of range"),
        (lambda g, x: g.matmul(x, g.placeholder([3, 2], f32)), "inner dimensions differ"),
        (lambda g, x: g.select(x, x, x), "predicate must be bool"),
        (lambda g, x: g.logical_not(x), "expects a bool tensor"),
        (lambda g, x: g.slice(x, starts=[0], ends=[1], strides=[1]), "one entry per dimension"),
        (lambda g, x: g.concat(x, g.placeholder([2, 5], f32), axis=0), "differ outside axis"),
        (lambda g, x: g.assign(x, x), "must be a variable"),
        (lambda g, x: g.apply("no_such_op", [x]), "unknown node kind"),
        # dequantize(q, scale, zero_point, dtype)
        (lambda g, x: g.dequantize(x, x, x, dtype=f32), "q must be uint8, int8 or int32"),
        (lambda g, x: g.dequantize(g.placeholder([2, 4], u8), g.placeholder([], f32), g.placeholder([], u8), dtype=torch.int32), "output dtype must be floating"),
        (lambda g, x: g.dequantize(g.placeholder([2, 4], u8), g.placeholder([], torch.float16), g.placeholder([], u8), dtype=f32), "scale dtype float16 must be the output dtype"),
        (lambda g, x: g.dequantize(g.placeholder([2, 4], u8), g.placeholder([], f32), g.placeholder([], torch.int8), dtype=f32), "zero_point dtype int8 must be q's"),
        (lambda g, x: g.dequantize(g.placeholder([2, 4], u8), g.placeholder([4, 1], f32), g.placeholder([], u8), dtype=f32), "scale shape \\[4,1\\] does not broadcast"),
        (lambda g, x: g.dequantize(g.placeholder([2, 1], u8), g.placeholder([2, 3], f32), g.placeholder([], u8), dtype=f32), "does not broadcast into q's shape"),
        (lambda g, x: g.dequantize(g.placeholder([2, 4], u8), g.placeholder([], f32), g.placeholder([3], u8), dtype=f32), "zero_point shape \\[3\\] does not broadcast"),
        # dequantize_lut(indices, lut)
        (lambda g, x: g.dequantize_lut(g.placeholder([2, 4], torch.int8), g.placeholder([16], f32)),
         "indices must be uint8"),
        (lambda g, x: g.dequantize_lut(g.placeholder([2, 4], u8), g.placeholder([16], torch.int32)),
         "lut must be floating"),
        (lambda g, x: g.dequantize_lut(g.placeholder([2, 4], u8), g.placeholder([], f32)), "rank >= 1"),
        (lambda g, x: g.dequantize_lut(g.placeholder([2, 4], u8), g.placeholder([3, 16], f32)),
         "lut groups \\[3\\] .* do not broadcast"),
        (lambda g, x: g.dequantize_lut(g.placeholder([4], u8), g.placeholder([2, 4, 16], f32)), "do not broadcast"),
        # scaled_dot_product_attention(q, k, v, mask, scale)
        (lambda g, x: g.scaled_dot_product_attention(x, x, x), "must have rank 4"),
        (lambda g, x: g.scaled_dot_product_attention(g.placeholder([1, 2, 3, 8], f32), g.placeholder([1, 2, 5, 4], f32), g.placeholder([1, 2, 5, 4], f32)),
         "last \\(embedding\\) dim"),
        (lambda g, x: g.scaled_dot_product_attention(g.placeholder([1, 2, 3, 8], f32), g.placeholder([1, 2, 5, 8], f32), g.placeholder([1, 2, 6, 8], f32)),
         "sequence dim"),
        (lambda g, x: g.scaled_dot_product_attention(g.placeholder([1, 2, 3, 8], f32), g.placeholder([1, 3, 5, 8], f32), g.placeholder([1, 3, 5, 8], f32)),
         "k/v heads must divide"),
        (lambda g, x: g.scaled_dot_product_attention(g.placeholder([1, 4, 3, 8], f32), g.placeholder([1, 2, 5, 8], f32), g.placeholder([1, 1, 5, 8], f32)),
         "k and v differ in their head dim"),
        (lambda g, x: g.scaled_dot_product_attention(g.placeholder([2, 2, 3, 8], f32), g.placeholder([1, 2, 5, 8], f32), g.placeholder([1, 2, 5, 8], f32)),
         "batch dims"),
        (lambda g, x: g.scaled_dot_product_attention(g.placeholder([1, 2, 3, 8], f32), g.placeholder([1, 2, 5, 8], torch.float16), g.placeholder([1, 2, 5, 8], f32)), "dtypes differ"),
        (lambda g, x: g.scaled_dot_product_attention(g.placeholder([1, 2, 3, 8], torch.int32), g.placeholder([1, 2, 5, 8], torch.int32), g.placeholder([1, 2, 5, 8], torch.int32)), "floating-point"),
        (lambda g, x: g.scaled_dot_product_attention(g.placeholder([1, 2, 3, 8], f32), g.placeholder([1, 2, 5, 8], f32), g.placeholder([1, 2, 5, 8], f32), g.placeholder([3, 4], f32)), "mask shape \\[3,4\\] does not broadcast"),
        (lambda g, x: g.scaled_dot_product_attention(g.placeholder([1, 2, 3, 8], f32), g.placeholder([1, 2, 5, 8], f32), g.placeholder([1, 2, 5, 8], f32), g.placeholder([3, 5], torch.bool)), "mask dtype bool must be q's"),
        (lambda g, x: g.scaled_dot_product_attention(g.placeholder([1, 2, 3, -1], f32), g.placeholder([1, 2, 5, -1], f32), g.placeholder([1, 2, 5, 8], f32)),
         "pass a scale"),
        # fft / rfft / irfft
        (lambda g, x: g.fft(x, axes=[1]), "expects a complex64 tensor"),
        (lambda g, x: g.fft(g.placeholder([4, 8], c64), axes=[]), "at least one axis"),
        (lambda g, x: g.fft(g.placeholder([4, 8], c64), axes=[1, -1]), "repeat an axis"),
        (lambda g, x: g.fft(g.placeholder([4, 8], c64), axes=[2]), "out of range"),
        (lambda g, x: g.fft(g.placeholder([2, 2, 2, 2, 2], c64), axes=[0]), "not among the last 4 dimensions"),
        (lambda g, x: g.fft(g.placeholder([4, 8], c64), axes=[1], norm="unitary"), "norm must be"),
        (lambda g, x: g.rfft(g.placeholder([4, 8], c64), axes=[1]), "expects a float32 tensor"),
        (lambda g, x: g.rfft(x, axes=[1], norm="none"), "norm must be"),
        (lambda g, x: g.irfft(x, axes=[1], last_dim_size=14), "expects a complex64 tensor"),
        (lambda g, x: g.irfft(g.placeholder([4, 8], c64), axes=[1], last_dim_size=16), "needs 9 Hermitean inputs there, got 8"),
        (lambda g, x: g.irfft(g.placeholder([4, 8], c64), axes=[1], last_dim_size=0), "last_dim_size must be positive"),
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
    assert g.type(g.transpose(x, perm=[2, 0, 1])) == ("float32", [4, 2, 6])
    assert g.type(g.reshape(x, shape=[-1, 4])) == ("float32", [-1, 4])
    assert g.type(g.slice(x, starts=[0, 1, 0], ends=[2, 6, 4], strides=[1, 2, 3])) == ("float32", [2, 3, 2])
    assert g.type(g.concat(x, x, axis=1)) == ("float32", [2, 12, 4])
    assert g.type(g.reduce_sum(x, axes=[1])) == ("float32", [2, 1, 4])
    assert g.type(g.matmul(x, g.placeholder([4, 5], f32))) == ("float32", [2, 6, 5])
    assert g.type(g.cast(x, dtype=torch.float16)) == ("float16", [2, 6, 4])
    assert g.type(g.broadcast(g.placeholder([1, 4], f32), shape=[3, 1, 4])) == ("float32", [3, 1, 4])


def test_json_and_dot_dumps():
    g = Graph()
    x = g.placeholder([-1], f32, "x")
    g.output(g.exp(x))
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
    assert mps_ext.graph.cache_info()[:3] == (0, 0, 0)
    x = torch.randn(10)
    torch.ops.mps_ext.softshrink(x, 0.5)
    torch.ops.mps_ext.softshrink(torch.randn(99), 0.1)  # same rank and dtype: hit
    assert mps_ext.graph.cache_info()[:3] == (1, 1, 1)
    torch.ops.mps_ext.softshrink(torch.randn(3, 3), 0.5)  # new rank: miss
    torch.ops.mps_ext.softshrink(x.double(), 0.5)  # new dtype: miss
    info = mps_ext.graph.cache_info()
    assert (info.hits, info.misses, info.size) == (1, 3, 3)


def test_dump_shows_the_graph_an_op_runs():
    doc = mps_ext.graph.dump(torch.ops.mps_ext.softshrink, torch.randn(4, 4), 0.5)
    assert doc["key"] == "reference:softshrink|float32[-1,-1]|float32[]"
    ops = [n["op"] for n in doc["nodes"]]
    assert ops == ["placeholder", "placeholder", "kernel"]
    kernel = doc["nodes"][2]
    assert kernel["attrs"]["kernel"] == "softshrink"
    sub = [n["op"] for n in kernel["decomposition"]["nodes"]]
    assert sub == ["placeholder", "placeholder", "negative", "minimum", "maximum", "subtract"]
    assert [n["name"] for n in doc["nodes"][:2]] == ["self", "lambd"]
    dot = mps_ext.graph.dump(torch.ops.mps_ext.softshrink, torch.randn(4), format="dot")
    assert "minimum" in dot and "n2_3 -> n2_4" in dot and "cluster_n2_" in dot
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
    y = g.reduce_sum(g.matmul(x, w), axes=[0])
    g.output(y)
    concrete = g.with_input_shapes([[3, 4], [4, 7]])
    assert concrete.type(y) == ("float32", [1, 7])
    assert json.loads(concrete.to_json())["outputs"] == [y]
    with pytest.raises(ValueError, match="the graph expects \\[-1,4\\]"):
        g.with_input_shapes([[3, 5], [4, 7]])
    with pytest.raises(ValueError, match="has 2 inputs, got 1"):
        g.with_input_shapes([[3, 4]])


def test_shape_inference_of_quantization_attention_and_fft_nodes():
    g = Graph()
    q = g.placeholder([8, 6], u8, "q")
    per_tensor = g.dequantize(q, g.placeholder([], f32), g.placeholder([], u8), dtype=f32)
    assert g.type(per_tensor) == ("float32", [8, 6]) and g.attrs(per_tensor) == {"dtype": "float32"}
    per_channel = g.dequantize(q, g.placeholder([8, 1], torch.float16), g.placeholder([8, 1], torch.float16), dtype=torch.float16)
    assert g.type(per_channel) == ("float16", [8, 6])
    grouped = g.placeholder([8, 3, 2], torch.int8)
    assert g.type(g.dequantize(grouped, g.placeholder([8, 3, 1], f32), g.placeholder([8, 3, 1], torch.int8), dtype=f32)) == ("float32", [8, 3, 2])
    assert g.type(g.dequantize(g.placeholder([-1, 6], torch.int32), g.placeholder([1, 6], f32), g.placeholder([], torch.int32), dtype=f32)) == ("float32", [-1, 6])

    idx = g.placeholder([8, 6], u8, "idx")
    assert g.type(g.dequantize_lut(idx, g.placeholder([16], torch.float16))) == ("float16", [8, 6])
    assert g.type(g.dequantize_lut(idx, g.placeholder([8, 1, 16], f32))) == ("float32", [8, 6])
    assert g.type(g.dequantize_lut(idx, g.placeholder([6, 4], f32))) == ("float32", [8, 6])

    qq = g.placeholder([2, 4, 5, 16], f32)
    k = g.placeholder([2, 4, 7, 16], f32)
    v = g.placeholder([2, 4, 7, 24], f32)
    a = g.scaled_dot_product_attention(qq, k, v)
    assert g.type(a) == ("float32", [2, 4, 5, 24])
    assert g.attrs(a) == {"scale": 0.25, "has_mask": 0, "is_causal": 0}
    m = g.scaled_dot_product_attention(qq, k, v, g.placeholder([5, 7], f32), scale=0.5)
    assert g.attrs(m) == {"scale": 0.5, "has_mask": 1, "is_causal": 0}

    x = g.placeholder([3, 10, 15], c64)
    f = g.fft(x, axes=[-1, 1], inverse=True, norm="ortho")
    assert g.type(f) == ("complex64", [3, 10, 15])
    # FFT nodes carry the MPSGraphFFTDescriptor fields they lower to
    assert g.attrs(f) == {"axes": [2, 1], "inverse": 1, "norm": "ortho", "scaling": "unitary"}
    r = g.placeholder([3, 10, 15], f32)
    assert g.type(g.rfft(r, axes=[1, 2])) == ("complex64", [3, 10, 8])
    assert g.type(g.rfft(r, axes=[2, 1])) == ("complex64", [3, 6, 15])  # the last listed axis is halved
    h = g.placeholder([3, 10, 8], c64)
    assert g.type(g.irfft(h, axes=[1, 2], last_dim_size=15)) == ("float32", [3, 10, 15])
    assert g.type(g.irfft(h, axes=[1, 2], last_dim_size=14, norm="forward")) == ("float32", [3, 10, 14])
    assert g.type(g.irfft(g.placeholder([3, -1], c64), axes=[1], last_dim_size=9)) == ("float32", [3, 9])
    assert g.attrs(g.irfft(h, axes=[2], last_dim_size=15)) == {"axes": [2], "norm": "backward", "last_dim_size": 15, "inverse": 1,
                                            "scaling": "size", "round_to_odd": 1}
    assert g.attrs(g.rfft(r, axes=[2], norm="forward")) == {"axes": [2], "norm": "forward", "inverse": 0, "scaling": "size"}
    assert g.type(g.rfft(g.placeholder([4, 6], torch.float64), axes=[1])) == ("complex128", [4, 4])
    assert g.type(g.irfft(g.placeholder([4, 4], torch.complex128), axes=[1], last_dim_size=7)) == ("float64", [4, 7])


def test_with_input_shapes_rebuilds_the_new_nodes():
    g = Graph()
    q = g.placeholder([-1, -1], u8, "q")
    s = g.placeholder([-1, 1], torch.float16, "s")
    z = g.placeholder([-1, 1], u8, "z")
    lut = g.placeholder([-1, 1, 16], f32, "lut")
    qq = g.placeholder([-1, 2, -1, 8], f32, "qq")
    kv = g.placeholder([-1, 2, -1, 8], f32, "kv")
    mask = g.placeholder([-1, -1], f32, "mask")
    x = g.placeholder([-1, -1], c64, "x")
    r = g.placeholder([-1, -1], f32, "r")
    outs = [g.dequantize(q, s, z, dtype=torch.float16), g.dequantize_lut(q, lut),
            g.scaled_dot_product_attention(qq, kv, kv, mask, scale=0.3),
            g.fft(x, axes=[0, 1], inverse=True, norm="forward"), g.rfft(r, axes=[1]), g.irfft(x, axes=[1], last_dim_size=13, norm="ortho")]
    for o in outs:
        g.output(o)
    c = g.with_input_shapes([[4, 6], [4, 1], [4, 1], [4, 1, 16], [3, 2, 5, 8], [3, 2, 9, 8], [5, 9], [2, 7],
                             [2, 12]])
    assert [c.type(o) for o in outs] == [
        ("float16", [4, 6]), ("float32", [4, 6]), ("float32", [3, 2, 5, 8]), ("complex64", [2, 7]),
        ("complex64", [2, 7]), ("float32", [2, 13])]
    assert [c.attrs(o) for o in outs] == [g.attrs(o) for o in outs]
    with pytest.raises(ValueError, match="needs 7 Hermitean inputs there, got 8"):
        g.with_input_shapes([[4, 6], [4, 1], [4, 1], [4, 1, 16], [3, 2, 5, 8], [3, 2, 9, 8], [5, 9], [2, 8],
                             [2, 12]])
    doc = json.loads(g.to_json())
    assert doc["nodes"][outs[0]]["attrs"] == {"dtype": "float16"}
    assert doc["nodes"][outs[5]]["attrs"] == {"axes": [1], "last_dim_size": 13, "norm": "ortho", "inverse": 1,
                                              "round_to_odd": 1, "scaling": "unitary"}


def test_every_node_kind_has_a_spec_and_a_reference_evaluation():
    assert mps_ext._C._incomplete_node_kinds() == []


@pytest.mark.parametrize(
    "kind, inputs, message",
    [("add", 1, "add: takes 2 inputs, got 1"), ("select", 2, "select: takes 3 inputs, got 2"),
     ("concat", 0, "concat: takes 1 or more inputs, got 0"),
     ("scaled_dot_product_attention", 5, "takes 3 to 4 inputs, got 5"),
     ("placeholder", 0, "made by Graph::placeholder/variable"), ("kernel", 1, "made by Graph::kernel")],
)
def test_apply_checks_the_kinds_arity(kind, inputs, message):
    g = Graph()
    x = g.placeholder([2], f32, "x")
    with pytest.raises(ValueError, match=message):
        g.apply(kind, [x] * inputs)


def test_missing_attr_and_unknown_attribute_errors():
    g = Graph()
    x = g.placeholder([2, 3], f32, "x")
    with pytest.raises(ValueError, match="transpose node has no attribute 'perm'"):
        g.transpose(x)
    with pytest.raises(AttributeError, match="no attribute or node kind 'transpos'"):
        g.transpos(x, perm=[1, 0])
    with pytest.raises(TypeError, match="attr 'perm'"):
        g.transpose(x, perm=object())


def test_with_input_shapes_reinfers_every_kind_through_its_spec():
    # Attrs the specs normalise (negative axes, default scale, FFT descriptor
    # fields) are stable under re-inference, and sizes flow through.
    g = Graph()
    x = g.placeholder([-1, 2, -1, 8], f32, "x")
    a = g.scaled_dot_product_attention(x, x, x, is_causal=True)
    s = g.reduce_sum(g.softmax(a, axis=-1), axes=[-1])
    r = g.rfft(g.transpose(x, perm=[0, 1, 3, 2]), axes=[-1], norm="ortho")
    g.output(s)
    g.output(r)
    c = g.with_input_shapes([[3, 2, 5, 8]])
    assert c.type(s) == ("float32", [3, 2, 5, 1])
    assert c.type(r) == ("complex64", [3, 2, 8, 3])
    assert c.attrs(a) == g.attrs(a) and g.attrs(a)["scale"] == pytest.approx(8 ** -0.5)
    assert c.attrs(r) == g.attrs(r) == {"axes": [3], "norm": "ortho", "inverse": 0, "scaling": "unitary"}
