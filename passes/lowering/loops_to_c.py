"""Loop-level kernels as portable C99 (`ncc.emit_c`, ncc-translate --emit-c).

The same level lower-to-llvm translates (func/scf/arith/math/memref), printed
as C instead: a `static void` function per kernel whose memref arguments are
`restrict` pointers (const where the kernel only reads them: inputs and
weights), an index is `int64_t`, and the trailing `int64_t batch` is every
argument's dynamic dimension 0, as in passes/lowering/abi.py. Every memref is
row-major with static strides (only dimension 0 may be dynamic), so a load is
`p[i0 * s0 + ... + in]`; `memref.view` is a pointer into the arena at a byte
offset, `memref.reinterpret_cast` a flat view at an element offset. Each op is
one C statement, through the table `C_RULES`; anything else is an error naming
the op. Loops are plain `for` loops the C compiler can vectorize; a loop's
carried values are variables assigned at the end of its body.

The library kernels loop-level code calls (the GEMM, the int8 GEMM, the
sparse product) have C definitions in passes/lowering/c_library.py; a call
of any other function is refused, naming it.
"""

from __future__ import annotations

import math as pymath
import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
from xdsl.dialects import arith, func, math, memref, scf
from xdsl.dialects.builtin import (FileLineColLoc, FloatAttr, IndexType, IntegerAttr, IntegerType, MemRefType,
                                   NameLoc, f32, f64, i1)
from xdsl.ir import Attribute, Block, Operation, SSAValue

from ncc.diagnostics import NccError
from ncc.passes.lowering.c_library import LIBRARY
from ncc.passes.lowering.abi import KernelABI


def c_type(t: Attribute) -> str:
    if isinstance(t, IndexType):
        return "int64_t"
    if t == i1:
        return "unsigned char"  # numpy's bool layout: one byte
    if isinstance(t, IntegerType):
        width = t.width.data
        unsigned = t.signedness.data.name == "UNSIGNED" if hasattr(t, "signedness") else False
        return f"{'u' if unsigned else ''}int{width}_t"
    if t == f32:
        return "float"
    if t == f64:
        return "double"
    raise ValueError(f"type {t} has no C form")


def float_literal(value: float, t: Attribute) -> str:
    """A C literal of exactly `value` (hex floats for finite values; NAN, INFINITY otherwise)."""
    suffix = "f" if t == f32 else ""
    if pymath.isnan(value):
        return "NAN" if t == f32 else "(double)NAN"
    if pymath.isinf(value):
        return ("-" if value < 0 else "") + ("INFINITY" if t == f32 else "(double)INFINITY")
    text = str(np.float32(value)) if t == f32 else repr(value)  # the shortest text that reads back exactly
    return text + ("" if "." in text or "e" in text else ".0") + suffix


# ---------------------------------------------------------------------------
# Expressions per op: (emitter, op) -> C expression of its result

def unsigned(t: Attribute) -> str:
    """The unsigned C type of an integer (or index) type's width."""
    return "uint64_t" if isinstance(t, IndexType) else "unsigned char" if t == i1 else f"uint{t.width.data}_t"


def _binary(symbol: str, as_unsigned: bool = False) -> Callable:
    def rule(E: "FunctionEmitter", op: Operation) -> str:
        a, b = E.v(op.lhs), E.v(op.rhs)
        if symbol in "/%" and _is_zero(op.rhs):
            # an integer division by a constant 0 sits in a loop that never runs (a zero-size
            # dimension); LLVM leaves its value undefined, C compilers refuse to compile it
            return f"({c_type(op.result.type)})0"
        if as_unsigned:
            t = unsigned(op.result.type)
            return f"({c_type(op.result.type)})(({t}){a} {symbol} ({t}){b})"
        return f"{a} {symbol} {b}"
    return rule


