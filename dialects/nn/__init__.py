"""The `nn` dialect: a compact, canonical set of tensor ops on ranked tensors.

    nn.weight @fc1_w : tensor<784x128xf32> = dense<[[0.1, ...], ...]>
    func.func @main(%x: tensor<?x784xf32>) -> tensor<?x128xf32> {
      %w = nn.weight_ref @fc1_w : tensor<784x128xf32>
      %y = nn.matmul %x, %w : tensor<?x784xf32>, tensor<784x128xf32> -> tensor<?x128xf32>
      %z = nn.relu %y : tensor<?x128xf32>
      %p = nn.max_pool %a kernel [2, 2] strides [2, 2] : tensor<1x4x8x8xf32> -> tensor<1x4x4x4xf32>
      func.return %z : tensor<?x128xf32>
    }

Syntax of every compute op: operands, then its parameters as `name value`
pairs (`kernel [2, 2]`, `axis 1`, `epsilon 1.0e-05`, `mode reflect`, a bare
flag such as `keepdims`), parameters at their default left out, then
`: operand types -> result type`, shortened to `: type` when all operands and
the result have that one type. One mechanism (`NNOp` and its `PARAMS` table)
gives every op its properties, syntax, defaults and verifier; each op adds
only its shape rule (`infer`). Unary and binary elementwise ops are generated
from the tables `UNARY` and `BINARY`, comparisons (an i1 result) from
`COMPARE`, logical ops on i1 from `LOGICAL` (each is still a registered class:
`nn.ReluOp`, `nn.AddOp`, `nn.LessOp`, `nn.AndOp`, ...). Booleans are i1 tensors
(numpy bool arrays); `nn.select` picks between two tensors by one. Dynamic
dimensions (`?`) are `DYN` in shapes.

Weights are module-level symbols whose data is a read-only numpy array held in
memory (`WeightOp.data`); text prints it as a `dense<...>` literal that
round-trips bit-exactly, or as `dense_resource<__elided__>` when
`ncc.ir.print_module(..., elide_weights_if_larger=n)` asks for it.

One module per op family (docs/architecture.md lists them): `base` (types,
literals, the op mechanism), `constants`, `elementwise`, `matmul`, `conv`,
`sparse`, `pool`, `reduce`, `softmax`, `normalization`, `shape`,
`gather_scatter`, `resize`, `quant`, `attention`, `fusion`. This package gathers them: `nn.ConvOp`,
`nn.UNARY_OPS`, ... and the dialect `NN`.
"""

from typing import Any

from xdsl.ir import Dialect
from xdsl.irdl import IRDLOperation

from ncc.dialects.nn.base import *  # noqa: F401,F403
from ncc.dialects.nn.constants import *  # noqa: F401,F403
from ncc.dialects.nn.elementwise import *  # noqa: F401,F403
from ncc.dialects.nn.matmul import *  # noqa: F401,F403
from ncc.dialects.nn.conv import *  # noqa: F401,F403
from ncc.dialects.nn.sparse import *  # noqa: F401,F403
from ncc.dialects.nn.pool import *  # noqa: F401,F403
from ncc.dialects.nn.reduce import *  # noqa: F401,F403
from ncc.dialects.nn.softmax import *  # noqa: F401,F403
from ncc.dialects.nn.normalization import *  # noqa: F401,F403
from ncc.dialects.nn.shape import *  # noqa: F401,F403
from ncc.dialects.nn.gather_scatter import *  # noqa: F401,F403
from ncc.dialects.nn.resize import *  # noqa: F401,F403
from ncc.dialects.nn.quant import *  # noqa: F401,F403
from ncc.dialects.nn.attention import *  # noqa: F401,F403
from ncc.dialects.nn.fusion import *  # noqa: F401,F403
from ncc.dialects.nn import (attention, constants, conv, elementwise, fusion, gather_scatter, matmul,  # noqa: E402
                             normalization, pool, quant, reduce, resize, shape, softmax, sparse)

FAMILIES = (constants, elementwise, matmul, conv, sparse, pool, reduce, softmax, normalization, shape,
            gather_scatter, resize, quant, attention, fusion)
# Each op's reference semantics (numpy), from its family's REFERENCE table.
REFERENCE = {cls: rule for family in FAMILIES for cls, rule in family.REFERENCE.items()}




def _ops_of(family: Any) -> list[type[IRDLOperation]]:
    """The op classes a family module defines (tables of generated ones included)."""
    return [c for c in vars(family).values() if isinstance(c, type) and issubclass(c, IRDLOperation)
            and c.__module__ == family.__name__ and isinstance(getattr(c, "name", None), str)]


# The dialect: every op of every family, so a new op is registered where it is defined.
NN = Dialect("nn", [op for family in FAMILIES for op in _ops_of(family)], [TensorData])
