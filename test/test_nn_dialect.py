"""The nn dialect: Python construction, shape inference, verifier messages, syntax round trips."""

from __future__ import annotations

import io
import re

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from xdsl.dialects.builtin import ModuleOp, f64
from xdsl.ir import Block
from xdsl.printer import Printer
from xdsl.utils.exceptions import VerifyException

from ncc.diagnostics import NccError
from ncc.dialects import nn
from ncc.dialects.nn import DYN, tensor_type as T
from ncc.ir import parse_module, print_module


def values(*types):
    """Fresh SSA values of the given types (block arguments)."""
    return Block(arg_types=list(types)).args


def shape(v) -> tuple:
    s = (v.results[0] if hasattr(v, "results") else v).type.get_shape()
    return tuple(None if d == DYN else d for d in s)


# ---------------------------------------------------------------------------
# Shape inference through the Python API


small_shape = st.lists(st.integers(1, 5), min_size=0, max_size=4)


def test_fused_errors():
    x, w, b, bad = values(T((5, 3)), T((3, 4)), T((4,)), T((5,)))
    assert shape(nn.FusedMatmulOp(x, w, b, "tanh")) == (5, 4)
    with pytest.raises(VerifyException, match=r"unknown activation 'swish' \(known: identity, relu"):
        nn.FusedMatmulOp(x, w, b, "swish")
    with pytest.raises(VerifyException, match=r"bias tensor<5xf32> does not broadcast to the matmul result shape \[5, 4\]"):
        nn.FusedMatmulOp(x, w, bad, "relu")
    img, k, cb, cbad = values(T((1, 3, 8, 8)), T((4, 3, 3, 3)), T((4,)), T((3,)))
    op = nn.FusedConvOp(img, k, cb, "relu", pads=[1, 1, 1, 1])
    assert shape(op) == (1, 4, 8, 8) and op.params.activation == "relu"
    with pytest.raises(VerifyException, match=r"bias \(one per output channel\) must have shape \[4\], got tensor<3xf32>"):
        nn.FusedConvOp(img, k, cbad, "relu")
    with pytest.raises(VerifyException, match="unknown activation 'swish'"):
        nn.FusedConvOp(img, k, cb, "swish")


def test_given_result_type_is_checked():
    x, y = values(T((2, 3)), T((3,)))
    op = nn.AddOp.create(operands=[x, y], result_types=[T((3, 3))])
    with pytest.raises(VerifyException, match=r"result type tensor<3x3xf32> does not match the inferred type tensor<2x3xf32>"):
        op.verify()
    nn.AddOp.create(operands=[x, y], result_types=[T((None, 3))]).verify()  # '?' is compatible
    op = nn.ReluOp.create(operands=[x], result_types=[T((2, 3), f64)])
    with pytest.raises(VerifyException, match="does not match the inferred type"):
        op.verify()


# ---------------------------------------------------------------------------
# Constants and weights


# ---------------------------------------------------------------------------
# Text: every op, print -> parse -> print is a fixed point

