"""lower-to-llvm: loop-level kernels (func/scf/cf/arith/math/memref/index) -> xDSL's llvm dialect.

xDSL 0.74 has no pure-Python conversion of func, arith, math, cf or index to
llvm, so this pass is ncc's own. It runs, in order:

1. `expand-math` (option `expand-math=true`, the default): f32 exp/log/tanh/erf/
   log1p/expm1 become arith-only polynomials, so loops containing them vectorize;
2. `outline-loops`: the top-level loop nests of a big kernel become functions;
3. xDSL's `convert-scf-to-cf` (scf.for/if/index_switch -> blocks and branches);
4. a direct translation of each `func.func` into an `llvm.func`, op by op through
   the table `_HANDLERS` (one entry per op kind; anything else is an error
   naming the op).

The calling convention is passes/lowering/abi.py's: every memref argument becomes an
`!llvm.ptr` marked `llvm.noalias`, index becomes i64, and every function with
a body takes one trailing `i64` batch. A memref's dynamic dimension (only dim 0
may be dynamic) is the batch for arguments, and the size operand for memrefs
made by `memref.view`/`alloc`/`alloca`. An i1 element is stored as one byte
(numpy's bool layout): loaded as `icmp ne 0` of the byte, stored
zero-extended. Loads and stores are one
`getelementptr inbounds` with the row-major linearized index (static strides) --
never ptrtoint/inttoptr, so that LLVM's loop vectorizer can see the accesses.
`memref.view` is a GEP on i8 by the byte offset.

Kernels keep their `ncc.*` ABI attributes on the `llvm.func`; `kernel_abis`
reads them from either level. Module-level ops other than functions (e.g.
`nn.weight`, whose data the runtime passes as buffers) are left in place; the
engine ignores them.

Option `contract=true` (the default) fuses multiply-adds: a float add or
subtract of a product used nowhere else becomes `llvm.fmuladd` (an FMA where
the CPU has one, as C compilers contract by default; it changes results by
at most the rounding of one product). The fusion is explicit, not the
`contract` fast-math flag: with the flag, LLVM fused a product only where its
vectorizers left it scalar, so the same loop could round differently when
split over threads.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from xdsl.context import Context
from xdsl.dialects import arith, cf, func, llvm, math, memref
from xdsl.dialects.builtin import (
    AnyFloat,
    ArrayAttr,
    DictionaryAttr,
    FloatAttr,
    IndexType,
    IntegerAttr,
    IntegerType,
    MemRefType,
    ModuleOp,
    StringAttr,
    UnitAttr,
    i1,
    i8,
    i64,
)
from xdsl.ir import Attribute, Block, Operation, Region, SSAValue
from xdsl.passes import ModulePass
from xdsl.transforms.convert_scf_to_cf import ConvertScfToCf
from xdsl.utils.exceptions import PassFailedException

from ncc.passes.lowering.abi import ARG_ROLES, KernelABI, element_bytes
from ncc.passes.lowering.expand_math import ExpandMathPass
from ncc.passes.lowering.outline_loops import OutlineLoopsPass
from ncc.passes.lowering.parallelize_loops import PARALLEL, PARALLEL_LOOP

PTR = llvm.LLVMPointerType()


def _fail(op: Operation, message: str) -> PassFailedException:
    e = PassFailedException(f"'{op.name}' {message}")
    e.op = op  # ncc's pass runner reports the op's source location
    return e


def kernel_abis(module: ModuleOp) -> dict[str, KernelABI]:
    """The ABI of every kernel in `module`, at loop level (func.func) or llvm level (llvm.func)."""
    return {op.sym_name.data: KernelABI.of(op) for op in module.ops
            if isinstance(op, (func.FuncOp, llvm.FuncOp)) and ARG_ROLES in op.attributes}


def convert_type(t: Attribute) -> Attribute:
    if isinstance(t, MemRefType):
        return PTR
    if isinstance(t, IndexType):
        return i64
    if isinstance(t, IntegerType):  # LLVM's integers are signless (ui8 data is bytes)
        return IntegerType(t.width.data)
    if isinstance(t, AnyFloat):
        return t
    raise ValueError(f"type {t} has no LLVM lowering")


def _suffix(t: Attribute) -> str:
    """LLVM's overload suffix of a scalar type: f32, f64, i32, ..."""
    return f"f{t.bitwidth}" if isinstance(t, AnyFloat) else f"i{t.width.data}"