def _call1(name: str) -> Callable:
    """A libm function: `expf` for f32, `exp` for f64."""
    def rule(E: "FunctionEmitter", op: Operation) -> str:
        suffix = "f" if op.results[0].type == f32 else ""
        return f"{name}{suffix}({', '.join(E.v(x) for x in op.operands)})"
    return rule


def _minmax(symbol: str) -> Callable:
    return lambda E, op: f"({E.v(op.lhs)} {symbol} {E.v(op.rhs)} ? {E.v(op.lhs)} : {E.v(op.rhs)})"


def _nan_minmax(name: str) -> Callable:
    """arith.maximumf / minimumf: NaN if either is NaN (fmaxf would return the other).
    Against a constant (a clamp, relu) one comparison that is false for NaN
    does it, and the C compiler vectorizes it as a plain max/min instead of
    splitting the code after it into paths (the general helper's branches)."""
    def rule(E: "FunctionEmitter", op: Operation) -> str:
        for x, c in ((op.lhs, op.rhs), (op.rhs, op.lhs)):
            value = _float_constant(c)
            if value is not None and value == value:
                # on a tie c is the answer, unless c is the zero the other sign wins over (-0 for max, +0 for min)
                largest = name == "ncc_maximum"
                strict = value == 0 and (pymath.copysign(1.0, value) < 0) == largest
                sign = ("<" if largest else ">") + ("" if strict else "=")
                return f"({E.v(x)} {sign} {E.v(c)} ? {E.v(c)} : {E.v(x)})"
        E.helpers.add(name)
        suffix = "f" if op.result.type == f32 else "d"
        return f"{name}_{suffix}({E.v(op.lhs)}, {E.v(op.rhs)})"
    return rule


def _is_zero(value: SSAValue) -> bool:
    op = value.owner
    return isinstance(op, arith.ConstantOp) and isinstance(op.value, IntegerAttr) and op.value.value.data == 0


def _float_constant(value: SSAValue) -> float | None:
    op = value.owner
    if isinstance(op, arith.ConstantOp) and isinstance(op.value, FloatAttr):
        return op.value.value.data
    return None


CMPI = {"eq": "==", "ne": "!=", "slt": "<", "sle": "<=", "sgt": ">", "sge": ">=",
        "ult": "<", "ule": "<=", "ugt": ">", "uge": ">="}
CMPF = {"oeq": "{a} == {b}", "ogt": "{a} > {b}", "oge": "{a} >= {b}", "olt": "{a} < {b}", "ole": "{a} <= {b}",
        "one": "({a} < {b} || {a} > {b})", "ord": "(!isnan({a}) && !isnan({b}))",
        "ueq": "!({a} < {b} || {a} > {b})", "ugt": "!({a} <= {b})", "uge": "!({a} < {b})",
        "ult": "!({a} >= {b})", "ule": "!({a} > {b})", "une": "{a} != {b}", "uno": "(isnan({a}) || isnan({b}))",
        "false": "0", "true": "1"}


def _cmpi(E: "FunctionEmitter", op: arith.CmpiOp) -> str:
    pred = arith.CMPI_COMPARISON_OPERATIONS[op.predicate.value.data]
    a, b = E.v(op.lhs), E.v(op.rhs)
    if pred.startswith("u"):
        a, b = f"(uint64_t){a}", f"(uint64_t){b}"
    return f"{a} {CMPI[pred]} {b}"


def _cmpf(E: "FunctionEmitter", op: arith.CmpfOp) -> str:
    pred = arith.CMPF_COMPARISON_OPERATIONS[op.predicate.value.data]
    return CMPF[pred].format(a=E.v(op.lhs), b=E.v(op.rhs))


def _floordivsi(E: "FunctionEmitter", op: Operation) -> str:
    E.helpers.add("ncc_floordiv")
    return f"ncc_floordiv({E.v(op.lhs)}, {E.v(op.rhs)})"


def _cast(E: "FunctionEmitter", op: Operation) -> str:
    return f"({c_type(op.result.type)}){E.v(op.operands[0])}"


