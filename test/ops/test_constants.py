"""The constants op family at every level, one section per level;
each uses the harness of the level's test file named in its title."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import helper, numpy_helper
from xdsl.dialects import func
from xdsl.dialects.builtin import FunctionType, ModuleOp, i64
from xdsl.ir import Block, Region
from xdsl.utils.exceptions import VerifyException

import ncc
from ncc import reference
from ncc.diagnostics import NccError
from ncc.dialects import nn
from ncc.dialects.nn import tensor_type as T
from ncc.ir import parse_module, verify_module
from ncc.onnx import import_onnx

import test_onnx_import as import_tests
import test_structural_ops as structural_tests
from onnx_models import onnx_model

# ---------------------------------------------------------------------------
# The nn dialect: shape rules, verifiers, printing (test_nn_dialect.py)


def test_dialect_constant():
    c = nn.ConstantOp(np.array([[1, 2], [3, 4]], np.int64))
    assert c.result.type == T((2, 2), i64) and c.data.dtype == np.int64
    assert nn.ConstantOp(1.5).result.type == T(())
    assert nn.ConstantOp([0.5, 1.0]).result.type == T((2,))          # Python floats: f32
    assert nn.ConstantOp(0.0, T((3, 2))).data.shape == (3, 2)          # a splat
    with pytest.raises(ValueError, match=r"data of shape \[3\] does not fit tensor<2xf32>"):
        nn.ConstantOp([1.0, 2.0, 3.0], T((2,)))


def test_dialect_weight_holds_data_by_reference_read_only():
    data = np.arange(12, dtype=np.float32).reshape(4, 3)
    w = nn.WeightOp("w", data)
    assert w.type == T((4, 3)) and np.shares_memory(w.data, data)
    assert not w.data.flags.writeable
    with pytest.raises(ValueError):
        w.data[0, 0] = 1.0
    ref = nn.WeightRefOp(w)
    assert ref.sym == "w" and ref.result.type == w.type
    p = nn.WeightOp("p", None, T((3,)))
    assert p.data is None
    p.data = np.ones(3)
    assert p.data.dtype == np.float32
    with pytest.raises(ValueError, match="needs data or a type"):
        nn.WeightOp("q", None)
    with pytest.raises(ValueError, match=r"data of shape \[2\] does not fit tensor<3xf32>"):
        nn.WeightOp("q", np.ones(2), T((3,)))


def _main(ops, arg_types, ret):
    block = Block(arg_types=arg_types)
    body = ops(*block.args) if callable(ops) else ops
    block.add_ops([*body, func.ReturnOp(*ret(body))])
    return func.FuncOp("main", FunctionType.from_lists(arg_types, [r.type for r in ret(body)]), Region(block))


def test_dialect_weight_ref_verifier():
    w = nn.WeightOp("w", np.zeros((2, 2), np.float32))

    def check(ref, msg):
        m = ModuleOp([w.clone(), _main([ref], [], lambda b: [b[0].result])])
        with pytest.raises(NccError, match=msg):
            verify_module(m)

    check(nn.WeightRefOp("w", T((2, 3))), r"type tensor<2x3xf32> does not match weight @w of type tensor<2x2xf32>")
    check(nn.WeightRefOp("v", T((2, 2))), "refers to an unknown weight @v")
    check(nn.WeightRefOp("main", T((2, 2))), "@main is a 'func.func', not an nn.weight")
    with pytest.raises(VerifyException, match="not inside a module"):
        nn.WeightRefOp("w", T((2, 2))).verify()


def test_dialect_weight_verifier():
    w = nn.WeightOp.create(properties={"sym_name": nn.StringAttr("w"), "type": T((None, 2))})
    with pytest.raises(VerifyException, match=r"type must be a tensor type with a static shape, got tensor<\?x2xf32>"):
        w.verify()
    w = nn.WeightOp.create(properties={"sym_name": nn.StringAttr("w"), "type": T((3,)),
                                       "value": nn.TensorData(np.zeros(2, np.float32))})
    with pytest.raises(VerifyException, match="data of type tensor<2xf32> does not match the declared type tensor<3xf32>"):
        w.verify()
    w = nn.WeightOp("w", None, nn.TensorType(nn.IntegerType(16), [2]))
    with pytest.raises(VerifyException, match="no numpy dtype for element type i16"):
        w.verify()



# ---------------------------------------------------------------------------
# Reference semantics, against independent implementations (test_reference.py)


def test_reference_constant_and_i64():
    m = parse_module("""
      func.func @main() -> (tensor<2x2xf32>, tensor<3xi64>) {
        %a = nn.constant dense<[[1.0, 2.0], [3.0, 4.0]]> : tensor<2x2xf32>
        %b = nn.constant dense<7> : tensor<3xi64>
        func.return %a, %b : tensor<2x2xf32>, tensor<3xi64>
      }""")
    a, b = reference.run(m, [])
    assert a.tolist() == [[1, 2], [3, 4]] and a.dtype == np.float32
    assert b.tolist() == [7, 7, 7] and b.dtype == np.int64



# ---------------------------------------------------------------------------
# Shape rules, lowering, import and export of the structural ops (test_structural_ops.py)


def test_import_eye_like():
    m = onnx_model([helper.make_node("EyeLike", ["x"], ["y"], k=-1, dtype=structural_tests.D)], {"x": (structural_tests.I32, [3, 5])},
                   {"y": structural_tests.D})
    structural_tests.check_import(m, {"x": np.zeros((3, 5), np.int32)})


def test_import_range_is_folded_or_refused():
    m = onnx_model([helper.make_node("Range", ["s", "l", "d"], ["r"]),
                    helper.make_node("Add", ["x", "r"], ["y"])], {"x": (structural_tests.F, [4])}, {"y": structural_tests.F},
                   {"s": np.array(1.0, np.float32), "l": np.array(3.0, np.float32),
                    "d": np.array(0.5, np.float32)})
    structural_tests.check_import(m, {"x": structural_tests.randn(4)})
    m = onnx_model([helper.make_node("Range", ["s", "l", "d"], ["y"])],
                   {"s": (structural_tests.F, []), "l": (structural_tests.F, [])}, {"y": structural_tests.F}, {"d": np.array(0.5, np.float32)})
    with pytest.raises(NccError, match=r"node 'y' \(Range\): input 0 \('s'\) must be a constant"):
        import_onnx(m)



# ---------------------------------------------------------------------------
# ONNX import, against onnxruntime (test_onnx_import.py)


def test_import_constant_nodes_and_dropout():
    nodes = [helper.make_node("Constant", [], ["c"], value=numpy_helper.from_array(import_tests.x_of(3))),
             helper.make_node("ConstantOfShape", ["s"], ["z"],
                              value=numpy_helper.from_array(np.array([0.5], np.float32))),
             helper.make_node("Add", ["x", "c"], ["t"]),
             helper.make_node("Mul", ["t", "z"], ["d"]),
             helper.make_node("Dropout", ["d"], ["y"])]
    module = import_tests.check(import_tests.model(nodes, {"x": [2, 3]}, inits={"s": np.array([2, 3], np.int64)}),
                   {"x": import_tests.x_of(2, 3)})
    # Constant and ConstantOfShape values are literals (nn.constant), not weights
    assert not [o for o in module.ops if isinstance(o, ncc.dialects.nn.WeightOp)]
    assert len([o for o in module.walk() if isinstance(o, ncc.dialects.nn.ConstantOp)]) == 2


