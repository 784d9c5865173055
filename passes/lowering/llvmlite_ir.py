"""Small llvmlite IR builders that the hand-written kernels (gemm.py, spmm.py, qgemm.py, transpose.py) share."""

from __future__ import annotations

import contextlib
from typing import Iterator

from llvmlite import ir

F32 = ir.FloatType()
I64 = ir.IntType(64)
I32 = ir.IntType(32)
PTR = ir.PointerType()


def _open_loop(b: ir.IRBuilder, start: ir.Value, stop: ir.Value, inits: list[ir.Value], name: str):
    """A loop's head (i from start while i < stop, values carried from `inits`),
    the builder left in its body: (i, the carried values, head, done)."""
    pre = b.block
    head = b.append_basic_block(f"{name}.head")
    loop = b.append_basic_block(f"{name}.body")
    done = b.append_basic_block(f"{name}.done")
    b.branch(head)
    b.position_at_end(head)
    i = b.phi(I64, name)
    i.add_incoming(start, pre)
    carried = [b.phi(v.type) for v in inits]
    for phi, v in zip(carried, inits):
        phi.add_incoming(v, pre)
    b.cbranch(b.icmp_signed("<", i, stop), loop, done)
    b.position_at_end(loop)
    return i, carried, head, done


def _close_loop(b: ir.IRBuilder, i: ir.Value, step: ir.Value, carried: list[ir.Value], new: list[ir.Value],
                head: ir.Block, done: ir.Block) -> None:
    """The end of a loop's body: the next i and values, back to the head; the builder after the loop."""
    i.add_incoming(b.add(i, step), b.block)
    for phi, v in zip(carried, new):
        phi.add_incoming(v, b.block)
    b.branch(head)
    b.position_at_end(done)


@contextlib.contextmanager
def counted_loop(b: ir.IRBuilder, start: ir.Value, stop: ir.Value, step: int | ir.Value, name: str
                 ) -> Iterator[ir.Value]:
    """for (i = start; i < stop; i += step) { body }: yields i."""
    i, _, head, done = _open_loop(b, start, stop, [], name)
    yield i
    _close_loop(b, i, ir.Constant(I64, step) if isinstance(step, int) else step, [], [], head, done)


def carried_loop(b: ir.IRBuilder, start: ir.Value, stop: ir.Value, inits: list[ir.Value], body, name: str
                 ) -> list[ir.Value]:
    """for (i = start; i < stop; i++) values = body(i, values), from `inits`;
    returns the final values."""
    i, carried, head, done = _open_loop(b, start, stop, inits, name)
    _close_loop(b, i, ir.Constant(I64, 1), carried, body(i, carried), head, done)
    return carried


def const(v: int) -> ir.Constant:
    return ir.Constant(I64, v)


def at_least_one(b: ir.IRBuilder, v: ir.Value) -> ir.Value:
    """max(v, 1)."""
    return b.select(b.icmp_signed("<", v, const(1)), const(1), v)


def float_at(b: ir.IRBuilder, p: ir.Value, offset: ir.Value) -> ir.Value:
    """&p[offset] for a float pointer p."""
    return b.gep(p, [offset], inbounds=True, source_etype=F32)


def store_vector(b: ir.IRBuilder, value: ir.Value, p: ir.Value) -> None:
    """*(vector *)p = value, unaligned (llvmlite types a GEP's result as float*)."""
    b.store(value, b.bitcast(p, value.type.as_pointer()), align=4)


def minimum(b: ir.IRBuilder, x: ir.Value, y: ir.Value) -> ir.Value:
    return b.select(b.icmp_signed("<", x, y), x, y)


def splat(b: ir.IRBuilder, scalar: ir.Value, lanes: int) -> ir.Value:
    """A vector of `lanes` copies of `scalar`."""
    vec = ir.VectorType(scalar.type, lanes)
    return b.shuffle_vector(b.insert_element(ir.Constant(vec, ir.Undefined), scalar, I32(0)),
                            ir.Constant(vec, ir.Undefined), ir.Constant(ir.VectorType(I32, lanes), [0] * lanes))


def lane_mask(indices: list[int]) -> ir.Constant:
    """A constant shuffle mask."""
    return ir.Constant(ir.VectorType(I32, len(indices)), [I32(v) for v in indices])


def transpose_block(b: ir.IRBuilder, rows: list[ir.Value]) -> list[ir.Value]:
    """The columns of a square block given as its L rows (vectors of L = 2^n
    floats): for each bit of the index, swap that bit between row and column
    numbers, two shuffles per pair of rows."""
    n = len(rows)
    rows = list(rows)
    h = 1
    while h < n:
        for i in range(n):
            if i & h:
                continue
            a, c = rows[i], rows[i + h]
            low = [x if not x & h else n + x - h for x in range(n)]
            high = [x + h if not x & h else n + x for x in range(n)]
            rows[i], rows[i + h] = b.shuffle_vector(a, c, lane_mask(low)), b.shuffle_vector(a, c, lane_mask(high))
        h *= 2
    return rows


def function_to_define(module: ir.Module, name: str, signature: ir.FunctionType) -> ir.Function:
    """The function `name` of `module` to give a body: its declaration (a kernel
    that calls it), or a new one; a definition or another signature is an error."""
    fn = module.globals.get(name)
    if fn is None:
        return ir.Function(module, signature, name)
    if not fn.is_declaration or fn.function_type != signature:
        raise ValueError(f"{name} is declared as {fn.function_type}, expected {signature}")
    return fn


def kernel_module(name: str, triple: str, data_layout: str, define) -> ir.Module:
    """A module of its own holding what `define(module)` defines (a kernel alone, for tests and benchmarks)."""
    module = ir.Module(name=name)
    module.triple, module.data_layout = triple, data_layout
    define(module)
    return module