def _fp_to_int(E: "FunctionEmitter", op: Operation) -> str:
    """LLVM's saturating conversion: NaN -> 0, out of range -> the nearest bound."""
    t = op.result.type
    E.helpers.add("ncc_fp_to_int")
    width, unsigned = t.width.data, isinstance(op, arith.FPToUIOp)
    lo, hi = (0, 2 ** width - 1) if unsigned else (-2 ** (width - 1), 2 ** (width - 1) - 1)
    return f"({c_type(t)})ncc_fp_to_int((double){E.v(op.operands[0])}, {lo}.0, {hi}.0)"


def _bitcast(E: "FunctionEmitter", op: Operation) -> str:
    """f32 <-> i32 bits (expand-math's exponent tricks), through a union."""
    src, dst = op.operands[0].type, op.result.type
    E.helpers.add("ncc_bits")
    if src == f32 and isinstance(dst, IntegerType) and dst.width.data == 32:
        return f"ncc_bits_of_f32({E.v(op.operands[0])})"
    if dst == f32 and isinstance(src, IntegerType) and src.width.data == 32:
        return f"ncc_f32_from_bits({E.v(op.operands[0])})"
    raise ValueError(f"arith.bitcast from {src} to {dst} has no C form")


def _constant(E: "FunctionEmitter", op: arith.ConstantOp) -> str:
    value, t = op.value, op.result.type
    if isinstance(value, FloatAttr):
        return float_literal(value.value.data, t)
    if isinstance(value, IntegerAttr):
        n = value.value.data
        if t == i1:
            return "1" if n else "0"
        wide = isinstance(t, IndexType) or c_type(t) == "int64_t"
        return f"INT64_C({n})" if wide and not -2 ** 31 <= n < 2 ** 31 else str(n)
    raise ValueError(f"constant {value} is not a scalar")


C_RULES: dict[type, Callable] = {
    arith.AddiOp: _binary("+"), arith.SubiOp: _binary("-"), arith.MuliOp: _binary("*"),
    arith.DivSIOp: _binary("/"), arith.RemSIOp: _binary("%"), arith.DivUIOp: _binary("/", True),
    arith.RemUIOp: _binary("%", True), arith.AndIOp: _binary("&"), arith.OrIOp: _binary("|"),
    arith.XOrIOp: _binary("^"), arith.ShLIOp: _binary("<<"), arith.ShRSIOp: _binary(">>"),
    arith.ShRUIOp: _binary(">>", True),
    arith.AddfOp: _binary("+"), arith.SubfOp: _binary("-"), arith.MulfOp: _binary("*"),
    arith.DivfOp: _binary("/"), arith.NegfOp: lambda E, op: f"-{E.v(op.operand)}",
    arith.MaxSIOp: _minmax(">"), arith.MinSIOp: _minmax("<"),
    arith.MaximumfOp: _nan_minmax("ncc_maximum"), arith.MinimumfOp: _nan_minmax("ncc_minimum"),
    arith.MaxnumfOp: _call1("fmax"), arith.MinnumfOp: _call1("fmin"),
    arith.CmpiOp: _cmpi, arith.CmpfOp: _cmpf, arith.FloorDivSIOp: _floordivsi,
    arith.SelectOp: lambda E, op: f"({E.v(op.cond)} ? {E.v(op.lhs)} : {E.v(op.rhs)})",
    arith.IndexCastOp: _cast, arith.SIToFPOp: _cast, arith.UIToFPOp: _cast, arith.ExtSIOp: _cast,
    arith.ExtFOp: _cast, arith.TruncFOp: _cast, arith.TruncIOp: _cast,
    arith.ExtUIOp: lambda E, op: f"({c_type(op.result.type)})({unsigned(op.operands[0].type)}){E.v(op.operands[0])}",
    arith.FPToSIOp: _fp_to_int, arith.FPToUIOp: _fp_to_int,
    math.AbsFOp: _call1("fabs"), math.CeilOp: _call1("ceil"), math.FloorOp: _call1("floor"),
    math.SqrtOp: _call1("sqrt"), math.ExpOp: _call1("exp"), math.Exp2Op: _call1("exp2"),
    math.LogOp: _call1("log"), math.Log2Op: _call1("log2"), math.Log10Op: _call1("log10"),
    math.SinOp: _call1("sin"), math.CosOp: _call1("cos"), math.TanOp: _call1("tan"),
    math.AsinOp: _call1("asin"), math.AcosOp: _call1("acos"), math.AtanOp: _call1("atan"),
    math.SinhOp: _call1("sinh"), math.CoshOp: _call1("cosh"), math.TanhOp: _call1("tanh"),
    math.TruncOp: _call1("trunc"), math.RoundOp: _call1("round"), math.RoundEvenOp: _call1("nearbyint"),
    math.PowFOp: _call1("pow"), math.CopySignOp: _call1("copysign"), math.FmaOp: _call1("fma"),
    math.Atan2Op: _call1("atan2"), math.ErfOp: _call1("erf"), math.Log1pOp: _call1("log1p"),
    math.ExpM1Op: _call1("expm1"), math.CbrtOp: _call1("cbrt"), math.AsinhOp: _call1("asinh"),
    math.AcoshOp: _call1("acosh"), math.AtanhOp: _call1("atanh"),
    arith.BitcastOp: lambda E, op: _bitcast(E, op),
    math.RsqrtOp: lambda E, op: f"({float_literal(1.0, op.result.type)} / "
                                f"sqrt{'f' if op.result.type == f32 else ''}({E.v(op.operand)}))",
}