EVERY_OP = """
nn.weight @w : tensor<3x2xf32> = dense<[[0.1, -0.2], [1.0e-05, 3.5], [0x7FC00000, 0xFF800000]]>
nn.weight @b : tensor<2xf32> = dense<0.5>
nn.weight @p : tensor<2xf32>
nn.weight @e : tensor<2x2xf32> = dense_resource<__elided__>
nn.weight @idx : tensor<2xi64> = dense<[2, -1]>
nn.weight @d : tensor<2xf64> = dense<[0.1, 3.141592653589793]>
nn.weight @st : tensor<1xi32> = dense<[1]>
nn.weight @bl : tensor<1xi32> = dense<[0]>
nn.weight @ln : tensor<16xi8> = dense<0>
nn.weight @cp : tensor<3xi32> = dense<[0, 1, 2]>
nn.weight @ri : tensor<2xi32> = dense<[0, 2]>
nn.weight @sv : tensor<16xf32> = dense<0.0>
nn.weight @cv : tensor<2xf32> = dense<[1.0, 2.0]>
func.func @main(%x: tensor<?x3xf32>, %img: tensor<1x3x8x8xf32>, %k: tensor<4x3x3x3xf32>, %s: tensor<4xf32>, %v: tensor<3xf32>) -> tensor<?x2xf32> {
  %w = nn.weight_ref @w : tensor<3x2xf32>
  %b = nn.weight_ref @b : tensor<2xf32>
  %i = nn.weight_ref @idx : tensor<2xi64>
  %y = nn.matmul %x, %w : tensor<?x3xf32>, tensor<3x2xf32> -> tensor<?x2xf32>
  %fm = nn.fused_matmul %x, %w, %b activation leaky_relu : tensor<?x3xf32>, tensor<3x2xf32>, tensor<2xf32> -> tensor<?x2xf32>
  %fm2 = nn.fused_matmul %x, %w : tensor<?x3xf32>, tensor<3x2xf32> -> tensor<?x2xf32>
  %wp = nn.pad %w pads [0, 0, 0, 30] : tensor<3x2xf32> -> tensor<3x32xf32>
  %wr = nn.reshape %wp : tensor<3x32xf32> -> tensor<3x1x32xf32>
  %wt = nn.transpose %wr perm [1, 0, 2] : tensor<3x1x32xf32> -> tensor<1x3x32xf32>
  %pm = nn.packed_matmul %x, %wt, %b columns 2 activation relu : tensor<?x3xf32>, tensor<1x3x32xf32>, tensor<2xf32> -> tensor<?x2xf32>
  %sp = nn.sparse_matmul %x, %v rows [0, 1, 2] cols [1, 0, 1] in_features 3 out_features 2 : tensor<?x3xf32>, tensor<3xf32> -> tensor<?x2xf32>
  %st = nn.weight_ref @st : tensor<1xi32>
  %bl = nn.weight_ref @bl : tensor<1xi32>
  %lns = nn.weight_ref @ln : tensor<16xi8>
  %cp = nn.weight_ref @cp : tensor<3xi32>
  %ri = nn.weight_ref @ri : tensor<2xi32>
  %sv = nn.weight_ref @sv : tensor<16xf32>
  %cv = nn.weight_ref @cv : tensor<2xf32>
  %psm = nn.packed_sparse_matmul %x, %sv, %cv, %st, %bl, %lns, %cp, %ri, %b in_features 3 out_features 2 activation relu : tensor<?x3xf32>, tensor<16xf32>, tensor<2xf32>, tensor<1xi32>, tensor<1xi32>, tensor<16xi8>, tensor<3xi32>, tensor<2xi32>, tensor<2xf32> -> tensor<?x2xf32>
  %psc = nn.packed_sparse_conv %img, %sv, %cv, %st, %bl, %lns, %cp, %ri in_features 3 out_features 2 : tensor<1x3x8x8xf32>, tensor<16xf32>, tensor<2xf32>, tensor<1xi32>, tensor<1xi32>, tensor<16xi8>, tensor<3xi32>, tensor<2xi32> -> tensor<1x2x8x8xf32>
  %c = nn.conv %img, %k strides [2, 2] pads [1, 1, 1, 1] : tensor<1x3x8x8xf32>, tensor<4x3x3x3xf32> -> tensor<1x4x4x4xf32>
  %c2 = nn.conv %img, %k dilations [2, 2] group 1 : tensor<1x3x8x8xf32>, tensor<4x3x3x3xf32> -> tensor<1x4x4x4xf32>
  %fc = nn.fused_conv %img, %k, %s activation relu pads [1, 1, 1, 1] : tensor<1x3x8x8xf32>, tensor<4x3x3x3xf32>, tensor<4xf32> -> tensor<1x4x8x8xf32>
  %kr = nn.reshape %k : tensor<4x3x3x3xf32> -> tensor<4x27xf32>
  %kp = nn.pad %kr pads [0, 0, 28, 0] : tensor<4x27xf32> -> tensor<32x27xf32>
  %k3 = nn.reshape %kp : tensor<32x27xf32> -> tensor<1x32x27xf32>
  %kt = nn.transpose %k3 perm [0, 2, 1] : tensor<1x32x27xf32> -> tensor<1x27x32xf32>
  %pcv = nn.packed_conv %img, %kt, %s channels 4 kernel [3, 3] activation relu pads [1, 1, 1, 1] : tensor<1x3x8x8xf32>, tensor<1x27x32xf32>, tensor<4xf32> -> tensor<1x4x8x8xf32>
  %mp = nn.max_pool %c kernel [2, 2] strides [2, 2] : tensor<1x4x4x4xf32> -> tensor<1x4x2x2xf32>
  %ap = nn.avg_pool %c kernel [3, 3] pads [1, 1, 1, 1] count_include_pad : tensor<1x4x4x4xf32>
  %rs = nn.reduce_sum %mp axes [2, 3] keepdims : tensor<1x4x2x2xf32> -> tensor<1x4x1x1xf32>
  %rm = nn.reduce_mean %mp axes [-1] : tensor<1x4x2x2xf32> -> tensor<1x4x2xf32>
  %rx = nn.reduce_max %mp : tensor<1x4x2x2xf32> -> tensor<f32>
  %rn = nn.reduce_min %mp axes [1] : tensor<1x4x2x2xf32> -> tensor<1x2x2xf32>
  %rp = nn.reduce_prod %mp axes [0] {note = "kept"} : tensor<1x4x2x2xf32> -> tensor<4x2x2xf32>
  %sm = nn.softmax %y : tensor<?x2xf32>
  %ls = nn.log_softmax %c axis 1 : tensor<1x4x4x4xf32>
  %bn = nn.batch_norm %c, %s, %s, %s, %s epsilon 1.0e-03 : tensor<1x4x4x4xf32>, tensor<4xf32>, tensor<4xf32>, tensor<4xf32>, tensor<4xf32> -> tensor<1x4x4x4xf32>
  %ln = nn.layer_norm %c, %s, %s : tensor<1x4x4x4xf32>, tensor<4xf32>, tensor<4xf32> -> tensor<1x4x4x4xf32>
  %ln2 = nn.layer_norm %x, %v, %v axis 1 epsilon 1.0e-06 : tensor<?x3xf32>, tensor<3xf32>, tensor<3xf32> -> tensor<?x3xf32>
  %rms = nn.rms_norm %x, %v epsilon 1.0e-06 : tensor<?x3xf32>, tensor<3xf32> -> tensor<?x3xf32>
  %rh = nn.reshape %c : tensor<1x4x4x4xf32> -> tensor<4x16xf32>
  %tr = nn.transpose %rh perm [1, 0] : tensor<4x16xf32> -> tensor<16x4xf32>
  %cc = nn.concat %y, %sm, %fm axis 0 : tensor<?x2xf32>, tensor<?x2xf32>, tensor<?x2xf32> -> tensor<?x2xf32>
  %sl = nn.slice %tr starts [1, -1] ends [9223372036854775807, -5] axes [0, 1] steps [3, -1] : tensor<16x4xf32> -> tensor<5x4xf32>
  %ga = nn.gather %tr, %i axis 1 : tensor<16x4xf32>, tensor<2xi64> -> tensor<16x2xf32>
  %pd = nn.pad %tr pads [1, 0, 1, 0] mode reflect : tensor<16x4xf32> -> tensor<18x4xf32>
  %pc = nn.pad %tr pads [0, 0, 0, 2] value 0xFFF0000000000000 : tensor<16x4xf32> -> tensor<16x6xf32>
  %am = nn.argmax %tr axis 1 keepdims : tensor<16x4xf32> -> tensor<16x1xi64>
  %an = nn.argmin %tr select_last_index : tensor<16x4xf32> -> tensor<4xi64>
  %csum = nn.cumsum %tr axis 0 reverse : tensor<16x4xf32>
  %tu = nn.triu %tr k 1 : tensor<16x4xf32>
  %tl = nn.tril %tr : tensor<16x4xf32>
  %ge = nn.gather_elements %tr, %am axis 1 : tensor<16x4xf32>, tensor<16x1xi64> -> tensor<16x1xf32>
  %se = nn.scatter_elements %tr, %am, %ge axis 1 reduction max : tensor<16x4xf32>, tensor<16x1xi64>, tensor<16x1xf32> -> tensor<16x4xf32>
  %sn = nn.scatter_nd %tr, %am, %tr : tensor<16x4xf32>, tensor<16x1xi64>, tensor<16x4xf32> -> tensor<16x4xf32>
  %ctp = nn.conv_transpose %c, %k strides [2, 2] pads [1, 1, 0, 0] output_padding [1, 0] : tensor<1x4x4x4xf32>, tensor<4x3x3x3xf32> -> tensor<1x3x9x8xf32>
  %mpi = nn.max_pool_indices %c kernel [2, 2] strides [2, 2] column_major : tensor<1x4x4x4xf32> -> tensor<1x4x2x2xi64>
  %cwg = nn.conv_weight_grad %img, %c kernel [3, 3] strides [2, 2] pads [1, 1, 1, 1] : tensor<1x3x8x8xf32>, tensor<1x4x4x4xf32> -> tensor<4x3x3x3xf32>
  %rz = nn.resize %c mode linear scales [1.0, 1.0, 1.5, 0.5] coordinate_transformation_mode tf_crop_and_resize roi [0.0, 0.0, 0.1, 0.2, 1.0, 1.0, 0.9, 1.1] extrapolation_value -1.0 : tensor<1x4x4x4xf32> -> tensor<1x4x6x2xf32>
  %ct = nn.constant dense<[[1.0, 2.0], [3.0, 4.0]]> : tensor<2x2xf32>
  %ci = nn.constant dense<7> : tensor<3xi64>
  %cs = nn.cast %x : tensor<?x3xf32> -> tensor<?x3xf64>
  %bx = nn.broadcast %ct : tensor<2x2xf32> -> tensor<?x2x2xf32>
  %mta = nn.matmul_transpose_a %x, %x : tensor<?x3xf32>, tensor<?x3xf32> -> tensor<3x3xf32>
  %wtt = nn.transpose %w perm [1, 0] : tensor<3x2xf32> -> tensor<2x3xf32>
  %mtb = nn.matmul_transpose_b %x, %wtt : tensor<?x3xf32>, tensor<2x3xf32> -> tensor<?x2xf32>
  %u0 = nn.identity %y : tensor<?x2xf32>
  %u1 = nn.relu %u0 : tensor<?x2xf32>
  %u2 = nn.sigmoid %u1 : tensor<?x2xf32>
  %u3 = nn.tanh %u2 : tensor<?x2xf32>
  %u4 = nn.leaky_relu %u3 : tensor<?x2xf32>
  %u5 = nn.elu %u4 : tensor<?x2xf32>
  %u6 = nn.softplus %u5 : tensor<?x2xf32>
  %u7 = nn.silu %u6 : tensor<?x2xf32>
  %u8 = nn.sin %u7 : tensor<?x2xf32>
  %u9 = nn.gaussian %u8 : tensor<?x2xf32>
  %u10 = nn.abs %u9 : tensor<?x2xf32>
  %u11 = nn.step %u10 : tensor<?x2xf32>
  %u12 = nn.exp %u11 : tensor<?x2xf32>
  %u13 = nn.log %u12 : tensor<?x2xf32>
  %u14 = nn.neg %u13 : tensor<?x2xf32>
  %u15 = nn.sqrt %u14 : tensor<?x2xf32>
  %u16 = nn.reciprocal %u15 : tensor<?x2xf32>
  %u17 = nn.erf %u16 : tensor<?x2xf32>
  %u18 = nn.floor %u17 : tensor<?x2xf32>
  %u19 = nn.ceil %u18 : tensor<?x2xf32>
  %u20 = nn.cos %u19 : tensor<?x2xf32>
  %r6 = nn.relu6 %u20 : tensor<?x2xf32>
  %gl = nn.gelu %r6 : tensor<?x2xf32>
  %gt = nn.gelu_tanh %gl : tensor<?x2xf32>
  %b0 = nn.add %gt, %b : tensor<?x2xf32>, tensor<2xf32> -> tensor<?x2xf32>
  %b1 = nn.sub %b0, %b0 : tensor<?x2xf32>
  %b2 = nn.mul %b1, %b : tensor<?x2xf32>, tensor<2xf32> -> tensor<?x2xf32>
  %b3 = nn.div %b2, %b2 : tensor<?x2xf32>
  %b4 = nn.max %b3, %b3 : tensor<?x2xf32>
  %b5 = nn.min %b4, %b3 : tensor<?x2xf32>
  %b6 = nn.pow %b5, %b : tensor<?x2xf32>, tensor<2xf32> -> tensor<?x2xf32>
  %b7 = nn.mod %b6, %b : tensor<?x2xf32>, tensor<2xf32> -> tensor<?x2xf32>
  %b8 = nn.fmod %ci, %ci : tensor<3xi64>
  %u21 = nn.acos %b7 : tensor<?x2xf32>
  %u22 = nn.asin %u21 : tensor<?x2xf32>
  %u23 = nn.atan %u22 : tensor<?x2xf32>
  %u24 = nn.sinh %u23 : tensor<?x2xf32>
  %u25 = nn.cosh %u24 : tensor<?x2xf32>
  %u26 = nn.asinh %u25 : tensor<?x2xf32>
  %u27 = nn.acosh %u26 : tensor<?x2xf32>
  %u28 = nn.atanh %u27 : tensor<?x2xf32>
  %u29 = nn.round %u28 : tensor<?x2xf32>
  %u30 = nn.sign %u29 : tensor<?x2xf32>
  %q0 = nn.equal %u30, %b : tensor<?x2xf32>, tensor<2xf32> -> tensor<?x2xi1>
  %q1 = nn.less %u30, %u29 : tensor<?x2xf32>, tensor<?x2xf32> -> tensor<?x2xi1>
  %q2 = nn.less_equal %ci, %ci : tensor<3xi64>, tensor<3xi64> -> tensor<3xi1>
  %q3 = nn.greater %u30, %u29 : tensor<?x2xf32>, tensor<?x2xf32> -> tensor<?x2xi1>
  %q4 = nn.greater_equal %u30, %u29 : tensor<?x2xf32>, tensor<?x2xf32> -> tensor<?x2xi1>
  %q5 = nn.is_nan %u30 : tensor<?x2xf32> -> tensor<?x2xi1>
  %q6 = nn.is_inf %u30 detect_negative 0 : tensor<?x2xf32> -> tensor<?x2xi1>
  %l0 = nn.and %q0, %q1 : tensor<?x2xi1>
  %l1 = nn.or %l0, %q3 : tensor<?x2xi1>
  %l2 = nn.xor %l1, %q4 : tensor<?x2xi1>
  %l3 = nn.not %l2 : tensor<?x2xi1>
  %l4 = nn.and %l3, %q5 : tensor<?x2xi1>
  %l5 = nn.or %l4, %q6 : tensor<?x2xi1>
  %bc = nn.constant dense<[true, false]> : tensor<2xi1>
  %l6 = nn.xor %l5, %bc : tensor<?x2xi1>, tensor<2xi1> -> tensor<?x2xi1>
  %sel = nn.select %l6, %u30, %b : tensor<?x2xi1>, tensor<?x2xf32>, tensor<2xf32> -> tensor<?x2xf32>
  %qs = nn.constant dense<0.5> : tensor<f32>
  %qz = nn.constant dense<3> : tensor<ui8>
  %qw = nn.constant dense<1> : tensor<2x2xi8>
  %wz = nn.constant dense<0> : tensor<i8>
  %qpz = nn.constant dense<0> : tensor<i32>
  %qx = nn.quantize %sel, %qs, %qz : tensor<?x2xf32>, tensor<f32>, tensor<ui8> -> tensor<?x2xui8>
  %qm = nn.qmatmul %qx, %qw, %qz, %wz : tensor<?x2xui8>, tensor<2x2xi8>, tensor<ui8>, tensor<i8> -> tensor<?x2xi32>
  %qi = nn.reshape %qx : tensor<?x2xui8> -> tensor<?x2x1x1xui8>
  %qk = nn.constant dense<1> : tensor<2x2x1x1xi8>
  %qc = nn.qconv %qi, %qk, %qz, %wz : tensor<?x2x1x1xui8>, tensor<2x2x1x1xi8>, tensor<ui8>, tensor<i8> -> tensor<?x2x1x1xi32>
  %qr = nn.requantize %qm, %qs, %qz activation relu : tensor<?x2xi32>, tensor<f32>, tensor<ui8> -> tensor<?x2xui8>
  %qd = nn.dequantize %qr, %qs, %qz : tensor<?x2xui8>, tensor<f32>, tensor<ui8> -> tensor<?x2xf32>
  %qp = nn.qpack %qw : tensor<2x2xi8> -> tensor<1x64xi32>
  %qpm = nn.packed_qmatmul %qx, %qp, %qz, %wz depth 2 columns 2 : tensor<?x2xui8>, tensor<1x64xi32>, tensor<ui8>, tensor<i8> -> tensor<?x2xi32>
  %qpd = nn.dequantize %qpm, %qs, %qpz : tensor<?x2xi32>, tensor<f32>, tensor<i32> -> tensor<?x2xf32>
  %qkr = nn.reshape %qk : tensor<2x2x1x1xi8> -> tensor<2x2xi8>
  %qrows = nn.qpack_rows %qkr : tensor<2x2xi8> -> tensor<2x2xi32>
  %qpc = nn.packed_qconv %qi, %qrows, %qz, %wz kernel [1, 1] weight_signed : tensor<?x2x1x1xui8>, tensor<2x2xi32>, tensor<ui8>, tensor<i8> -> tensor<?x2x1x1xi32>
  %qin = nn.reshape %qx : tensor<?x2xui8> -> tensor<?x1x1x2xui8>
  %qpn = nn.packed_qconv_nhwc %qin, %qp, %qz kernel [1, 1] channels 2 : tensor<?x1x1x2xui8>, tensor<1x64xi32>, tensor<ui8> -> tensor<?x1x1x2xi32>
  %qsum = nn.add %qd, %qpd : tensor<?x2xf32>
  %fe = nn.fused_elementwise %qsum, %b : tensor<?x2xf32>, tensor<2xf32> -> tensor<?x2xf32> {
  ^bb0(%fe0: tensor<f32>, %fe1: tensor<f32>):
    %fe2 = nn.constant dense<0.5> : tensor<f32>
    %fe3 = nn.add %fe0, %fe1 : tensor<f32>
    %fe4 = nn.mul %fe3, %fe2 : tensor<f32>
    nn.yield %fe4 : tensor<f32>
  }
  %aq = nn.reshape %fe : tensor<?x2xf32> -> tensor<?x2x1xf32>
  %akt = nn.reshape %fe : tensor<?x2xf32> -> tensor<?x1x2xf32>
  %att = nn.attention %aq, %akt, %aq, %b scale 0.5 : tensor<?x2x1xf32>, tensor<?x1x2xf32>, tensor<?x2x1xf32>, tensor<2xf32> -> tensor<?x2x1xf32>
  %ao = nn.reshape %att : tensor<?x2x1xf32> -> tensor<?x2xf32>
  func.return %ao : tensor<?x2xf32>
}
"""