# Float math -> LLVM intrinsics (one call each; LLVM vectorizes those it has vector
# forms of). math ops with no intrinsic go to libm (`_LIBM`): f32 name = f64 name + "f".
_INTRINSIC_1 = {
    math.AbsFOp: "llvm.fabs", math.CeilOp: "llvm.ceil", math.FloorOp: "llvm.floor",
    math.SqrtOp: "llvm.sqrt", math.ExpOp: "llvm.exp", math.Exp2Op: "llvm.exp2",
    math.LogOp: "llvm.log", math.Log2Op: "llvm.log2", math.Log10Op: "llvm.log10",
    math.SinOp: "llvm.sin", math.CosOp: "llvm.cos", math.TanOp: "llvm.tan",
    math.AsinOp: "llvm.asin", math.AcosOp: "llvm.acos", math.AtanOp: "llvm.atan",
    math.SinhOp: "llvm.sinh", math.CoshOp: "llvm.cosh", math.TanhOp: "llvm.tanh",
    math.TruncOp: "llvm.trunc", math.RoundOp: "llvm.round", math.RoundEvenOp: "llvm.roundeven",
}
_INTRINSIC_N = {
    arith.MaximumfOp: "llvm.maximum", arith.MinimumfOp: "llvm.minimum",
    arith.MaxnumfOp: "llvm.maxnum", arith.MinnumfOp: "llvm.minnum",
    math.PowFOp: "llvm.pow", math.CopySignOp: "llvm.copysign", math.FmaOp: "llvm.fma",
    math.Atan2Op: "llvm.atan2",
}
_LIBM = {math.ErfOp: "erf", math.Log1pOp: "log1p", math.ExpM1Op: "expm1", math.CbrtOp: "cbrt",
         math.AsinhOp: "asinh", math.AcoshOp: "acosh", math.AtanhOp: "atanh"}

_INT_BINARY = {
    arith.AddiOp: llvm.AddOp, arith.SubiOp: llvm.SubOp, arith.MuliOp: llvm.MulOp,
    arith.DivSIOp: llvm.SDivOp, arith.DivUIOp: llvm.UDivOp, arith.RemSIOp: llvm.SRemOp,
    arith.RemUIOp: llvm.URemOp, arith.AndIOp: llvm.AndOp, arith.OrIOp: llvm.OrOp,
    arith.XOrIOp: llvm.XOrOp, arith.ShLIOp: llvm.ShlOp, arith.ShRUIOp: llvm.LShrOp,
    arith.ShRSIOp: llvm.AShrOp,
}
_FLOAT_BINARY = {arith.AddfOp: llvm.FAddOp, arith.SubfOp: llvm.FSubOp,
                 arith.MulfOp: llvm.FMulOp, arith.DivfOp: llvm.FDivOp}
_INT_MINMAX = {arith.MaxSIOp: "sgt", arith.MinSIOp: "slt", arith.MaxUIOp: "ugt",
               arith.MinUIOp: "ult"}
# Same-width-class casts, one LLVM op each.
_CASTS = {arith.ExtSIOp: llvm.SExtOp, arith.ExtUIOp: llvm.ZExtOp, arith.TruncIOp: llvm.TruncOp,
          arith.ExtFOp: llvm.FPExtOp, arith.TruncFOp: llvm.FPTruncOp,
          arith.SIToFPOp: llvm.SIToFPOp, arith.BitcastOp: llvm.BitcastOp}