HELPERS = {
    "ncc_maximum": """static inline float ncc_maximum_f(float a, float b) {
    return a != a ? a : b != b ? b : a > b ? a : a < b ? b : (signbit(a) ? b : a);
}
static inline double ncc_maximum_d(double a, double b) {
    return a != a ? a : b != b ? b : a > b ? a : a < b ? b : (signbit(a) ? b : a);
}""",
    "ncc_minimum": """static inline float ncc_minimum_f(float a, float b) {
    return a != a ? a : b != b ? b : a < b ? a : a > b ? b : (signbit(a) ? a : b);
}
static inline double ncc_minimum_d(double a, double b) {
    return a != a ? a : b != b ? b : a < b ? a : a > b ? b : (signbit(a) ? a : b);
}""",
    "ncc_floordiv": """static inline int64_t ncc_floordiv(int64_t a, int64_t b) {
    int64_t q = a / b, r = a % b;
    return q - (r != 0 && ((r < 0) != (b < 0)));
}""",
    "ncc_fp_to_int": """static inline double ncc_fp_to_int(double x, double lo, double hi) {
    return x != x ? 0.0 : x < lo ? lo : x > hi ? hi : x;
}""",
    "ncc_bits": """static inline float ncc_f32_from_bits(int32_t x) {
    union { int32_t i; float f; } u;
    u.i = x;
    return u.f;
}
static inline int32_t ncc_bits_of_f32(float x) {
    union { float f; int32_t i; } u;
    u.f = x;
    return u.i;
}""",
}
HELPERS.update(LIBRARY)


# ---------------------------------------------------------------------------
# A function


@dataclass
class Mem:
    """A memref in C: a pointer expression and the array's shape (dim 0 an expression when dynamic)."""

    ptr: str
    shape: list[str]
    const: bool = False

    def address(self, indices: list[str]) -> str:
        """The element at `indices`, row-major (dims after the first are static)."""
        terms, stride = [], 1
        for k in reversed(range(len(indices))):
            terms.insert(0, indices[k] if stride == 1 else f"{indices[k]} * {stride}")
            if k > 0:
                if not self.shape[k].isdigit():
                    raise ValueError(f"dimension {k} of a memref is dynamic (only dimension 0 may be)")
                stride *= int(self.shape[k])
        return f"{self.ptr}[{' + '.join(terms) or '0'}]"


