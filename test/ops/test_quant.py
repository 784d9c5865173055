"""The quant op family at every level (quantize, dequantize, qmatmul, qconv,
requantize), one section per level; each uses the harness of the level's
test file named in its title. onnxruntime is the independent reference."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper
from xdsl.dialects.builtin import f32, i32
from xdsl.utils.exceptions import VerifyException

import ncc
from ncc.dialects import nn
from ncc.dialects.nn import tensor_type
from ncc.dialects.nn.conv import conv_reference

import test_lower_to_loops as loop_tests
import test_nn_dialect as dialect_tests
import test_onnx_export as export_tests
from onnx_models import onnx_model
from c_kernels import C_VARIANTS, kernel_variant

rng = np.random.default_rng(7)
U8, I8 = nn.ui8, nn.i8


def T(shape, elt=f32):
    return tensor_type(shape, elt)


# ---------------------------------------------------------------------------
# The nn dialect: shape rules, verifiers, printing (test_nn_dialect.py)


def test_dialect_shapes():
    x, s, s4, zu, zi4, zi = dialect_tests.values(T((2, 4, 3)), T(()), T((4,)), T((), U8), T((4,), I8), T((), I8))
    q = nn.QuantizeOp(x, s, zu)
    assert q.result.type == T((2, 4, 3), U8)
    assert nn.QuantizeOp(x, s4, zi4, axis=1).result.type == T((2, 4, 3), I8)
    assert nn.DequantizeOp(q, s, zu).result.type == T((2, 4, 3))
    a, w, az, wz, wz5 = dialect_tests.values(T((None, 8), U8), T((8, 5), I8), T((), U8), T((), I8), T((5,), I8))
    assert nn.QmatmulOp(a, w, az, wz).result.type == T((None, 5), i32)
    assert nn.QmatmulOp(a, w, az, wz5).result.type == T((None, 5), i32)
    img, k, k0, k6 = dialect_tests.values(T((1, 4, 7, 7), U8), T((6, 2, 3, 3), I8), T((), I8), T((6,), I8))
    acc = nn.QconvOp(img, k, az, k6, group=2, pads=[1, 1, 1, 1])
    assert acc.result.type == T((1, 6, 7, 7), i32)
    per, = dialect_tests.values(T((6,)))
    assert nn.RequantizeOp(acc, per, zi, axis=1, activation="relu").result.type == T((1, 6, 7, 7), I8)


@pytest.mark.parametrize("make,message", [
    (lambda x, s, zu, s3, acc: nn.QuantizeOp(acc, s, zu), r"input must have element type f32"),
    (lambda x, s, zu, s3, acc: nn.QuantizeOp(x, s, s), r"zero point must have element type i8 or ui8"),
    (lambda x, s, zu, s3, acc: nn.QuantizeOp(x, s3, zu), r"zero point tensor<ui8> must have the shape of the scale"),
    (lambda x, s, zu, s3, acc: nn.DequantizeOp(x, s, zu), r"input must have element type i8 or ui8 or i32"),
    (lambda x, s, zu, s3, acc: nn.RequantizeOp(acc, s, zu, activation="tanh"),
     r"activation must be one of identity, relu"),
    (lambda x, s, zu, s3, acc: nn.RequantizeOp(x, s, zu), r"input must have element type i32"),
    (lambda x, s, zu, s3, acc: nn.AddOp(nn.QuantizeOp(x, s, zu), nn.QuantizeOp(x, s, zu)),
     r"operands must not be ui8: ui8 tensors hold quantized data"),
])
def test_dialect_errors(make, message):
    x, s, zu, s3, acc = dialect_tests.values(T((2, 4)), T(()), T((), U8), T((3,)), T((2, 4), i32))
    with pytest.raises(VerifyException, match=message):
        make(x, s, zu, s3, acc)


def test_packed_epilogue_shapes_and_errors():
    """A packed contraction's requantize epilogue: bias [C] i32, scale per tensor or per channel,
    zero point per tensor; the result has the zero point's type; errors name the operand."""
    img, rows, zi, b6, s6, s, bad = dialect_tests.values(T((None, 4, 7, 7), U8), T((6, 10), i32), T((), I8),
                                                         T((6,), i32), T((6,)), T(()), T((5,), i32))
    zu, = dialect_tests.values(T((), U8))
    conv = dict(kernel=[3, 3], weight_signed=True, pads=[1, 1, 1, 1])
    assert nn.PackedQconvOp(img, rows, zu, zi, **conv).result.type == T((None, 6, 7, 7), i32)
    y = nn.PackedQconvOp(img, rows, zu, zi, **conv, epilogue=[b6, s6, zu], activation="relu")
    assert y.result.type == T((None, 6, 7, 7), U8)
    assert nn.PackedQconvOp(img, rows, zu, zi, **conv, epilogue=[b6, s, zi]).result.type == T((None, 6, 7, 7), I8)
    for epilogue, activation, message in [
            ([], "relu", r"activation 'relu' needs the requantize epilogue"),
            ([b6, s6], "identity", r"expected 3 operands, got 2"),
            ([bad, s6, zi], "identity", r"the bias must be tensor<6xi32> \(one per output channel\)"),
            ([b6, s6, b6], "identity", r"zero point must have element type i8 or ui8"),
            ([b6, s6, zi], "gelu", r"activation must be one of identity, relu")]:
        with pytest.raises(VerifyException, match=message):
            nn.PackedQconvOp(img, rows, zu, zi, **conv, epilogue=epilogue, activation=activation)


