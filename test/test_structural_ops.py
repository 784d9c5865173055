"""Structural ops: nn.argmax/argmin, nn.cumsum, nn.gather_elements,
nn.scatter_elements, nn.scatter_nd, nn.triu/tril, nn.conv_transpose,
nn.resize, nn.max_pool_indices and dilated pools, at every level: shape rules
and diagnostics, the reference against independent formulations (naive loops,
onnx's reference evaluator), lowered code (loop interpreter and native)
against the reference, ONNX import against onnxruntime (including the ops
that decompose: Tile, DepthToSpace, SpaceToDepth, EyeLike, Range, OneHot,
Hardmax, LpPool, TensorScatter), and export."""

from __future__ import annotations


import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx_models import onnx_model
from onnx import TensorProto, helper

import ncc
from ncc.diagnostics import NccError
from ncc.onnx import import_onnx


F, D, I64, I32 = TensorProto.FLOAT, TensorProto.DOUBLE, TensorProto.INT64, TensorProto.INT32
rng = np.random.default_rng(11)


def randn(*shape, dtype=np.float32):
    return rng.normal(size=shape).astype(dtype)


def values(*types):
    """SSA values of the given types (block arguments), for builder tests."""
    from xdsl.ir import Block

    return Block(arg_types=list(types)).args


# ---------------------------------------------------------------------------
# Shape rules and verifiers


def test_new_ops_print_and_parse_back():
    text = """
func.func @f(%x: tensor<1x2x4x4xf32>, %i: tensor<1x2x4x4xi64>, %w: tensor<2x3x3x3xf32>) -> tensor<1x2x8x6xf32> {
  %0 = nn.argmax %x axis 1 keepdims select_last_index : tensor<1x2x4x4xf32> -> tensor<1x1x4x4xi64>
  %1 = nn.cumsum %x axis 2 exclusive reverse : tensor<1x2x4x4xf32>
  %2 = nn.gather_elements %x, %i axis -1 : tensor<1x2x4x4xf32>, tensor<1x2x4x4xi64> -> tensor<1x2x4x4xf32>
  %3 = nn.scatter_elements %x, %i, %1 axis 3 reduction add : tensor<1x2x4x4xf32>, tensor<1x2x4x4xi64>, tensor<1x2x4x4xf32> -> tensor<1x2x4x4xf32>
  %4 = nn.triu %x k -1 : tensor<1x2x4x4xf32>
  %5 = nn.conv_transpose %x, %w strides [2, 2] pads [1, 1, 1, 1] group 2 output_padding [1, 0] : tensor<1x2x4x4xf32>, tensor<2x3x3x3xf32> -> tensor<1x6x8x7xf32>
  %6 = nn.resize %x mode cubic scales [1.0, 1.0, 2.0, 1.5] coordinate_transformation_mode align_corners cubic_coeff_a -0.5 exclude_outside : tensor<1x2x4x4xf32> -> tensor<1x2x8x6xf32>
  func.return %6 : tensor<1x2x8x6xf32>
}"""
    module = ncc.parse_module(text)
    printed = ncc.print_module(module)
    for line in text.strip().splitlines()[1:-2]:
        assert line.strip().split(" = ", 1)[1] in printed
    assert ncc.print_module(ncc.parse_module(printed)) == printed


# ---------------------------------------------------------------------------
# The reference against independent formulations


# ---------------------------------------------------------------------------
# Lowered code (loop interpreter and native) against the reference


# ---------------------------------------------------------------------------
# ONNX import against onnxruntime


def check_import(m, feeds, rtol=1e-5, atol=1e-6, native=False, return_outputs=False):
    """The imported model's reference run (and, with native, its compiled run)
    equals onnxruntime's; returns the module (or, with return_outputs, its outputs)."""
    module = import_onnx(m)
    want = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, feeds)
    runs = [ncc.reference.run(module, feeds)]
    if native:
        out = ncc.compile(module, cache=False).run(feeds)
        runs.append(list(out))
    for got in runs:
        assert len(got) == len(want)
        for g, w in zip(got, want):
            assert g.shape == w.shape and g.dtype == w.dtype
            np.testing.assert_allclose(g, w, rtol=rtol, atol=atol)
    return runs[0] if return_outputs else module


def test_import_diagnostics():
    def diag(nodes, inputs, outputs, inits=(), opset=18):
        with pytest.raises(NccError) as e:
            import_onnx(onnx_model(nodes, inputs, outputs, inits, opset))
        return str(e.value)

    msg = diag([helper.make_node("Resize", ["x", "", "s", "z"], ["y"])], {"x": (F, [1, 1, 2, 2])},
               {"y": F}, {"s": np.ones(4, np.float32), "z": np.array([1, 1, 2, 2], np.int64)})
    assert "(Resize): exactly one of scales and sizes must be given" in msg
    msg = diag([helper.make_node("ConvTranspose", ["x", "w"], ["y"], output_shape=[9, 9],
                                 auto_pad="SAME_UPPER")],
               {"x": (F, [1, 1, 3, 3])}, {"y": F}, {"w": randn(1, 1, 3, 3)})
    assert "needs negative begin pads [-2, -2], which are not supported" in msg
    msg = diag([helper.make_node("Tile", ["x", "r"], ["y"])], {"x": (F, [2, 3])}, {"y": F},
               {"r": np.array([2], np.int64)})
    assert "(Tile): repeats [2] must be 2 values >= 0" in msg
    msg = diag([helper.make_node("DepthToSpace", ["x"], ["y"], blocksize=2)], {"x": (F, [1, 6, 2, 2])},
               {"y": F})
    assert "6 channels are not divisible by blocksize^2 = 4" in msg
    msg = diag([helper.make_node("CumSum", ["x", "a"], ["y"])], {"x": (F, [3])}, {"y": F},
               {"a": np.array([0, 1], np.int64)})
    assert "(CumSum): axis must hold one value, got 2" in msg


# ---------------------------------------------------------------------------
# Export


def test_import_export_import_is_stable():
    """A model of every imported structural op exports to a model that onnx
    checks and that imports to the same text."""
    nodes = [helper.make_node("ArgMax", ["x"], ["a"], axis=1, keepdims=0),
             helper.make_node("ConvTranspose", ["x", "w"], ["c"], strides=[2, 2]),
             helper.make_node("Resize", ["c", "", "s"], ["r"], mode="cubic"),
             helper.make_node("CumSum", ["r", "ax"], ["y"])]
    m = onnx_model(nodes, {"x": (F, [1, 2, 3, 3])}, {"a": I64, "y": F},
                   {"w": randn(2, 2, 3, 3), "s": np.array([1, 1, 0.5, 0.5], np.float32),
                    "ax": np.array(2, np.int64)})
    module = check_import(m, {"x": randn(1, 2, 3, 3)}, rtol=1e-4, atol=1e-5)
    exported = ncc.export_onnx(module)
    onnx.checker.check_model(exported, full_check=True)
    assert ncc.print_module(import_onnx(exported)) == ncc.print_module(module)