@dataclass
class FunctionEmitter:
    fn: func.FuncOp
    const_args: set[int]
    arg_names: list[str]
    helpers: set[str] = field(default_factory=set)
    lines: list[str] = field(default_factory=list)
    names: dict[SSAValue, str] = field(default_factory=dict)
    mems: dict[SSAValue, Mem] = field(default_factory=dict)
    depth: int = 1
    counter: int = 0
    tile_of: dict[SSAValue, tuple[str, str]] = field(default_factory=dict)  # lane tiles (_lanes)

    def fresh(self, prefix: str = "v") -> str:
        self.counter += 1
        return f"{prefix}{self.counter}"

    def v(self, value: SSAValue) -> str:
        return self.names[value]

    def line(self, text: str) -> None:
        self.lines.append("    " * self.depth + text)

    def signature(self, name: str) -> str:
        params = []
        for k, (arg, t) in enumerate(zip(self.fn.body.block.args, self.fn.function_type.inputs.data)):
            pname = self.arg_names[k]
            if isinstance(t, MemRefType):
                const = k in self.const_args
                params.append(f"{'const ' if const else ''}{c_type(t.element_type)} *restrict {pname}")
                self.mems[arg] = Mem(pname, [("batch" if d < 0 else str(d)) for d in t.get_shape()], const)
            else:
                params.append(f"{c_type(t)} {pname}")
                self.names[arg] = pname
        params.append("int64_t batch")
        return f"static void {name}({', '.join(params)})"

    def body(self) -> list[str]:
        self.block(self.fn.body.block)
        return self.lines

    def block(self, block: Block) -> None:
        shown = None
        for op in block.ops:
            loc = op.location
            if isinstance(loc, NameLoc) and loc != shown:  # the nn op this code computes (nn_to_loops sets it)
                shown = loc
                where = loc.location
                at = f" ({where.filename.data}:{where.line.data}:{where.column.data})" \
                    if isinstance(where, FileLineColLoc) else ""
                self.line(f"/* {loc.desc.data.replace('*/', '* /')}{at} */")
            self.op(op)

    def op(self, op: Operation) -> None:
        if isinstance(op, arith.ConstantOp):  # a literal where it is used
            text = _constant(self, op)
            self.names[op.result] = f"({text})" if text.startswith("-") else text
            return
        rule = C_RULES.get(type(op))
        if rule is not None:
            name, t = self.fresh(), op.results[0].type
            self.line(f"const {c_type(t)} {name} = {rule(self, op)};")
            self.names[op.results[0]] = name
            return
        handler = STATEMENTS.get(type(op))
        if handler is None:
            raise NccError.at_op(op, f"emit-c: no C form for '{op.name}'")
        handler(self, op)


LANES = 16  # rows of a batch loop computed side by side (_lane_tiles)


def _constant_index(v: SSAValue) -> int | None:
    owner = v.owner
    return owner.value.value.data if isinstance(owner, arith.ConstantOp) and isinstance(owner.value, IntegerAttr) \
        else None


def _lane_tiles(E: FunctionEmitter, op: scf.ForOp) -> list[SSAValue] | None:
    """The [batch, W] argument arrays a straight-line loop over the batch (a
    neuron kernel) reads or writes only at [row, constant], or None. GCC does
    not vectorize a loop whose loads are W floats apart for most W (LLVM,
    the JIT, does); in tiles of LANES rows, transposed, the rows are adjacent."""
    iv = op.body.block.args[0]
    if op.iter_args or _constant_index(op.lb) != 0 or _constant_index(op.step) != 1 or \
            E.names.get(op.ub) != "batch":
        return None
    tiles: dict[SSAValue, None] = {}
    for inner in op.body.block.ops:
        if inner.regions or isinstance(inner, func.CallOp):
            return None
        if isinstance(inner, (memref.LoadOp, memref.StoreOp)):
            mem, indices = inner.memref, list(inner.indices)
            if iv not in indices:
                continue
            t = mem.type
            if not (mem in E.fn.body.block.args and len(indices) == 2 and indices[0] is iv
                    and _constant_index(indices[1]) is not None and t.get_shape()[0] < 0
                    and t.element_type in (f32, f64)):
                return None
            tiles[mem] = None
    return list(tiles) or None