def test_every_op_round_trips():
    m = parse_module(EVERY_OP)
    text = print_module(m)
    assert print_module(parse_module(text)) == text
    used = {op.name for op in m.walk()}
    assert {op.name for op in nn.NN.operations} <= used  # the text above really uses every op


def test_syntax_details():
    text = print_module(parse_module(EVERY_OP))
    # All-equal types print once; defaults are left out; flags are bare words.
    assert "%b1 = nn.sub %b0, %b0 : tensor<?x2xf32>\n" in text
    assert "nn.conv %img, %k dilations [2, 2] group 1 :" in text  # explicitly given defaults stay
    assert "count_include_pad :" in text and "{note = \"kept\"}" in text
    assert "value 0xFFF0000000000000" in text and "epsilon 0.001" in text
    assert "= dense_resource<__elided__>" in text and "nn.weight @p : tensor<2xf32>\n" in text


def test_generic_format_round_trips():
    m = parse_module(EVERY_OP)
    out = io.StringIO()
    Printer(stream=out, print_generic_format=True).print_op(m)
    generic = out.getvalue()
    assert '"nn.conv"' in generic and "#nn.data<dense<" in generic
    assert print_module(parse_module(generic)) == print_module(m)


def test_elision():
    m = parse_module(EVERY_OP)
    text = print_module(m, elide_weights_if_larger=3)
    assert "nn.weight @w : tensor<3x2xf32> = dense_resource<__elided__>" in text
    assert "nn.weight @b : tensor<2xf32> = dense<0.5>" in text
    assert "@b : tensor<2xf32> = dense_resource<__elided__>" in print_module(m, elide_weights_if_larger=1)
    assert "@b : tensor<2xf32> = dense<0.5>" in print_module(m)
    w = next(op for op in parse_module(text).ops if isinstance(op, nn.WeightOp) and op.sym == "w")
    assert w.data is None and w.elided is not None