def test_packed_qconv_nhwc_shapes_and_errors():
    """The channels-last int8 convolution: [N, spatial..., C] -> [N, out..., M], its weight as nn.qpack's
    panels of the [kernel x C, M] matrix, the epilogue along the last axis; errors name what is wrong."""
    img, zu, zi, b6, s6 = dialect_tests.values(T((None, 7, 5, 4), U8), T((), U8), T((), I8), T((6,), i32), T((6,)))
    panels, = dialect_tests.values(T(tuple(nn.QpackOp.packed_shape(36, 6)), i32))
    conv = dict(kernel=[3, 3], channels=6)
    assert nn.PackedQconvNhwcOp(img, panels, zu, **conv, pads=[1, 1, 1, 1]).result.type == T((None, 7, 5, 6), i32)
    y = nn.PackedQconvNhwcOp(img, panels, zu, **conv, strides=[2, 1], epilogue=[b6, s6, zi], activation="relu")
    assert y.result.type == T((None, 3, 3, 6), I8)
    assert nn.PackedQconvNhwcOp(img, panels, zu, **conv).weight_type() == T((6, 4, 3, 3), I8)
    wrong, three_d = dialect_tests.values(T(tuple(nn.QpackOp.packed_shape(40, 6)), i32), T((None, 7, 5), U8))
    for make, message in [
            (lambda: nn.PackedQconvNhwcOp(img, wrong, zu, **conv),
             r"panels must be tensor<1x320xi32> \(nn.qpack of the 36"),
            (lambda: nn.PackedQconvNhwcOp(img, panels, zu, **conv, group=2), r"has group 1, got 2"),
            (lambda: nn.PackedQconvNhwcOp(img, panels, zi, **conv), r"input zero point .* the input's element type"),
            (lambda: nn.PackedQconvNhwcOp(three_d, panels, zu, **conv), r"input \(N, 2 spatial dimensions, C\)"),
            (lambda: nn.PackedQconvNhwcOp(img, panels, zu, **conv, epilogue=[b6, s6]), r"expected 3 operands")]:
        with pytest.raises(VerifyException, match=message):
            make()


def test_dialect_per_axis_sizes_and_zero_points():
    x, s3, z3 = dialect_tests.values(T((2, 4)), T((3,)), T((3,), I8))
    with pytest.raises(VerifyException, match=r"a per-axis scale needs one value per index of axis 1 \(4\)"):
        nn.QuantizeOp(x, s3, z3)
    a, w, az3, wz = dialect_tests.values(T((2, 8), U8), T((8, 5), I8), T((3,), U8), T((4,), I8))
    with pytest.raises(VerifyException, match=r"lhs zero point \(one per tensor\) must have rank 0"):
        nn.QmatmulOp(a, w, az3, wz)


def test_text_round_trip():
    text = """func.func @f(%x: tensor<?x4xf32>, %s: tensor<4xf32>, %z: tensor<4xi8>, %w: tensor<4x3xi8>) -> tensor<?x3xui8> {
  %q = nn.quantize %x, %s, %z : tensor<?x4xf32>, tensor<4xf32>, tensor<4xi8> -> tensor<?x4xi8>
  %zw = nn.constant dense<0> : tensor<i8>
  %zq = nn.constant dense<3> : tensor<i8>
  %acc = nn.qmatmul %q, %w, %zq, %zw : tensor<?x4xi8>, tensor<4x3xi8>, tensor<i8>, tensor<i8> -> tensor<?x3xi32>
  %m = nn.constant dense<0.5> : tensor<f32>
  %zy = nn.constant dense<128> : tensor<ui8>
  %y = nn.requantize %acc, %m, %zy activation relu : tensor<?x3xi32>, tensor<f32>, tensor<ui8> -> tensor<?x3xui8>
  func.return %y : tensor<?x3xui8>
}"""
    module = ncc.parse_module(text)
    again = ncc.parse_module(ncc.print_module(module))
    assert ncc.print_module(again) == ncc.print_module(module)
    assert "activation relu : tensor<?x3xi32>, tensor<f32>, tensor<ui8> -> tensor<?x3xui8>" in ncc.print_module(module)


# ---------------------------------------------------------------------------
# ONNX import, native code and the reference, against onnxruntime


def _ort(model, feeds):
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(None, feeds)


def _agrees(model, feeds):
    """ncc's native code and its reference give onnxruntime's outputs bit for bit."""
    want = _ort(model, feeds)
    module = ncc.import_onnx(model)
    ref = ncc.reference.run(module, list(feeds.values()))
    got = ncc.compile(model, cache=False)(*feeds.values())
    got = list(got) if isinstance(got, tuple) else [got]
    for w, r, g in zip(want, ref, got):
        assert w.dtype == r.dtype == g.dtype and w.shape == r.shape == g.shape
        np.testing.assert_array_equal(r, w)
        np.testing.assert_array_equal(g, w)
    return module