def _lanes(E: FunctionEmitter, op: scf.ForOp, tiles: list[SSAValue]) -> None:
    """The batch loop in tiles of LANES rows: each array's tile transposed in,
    the body once per lane (a loop the compiler vectorizes), the outputs' tiles back."""
    row, lane, count = E.fresh("i"), E.fresh("l"), E.fresh("n")
    E.line(f"for (int64_t {row} = 0; {row} < batch; {row} += {LANES}) {{")
    E.depth += 1
    E.line(f"const int64_t {count} = batch - {row} < {LANES} ? batch - {row} : {LANES};")
    written = {inner.memref for inner in op.body.block.ops if isinstance(inner, memref.StoreOp)}
    saved = dict(E.mems)
    for mem in tiles:
        width, ctype, tile = mem.type.get_shape()[1], c_type(mem.type.element_type), E.fresh("t")
        source = E.mems[mem]
        E.line(f"{ctype} {tile}[{width}][{LANES}];")
        if mem in written:
            E.line(f"for (int64_t c = 0; c < {width}; ++c) for (int64_t l = 0; l < {LANES}; ++l) "
                   f"{tile}[c][l] = 0;")
        else:
            E.line(f"for (int64_t c = 0; c < {width}; ++c) for (int64_t l = 0; l < {LANES}; ++l) "
                   f"{tile}[c][l] = l < {count} ? {source.ptr}[({row} + l) * {width} + c] : 0;")
        E.mems[mem] = Mem(f"{tile}", ["1", str(width)], source.const)  # unused: loads and stores use tile_of
        E.tile_of[mem] = (tile, lane)
    E.line(f"for (int64_t {lane} = 0; {lane} < {LANES}; ++{lane}) {{")
    E.depth += 1
    E.names[op.body.block.args[0]] = f"({row} + {lane})"
    for inner in op.body.block.ops:
        if not isinstance(inner, scf.YieldOp):
            E.op(inner)
    E.depth -= 1
    E.line("}")
    for mem in tiles:
        tile, _ = E.tile_of.pop(mem)
        if mem in written:
            width = mem.type.get_shape()[1]
            E.line(f"for (int64_t l = 0; l < {count}; ++l) for (int64_t c = 0; c < {width}; ++c) "
                   f"{saved[mem].ptr}[({row} + l) * {width} + c] = {tile}[c][l];")
    E.mems.clear()
    E.mems.update(saved)
    E.depth -= 1
    E.line("}")


def _for(E: FunctionEmitter, op: scf.ForOp) -> None:
    tiles = _lane_tiles(E, op)
    if tiles is not None:
        return _lanes(E, op, tiles)
    carried = []
    for init, res in zip(op.iter_args, op.results):
        name = E.fresh("r")
        E.line(f"{c_type(res.type)} {name} = {E.v(init)};")
        carried.append(name)
    iv = E.fresh("i")
    E.line(f"for (int64_t {iv} = {E.v(op.lb)}; {iv} < {E.v(op.ub)}; {iv} += {E.v(op.step)}) {{")
    E.depth += 1
    E.names[op.body.block.args[0]] = iv
    for arg, name in zip(op.body.block.args[1:], carried):
        E.names[arg] = name
    _body(E, op.body.block, carried)
    E.depth -= 1
    E.line("}")
    for res, name in zip(op.results, carried):
        E.names[res] = name