# Float -> int: the saturating intrinsics (defined for every input, NaN -> 0).
_FP_TO_INT = {arith.FPToSIOp: "llvm.fptosi.sat", arith.FPToUIOp: "llvm.fptoui.sat"}
_ICMP = ("eq", "ne", "slt", "sle", "sgt", "sge", "ult", "ule", "ugt", "uge")


def _width(t: Attribute) -> int:
    return 64 if isinstance(t, IndexType) else t.width.data


class _FuncLowering:
    """Translates one func.func (already in cf form) into an llvm.func."""

    def __init__(self, fn: func.FuncOp, module_funcs: dict[str, func.FuncOp], contract: bool):
        self.fn, self.module_funcs, self.contract = fn, module_funcs, contract
        self.vals: dict[SSAValue, SSAValue] = {}
        self.dyn: dict[SSAValue, SSAValue] = {}  # memref -> its dynamic dim-0 size (i64)
        self.blocks: dict[Block, Block] = {}
        self.block: Block | None = None
        self.libm: set[tuple[str, Attribute]] = set()
        self.launchers: dict[str, llvm.FuncOp] = {}  # declarations of parallel loops' launchers
        self.consts: dict[tuple, llvm.ConstantOp] = {}
        self.addresses: dict[tuple, SSAValue] = {}  # per block: (memref, *indices) -> GEP

    # -- emission helpers --------------------------------------------------------------
    def emit(self, op: Operation) -> SSAValue | None:
        self.block.add_op(op)
        return op.results[0] if op.results else None

    def const(self, value: int | float, t: Attribute) -> SSAValue:
        # One op per distinct constant, placed at the function's entry (see run): fewer
        # ops to build and verify in Python, which dominates lowering time.
        key = (value, t, str(value))  # str: keeps -0.0 and 0.0 (and NaNs) apart
        if key not in self.consts:
            attr = FloatAttr(value, t) if isinstance(t, AnyFloat) else IntegerAttr(value, t)
            self.consts[key] = llvm.ConstantOp(attr, t)
        return self.consts[key].result

    def intrinsic(self, name: str, args: list[SSAValue], t: Attribute, *types: Attribute) -> SSAValue:
        mangled = ".".join([name, _suffix(t), *map(_suffix, types)])
        return self.emit(llvm.CallIntrinsicOp(mangled, args, [t]))

    def v(self, value: SSAValue) -> SSAValue:
        return self.vals[value]

    def size0(self, m: SSAValue) -> SSAValue:
        # Every dynamic dimension is the one batch (passes/lowering/abi.py) unless the op that
        # made the memref gave its size.
        return self.dyn.get(m, self.batch)

    def numel(self, m: SSAValue) -> SSAValue:
        t: MemRefType = m.type
        static = 1
        for d in t.get_shape()[1:]:
            static *= d
        if not t.get_shape() or t.get_shape()[0] >= 0:
            return self.const(static * (t.get_shape()[0] if t.get_shape() else 1), i64)
        return self.emit(llvm.MulOp(self.size0(m), self.const(static, i64)))

    def address(self, m: SSAValue, indices) -> SSAValue:
        """A GEP to element `indices` of row-major memref `m` (static strides)."""
        t: MemRefType = m.type
        shape = t.get_shape()
        if any(d < 0 for d in shape[1:]):
            raise ValueError("only dimension 0 may be dynamic")
        if not indices:
            return self.v(m)
        key = (m, *indices)
        if key in self.addresses:  # the same element again in this block
            return self.addresses[key]
        linear = self.v(indices[0])
        for extent, idx in zip(shape[1:], indices[1:]):
            linear = self.emit(llvm.AddOp(self.emit(llvm.MulOp(linear, self.const(extent, i64))),
                                          self.v(idx)))
        self.addresses[key] = self.emit(llvm.GEPOp(self.v(m), [llvm.GEP_USE_SSA_VAL],
                                                   _stored(t.element_type), ssa_indices=[linear],
                                                   inbounds=True))
        return self.addresses[key]

    # -- the translation ---------------------------------------------------------------
    def run(self) -> llvm.FuncOp:
        fn = self.fn
        ftype = fn.function_type
        if len(ftype.outputs.data) > 1:
            raise _fail(fn, f"@{fn.sym_name.data} returns {len(ftype.outputs.data)} values; "
                        "an llvm.func returns at most one")
        try:
            inputs = [convert_type(t) for t in ftype.inputs.data]
            outputs = [convert_type(t) for t in ftype.outputs.data]
        except ValueError as e:
            raise _fail(fn, f"@{fn.sym_name.data}: {e}") from None
        declaration = not fn.body.blocks
        if not declaration:
            inputs.append(i64)
        arg_attrs = ArrayAttr([DictionaryAttr({"llvm.noalias": UnitAttr()} if t == PTR else {})
                               for t in inputs])
        body = Region()
        new = llvm.FuncOp(
            fn.sym_name.data,
            llvm.LLVMFunctionType(inputs, outputs[0] if outputs else None),
            linkage=llvm.LinkageAttr("external"), body=body,
            other_props={"arg_attrs": arg_attrs},
            extra_attrs={k: v for k, v in fn.attributes.items() if k.startswith("ncc.")},
        )
        if declaration:
            return new
        order = self.reverse_postorder()
        for block in fn.body.blocks:
            if block in order:
                self.blocks[block] = Block(arg_types=[convert_type(a.type) for a in block.args])
                body.add_block(self.blocks[block])
        entry = self.blocks[fn.body.blocks.first]
        self.batch = entry.insert_arg(i64, len(entry.args))
        for block in order:
            self.block = self.blocks[block]
            self.addresses = {}
            self.vals.update(zip(block.args, self.block.args))
            for op in block.ops:
                handler = _HANDLERS.get(type(op))
                if handler is None:
                    raise _fail(op, "has no lowering to the llvm dialect (lower-to-llvm "
                                "handles func, cf, scf, arith, math, memref and index ops)")
                try:
                    results = handler(self, op)
                except ValueError as e:
                    raise _fail(op, str(e)) from None
                if results is not None:
                    self.vals.update(zip(op.results, results if isinstance(results, (list, tuple))
                                         else [results]))
        if self.consts:
            entry.insert_ops_before(list(self.consts.values()), entry.first_op)
        return new

    def reverse_postorder(self) -> list[Block]:
        # Every block comes after its dominators, so each operand is mapped before use.
        # Iterative: kernels may have thousands of blocks.
        entry = self.fn.body.blocks.first
        seen, post = {entry}, []
        stack = [(entry, iter(entry.last_op.successors if entry.last_op else ()))]
        while stack:
            block, successors = stack[-1]
            for s in successors:
                if s not in seen:
                    seen.add(s)
                    stack.append((s, iter(s.last_op.successors if s.last_op else ())))
                    break
            else:
                stack.pop()
                post.append(block)
        return post[::-1]