def _qdq_model(axis, per_axis, zero_type, shape=(3, 4, 5)):
    n = shape[axis] if per_axis else None
    dtype = np.uint8 if zero_type == TensorProto.UINT8 else np.int8
    scale = (rng.uniform(0.05, 0.3, n) if per_axis else np.float32(0.25)).astype(np.float32)
    zero = rng.integers(np.iinfo(dtype).min // 2, np.iinfo(dtype).max // 2, n if per_axis else ()).astype(dtype)
    return onnx_model([helper.make_node("QuantizeLinear", ["x", "s", "z"], ["q"], axis=axis),
                       helper.make_node("DequantizeLinear", ["q", "s", "z"], ["y"], axis=axis)],
                      {"x": (TensorProto.FLOAT, shape)}, {"q": zero_type, "y": TensorProto.FLOAT},
                      {"s": scale, "z": zero}, opset=19)


@pytest.mark.parametrize("axis,per_axis,zero_type", [
    (1, False, TensorProto.UINT8), (1, False, TensorProto.INT8), (1, True, TensorProto.INT8),
    (2, True, TensorProto.UINT8), (0, True, TensorProto.UINT8), (-1, True, TensorProto.INT8)])
def test_quantize_dequantize(axis, per_axis, zero_type):
    x = (rng.standard_normal((3, 4, 5)) * 40).astype(np.float32)  # some saturate
    x.reshape(-1)[:6] = [0.125, 0.375, -0.125, -0.375, 0.625, np.float32(1e30)]  # ties at scale 0.25
    _agrees(_qdq_model(axis, per_axis, zero_type), {"x": x})


def test_quantize_without_zero_point_is_uint8():
    m = onnx_model([helper.make_node("QuantizeLinear", ["x", "s"], ["y"])], {"x": (TensorProto.FLOAT, [2, 3])},
                   {"y": TensorProto.UINT8}, {"s": np.float32(0.1)}, opset=19)
    _agrees(m, {"x": np.array([[-1, 0, 0.05], [0.15, 25.5, 30]], np.float32)})


@pytest.mark.parametrize("a_type,shapes,per_column", [
    (TensorProto.UINT8, ((7, 33), (33, 9)), False), (TensorProto.INT8, ((7, 33), (33, 9)), True),
    (TensorProto.UINT8, ((2, 3, 16), (2, 16, 5)), False), (TensorProto.INT8, ((4, 3, 16), (16, 5)), True)])
def test_qlinear_matmul_and_matmul_integer(a_type, shapes, per_column):
    a_dtype = np.uint8 if a_type == TensorProto.UINT8 else np.int8
    info = np.iinfo(a_dtype)
    a = rng.integers(info.min, info.max + 1, shapes[0]).astype(a_dtype)
    w = rng.integers(-128, 128, shapes[1]).astype(np.int8)
    n = shapes[1][-1]
    wz = rng.integers(-3, 4, n if per_column else ()).astype(np.int8)
    ws = (rng.uniform(0.002, 0.02, n) if per_column else np.float32(0.01)).astype(np.float32)
    inits = {"w": w, "as": np.float32(0.02), "az": np.array(info.min + 100, a_dtype), "ws": ws, "wz": wz,
             "ys": np.float32(0.7), "yz": np.array(info.min + 120, a_dtype)}
    nodes = [helper.make_node("MatMulInteger", ["a", "w", "az", "wz"], ["acc"])]
    outs = {"acc": TensorProto.INT32}
    if not per_column:  # QLinearMatMul's b scale is per tensor or per column; onnxruntime's kernel: per tensor
        nodes.append(helper.make_node("QLinearMatMul", ["a", "as", "az", "w", "ws", "wz", "ys", "yz"], ["y"]))
        outs["y"] = a_type
    _agrees(onnx_model(nodes, {"a": (a_type, shapes[0])}, outs, inits, opset=19), {"a": a})


@pytest.mark.parametrize("conv", [dict(), dict(pads=[1, 1, 1, 1], strides=[2, 1], group=2),
                                  dict(dilations=[2, 2], pads=[2, 1, 0, 3]), dict(group=4)])
@pytest.mark.parametrize("x_type", [TensorProto.UINT8, TensorProto.INT8])
def test_qlinear_conv_and_conv_integer(conv, x_type):
    x_dtype = np.uint8 if x_type == TensorProto.UINT8 else np.int8
    info = np.iinfo(x_dtype)
    group = conv.get("group", 1)
    x = rng.integers(info.min, info.max + 1, (2, 4, 9, 8)).astype(x_dtype)
    w = rng.integers(-128, 128, (8, 4 // group, 3, 3)).astype(np.int8)
    inits = {"w": w, "xs": np.float32(0.02), "xz": np.array(info.min + 110, x_dtype),
             "ws": rng.uniform(0.002, 0.02, 8).astype(np.float32), "wz": np.zeros(8, np.int8),
             "ys": np.float32(0.35), "yz": np.array(info.min + 100, x_dtype),
             "b": rng.integers(-20000, 20000, 8).astype(np.int32)}
    nodes = [helper.make_node("QLinearConv", ["x", "xs", "xz", "w", "ws", "wz", "ys", "yz", "b"], ["y"], **conv),
             helper.make_node("ConvInteger", ["x", "w", "xz"], ["acc"], **conv)]
    _agrees(onnx_model(nodes, {"x": (x_type, [2, 4, 9, 8])}, {"y": x_type, "acc": TensorProto.INT32}, inits,
                       opset=19), {"x": x})


@pytest.mark.parametrize("lo,hi", [(-3.0, 5.0), (0.5, 7.0), (-9.0, -2.0), (0.0, 0.0)])
def test_dynamic_quantize_linear(lo, hi):
    x = rng.uniform(lo, hi, (6, 7)).astype(np.float32)
    m = onnx_model([helper.make_node("DynamicQuantizeLinear", ["x"], ["y", "s", "z"])],
                   {"x": (TensorProto.FLOAT, [6, 7])},
                   {"y": TensorProto.UINT8, "s": TensorProto.FLOAT, "z": TensorProto.UINT8}, opset=19)
    _agrees(m, {"x": x})


def test_dequantize_keeps_a_weight_int8():
    """A DequantizeLinear of an initializer stays an op on the int8 weight (not
    folded into floats at import): 4x smaller, and what the integer kernels read."""
    w = rng.integers(-128, 128, (4, 3)).astype(np.int8)
    m = onnx_model([helper.make_node("DequantizeLinear", ["w", "s"], ["wf"]),
                    helper.make_node("MatMul", ["x", "wf"], ["y"])], {"x": (TensorProto.FLOAT, [2, 4])},
                   inits={"w": w, "s": np.float32(0.5)}, opset=19)
    x = rng.standard_normal((2, 4)).astype(np.float32)
    np.testing.assert_allclose(ncc.compile(m, cache=False)(x), x @ (w * np.float32(0.5)), rtol=1e-6)
    text = ncc.print_module(ncc.import_onnx(m))
    assert "nn.dequantize" in text and "tensor<4x3xi8>" in text


@pytest.mark.parametrize("node,inits,message", [
    (helper.make_node("QuantizeLinear", ["x", "s", "z"], ["y"], axis=1, block_size=2),
     {"s": np.ones((3, 2), np.float32), "z": np.zeros((3, 2), np.uint8)}, "blocked quantization"),
    (helper.make_node("QuantizeLinear", ["x", "s", "z"], ["y"]),
     {"s": np.float16(1.0), "z": np.uint8(0)}, r"the scale must be float32, got tensor<f16>"),
    (helper.make_node("MatMulInteger", ["xq", "w", "az"], ["y"]),
     {"w": np.ones((4, 2), np.int8), "az": np.array([1, 2, 3], np.int8), "xq": np.ones((3, 4), np.int8)},
     r"the a zero point must be one per tensor, got tensor<3xi8>"),
])
def test_import_errors(node, inits, message):
    m = onnx_model([node], {"x": (TensorProto.FLOAT, [3, 4])}, {"y": TensorProto.UINT8}, inits, opset=21)
    with pytest.raises(ncc.NccError, match=message):
        ncc.import_onnx(m)


# ---------------------------------------------------------------------------
# Lowering: interpreted and native against the reference (test_lower_to_loops.py)


def test_lowering_every_op():
    s4 = np.array([0.1, 0.2, 0.05, 0.3], np.float32)

    def make(e, x, w):
        q = e(nn.QuantizeOp(x, e(nn.ConstantOp(s4)), e(nn.ConstantOp(np.array([3, -2, 0, 1], np.int8)))))
        acc = e(nn.QmatmulOp(q, w, e(nn.ConstantOp(np.int8(3))), e(nn.ConstantOp(np.array([0, 1, -1], np.int8)))))
        y = e(nn.RequantizeOp(acc, e(nn.ConstantOp(np.float32(0.02))), e(nn.ConstantOp(np.uint8(100))),
                              activation="relu"))
        d = e(nn.DequantizeOp(y, e(nn.ConstantOp(np.float32(0.5))), e(nn.ConstantOp(np.uint8(100)))))
        img = e(nn.ReshapeOp(q, [-1, 1, 2, 2]))
        k = e(nn.ConstantOp(rng.integers(-128, 128, (3, 1, 2, 1)).astype(np.int8)))
        c = e(nn.QconvOp(img, k, e(nn.ConstantOp(np.int8(-1))), e(nn.ConstantOp(np.int8(2))), pads=[1, 0, 0, 1]))
        return y, d, c

    module = loop_tests.build([T((None, 4)), T((4, 3), I8)], make)
    x = (rng.standard_normal((5, 4)) * 8).astype(np.float32)
    loop_tests.check(module, [x, rng.integers(-128, 128, (4, 3)).astype(np.int8)])


def test_lowering_of_the_packed_epilogue():
    """packed_qconv (groups, padding, relu, uint8 out, scale per channel) and packed_qmatmul
    (int8 out, scale per tensor) with their requantize epilogue: interpreted and native
    (the GEMM's tile requantizes) give the reference's bits."""
    w = rng.integers(-128, 128, (6, 2, 3, 2)).astype(np.int8)
    wm = rng.integers(-128, 128, (5, 7)).astype(np.int8)

    def make(e, x, a):
        c = lambda v: e(nn.ConstantOp(np.asarray(v)))
        y = e(nn.PackedQconvOp(x, c(nn.pack_rows(w.reshape(6, -1))), c(np.uint8(120)), c(np.int8(0)), [3, 2],
                               True, pads=[1, 0, 1, 1], group=2,
                               epilogue=[c(rng.integers(-3000, 3000, 6).astype(np.int32)),
                                         c(rng.uniform(0.001, 0.004, 6).astype(np.float32)), c(np.uint8(90))],
                               activation="relu"))
        z = e(nn.PackedQmatmulOp(a, c(nn.pack_quads(wm)), c(np.int8(-5)), c(np.int8(0)), 5, 7,
                                 epilogue=[c(rng.integers(-3000, 3000, 7).astype(np.int32)), c(np.float32(0.003)),
                                           c(np.int8(-10))]))
        return y, z

    module = loop_tests.build([T((None, 4, 5, 4), U8), T((None, 5), I8)], make)
    x = rng.integers(0, 256, (3, 4, 5, 4)).astype(np.uint8)
    a = rng.integers(-128, 128, (3, 5)).astype(np.int8)  # the batch is shared
    loop_tests.check(module, [x, a])
    y, z = ncc.reference.run(module, [x, a])
    assert y.dtype == np.uint8 and z.dtype == np.int8 and len(np.unique(y)) > 10 and len(np.unique(z)) > 10


@pytest.mark.parametrize("signed, shape, m, kernel, strides, pads, dilations, epilogue", [
    (True, (2, 8, 8, 3), 5, [3, 3], [1, 1], [1, 1, 1, 1], [1, 1], False),  # K = 27: rows padded to whole quads
    (False, (1, 9, 7, 16), 33, [3, 3], [2, 2], [1, 0, 1, 1], [1, 1], True),  # strided, uneven padding, 33 channels
    (True, (3, 6, 6, 32), 64, [1, 1], [1, 1], [0, 0, 0, 0], [1, 1], True),  # 1x1: the image's rows themselves
    (False, (1, 5, 11, 8), 16, [2, 3], [1, 2], [0, 2, 1, 0], [1, 1], False),  # past MR rows, rectangular kernel
    (True, (2, 9, 10, 4), 7, [2, 3], [1, 1], [1, 2, 0, 1], [2, 3], True),  # dilated: taps apart in a row
    (False, (2, 19, 6), 9, [5], [2], [2, 1], [1], False),  # 1-D
])
def test_lowering_of_the_channels_last_qconv(signed, shape, m, kernel, strides, pads, dilations, epilogue):
    """packed_qconv_nhwc, interpreted and native (the image's rows read in place by the int8 GEMM),
    against its reference, which is qconv's on the transposed image and weight."""
    dtype = np.int8 if signed else np.uint8
    c = shape[-1]
    w = rng.integers(-128, 128, (m, c, *kernel)).astype(np.int8)
    x_zero = dtype(rng.integers(-20, 20) if signed else rng.integers(100, 150))

    def make(e, x):
        k = lambda v: e(nn.ConstantOp(np.asarray(v)))
        tail = [k(rng.integers(-3000, 3000, m).astype(np.int32)), k(rng.uniform(0.5, 2, m).astype(np.float32) / 4000),
                k(np.int8(3))] if epilogue else []
        return e(nn.PackedQconvNhwcOp(x, k(nn.pack_quads(nn.nhwc_weight(w))), k(x_zero), kernel, m, strides=strides,
                                      pads=pads, dilations=dilations, epilogue=tail,
                                      activation="relu" if epilogue else "identity"))

    module = loop_tests.build([T((None, *shape[1:]), I8 if signed else U8)], make)
    x = (rng.integers(-128, 128, shape) if signed else rng.integers(0, 256, shape)).astype(dtype)
    loop_tests.check(module, [x])
    got, = ncc.reference.run(module, [x])
    acc = conv_reference(np.moveaxis(x, -1, 1).astype(np.int64) - int(x_zero), w.astype(np.int64), strides, pads,
                         dilations, 1)
    if not epilogue:
        np.testing.assert_array_equal(got, np.moveaxis(acc, 1, -1))
    assert len(np.unique(got)) > 10


@pytest.mark.parametrize("dtype", [np.int8, np.uint8])
def test_channels_last_pass_keeps_the_results(dtype):
    """channels-last on a chain conv, relu, padded max pool, conv (stride 2), flatten -- and a conv it
    leaves (weight zero point 1), two transposes that do not undo each other: one transpose in and one
    out of the chain, the same bits as the module without it, natively on 1 and 2 threads."""
    elt = I8 if dtype == np.int8 else U8
    lo, hi = (-128, 128) if dtype == np.int8 else (0, 256)
    w1 = rng.integers(-128, 128, (8, 3, 3, 3)).astype(np.int8)
    w2 = rng.integers(-128, 128, (16, 8, 3, 3)).astype(np.int8)

    def make(e, x):
        k = lambda v: e(nn.ConstantOp(np.asarray(v)))
        zx, zw = k(dtype(lo + 100)), k(np.int8(0))
        acc = e(nn.QconvOp(x, k(w1), zx, zw, pads=[1, 1, 1, 1]))
        y = e(nn.RequantizeOp(e(nn.BINARY_OPS["add"](acc, k(rng.integers(-900, 900, (8, 1, 1)).astype(np.int32)))),
                              k(rng.uniform(1, 2, 8).astype(np.float32) / 3000), zx, axis=1, activation="relu"))
        pooled = e(nn.MaxPoolOp(y, [3, 3], strides=[2, 2], pads=[1, 0, 1, 1]))
        acc2 = e(nn.QconvOp(pooled, k(w2), zx, zw, strides=[2, 1], pads=[0, 1, 1, 1]))
        kept = e(nn.QconvOp(x, k(w1), zx, k(np.int8(1))))
        twice = e(nn.TransposeOp(e(nn.TransposeOp(x, [0, 2, 3, 1])), [0, 2, 3, 1]))  # not undone: kept
        return e(nn.ReshapeOp(acc2, [-1, 16 * 2 * 5])), kept, twice

    module = loop_tests.build([T((None, 3, 9, 10), elt)], make)
    passed = module.clone()
    ncc.run_passes(passed, "pack-weights,channels-last")
    names = [op.name for op in passed.walk()]
    assert names.count("nn.packed_qconv_nhwc") == 2 and names.count("nn.packed_qconv") == 1
    from ncc.passes.pack_weights import weight_only
    assert sum(isinstance(op, nn.TransposeOp) and not weight_only(op.input) for op in passed.walk()) == 4
    x = rng.integers(lo, hi, (3, 3, 9, 10)).astype(dtype)
    want = ncc.reference.run(module, [x])
    for got in (ncc.reference.run(passed, [x]), ncc.compile(module.clone(), cache=False, threads=1)(x),
                ncc.compile(module.clone(), cache=False, threads=2)(x)):
        for g, w in zip(got, want):
            np.testing.assert_array_equal(g, w)
    assert len(np.unique(want[0])) > 10


# ---------------------------------------------------------------------------
# ONNX export, run by onnxruntime (test_onnx_export.py)


def test_export_every_op():
    def make(e, x, w):
        q = e(nn.QuantizeOp(x, e(nn.ConstantOp(np.array([0.1, 0.2, 0.05, 0.3], np.float32))),
                            e(nn.ConstantOp(np.array([3, 2, 0, 1], np.uint8))), axis=1))
        acc = e(nn.QmatmulOp(q, w, e(nn.ConstantOp(np.uint8(3))), e(nn.ConstantOp(np.int8(0)))))
        y = e(nn.RequantizeOp(acc, e(nn.ConstantOp(np.array([0.02, 0.01, 0.03], np.float32))),
                              e(nn.ConstantOp(np.int8(-10))), axis=1, activation="relu"))
        img = e(nn.ReshapeOp(q, [-1, 1, 2, 2]))
        k = e(nn.ConstantOp(rng.integers(-128, 128, (3, 1, 2, 1)).astype(np.int8)))
        c = e(nn.QconvOp(img, k, e(nn.ConstantOp(np.uint8(1))), e(nn.ConstantOp(np.int8(0))), pads=[1, 0, 0, 1]))
        return e(nn.DequantizeOp(y, e(nn.ConstantOp(np.float32(0.5))), e(nn.ConstantOp(np.int8(-10))))), c

    module = loop_tests.build([T((None, 4)), T((4, 3), I8)], make)
    model = export_tests.check(module, [(rng.standard_normal((5, 4)) * 8).astype(np.float32),
                                        rng.integers(-128, 128, (4, 3)).astype(np.int8)], tol=0)
    ops = export_tests.op_types(model)
    assert {"QuantizeLinear", "DequantizeLinear", "MatMulInteger", "ConvInteger"} <= set(ops)


@pytest.mark.parametrize("src,dst", [(np.float32, np.uint8), (np.uint8, np.float32), (np.uint8, np.int32),
                                     (np.uint8, np.int8), (np.int8, np.uint8), (np.int32, np.uint8),
                                     (np.uint8, np.float64)])
def test_lowered_cast_of_uint8(src, dst):
    """ui8 zero-extends, converts unsigned, and truncates or reinterprets as numpy's astype."""
    x = np.array([[0, 1, 127, 128, 200, 255], [3, 64, 129, 250, 17, 254]], np.float64).astype(src)
    m = loop_tests.build([T((None, 6), nn.element_type_of(src))], lambda e, a: e(nn.CastOp(a, dst)))
    loop_tests.check(m, [x])
    np.testing.assert_array_equal(loop_tests.native(m, [x], "lower-to-loops")[0], x.astype(dst))


# ---------------------------------------------------------------------------
# QDQ models from onnxruntime's quantize_static, run on the integers (fold-qdq)


def small_cnn(path, classes=10):
    """conv-relu-maxpool, conv(stride 2)-relu, flatten, gemm: a float model to quantize."""
    inits = {"w1": rng.standard_normal((8, 3, 3, 3)).astype(np.float32) * 0.3,
             "b1": rng.standard_normal(8).astype(np.float32) * 0.1,
             "w2": rng.standard_normal((16, 8, 3, 3)).astype(np.float32) * 0.2,
             "b2": rng.standard_normal(16).astype(np.float32) * 0.1,
             "wf": rng.standard_normal((classes, 16 * 4 * 4)).astype(np.float32) * 0.1,
             "bf": rng.standard_normal(classes).astype(np.float32)}
    nodes = [helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c1"], ["r1"]),
             helper.make_node("MaxPool", ["r1"], ["p1"], kernel_shape=[2, 2], strides=[2, 2]),
             helper.make_node("Conv", ["p1", "w2", "b2"], ["c2"], pads=[1, 1, 1, 1], strides=[2, 2]),
             helper.make_node("Relu", ["c2"], ["r2"]),
             helper.make_node("Flatten", ["r2"], ["f"]),
             helper.make_node("Gemm", ["f", "wf", "bf"], ["y"], transB=1)]
    m = onnx_model(nodes, {"x": (TensorProto.FLOAT, ["N", 3, 16, 16])}, inits=inits, opset=17)
    import onnx
    onnx.save(m, path)
    return path


@pytest.mark.parametrize("activation_type", ["QInt8", "QUInt8"])
def test_quantize_static_qoperator_model(tmp_path, activation_type):
    """onnxruntime's other format: QLinearConv, MaxPool on int8 data and its com.microsoft.QGemm."""
    quantization = pytest.importorskip("onnxruntime.quantization")
    src = small_cnn(str(tmp_path / "f.onnx"))
    batches = iter([{"x": rng.standard_normal((2, 3, 16, 16)).astype(np.float32)} for _ in range(4)])

    class Reader(quantization.CalibrationDataReader):
        def get_next(self):
            return next(batches, None)

    dst = str(tmp_path / "q.onnx")
    quantization.quantize_static(src, dst, Reader(), quant_format=quantization.QuantFormat.QOperator,
                                 per_channel=True, activation_type=getattr(quantization.QuantType, activation_type),
                                 weight_type=quantization.QuantType.QInt8)
    import onnx
    ops = {n.op_type for n in onnx.load(dst).graph.node}
    assert {"QLinearConv", "MaxPool", "QGemm"} <= ops
    x = rng.standard_normal((3, 3, 16, 16)).astype(np.float32)
    want = _ort(onnx.load(dst), {"x": x})[0]
    np.testing.assert_array_equal(ncc.compile(dst, cache=False)(x), want)
    np.testing.assert_array_equal(ncc.reference.run(ncc.import_onnx(dst), [x])[0], want)


@pytest.mark.parametrize("attrs,y_scale,bias,b_dtype", [
    (dict(), True, True, np.int8), (dict(transA=1, transB=1, alpha=0.5), True, False, np.int8),
    (dict(transB=1), False, True, np.uint8), (dict(alpha=2.0), False, False, np.uint8)])
def test_qgemm_contrib_op(attrs, y_scale, bias, b_dtype):
    """com.microsoft.QGemm against onnxruntime: transposes, alpha, an int32 bias, a
    quantized or float result, per-column b scales and zero points."""
    a = rng.integers(0, 256, (6, 20) if not attrs.get("transA") else (20, 6)).astype(np.uint8)
    info = np.iinfo(b_dtype)
    b = rng.integers(info.min, info.max + 1, (20, 7) if not attrs.get("transB") else (7, 20)).astype(b_dtype)
    inits = {"b": b, "as": np.float32(0.02), "az": np.uint8(100), "bs": rng.uniform(0.005, 0.02, 7).astype(np.float32),
             "bz": np.full(7, 3 if b_dtype == np.int8 else 130, b_dtype), "ys": np.float32(0.4), "yz": np.uint8(90),
             "c": rng.integers(-2000, 2000, 7).astype(np.int32)}
    ins = ["a", "as", "az", "b", "bs", "bz", "c" if bias else "", *(("ys", "yz") if y_scale else ())]
    node = helper.make_node("QGemm", ins, ["y"], domain="com.microsoft", **attrs)
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("a", TensorProto.UINT8, a.shape)],
                              [helper.make_tensor_value_info("y", TensorProto.UINT8 if y_scale else TensorProto.FLOAT,
                                                             None)],
                              [__import__("onnx").numpy_helper.from_array(v, k) for k, v in inits.items()])
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 19), helper.make_opsetid("com.microsoft", 1)])
    m.ir_version = min(m.ir_version, 10)
    want = _ort(m, {"a": a})[0]
    got = ncc.compile(m, cache=False)(a)
    if y_scale:
        np.testing.assert_array_equal(got, want)
    else:
        np.testing.assert_allclose(got, want, rtol=1e-6)


