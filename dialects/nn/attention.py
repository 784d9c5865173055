"""The attention family: `nn.attention`, scaled dot-product attention as one op.

    %o = nn.attention %q, %kt, %v, %bias scale 0.125 : tensor<1x4x32x64xf32>, tensor<1x4x64x32xf32>,
             tensor<1x4x32x64xf32>, tensor<32x32xf32> -> tensor<1x4x32x64xf32>

    o = softmax(q @ kt * scale + bias) @ v      the softmax over the keys (the last axis)

q is [..., Sq, D]; kt the keys transposed, [..., D, Sk], as the scores' matmul
reads them (what exporters write: Transpose then MatMul); v [..., Sk, Dv]; the
leading dimensions (batch, heads) equal; bias (optional) broadcasts to the
scores [..., Sq, Sk]: an additive mask. `causal` masks the keys after each
query (key j of query row i only if j <= i, PyTorch's is_causal): the
lowering then computes no score it masks. The result is [..., Sq, Dv]. `fuse`
makes it from the matmul, scale, mask, softmax, matmul chain
(RecognizeAttention); lowered, it computes one query row at a time and never
writes the score matrix. `decomposed` gives the chain back (autodiff and ONNX
export take that form).
"""

from __future__ import annotations

from typing import Callable, ClassVar

import numpy as np
from xdsl.dialects.builtin import TensorType
from xdsl.ir import Operation, SSAValue
from xdsl.irdl import operand_def, opt_operand_def
from xdsl.utils.exceptions import VerifyException

from ncc.dialects.nn.base import DYN, NNOp, Param, broadcast_shapes, dims_compatible, fmt_shape, need_float, nn_op
from ncc.dialects.nn.base import numpy_dtype, same_element, shape_of
from ncc.dialects.nn.constants import ConstantOp
from ncc.dialects.nn.elementwise import AddOp, MulOp
from ncc.dialects.nn.matmul import MatmulOp
from ncc.dialects.nn.softmax import SoftmaxOp, softmax_reference


@nn_op
class AttentionOp(NNOp):
    """softmax(q @ kt * scale + bias) @ v: see the module's docstring."""

    name = "nn.attention"
    PARAMS: ClassVar[tuple[Param, ...]] = (Param("scale", "float", 1.0), Param("causal", "flag", False))
    query = operand_def(TensorType)
    keys_t = operand_def(TensorType)
    values = operand_def(TensorType)
    bias = opt_operand_def(TensorType)

    def __init__(self, q: SSAValue | Operation, kt: SSAValue | Operation, v: SSAValue | Operation,
                 bias: SSAValue | Operation | None = None, scale: float = 1.0, causal: bool = False):
        self._build([q, kt, v, [bias] if bias is not None else []], scale=scale, causal=causal)

    @classmethod
    def infer(cls, types, p):
        q, kt, v = types[:3]
        need_float(q, "query")
        elt = same_element(types)
        sq, sk, sv = shape_of(q), shape_of(kt), shape_of(v)
        if len(sq) < 2 or len(sk) != len(sq) or len(sv) != len(sq):
            raise VerifyException(f"query, keys and values must have one rank >= 2, got {q}, {kt}, {v}")
        lead = sq[:-2]
        for what, s in (("keys", sk), ("values", sv)):
            if not all(dims_compatible(a, b) for a, b in zip(s[:-2], lead)):
                raise VerifyException(f"the {what}' leading dimensions {fmt_shape(s[:-2])} must be the query's "
                                      f"{fmt_shape(lead)}")
        if not dims_compatible(sk[-2], sq[-1]):
            raise VerifyException(f"the keys (transposed, [..., D, Sk]) must have the query's depth {sq[-1]} "
                                  f"at axis -2, got {kt}")
        if not dims_compatible(sv[-2], sk[-1]):
            raise VerifyException(f"the values must have one row per key ({sk[-1]}), got {v}")
        scores = (*lead, sq[-2], sk[-1])
        if p.causal and DYN in scores[-2:]:
            raise VerifyException("causal attention needs static query and key lengths, got scores "
                                  f"{fmt_shape(scores)}")
        if len(types) > 3:
            try:
                full = broadcast_shapes(scores, shape_of(types[3]))
                ok = len(full) == len(scores) and all(dims_compatible(a, b) for a, b in zip(full, scores))
            except ValueError:
                ok = False
            if not ok:
                raise VerifyException(f"the bias must broadcast to the scores {fmt_shape(scores)}, got {types[3]}")
        return TensorType(elt, [*lead, sq[-2], sv[-1]])


def causal_mask(sq: int, sk: int, dtype) -> np.ndarray:
    """The additive bias of `causal`: 0 where key j <= query i, the type's lowest value after
    (as Hugging Face's models write it: exp of it, less the row's max, is 0)."""
    return np.where(np.tri(sq, sk, dtype=bool), 0, np.finfo(dtype).min).astype(dtype)


def attention_reference(op: AttentionOp, q, kt, v, bias=None) -> np.ndarray:
    scores = np.matmul(q, kt) * q.dtype.type(op.params.scale)
    if bias is not None:
        scores = scores + bias
    if op.params.causal:
        scores = scores + causal_mask(*scores.shape[-2:], scores.dtype)
    return np.matmul(softmax_reference(scores, -1), v)


def decomposed(op: AttentionOp) -> tuple[list[Operation], SSAValue]:
    """The ops computing `op` one at a time (matmul, scale, bias, softmax,
    matmul), and the value that replaces its result."""
    elt = op.result.type.element_type
    scores = MatmulOp(op.query, op.keys_t)
    scale = ConstantOp(np.array(op.params.scale, numpy_dtype(elt)), TensorType(elt, []))
    scaled = MulOp(scores, scale)
    new: list[Operation] = [scores, scale, scaled]
    if op.bias is not None:
        new.append(AddOp(new[-1], op.bias))
    if op.params.causal:
        sq, sk = shape_of(scaled.result.type)[-2:]
        mask = ConstantOp(causal_mask(sq, sk, numpy_dtype(elt)), TensorType(elt, [sq, sk]))
        new += [mask, AddOp(new[-1], mask)]
    new.append(SoftmaxOp(new[-1], -1))
    new.append(MatmulOp(new[-1], op.values))
    return new, new[-1].results[0]


# The reference semantics (numpy) of this family's ops: ncc.reference runs them.
REFERENCE: dict[type, Callable[..., np.ndarray]] = {AttentionOp: attention_reference}