# -- handlers: (lowering, op) -> new result value(s) ---------------------------------------

def _constant(L: _FuncLowering, op: arith.ConstantOp):
    value, t = op.value, convert_type(op.result.type)
    if isinstance(value, IntegerAttr):
        return L.const(value.value.data, t)
    if isinstance(value, FloatAttr):
        return L.const(value.value.data, t)
    raise ValueError(f"constant {value} is not a scalar")


def _product(v: SSAValue) -> arith.MulfOp | None:
    """The mulf defining v if v is used once (fusing it loses no other use)."""
    op = v.owner
    return op if isinstance(op, arith.MulfOp) and v.has_one_use() and not _flags(op) else None


def _flags(op) -> set:
    return set(op.fastmath.data) if op.fastmath is not None else set()


def _float_binary(L: _FuncLowering, op):
    if L.contract and isinstance(op, (arith.AddfOp, arith.SubfOp)) and not _flags(op):
        t = convert_type(op.result.type)
        for i, v in enumerate((op.lhs, op.rhs)):
            mul = _product(v)
            if mul is None:
                continue
            a, b, c = L.v(mul.lhs), L.v(mul.rhs), L.v(op.operands[1 - i])
            if isinstance(op, arith.SubfOp):  # a*b - c = fmuladd(a, b, -c); c - a*b = fmuladd(-a, b, c)
                a, c = (a, L.emit(llvm.FNegOp(c))) if i == 0 else (L.emit(llvm.FNegOp(a)), c)
            return L.intrinsic("llvm.fmuladd", [a, b, c], t)
    flags = _flags(op)
    return L.emit(_FLOAT_BINARY[type(op)](L.v(op.lhs), L.v(op.rhs),
                                          llvm.FastMathAttr([llvm.FastMathFlag(f) for f in sorted(flags)])
                                          if flags else None))