@pytest.mark.parametrize("dtype", [TensorProto.UINT8, TensorProto.INT8])
def test_max_pool_of_int8_data(dtype):
    x = rng.integers(0, 256, (2, 3, 7, 6)).astype(np.uint8)
    x = x if dtype == TensorProto.UINT8 else x.view(np.int8)
    m = onnx_model([helper.make_node("MaxPool", ["x"], ["y"], kernel_shape=[3, 2], strides=[2, 1], pads=[1, 0, 1, 1])],
                   {"x": (dtype, list(x.shape))}, {"y": dtype}, opset=19)
    _agrees(m, {"x": x})


@pytest.mark.parametrize("activation_type", ["QInt8", "QUInt8"])
def test_quantize_static_model_runs_on_integers(tmp_path, activation_type):
    quantization = pytest.importorskip("onnxruntime.quantization")
    src = small_cnn(str(tmp_path / "f.onnx"))
    batches = [{"x": rng.standard_normal((2, 3, 16, 16)).astype(np.float32)} for _ in range(4)]

    class Reader(quantization.CalibrationDataReader):
        def __init__(self):
            self.it = iter(batches)

        def get_next(self):
            return next(self.it, None)

    dst = str(tmp_path / "q.onnx")
    quantization.quantize_static(src, dst, Reader(), quant_format=quantization.QuantFormat.QDQ, per_channel=True,
                                 activation_type=getattr(quantization.QuantType, activation_type),
                                 weight_type=quantization.QuantType.QInt8)
    x = rng.standard_normal((3, 3, 16, 16)).astype(np.float32)
    want = _ort(__import__("onnx").load(dst), {"x": x})[0]
    np.testing.assert_array_equal(ncc.compile(dst, cache=False)(x), want)  # the integer path
    np.testing.assert_array_equal(ncc.reference.run(ncc.import_onnx(dst), [x])[0], want)  # the QDQ form
    module = ncc.import_onnx(dst)
    ncc.run_passes(module, "fold-qdq")
    names = [op.name for op in module.walk()]
    assert names.count("nn.qconv") == 2 and names.count("nn.qmatmul") == 1 and names.count("nn.requantize") == 3
    assert "nn.conv" not in names and "nn.matmul" not in names


