"""The fusion family: `nn.fused_elementwise`, a chain of elementwise ops as one op
(one loop nest once lowered), and its terminator `nn.yield`.

    %y = nn.fused_elementwise %x, %b : tensor<1x32x512xf32>, tensor<512xf32> -> tensor<1x32x512xf32> {
    ^bb0(%e: tensor<f32>, %c: tensor<f32>):
      %0 = nn.add %e, %c : tensor<f32>
      %1 = nn.tanh %0 : tensor<f32>
      nn.yield %1 : tensor<f32>
    }

The operands broadcast to the result's shape (numpy's rule). The body sees one
element of each operand as a rank-0 tensor (its block arguments, in operand
order), computes with the elementwise ops of `ELEMENTWISE` and rank-0
`nn.constant`s, and yields the result's element. It reads nothing from outside.
`fuse` builds it from chains of elementwise ops; lower-to-loops lowers it to one
loop nest with the intermediate values in registers: no buffer and no pass over
memory per op. `unfused` gives the chain back (autodiff and ONNX export take
that form).
"""

from __future__ import annotations

from typing import Callable

import numpy as np
from xdsl.dialects.builtin import TensorType
from xdsl.ir import Block, Operation, Region, SSAValue
from xdsl.irdl import IRDLOperation, irdl_op_definition, operand_def, region_def, traits_def, var_operand_def
from xdsl.parser import Parser
from xdsl.printer import Printer
from xdsl.traits import IsTerminator
from xdsl.utils.exceptions import VerifyException

from ncc.dialects.nn import elementwise
from ncc.dialects.nn.attention import AttentionOp, decomposed
from ncc.dialects.nn.base import NNOp, broadcast, dims_compatible, fmt_shape, numpy_dtype, shape_of
from ncc.dialects.nn.constants import ConstantOp
from ncc.dialects.nn.normalization import RMSNormOp, rms_norm_decomposed
from ncc.dialects.nn.shape import BroadcastOp

# The ops a fused body may hold besides rank-0 constants: every elementwise op.
ELEMENTWISE: tuple[type, ...] = (*elementwise.UNARY_OPS.values(), *elementwise.BINARY_OPS.values(),
                                 *elementwise.COMPARE_OPS.values(), *elementwise.LOGICAL_OPS.values(),
                                 elementwise.NotOp, elementwise.SelectOp, elementwise.IsNanOp,
                                 elementwise.IsInfOp, elementwise.CastOp)


@irdl_op_definition
class YieldOp(IRDLOperation):
    """The element a fused body computes: `nn.yield %v : tensor<f32>`."""

    name = "nn.yield"
    value = operand_def(TensorType)
    traits = traits_def(IsTerminator())
    assembly_format = "$value attr-dict `:` type($value)"

    def __init__(self, value: SSAValue | Operation):
        super().__init__(operands=[value])


def element_tensor(t: TensorType) -> TensorType:
    """The rank-0 tensor of one element of `t`: a fused body's type for it."""
    return TensorType(t.element_type, [])


@irdl_op_definition
class FusedElementwiseOp(NNOp):
    """A chain of elementwise ops computed element by element in one loop nest;
    see the module's docstring."""

    name = "nn.fused_elementwise"
    inputs = var_operand_def(TensorType)
    body = region_def("single_block")

    def __init__(self, inputs: list[SSAValue], result_type: TensorType, body: Region):
        IRDLOperation.__init__(self, operands=[list(inputs)], result_types=[result_type], regions=[body])

    @classmethod
    def infer(cls, types, p):
        return None  # the result type is given; verify_ checks it

    @property
    def block(self) -> Block:
        return self.body.block

    @property
    def yielded(self) -> SSAValue:
        return self.block.last_op.value  # type: ignore[union-attr]

    def verify_(self) -> None:
        block = self.block
        if len(block.args) != len(self.inputs):
            raise VerifyException(f"the body takes {len(block.args)} elements, but the op has "
                                  f"{len(self.inputs)} operands")
        for i, (arg, x) in enumerate(zip(block.args, self.inputs)):
            if arg.type != element_tensor(x.type):
                raise VerifyException(f"body argument {i} must be {element_tensor(x.type)} (an element of "
                                      f"operand {i}), got {arg.type}")
        if not isinstance(block.last_op, YieldOp):
            raise VerifyException("the body must end with nn.yield")
        inside = set(block.args)
        for op in block.ops:
            if not isinstance(op, (*ELEMENTWISE, ConstantOp, YieldOp)):
                raise VerifyException(f"'{op.name}' is not elementwise: a fused body holds elementwise ops, "
                                      f"rank-0 constants and nn.yield")
            for v in op.operands:
                if v not in inside:
                    raise VerifyException(f"'{op.name}' in the body reads a value from outside it")
            for r in op.results:
                if not isinstance(r.type, TensorType) or shape_of(r.type):
                    raise VerifyException(f"'{op.name}' in the body must compute a rank-0 tensor, got {r.type}")
                inside.add(r)
        res = self.result.type
        if self.yielded.type != element_tensor(res):
            raise VerifyException(f"the body yields {self.yielded.type}, but the result is {res}")
        shape = broadcast([x.type for x in self.inputs])
        out = shape_of(res)
        if len(out) != len(shape) or not all(dims_compatible(a, b) for a, b in zip(out, shape)):
            raise VerifyException(f"the result must have the operands' broadcast shape {fmt_shape(shape)}, "
                                  f"got {res}")

    def print(self, printer: Printer) -> None:
        printer.print_string(" ")
        printer.print_list(self.inputs, printer.print_operand)
        if self.attributes:
            printer.print_op_attributes(self.attributes)
        printer.print_string(" : ")
        printer.print_list([x.type for x in self.inputs], printer.print_attribute)
        printer.print_string(" -> ")
        printer.print_attribute(self.result.type)
        printer.print_string(" ")
        printer.print_region(self.body, print_entry_block_args=True)

    @classmethod
    def parse(cls, parser: Parser) -> "FusedElementwiseOp":
        operands = parser.parse_optional_undelimited_comma_separated_list(
            parser.parse_optional_unresolved_operand, parser.parse_unresolved_operand) or []
        attrs = parser.parse_optional_attr_dict()
        parser.parse_punctuation(":")
        pos = parser.pos
        types = parser.parse_comma_separated_list(parser.Delimiter.NONE, parser.parse_type)
        if len(types) != len(operands):
            parser.raise_error(f"expected {len(operands)} operand types, got {len(types)}", pos, parser.pos)
        parser.parse_punctuation("->")
        res = parser.parse_type()
        values = parser.resolve_operands(operands, types, pos)
        body = parser.parse_region()
        return cls.create(operands=values, result_types=[res], regions=[body], attributes=attrs)