def _cmpi(L: _FuncLowering, op: arith.CmpiOp):
    return L.emit(llvm.ICmpOp(L.v(op.lhs), L.v(op.rhs), IntegerAttr(op.predicate.value.data, i64)))


def _cmpf(L: _FuncLowering, op: arith.CmpfOp):
    p = op.predicate.value.data
    if p in (0, 15):  # false / true
        return L.const(int(p == 15), i1)
    return L.emit(llvm.FCmpOp(L.v(op.lhs), L.v(op.rhs), IntegerAttr(p, i64)))


def _int_minmax(L: _FuncLowering, op):
    a, b = L.v(op.lhs), L.v(op.rhs)
    pred = _ICMP.index(_INT_MINMAX[type(op)])
    return L.emit(llvm.SelectOp(L.emit(llvm.ICmpOp(a, b, IntegerAttr(pred, i64))), a, b))


def _index_cast(L: _FuncLowering, op):
    src, dst = op.input.type, op.result.type
    x, t = L.v(op.input), convert_type(dst)
    if _width(src) == _width(dst):
        return x
    if _width(src) > _width(dst):
        return L.emit(llvm.TruncOp(x, t))
    unsigned = type(op).__name__ == "IndexCastUIOp"
    return L.emit((llvm.ZExtOp if unsigned else llvm.SExtOp)(x, t))


def _cast(L: _FuncLowering, op):
    return L.emit(_CASTS[type(op)](L.v(op.input), convert_type(op.result.type)))


def _fp_to_int(L: _FuncLowering, op):
    t = convert_type(op.result.type)
    return L.intrinsic(_FP_TO_INT[type(op)], [L.v(op.input)], t, op.input.type)


def _uitofp(L: _FuncLowering, op: arith.UIToFPOp):
    if _width(op.input.type) >= 64:
        raise ValueError("uitofp from a 64-bit integer is not supported")
    wide = L.emit(llvm.ZExtOp(L.v(op.input), i64))
    return L.emit(llvm.SIToFPOp(wide, op.result.type))


def _floordivsi(L: _FuncLowering, op):
    # q = a sdiv b, minus one where the remainder is nonzero and the signs differ.
    a, b, t = L.v(op.lhs), L.v(op.rhs), convert_type(op.result.type)
    q, r = L.emit(llvm.SDivOp(a, b)), L.emit(llvm.SRemOp(a, b))
    zero = L.const(0, t)
    nonzero = L.emit(llvm.ICmpOp(r, zero, IntegerAttr(_ICMP.index("ne"), i64)))
    signs = L.emit(llvm.XOrOp(L.emit(llvm.ICmpOp(r, zero, IntegerAttr(_ICMP.index("slt"), i64))),
                              L.emit(llvm.ICmpOp(b, zero, IntegerAttr(_ICMP.index("slt"), i64)))))
    adjust = L.emit(llvm.ZExtOp(L.emit(llvm.AndOp(nonzero, signs)), t))
    return L.emit(llvm.SubOp(q, adjust))