# ---------------------------------------------------------------------------
# The int8 GEMM (passes/lowering/qgemm.py): every variant this host can run, against numpy


def _qgemm_caller(variant, team_min_work=None):
    from ncc.passes.lowering import qgemm

    lib, fn = kernel_variant(qgemm, variant, team_min_work)

    def call(a, w, a_zero, b_zero, flags, threads=1, lda=None, ldc=None, epilogue=None, ws=None):
        """C as i32, or with epilogue=(bias, scale, c_zero) and flags REQUANTIZE, int8/uint8 (ws: the workspace)."""
        (m, k), n = a.shape, w.shape[1]
        if flags & qgemm.PACKED_B:  # B as nn.qpack makes it
            w = nn.pack_quads(w)
        lda, ldc = lda or k, ldc or n
        if flags & qgemm.PACKED_A:  # A as nn.qpack_rows makes it (its own row stride)
            a_rows = nn.pack_rows(a)
        else:
            a_rows = np.zeros((m, lda), a.dtype)
            a_rows[:, :k] = a
        c = np.full((m, ldc), 7, np.uint8 if flags & qgemm.C_UNSIGNED else np.int8 if epilogue else np.int32)
        zeros = np.asarray(b_zero, np.int32).reshape(-1)
        ws = np.zeros(threads * qgemm.workspace_bytes(k) + 64, np.uint8) if ws is None else ws
        at = ws.ctypes.data + (-ws.ctypes.data) % 64
        bias, scale, c_zero = epilogue or (np.zeros(1, np.int32), np.ones(1, np.float32), 0)
        fn(m, n, k, a_rows.ctypes.data, lda, w.ctypes.data, n, c.ctypes.data, ldc, int(a_zero), int(zeros[0]),
           zeros.ctypes.data, flags, at, threads, bias.ctypes.data, scale.ctypes.data, int(c_zero))
        assert (c[:, n:] == 7).all(), "the kernel wrote past its columns"
        return c[:, :n]
    return lib, call


