"""The reduce family in ONNX, both directions: Reduce* (sum, mean, max, min,
prod; and SumSquare, L1, L2, LogSum, LogSumExp composed of them), ArgMax /
ArgMin, CumSum."""

from __future__ import annotations

from xdsl.ir import SSAValue

from ncc.dialects import nn
from ncc.dialects.nn import shape_of
from ncc.onnx.exporter import to_onnx
from ncc.onnx.importer import Importer, ImportRule, from_onnx

# nn name -> (ONNX op type, the opset from which its axes are an input)
REDUCE = {"reduce_sum": ("ReduceSum", 13), "reduce_mean": ("ReduceMean", 18),
          "reduce_max": ("ReduceMax", 18), "reduce_min": ("ReduceMin", 18),
          "reduce_prod": ("ReduceProd", 18)}
ARG_REDUCE = {"argmax": "ArgMax", "argmin": "ArgMin"}


# ---------------------------------------------------------------------------
# ONNX -> nn

def _reduce(name: str, since: int) -> ImportRule:
    def rule(b, a):
        x = b.v(0)
        axes = b.axes_input(a, 1, since)
        if not axes:  # none or empty: all axes, or nothing with noop_with_empty_axes
            if a.get("noop_with_empty_axes", 0):
                return x
            axes = None
        return b.build(nn.REDUCE_OPS[name], x, axes, keepdims=bool(a.get("keepdims", 1)))
    return rule


for _nn, (_onnx, _since) in REDUCE.items():
    from_onnx(_onnx)(_reduce(_nn, _since))


def _sum_of(b: Importer, x: SSAValue, a: dict) -> SSAValue:
    """ReduceSum of x over the node's axes (an input from opset 18)."""
    axes = b.axes_input(a, 1, 18) or None
    return b.build(nn.REDUCE_OPS["reduce_sum"], x, axes, keepdims=bool(a.get("keepdims", 1)))


from_onnx("ReduceSumSquare")(lambda b, a: _sum_of(b, b.binary("mul", b.v(0), b.v(0)), a))
from_onnx("ReduceL1")(lambda b, a: _sum_of(b, b.unary("abs", b.v(0)), a))
from_onnx("ReduceL2")(lambda b, a: b.unary("sqrt", _sum_of(b, b.binary("mul", b.v(0), b.v(0)), a)))
from_onnx("ReduceLogSum")(lambda b, a: b.unary("log", _sum_of(b, b.v(0), a)))


@from_onnx("ReduceLogSumExp")
def _reduce_log_sum_exp(b, a):
    # max + log(sum(exp(x - max))): never overflows
    x = b.v(0)
    shape = shape_of(x.type)
    axes = b.axes_input(a, 1, 18)
    if not axes:
        if axes is not None and a.get("noop_with_empty_axes", 0):
            return x
        axes = list(range(len(shape)))
    axes = [ax % len(shape) if -len(shape) <= ax < len(shape) else ax for ax in axes]
    mx = b.build(nn.REDUCE_OPS["reduce_max"], x, axes, keepdims=True)
    s = b.build(nn.REDUCE_OPS["reduce_sum"], b.unary("exp", b.binary("sub", x, mx)), axes,
                keepdims=True)
    y = b.binary("add", b.unary("log", s), mx)
    if a.get("keepdims", 1):
        return y
    return b.reshape_to(y, [d for i, d in enumerate(shape) if i not in axes])


for _nn, _onnx in ARG_REDUCE.items():
    from_onnx(_onnx)(lambda b, a, name=_nn: b.build(
        nn.ARG_REDUCE_OPS[name], b.v(0), a.get("axis", 0), keepdims=bool(a.get("keepdims", 1)),
        select_last_index=bool(a.get("select_last_index", 0))))


@from_onnx("CumSum")
def _cumsum(b, a):
    return b.build(nn.CumSumOp, b.v(0), b.one_value(1, "axis"),
                   exclusive=bool(a.get("exclusive", 0)), reverse=bool(a.get("reverse", 0)))


# ---------------------------------------------------------------------------
# nn -> ONNX

for _nn, (_onnx, _) in REDUCE.items():
    to_onnx(nn.REDUCE_OPS[_nn])(lambda g, op, ins, t=_onnx: g.reduce(t, ins[0], op.params.axes,
                                                                     op.params.keepdims))
for _nn, _onnx in ARG_REDUCE.items():
    to_onnx(nn.ARG_REDUCE_OPS[_nn])(lambda g, op, ins, t=_onnx: g.node(
        t, ins, axis=op.params.axis, keepdims=int(op.params.keepdims),
        select_last_index=int(op.params.select_last_index)))
to_onnx(nn.CumSumOp)(lambda g, op, ins: g.node("CumSum", [ins[0], g.const(op.params.axis)],
                                               exclusive=int(op.params.exclusive),
                                               reverse=int(op.params.reverse)))