def _math_intrinsic(L: _FuncLowering, op):
    name = (_INTRINSIC_1 | _INTRINSIC_N)[type(op)]
    return L.intrinsic(name, [L.v(x) for x in op.operands], convert_type(op.results[0].type))


def _libm(L: _FuncLowering, op):
    t = op.results[0].type
    name = _LIBM[type(op)] + ("f" if t.bitwidth == 32 else "")
    if t.bitwidth not in (32, 64):
        raise ValueError(f"no libm function for {t}")
    L.libm.add((name, t))
    return L.emit(llvm.CallOp(name, *[L.v(x) for x in op.operands], return_type=t))


def _rsqrt(L: _FuncLowering, op):
    t = op.result.type
    return L.emit(llvm.FDivOp(L.const(1.0, t), L.intrinsic("llvm.sqrt", [L.v(op.operand)], t)))


def _absi(L: _FuncLowering, op):
    return L.intrinsic("llvm.abs", [L.v(op.operand), L.const(0, i1)], op.result.type)


def _fpowi(L: _FuncLowering, op):
    t = op.result.type
    return L.intrinsic("llvm.powi", [L.v(op.lhs), L.v(op.rhs)], t, op.rhs.type)


def _stored(t: Attribute) -> Attribute:
    """The type an element is stored as: i1 takes one byte (numpy's bool layout)."""
    return i8 if t == i1 else convert_type(t)


def _load(L: _FuncLowering, op: memref.LoadOp):
    value = L.emit(llvm.LoadOp(L.address(op.memref, op.indices), _stored(op.res.type)))
    if op.res.type == i1:  # any nonzero byte is true
        return L.emit(llvm.ICmpOp(value, L.const(0, i8), IntegerAttr(_ICMP.index("ne"), i64)))
    return value


def _store(L: _FuncLowering, op: memref.StoreOp):
    value = L.v(op.value)
    if op.value.type == i1:
        value = L.emit(llvm.ZExtOp(value, i8))
    L.emit(llvm.StoreOp(value, L.address(op.memref, op.indices)))


def _dim(L: _FuncLowering, op: memref.DimOp):
    index = op.index.owner
    if not (isinstance(index, arith.ConstantOp) and isinstance(index.value, IntegerAttr)):
        raise ValueError("needs a constant dimension index")
    d, shape = index.value.value.data, op.source.type.get_shape()
    if not 0 <= d < len(shape):
        raise ValueError(f"dimension {d} is out of range for {op.source.type}")
    return L.size0(op.source) if shape[d] < 0 else L.const(shape[d], i64)


def _sized(L: _FuncLowering, op, result: SSAValue, sizes) -> None:
    if sizes:
        L.dyn[result] = L.v(sizes[0])


def _view(L: _FuncLowering, op: memref.ViewOp):
    _sized(L, op, op.result, op.sizes)
    return L.emit(llvm.GEPOp(L.v(op.source), [llvm.GEP_USE_SSA_VAL], i8,
                             ssa_indices=[L.v(op.byte_shift)], inbounds=True))


def _reinterpret_cast(L: _FuncLowering, op: memref.ReinterpretCastOp):
    # A flat view from an element offset: how a kernel passes a buffer to a
    # function taking any memref<?xT> (the GEMM); the view's size is its own.
    # The offset counts the view's elements (its type may differ: the same bytes).
    _sized(L, op, op.result, op.sizes)
    offset = op.offsets[0] if op.offsets else L.const(op.static_offsets.get_values()[0], i64)
    return L.emit(llvm.GEPOp(L.v(op.source), [llvm.GEP_USE_SSA_VAL], _stored(op.result.type.element_type),
                             ssa_indices=[L.v(offset) if op.offsets else offset], inbounds=True))


def _alloca(L: _FuncLowering, op: memref.AllocaOp):
    _sized(L, op, op.memref, op.dynamic_sizes)
    return L.emit(llvm.AllocaOp(L.numel(op.memref), op.memref.type.element_type, alignment=64))