def _body(E: FunctionEmitter, block: Block, targets: list[str]) -> None:
    """A region's ops; its scf.yield assigns the `targets` (all at once: a
    loop's carried values may swap)."""
    for inner in block.ops:
        if not isinstance(inner, scf.YieldOp):
            E.op(inner)
            continue
        pairs = [(t, E.v(x), x.type) for t, x in zip(targets, inner.operands) if t != E.v(x)]
        if len(pairs) > 1:
            temps = []
            for t, v, ty in pairs:
                tmp = E.fresh("t")
                E.line(f"const {c_type(ty)} {tmp} = {v};")
                temps.append((t, tmp, ty))
            pairs = temps
        for t, v, _ in pairs:
            E.line(f"{t} = {v};")


def _if(E: FunctionEmitter, op: scf.IfOp) -> None:
    results = []
    for res in op.results:
        name = E.fresh("r")
        E.line(f"{c_type(res.type)} {name};")
        results.append(name)
    E.line(f"if ({E.v(op.cond)}) {{")
    for region, last in ((op.true_region, False), (op.false_region, True)):
        if last:
            if not region.blocks:
                break
            E.line("} else {")
        E.depth += 1
        _body(E, region.block, results)
        E.depth -= 1
    E.line("}")
    for res, name in zip(op.results, results):
        E.names[res] = name


def _element(E: FunctionEmitter, mem: SSAValue, indices) -> str:
    if mem in E.tile_of:  # a lane tile: [column][lane]
        tile, lane = E.tile_of[mem]
        return f"{tile}[{_constant_index(indices[1])}][{lane}]"
    return E.mems[mem].address([E.v(i) for i in indices])


def _load(E: FunctionEmitter, op: memref.LoadOp) -> None:
    name = E.fresh()
    value = _element(E, op.memref, list(op.indices))
    E.line(f"const {c_type(op.res.type)} {name} = {'(' + value + ' != 0)' if op.res.type == i1 else value};")
    E.names[op.res] = name


def _store(E: FunctionEmitter, op: memref.StoreOp) -> None:
    E.line(f"{_element(E, op.memref, list(op.indices))} = {E.v(op.value)};")


def _dim(E: FunctionEmitter, op: memref.DimOp) -> None:
    index = op.index.owner
    if not (isinstance(index, arith.ConstantOp) and isinstance(index.value, IntegerAttr)):
        raise NccError.at_op(op, "emit-c: memref.dim needs a constant dimension")
    E.names[op.result] = E.mems[op.source].shape[index.value.value.data]


def _view(E: FunctionEmitter, op: memref.ViewOp) -> None:
    t, name = op.result.type, E.fresh("m")
    shape = [E.v(op.sizes[0]) if d < 0 else str(d) for d in t.get_shape()]
    E.line(f"{c_type(t.element_type)} *{name} = ({c_type(t.element_type)} *)((char *){E.mems[op.source].ptr}"
           f" + {E.v(op.byte_shift)});")
    E.mems[op.result] = Mem(name, shape)


def _reinterpret_cast(E: FunctionEmitter, op: memref.ReinterpretCastOp) -> None:
    t, source, name = op.result.type, E.mems[op.source], E.fresh("m")
    offset = E.v(op.offsets[0]) if op.offsets else str(op.static_offsets.get_values()[0])
    shape = [E.v(op.sizes[0]) if d < 0 else str(d) for d in t.get_shape()]
    qual = "const " if source.const else ""
    E.line(f"{qual}{c_type(t.element_type)} *{name} = ({qual}{c_type(t.element_type)} *){source.ptr} + "
           f"{offset};")
    E.mems[op.result] = Mem(name, shape, source.const)


def _alloca(E: FunctionEmitter, op: memref.AllocaOp) -> None:
    """A stack array (a variable-length one for a dynamic dimension): scratch of one call."""
    t, name = op.memref.type, E.fresh("m")
    shape = [E.v(op.dynamic_sizes[0]) if d < 0 else str(d) for d in t.get_shape()]
    count = " * ".join(shape) or "1"
    E.line(f"{c_type(t.element_type)} {name}[{count}];")
    E.mems[op.memref] = Mem(name, shape)