@pytest.mark.parametrize("variant", ["vnni512", "vnni256", "madd512", "madd256", "madd128", *C_VARIANTS])
def test_qgemm_variant_matches_numpy(variant):
    """Every signedness and zero-point form; M, N, K around MR, NR, MC and
    the quad; strided rows; B and A packed ahead (nn.qpack's and
    nn.qpack_rows's layouts); uint8 A read in place (A_IN_PLACE); a team of
    3 gives the same integers."""
    from ncc.passes.lowering import qgemm

    lib, call = _qgemm_caller(variant)  # each library lives as long as its caller is used
    team_lib, team_call = _qgemm_caller(variant, team_min_work=0)
    shapes = [(1, 1, 1), (1, 37, 19), (5, 16, 3), (14, 33, 4), (15, 32, 5), (64, 65, 129), (169, 17, 30),
              (3, 100, 784), (13, 20, 9), (7, 33, 40), (26, 31, 17)]  # last rows of 8 + 4 + 1, 4 + 2 + 1, 8 + 4
    for case, (m, n, k) in enumerate(shapes):
        a_signed, b_unsigned, per_column = case % 2 == 1, case % 3 == 1, case % 4 >= 2
        a = rng.integers(-128, 128, (m, k)).astype(np.int8) if a_signed else rng.integers(0, 256, (m, k)).astype(np.uint8)
        w = rng.integers(0, 256, (k, n)).astype(np.uint8) if b_unsigned else rng.integers(-128, 128, (k, n)).astype(np.int8)
        a_zero = int(rng.integers(-128, 128)) if a_signed else int(rng.integers(0, 256))
        lo, hi = (0, 256) if b_unsigned else (-128, 128)
        b_zero = rng.integers(lo, hi, n if per_column else 1)
        flags = ((qgemm.A_SIGNED if a_signed else 0) | (qgemm.B_UNSIGNED if b_unsigned else 0)
                 | (qgemm.B_ZERO_COLUMNS if per_column else 0))
        want = (a.astype(np.int64) - a_zero) @ (w.astype(np.int64) - (b_zero if per_column else b_zero[0]))
        np.testing.assert_array_equal(call(a, w, a_zero, b_zero, flags, lda=k + 3, ldc=n + 2), want,
                                      err_msg=f"{variant} {m}x{n}x{k}")
        np.testing.assert_array_equal(team_call(a, w, a_zero, b_zero, flags, threads=3), want)
        np.testing.assert_array_equal(call(a, w, a_zero, b_zero, flags | qgemm.PACKED_B), want)
        np.testing.assert_array_equal(call(a, w, a_zero, b_zero, flags | qgemm.PACKED_A | qgemm.PACKED_B), want)
        np.testing.assert_array_equal(team_call(a, w, a_zero, b_zero, flags | qgemm.PACKED_A, threads=2), want)
        if not a_signed:  # A_IN_PLACE: uint8 rows read where they are (lda a multiple of 4), int8 B of zero point 0
            signed_w = w.astype(np.int8) if not b_unsigned else (w ^ np.uint8(0x80)).view(np.int8)
            want0 = (a.astype(np.int64) - a_zero) @ signed_w.astype(np.int64)
            lda = 4 * nn.quads(k) + 4 * (case % 2)
            for f in (qgemm.A_IN_PLACE, qgemm.A_IN_PLACE | qgemm.PACKED_B):
                ws = np.full(qgemm.workspace_bytes(k) + 64, 0xAB, np.uint8)
                np.testing.assert_array_equal(call(a, signed_w, a_zero, [0], f, lda=lda, ldc=n + 1, ws=ws), want0,
                                              err_msg=f"{variant} {m}x{n}x{k} in place")
                if variant.startswith("vnni"):  # nothing of A packed: its part of the workspace untouched
                    start = (-ws.ctypes.data) % 64
                    assert (ws[start:start + 4 * nn.quads(k) * qgemm.MC] == 0xAB).all()
            for f in (qgemm.A_IN_PLACE, qgemm.A_IN_PLACE | qgemm.PACKED_B):  # a team: columns, or rows split
                np.testing.assert_array_equal(team_call(a, signed_w, a_zero, [0], f, threads=3, lda=lda), want0)