def _byte_size(L: _FuncLowering, m: SSAValue) -> SSAValue:
    return L.emit(llvm.MulOp(L.numel(m), L.const(element_bytes(m.type.element_type), i64)))


def _alloc(L: _FuncLowering, op: memref.AllocOp):
    # Heap buffers: the ABI puts intermediates in the arena, so this is for hand-written
    # kernels only. 64-byte aligned for vector loads.
    _sized(L, op, op.memref, op.dynamic_sizes)
    size = _byte_size(L, op.memref)
    L.libm.add(("aligned_alloc", None))
    rounded = L.emit(llvm.AndOp(L.emit(llvm.AddOp(size, L.const(63, i64))), L.const(-64, i64)))
    return L.emit(llvm.CallOp("aligned_alloc", L.const(64, i64), rounded, return_type=PTR))


def _dealloc(L: _FuncLowering, op: memref.DeallocOp):
    L.libm.add(("free", None))
    L.emit(llvm.CallOp("free", L.v(op.memref)))


def _copy(L: _FuncLowering, op: memref.CopyOp):
    args = [L.v(op.destination), L.v(op.source), _byte_size(L, op.source), L.const(0, i1)]
    L.emit(llvm.CallIntrinsicOp("llvm.memcpy.p0.p0.i64", args, []))


def _reshape(L: _FuncLowering, op):
    # Contiguous reshapes keep the pointer; a dynamic dim 0 is numel / the static dims.
    src, res = op.operands[0], op.results[0]
    shape = res.type.get_shape()
    if shape and shape[0] < 0:
        rest = 1
        for d in shape[1:]:
            rest *= d
        L.dyn[res] = L.emit(llvm.SDivOp(L.numel(src), L.const(rest, i64)))
    return L.v(src)


def _call(L: _FuncLowering, op: func.CallOp):
    name = op.callee.string_value()
    callee = L.module_funcs.get(name)
    args = [L.v(a) for a in op.arguments]
    if callee is not None and callee.body.blocks:
        args.append(L.batch)
    results = [convert_type(t) for t in op.result_types]
    if len(results) > 1:
        raise ValueError("calls returning several values are not supported")
    if PARALLEL in op.attributes:  # an outlined parallel loop: its launcher runs it on a team
        if callee is None or not callee.body.blocks or results:
            raise ValueError(f"a parallel call must call a defined function returning nothing, not @{name}")
        launcher = f"{name}_parallel"
        L.launchers[launcher] = llvm.FuncOp(
            launcher, llvm.LLVMFunctionType([a.type for a in args]), linkage=llvm.LinkageAttr("external"),
            extra_attrs={PARALLEL: op.attributes[PARALLEL], PARALLEL_LOOP: StringAttr(name)})
        name = launcher
    return L.emit(llvm.CallOp(name, *args, return_type=results[0] if results else None))


def _return(L: _FuncLowering, op: func.ReturnOp):
    L.emit(llvm.ReturnOp(L.v(op.arguments[0]) if op.arguments else None))


def _br(L: _FuncLowering, op: cf.BranchOp):
    L.emit(llvm.BrOp(L.blocks[op.successor], *[L.v(a) for a in op.arguments]))


def _cond_br(L: _FuncLowering, op: cf.ConditionalBranchOp):
    L.emit(llvm.CondBrOp(L.v(op.cond), L.blocks[op.then_block],
                         [L.v(a) for a in op.then_arguments], L.blocks[op.else_block],
                         [L.v(a) for a in op.else_arguments]))