def test_parse_errors():
    def err(src, msg):
        with pytest.raises(NccError, match=msg):
            parse_module(src)
    err("nn.weight @w : tensor<2xf32> = dense<[1.0, 2.0, 3.0]>",
        r"<stdin>:1:37: error: literal has shape \[3\] but the type is tensor<2xf32>")
    err("nn.weight @w : tensor<2xf32> = dense<[1.0, ]>", "invalid dense literal")
    err("nn.weight @w : tensor<2xi64> = dense<[1.5, 2]>", "an integer literal may only hold integers")
    err("nn.weight @w : tensor<2xf32> = dense_resource<blob>", "only dense_resource<__elided__> is supported")
    err("nn.weight @w : tensor<?xf32> = dense<[1.0]>", r"a literal needs a static shape, got tensor<\?xf32>")
    body = "func.func @f(%a: tensor<2x8x8xf32>) {{\n  %r = {} \n  func.return\n}}"
    err(body.format("nn.max_pool %a strides [1] : tensor<2x8x8xf32>"), "2:.*expected parameter 'kernel'")
    err(body.format("nn.softmax %a axis 1 axis 2 : tensor<2x8x8xf32>"), "parameter 'axis' is given twice")
    err(body.format("nn.add %a, %a : tensor<2x8x8xf32>, tensor<2x8x8xf32>"), "expected '->' and the result type")
    err(body.format("nn.add %a, %a : tensor<2x8x8xf32> -> tensor<2x8x8xf32>"), "expected 2 operand types, got 1")
    err(body.format("nn.pad %a pads [0, 0, 0, 0, 0, 0] mode reflect value 1.0 : tensor<2x8x8xf32>"),
        "3:3|2:.*a pad value only applies to mode constant")


