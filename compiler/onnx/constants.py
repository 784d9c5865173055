"""The constants family in ONNX: Constant, ConstantOfShape, EyeLike and Range
become values known at import time (the walk makes them nn.constant or
nn.weight where they are used; the exporter writes Constant nodes back).
"""

from __future__ import annotations

import math

import numpy as np

from ncc.dialects import nn
from ncc.dialects.nn import DYN, shape_of
from ncc.onnx.importer import element_dtype, from_onnx


@from_onnx("Constant")
def _constant(b, a):
    from onnx import numpy_helper

    if "value" in a:
        t = a["value"]
        element_dtype(t.data_type, f"Constant '{b.node.output[0]}'", b.where)
        arr = numpy_helper.to_array(t)
    elif "value_float" in a or "value_floats" in a:
        arr = np.asarray(a.get("value_float", a.get("value_floats")), dtype=np.float32)
    elif "value_int" in a or "value_ints" in a:
        arr = np.asarray(a.get("value_int", a.get("value_ints")), dtype=np.int64)
    else:
        raise b.error(f"unsupported value attribute ({', '.join(a) or 'none'})")
    b.consts[b.node.output[0]] = arr


@from_onnx("ConstantOfShape")
def _constant_of_shape(b, a):
    from onnx import numpy_helper

    value = numpy_helper.to_array(a["value"]).reshape(-1) if "value" in a else np.zeros(1, np.float32)
    shape = b.ints(0)
    if min(shape, default=0) < 0:
        raise b.error(f"shape {shape} has a negative dimension")
    if value.size == 0:
        raise b.error("the value attribute is an empty tensor (it must hold one element)")
    b.check_size(shape, value.dtype, "the output")
    b.consts[b.node.output[0]] = np.full(shape, value[0], dtype=value.dtype)


@from_onnx("EyeLike")
def _eye_like(b, a):
    x = b.v(0)
    shape = shape_of(x.type)
    if len(shape) != 2 or DYN in shape:
        raise b.error(f"needs a static 2-D input, got {x.type}")
    dtype = (element_dtype(a["dtype"], "the dtype attribute", b.where) if "dtype" in a
             else nn.numpy_dtype(x.type.element_type))
    b.consts[b.node.output[0]] = np.eye(*shape, k=a.get("k", 0), dtype=dtype)


@from_onnx("Range")
def _range(b, a):
    # Its inputs' values give its length: constant inputs were folded already.
    values = [b.static(i) for i in range(3)]
    if any(v.size != 1 for v in values):
        raise b.error(f"start, limit and delta must be scalars, got shapes {[list(v.shape) for v in values]}")
    start, limit, delta = (v.reshape(()) for v in values)
    if delta == 0 or not all(np.isfinite(float(v)) for v in values):
        raise b.error(f"start {start}, limit {limit} and delta {delta} must be finite, delta not 0")
    b.check_size([max(0, math.ceil((float(limit) - float(start)) / float(delta)))], start.dtype, "the output")
    b.consts[b.node.output[0]] = np.arange(start, limit, delta, dtype=start.dtype)