_HANDLERS: dict[type[Operation], Callable[[_FuncLowering, Operation], object]] = {
    arith.ConstantOp: _constant,
    **{k: lambda L, op: L.emit(_INT_BINARY[type(op)](L.v(op.lhs), L.v(op.rhs)))
       for k in _INT_BINARY},
    **{k: _float_binary for k in _FLOAT_BINARY},
    **{k: _int_minmax for k in _INT_MINMAX},
    **{k: _cast for k in _CASTS},
    **{k: _fp_to_int for k in _FP_TO_INT},
    **{k: _math_intrinsic for k in _INTRINSIC_1 | _INTRINSIC_N},
    **{k: _libm for k in _LIBM},
    arith.NegfOp: lambda L, op: L.emit(llvm.FNegOp(L.v(op.operand))),
    arith.CmpiOp: _cmpi,
    arith.CmpfOp: _cmpf,
    arith.SelectOp: lambda L, op: L.emit(llvm.SelectOp(L.v(op.cond), L.v(op.lhs), L.v(op.rhs))),
    arith.IndexCastOp: _index_cast,
    arith.UIToFPOp: _uitofp,
    arith.FloorDivSIOp: _floordivsi,
    math.RsqrtOp: _rsqrt,
    math.AbsIOp: _absi,
    math.FPowIOp: _fpowi,
    memref.LoadOp: _load,
    memref.StoreOp: _store,
    memref.DimOp: _dim,
    memref.ViewOp: _view,
    memref.ReinterpretCastOp: _reinterpret_cast,
    memref.AllocaOp: _alloca,
    memref.AllocOp: _alloc,
    memref.DeallocOp: _dealloc,
    memref.CopyOp: _copy,
    memref.CastOp: _reshape,
    memref.CollapseShapeOp: _reshape,
    memref.ExpandShapeOp: _reshape,
    func.CallOp: _call,
    func.ReturnOp: _return,
    cf.BranchOp: _br,
    cf.ConditionalBranchOp: _cond_br,
}
if hasattr(arith, "IndexCastUIOp"):
    _HANDLERS[arith.IndexCastUIOp] = _index_cast

# External functions the lowered code may call: name -> (result, args) given the float type.
_EXTERNAL_SIGNATURES = {
    "aligned_alloc": lambda t: (PTR, [i64, i64]),
    "free": lambda t: (None, [PTR]),
}


@dataclass(frozen=True)
class LowerToLLVMPass(ModulePass):
    """Loop-level kernels -> llvm.func(ptr noalias..., i64 batch) with GEP addressing;
    runs expand-math first (option expand-math) and fuses a float add or subtract of a product used
    once into llvm.fmuladd (option contract)."""

    name = "lower-to-llvm"

    expand_math: bool = True
    contract: bool = True

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        if self.expand_math:
            ExpandMathPass().apply(ctx, op)
        OutlineLoopsPass().apply(ctx, op)  # keeps every function small for scf-to-cf and LLVM
        ConvertScfToCf().apply(ctx, op)
        funcs = {f.sym_name.data: f for f in op.ops if isinstance(f, func.FuncOp)}
        externals: set[tuple[str, Attribute]] = set()
        lowered = []
        launchers: dict[str, llvm.FuncOp] = {}
        for fn in funcs.values():
            lowering = _FuncLowering(fn, funcs, self.contract)
            lowered.append((fn, lowering.run()))
            externals |= lowering.libm
            launchers.update(lowering.launchers)
        block = op.body.block
        for fn, new in lowered:
            block.insert_op_before(new, fn)
            fn.detach()
            fn.erase(safe_erase=False)
        block.add_ops(launchers.values())  # the engine defines them (passes/lowering/openmp.py)
        defined = {f.sym_name.data for f in op.ops if isinstance(f, llvm.FuncOp)}
        for name, t in sorted(externals, key=lambda e: e[0]):
            if name in defined:
                continue
            defined.add(name)
            result, args = (_EXTERNAL_SIGNATURES[name](t) if name in _EXTERNAL_SIGNATURES
                            else (t, [t]))
            block.add_op(llvm.FuncOp(name, llvm.LLVMFunctionType(args, result),
                                     linkage=llvm.LinkageAttr("external")))