@pytest.mark.parametrize("variant", ["vnni512", "vnni256", "madd512", "madd256", "madd128", *C_VARIANTS])
def test_qgemm_requantizes_in_the_tile(variant):
    """REQUANTIZE: the tile stored as int8 or uint8, bias and scale by row
    (BY_ROW) or by column, relu or not: the bits of nn.requantize's reference
    (onnxruntime's arithmetic) on acc + bias; a team gives the same bytes."""
    from ncc.passes.lowering import qgemm

    lib, call = _qgemm_caller(variant)
    team_lib, team_call = _qgemm_caller(variant, team_min_work=0)
    for case, (m, n, k) in enumerate([(1, 1, 1), (5, 37, 19), (14, 33, 4), (64, 65, 129), (169, 17, 30)]):
        rng = np.random.default_rng(case)  # cases that round and saturate, whatever ran before
        by_row, unsigned, relu = case % 2 == 0, case % 3 == 1, case % 4 >= 2
        a = rng.integers(-128, 128, (m, k)).astype(np.int8)
        w = rng.integers(-128, 128, (k, n)).astype(np.int8)
        acc = a.astype(np.int64) @ w.astype(np.int64)
        size = m if by_row else n
        bias = rng.integers(-5000, 5000, size).astype(np.int32)
        scale = (rng.uniform(0.5, 2.0, size) / (np.abs(acc).max() + 1) * 200).astype(np.float32)
        c_zero = int(rng.integers(64, 192)) if unsigned else int(rng.integers(-64, 64))
        total = acc + (bias[:, None] if by_row else bias[None, :])
        y = total.astype(np.float32) * (scale[:, None] if by_row else scale[None, :])
        lo, hi = (0, 255) if unsigned else (-128, 127)
        want = np.clip(np.rint(y) + c_zero, max(lo, c_zero) if relu else lo, hi)
        flags = (qgemm.A_SIGNED | qgemm.REQUANTIZE | (qgemm.BY_ROW if by_row else 0)
                 | (qgemm.C_UNSIGNED if unsigned else 0) | (qgemm.RELU if relu else 0))
        for f in (flags, flags | qgemm.PACKED_A | qgemm.PACKED_B):
            got = call(a, w, 0, [0], f, ldc=n + 3, epilogue=(bias, scale, c_zero))
            np.testing.assert_array_equal(got, want, err_msg=f"{variant} {m}x{n}x{k} flags {f}")
        np.testing.assert_array_equal(team_call(a, w, 0, [0], flags, threads=3, epilogue=(bias, scale, c_zero)),
                                      want)
        # the same rows as uint8 read in place (zero point 128), a team splitting them
        in_place = (flags & ~qgemm.A_SIGNED) | qgemm.A_IN_PLACE | qgemm.PACKED_B
        a_u = a.view(np.uint8) ^ np.uint8(0x80)
        np.testing.assert_array_equal(team_call(a_u, w, 128, [0], in_place, threads=3, lda=4 * nn.quads(k),
                                                ldc=n + 3, epilogue=(bias, scale, c_zero)), want)
        assert len(np.unique(want)) > 10 or m * n < 4, "the case exercises the rounding"


