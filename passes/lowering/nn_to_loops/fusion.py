"""Lowering of the fusion family: nn.fused_elementwise as one loop nest, its body's
ops composed per element (each op's `scalar_fn`), the intermediate values in
registers."""

from __future__ import annotations

from typing import Callable

from xdsl.ir import Operation, SSAValue

from ncc.dialects import nn
from ncc.passes.lowering.nn_to_loops.builder import Buf, Builder
from ncc.passes.lowering.nn_to_loops.elementwise import map_elementwise, scalar_fn


def lower_fused_elementwise(b: Builder, op, out: Buf, ins: list[Buf]) -> None:
    block = op.block

    def fn(*xs: SSAValue) -> SSAValue:
        env = dict(zip(block.args, xs))
        for inner in block.ops:
            if isinstance(inner, nn.YieldOp):
                return env[inner.value]
            if isinstance(inner, nn.ConstantOp):
                env[inner.result] = b.const(inner.data.item(), inner.result.type.element_type)
            else:
                env[inner.results[0]] = scalar_fn(b, inner)(*(env[v] for v in inner.operands))
        raise AssertionError("verified: the body ends with nn.yield")

    map_elementwise(b, out, ins, fn)


LOWER: dict[type, Callable[[Builder, Operation, Buf, list[Buf]], None]] = {
    nn.FusedElementwiseOp: lower_fused_elementwise,
}