# ---------------------------------------------------------------------------
# Literals: bit-exact for every float


finite_or_not = st.integers(0, 2**32 - 1).map(lambda b: np.uint32(b).view(np.float32))


@given(st.lists(finite_or_not, min_size=1, max_size=12))
@settings(max_examples=200)
def test_f32_literals_round_trip_bit_exactly(vals):
    data = np.array(vals, dtype=np.float32)
    m = ModuleOp([nn.WeightOp("w", data)])
    text = print_module(m)
    back = parse_module(text).ops.first.data
    assert back.view(np.uint32).tolist() == data.view(np.uint32).tolist()
    assert print_module(parse_module(text)) == text
    assert re.search(r"dense<(\[.*\]|[^\[].*)>", text)


@given(st.lists(st.floats(allow_nan=True, width=64), min_size=1, max_size=6))
def test_f64_literals_round_trip_bit_exactly(vals):
    data = np.array(vals, dtype=np.float64)
    back = parse_module(print_module(ModuleOp([nn.WeightOp("w", data)]))).ops.first.data
    assert back.view(np.uint64).tolist() == data.view(np.uint64).tolist()


def test_literal_special_values_and_shapes():
    data = np.array([[0.0, -0.0, 1e-45, 3.4028235e38], [np.inf, -np.inf, 0.1, 16777217]], np.float32)
    text = print_module(ModuleOp([nn.WeightOp("w", data)]))
    assert "[[0.0, -0.0, 1.0e-45, 3.4028235e+38], [0x7F800000, 0xFF800000, 0.1, 1.6777216e+07]]" in text
    assert "dense<-0.0>" in print_module(ModuleOp([nn.WeightOp("z", np.full((2, 2), -0.0, np.float32))]))
    mixed = np.array([0.0, -0.0], np.float32)  # equal but not bit-identical: no splat
    assert "dense<[0.0, -0.0]>" in print_module(ModuleOp([nn.WeightOp("z", mixed)]))
    scalar = parse_module("nn.weight @s : tensor<f32> = dense<2.5>").ops.first
    assert scalar.data.shape == () and float(scalar.data) == 2.5
    empty = parse_module("nn.weight @s : tensor<2x0xf32> = dense<[[], []]>").ops.first
    assert empty.data.shape == (2, 0)
    splat = parse_module("nn.weight @s : tensor<1000x1000xf32> = dense<0.25>").ops.first
    assert splat.data.shape == (1000, 1000) and splat.data.strides == (0, 0)  # no copy per element