def test_qgemm_variant_follows_the_features():
    from ncc.passes.lowering import qgemm

    V = qgemm.Variant.for_features
    assert V({"avx512vnni", "avx512bw", "avx512vl"}).tag == "vnni512"
    assert V({"avxvnni", "avx2"}).tag == "vnni256" and V({"avx2", "fma"}).tag == "madd256"
    assert V({"avx512f", "avx512bw"}).tag == "madd512" and V(set()).tag == "madd128"
    assert [qgemm.variant_for_cpu(c).tag for c in ("znver5", "alderlake", "skylake-avx512", "znver3", "x86-64")] \
        == ["vnni512", "vnni256", "madd512", "madd256", "madd128"]


# ---------------------------------------------------------------------------
# Autodiff: quantize-dequantize as the clipped straight-through estimator (test_autodiff.py)


@pytest.mark.parametrize("per_axis", [False, True])
def test_vjp_straight_through(per_axis):
    """d/dx of dequantize(quantize(x)) * w is w where x is representable, 0 where it
    saturates (torch's fake_quantize's gradient); the weight's gradient is the
    fake-quantized x; native code and the reference agree."""
    from ncc.passes.autodiff import differentiate

    scale = np.array([0.5, 0.25, 0.1], np.float32) if per_axis else np.float32(0.5)
    zero = np.array([10, -5, 0], np.int8) if per_axis else np.int8(10)

    def make(e, x, w):
        q = e(nn.QuantizeOp(x, e(nn.ConstantOp(scale)), e(nn.ConstantOp(zero)), axis=1))
        d = e(nn.DequantizeOp(q, e(nn.ConstantOp(scale)), e(nn.ConstantOp(zero)), axis=1))
        return e(nn.MulOp(d, w))

    module = loop_tests.build([T((4, 3)), T((4, 3))], make, name="f")
    x = np.array([[0.0, 1.0, -3.0], [60.0, 40.0, 20.0], [-70.0, -30.0, -13.0], [58.7, 33.0, 12.6]], np.float32)
    w = rng.standard_normal((4, 3)).astype(np.float32)
    g = rng.standard_normal((4, 3)).astype(np.float32)
    s, z = np.broadcast_to(scale, (4, 3)), np.broadcast_to(zero, (4, 3)).astype(np.float32)
    r = x / s + z
    inside = (r >= -128.5) & (r < 127.5)
    fake = (np.clip(np.rint(r), -128, 127) - z) * s
    vjp = module.clone()
    differentiate(vjp, "f", mode="combined")
    for got in (ncc.reference.run(vjp, [x, w, g], function="f_vjp")[1:],
                ncc.compile(vjp, function="f_vjp", cache=False)(x, w, g)[1:]):
        np.testing.assert_allclose(got[0], np.where(inside, g * w, 0), rtol=1e-6)
        np.testing.assert_allclose(got[1], g * fake, rtol=1e-6)
    torch = pytest.importorskip("torch")
    xt = torch.tensor(x, requires_grad=True)
    if per_axis:
        fq = torch.fake_quantize_per_channel_affine(xt, torch.tensor(scale), torch.tensor(zero, dtype=torch.int32),
                                                    1, -128, 127)
    else:
        fq = torch.fake_quantize_per_tensor_affine(xt, float(scale), int(zero), -128, 127)
    (fq * torch.tensor(w) * torch.tensor(g)).sum().backward()
    np.testing.assert_allclose(np.where(inside, g * w, 0), xt.grad.numpy(), rtol=1e-6)