def _call(E: FunctionEmitter, op: func.CallOp) -> None:
    name = op.callee.string_value()
    if name not in HELPERS:
        raise NccError.at_op(op, f"emit-c: no C form for the function @{name}")
    args = []
    for a in op.arguments:
        args.append(E.mems[a].ptr if a in E.mems else E.v(a))
    E.helpers.add(name)
    call = f"{name}({', '.join(args)})"
    if op.results:
        res = E.fresh("k")  # kept even when unread: a call may have effects
        E.line(f"const {c_type(op.results[0].type)} {res} = {call};")
        E.names[op.results[0]] = res
    else:
        E.line(f"{call};")


def _return(E: FunctionEmitter, op: func.ReturnOp) -> None:
    if op.arguments:
        raise NccError.at_op(op, "emit-c: a kernel returns its results through its output arguments")


STATEMENTS: dict[type, Callable[[FunctionEmitter, Operation], None]] = {
    scf.ForOp: _for, scf.IfOp: _if, memref.LoadOp: _load, memref.StoreOp: _store, memref.DimOp: _dim,
    memref.ViewOp: _view, memref.ReinterpretCastOp: _reinterpret_cast, memref.AllocaOp: _alloca,
    func.CallOp: _call, func.ReturnOp: _return,
}


def c_identifier(name: str) -> str:
    ident = re.sub(r"\W", "_", name)
    return ident if re.match(r"[A-Za-z_]", ident) else f"_{ident}"


def argument_name(role) -> str:
    """A kernel argument's C name, after the model's: in_x, out_y, w_conv1_weight, arena
    (the prefixes keep them apart from the generated v<n>, i<n>, m<n>)."""
    prefix = {"input": "in_", "output": "out_", "weight": "w_"}.get(role.kind)
    return "arena" if prefix is None else prefix + c_identifier(role.name)


def emit_kernel(fn: func.FuncOp, name: str, writable: set[str] = frozenset()) -> tuple[str, set[str]]:
    """The C function `name` of a loop-level kernel, and the helpers it needs;
    its inputs and weights are const pointers, except the `writable` weights
    (the parameters an update kernel changes)."""
    abi = KernelABI.of(fn)
    const_args = {k for k, r in enumerate(abi.roles) if r.kind == "input" or (r.kind == "weight"
                                                                              and r.name not in writable)}
    E = FunctionEmitter(fn, const_args, [argument_name(r) for r in abi.roles])
    head = E.signature(name)
    try:
        body = E.body()
    except (ValueError, KeyError) as e:
        raise NccError(f"emit-c: @{fn.sym_name.data}: {e}") from None
    unused = [f"    (void){p.rsplit(' ', 1)[-1]};" for p in head[head.index("(") + 1:-1].split(", ")]
    lines = [head + " {", *unused, *without_unused(body), "}"]  # (void): a kernel need not read every argument
    return "\n".join(lines), E.helpers


DECLARED = re.compile(r"^\s*(?:const [\w ]+? (v\d+)|(?:const )?\w+ \*(m\d+)) = ")
VALUE = re.compile(r"\b[vm]\d+\b")


def without_unused(lines: list[str]) -> list[str]:
    """The lines without the declarations of values and views nothing reads
    (values are pure: arithmetic, math and loads; a view is a pointer; a
    call's result is named k<n>)."""
    uses = Counter(t for line in lines for t in VALUE.findall(line))
    alive = [True] * len(lines)
    changed = True
    while changed:
        changed = False
        for k, line in enumerate(lines):
            m = alive[k] and DECLARED.match(line)
            if m and uses[m.group(1) or m.group(2)] == 1:
                alive[k], changed = False, True
                uses.subtract(VALUE.findall(line))
    return [line for line, keep in zip(lines, alive) if keep]