def fused_reference(op: FusedElementwiseOp, *args: np.ndarray) -> np.ndarray:
    """The body's ops run by their own reference rules on the whole (broadcast) operands."""
    env: dict[SSAValue, np.ndarray] = dict(zip(op.block.args, args))
    for inner in op.block.ops:
        if isinstance(inner, YieldOp):
            shape = np.broadcast_shapes(*(np.shape(a) for a in args))
            return np.broadcast_to(env[inner.value], shape)
        if isinstance(inner, ConstantOp):
            value = inner.data
        else:
            value = elementwise.REFERENCE[type(inner)](inner, *(env[v] for v in inner.operands))
        env[inner.results[0]] = np.asarray(value).astype(numpy_dtype(inner.results[0].type.element_type),
                                                         copy=False)
    raise ValueError("the body has no nn.yield")


def unfused(op: FusedElementwiseOp) -> tuple[list[Operation], SSAValue]:
    """The ops computing `op` one elementwise op at a time (on whole tensors, as
    before fusion), and the value that replaces its result."""
    values: dict[SSAValue, SSAValue] = dict(zip(op.block.args, op.inputs))
    new: list[Operation] = []
    for inner in op.block.ops:
        if isinstance(inner, YieldOp):
            break
        operands = [values[v] for v in inner.operands]
        if isinstance(inner, ConstantOp):
            clone = inner.clone()
        elif isinstance(inner, elementwise.CastOp):
            clone = elementwise.CastOp(operands[0], inner.result.type.element_type)
        else:
            types = [v.type for v in operands]
            res = type(inner).infer(types, type(inner)._values(dict(inner.properties), types))
            clone = type(inner).create(operands=operands, result_types=[res], properties=dict(inner.properties))
        new.append(clone)
        values[inner.results[0]] = clone.results[0]
    last = values[op.yielded]
    if last.type != op.result.type:  # the chain does not reach every operand's shape
        new.append(BroadcastOp(last, op.result.type))
        last = new[-1].results[0]
    return new, last


# Ops that stand for several (fuse made them): the ops and the value replacing the result.
DECOMPOSITION: dict[type, Callable[..., tuple[list[Operation], SSAValue]]] = {
    FusedElementwiseOp: unfused, AttentionOp: decomposed, RMSNormOp: rms_norm_decomposed}


def unfuse_all(block: Block) -> None:
    """Every op of `block` that stands for several (nn.fused_elementwise: its
    chain; nn.attention: matmul, scale, bias, softmax, matmul; nn.rms_norm: its
    formula) replaced by the ops it stands for (DECOMPOSITION)."""
    for op in [op for op in block.ops if type(op) in DECOMPOSITION]:
        new, value = DECOMPOSITION[type(op)](op)
        for inner in new:
            block.insert_op_before(inner, op)
        op.result.replace_all_uses_with(value)
        block.erase_op(op)


# The reference semantics (numpy) of this family's ops: ncc.reference runs them.
REFERENCE: dict[type, Callable[..., np.ndarray]] = {FusedElementwiseOp: fused_reference}
