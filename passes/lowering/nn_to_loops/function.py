"""The lower-to-loops pass: storage decisions, the memory plan and emission of a
whole nn function, the rules gathered from every family's `LOWER` table."""

from __future__ import annotations

import math as pymath
import re
from dataclasses import dataclass
from typing import Callable

import numpy as np
from xdsl.context import Context
from xdsl.dialects import func, math, memref
from xdsl.dialects.builtin import (FileLineColLoc, MemRefType, ModuleOp, NameLoc, NoneAttr, StringAttr, TensorType,
                                   UnitAttr, f32, i8)
from xdsl.ir import Attribute, Operation, SSAValue
from xdsl.passes import ModulePass
from xdsl.rewriter import InsertPoint, Rewriter
from xdsl.utils.exceptions import PassFailedException

from ncc.dialects import nn
from ncc.dialects.nn import DYN
from ncc.passes.lowering import memory_plan
from ncc.reference import arg_names, result_names
from ncc.passes.lowering.abi import ArgRole, KernelABI
from ncc.passes.lowering.parallelize_loops import parallelize
from ncc.passes.lowering.nn_to_loops.builder import Buf, Builder, SUPPORTED_ELEMENTS, fail, identity_map
from ncc.passes.lowering.nn_to_loops.builder import map_nest
from ncc.passes.lowering.nn_to_loops import (attention, conv, elementwise, fusion, gather_scatter,  # noqa: E501
    matmul, normalization, pool, quant, reduce, resize, shape, softmax, sparse)
FAMILIES = (elementwise, matmul, conv, sparse, pool, reduce, softmax, normalization, shape, gather_scatter,
            resize, quant, attention, fusion)
# Each op's lowering, from its family's LOWER table.
LOWER: dict[type, Callable[[Builder, Operation, Buf, list[Buf]], None]] = {
    cls: rule for family in FAMILIES for cls, rule in family.LOWER.items()}
TABLES = resize.TABLES
SCRATCH = {**matmul.SCRATCH, **conv.SCRATCH, **pool.SCRATCH, **sparse.SCRATCH, **quant.SCRATCH,
           **attention.SCRATCH}  # op -> bytes of scratch its lowering gets as b.scratch



# ---------------------------------------------------------------------------
# Checks that every dynamic dimension is the batch.

BIG_END = 1 << 31  # a slice end at least this large means "to the end"


def _check_batch(op: Operation) -> None:
    """Ops that could turn the batch into another dynamic size are refused."""
    ins = [nn.shape_of(o.type) for o in op.operands]
    dyn0 = bool(ins) and bool(ins[0]) and ins[0][0] == DYN
    if isinstance(op, nn.ReshapeOp):
        src, dst = ins[0], nn.shape_of(op.result.type)
        same_rows = (src[:1] == (DYN,)) == (dst[:1] == (DYN,)) and (
            src[:1] != (DYN,) or pymath.prod(src[1:]) == pymath.prod(dst[1:]))
        if not same_rows:
            raise fail(op, f"reshape {nn.fmt_shape(src)} -> {nn.fmt_shape(dst)} does not keep "
                           "dimension 0 as the batch (only the batch may be dynamic)")
    elif isinstance(op, nn.ConcatOp) and nn.normalize_axis(op.params.axis, len(ins[0])) == 0 and any(
            s[0] == DYN for s in ins):
        raise fail(op, "concatenating along the dynamic batch dimension is not supported")
    elif isinstance(op, nn.SliceOp) and dyn0:
        p = op.params
        for a, s, e, st in zip(nn.normalize_axes(p.axes, len(ins[0])), p.starts, p.ends, p.steps):
            if a == 0 and not (s == 0 and e >= BIG_END and st == 1):
                raise fail(op, "slicing the dynamic batch dimension is not supported")
    elif isinstance(op, nn.PadOp) and dyn0 and (op.params.pads[0] or op.params.pads[len(ins[0])]):
        raise fail(op, "padding the dynamic batch dimension is not supported")


def _check_type(op: Operation, t: Attribute, what: str) -> None:
    if not isinstance(t, TensorType):
        raise fail(op, f"{what} has type {t}: lower-to-loops takes ranked tensors")
    if t.element_type not in SUPPORTED_ELEMENTS:
        raise fail(op, f"{what} has element type {t.element_type}; lower-to-loops supports "
                       + ", ".join(map(str, SUPPORTED_ELEMENTS)))
    if DYN in nn.shape_of(t)[1:]:
        raise fail(op, f"{what} has type {t}: only dimension 0 (the batch) may be dynamic")
    if nn.tensor_bytes(nn.shape_of(t), nn.numpy_dtype(t.element_type).itemsize) > nn.MAX_TENSOR_BYTES:
        raise fail(op, f"{what} has type {t}: more than {nn.MAX_TENSOR_BYTES} bytes (a sample), ncc's limit")


# ---------------------------------------------------------------------------
# The function lowering: storage decisions, the memory plan, emission.


def _memref(t: TensorType) -> MemRefType:
    return MemRefType(t.element_type, t.get_shape())


def _nbytes(t: TensorType) -> tuple[int, int]:
    """(per-batch, constant) byte size."""
    shape = nn.shape_of(t)
    width = nn.numpy_dtype(t.element_type).itemsize
    if shape and shape[0] == DYN:
        return pymath.prod(shape[1:]) * width, 0
    return 0, pymath.prod(shape) * width


class FunctionLowering:
    def __init__(self, module: ModuleOp, fn: func.FuncOp, symbols: set[str], unroll_limit: int,
                 threads: int = 1):
        self.module, self.fn, self.symbols = module, fn, symbols
        self.unroll_limit = unroll_limit
        self.threads = threads
        self.new_weights: list[nn.WeightOp] = []
        self.weight_types: dict[str, TensorType] = {}
        self.storage: dict[SSAValue, tuple] = {}  # value -> ("input"|"output"|"weight"|"arena", key)
        self.tables: dict[Operation, list[str]] = {}  # sparse_matmul -> its index-table weights
        self.scratch: dict[Operation, int] = {}  # op -> bytes of arena scratch its lowering uses

    def fresh(self, base: str) -> str:
        name, k = base, 0
        while name in self.symbols:
            k += 1
            name = f"{base}_{k}"
        self.symbols.add(name)
        return name

    def add_weight(self, name: str, data: np.ndarray) -> str:
        sym = self.fresh(name)
        w = nn.WeightOp(sym, np.require(data, requirements="C"))  # keeps rank 0 (ascontiguousarray does not)
        w.attributes[nn.CONSTANT_MARK] = UnitAttr()
        self.new_weights.append(w)
        self.weight_types[sym] = w.type
        return sym

    def analyse(self) -> tuple[list, memory_plan.Plan]:
        fn = self.fn
        ops = list(fn.body.block.ops)
        if not ops or not isinstance(ops[-1], func.ReturnOp):
            raise fail(fn, "the function does not end with func.return")
        ret = ops[-1]
        for i, (a, t) in enumerate(zip(fn.body.block.args, fn.function_type.inputs.data)):
            _check_type(fn, t, f"argument {i}")
            self.storage[a] = ("input", i)
        returned: dict[SSAValue, int] = {}
        for i, v in enumerate(ret.arguments):
            returned.setdefault(v, i)
        last_use: dict[SSAValue, int] = {}
        root: dict[SSAValue, SSAValue] = {}  # arena value -> the value whose bytes it shares
        position = {op: k for k, op in enumerate(ops)}
        for k, op in enumerate(ops[:-1]):
            for v in op.operands:
                last_use[root.get(v, v)] = k
            if isinstance(op, nn.WeightRefOp):
                w = op.resolve()
                self.weight_types[op.sym] = w.type
                _check_type(op, w.type, f"weight @{op.sym}")
                self.storage[op.result] = ("weight", op.sym)
                continue
            if isinstance(op, nn.ConstantOp):
                _check_type(op, op.result.type, "the constant")
                self.storage[op.result] = ("weight", self.add_weight(f"{fn.sym_name.data}_const",
                                                                     op.data))
                continue
            if type(op) not in LOWER:
                raise fail(op, "lower-to-loops lowers nn ops only (inline calls first)"
                           if isinstance(op, func.CallOp) else "no lowering for this op")
            for v in op.operands:
                _check_type(op, v.type, "an operand")
            _check_type(op, op.results[0].type, "the result")
            _check_batch(op)
            if isinstance(op, nn.SparseMatmulOp) and len(op.params.rows) > self.unroll_limit:
                base = f"{fn.sym_name.data}_sparse"
                self.tables[op] = [self.add_weight(f"{base}_{what}", np.array(idx, np.int64))
                                   for what, idx in (("rows", op.params.rows), ("cols", op.params.cols))]
            elif type(op) in TABLES:
                base = f"{fn.sym_name.data}_{op.name[3:]}"
                self.tables[op] = [self.add_weight(f"{base}_{what}", data)
                                   for what, data in TABLES[type(op)](op)]
            res = op.results[0]
            src = op.operands[0] if isinstance(op, nn.ReshapeOp) else None
            if res in returned:
                self.storage[res] = ("output", returned[res])
            elif src is not None and self.storage[src][0] == "arena":
                root[res] = root.get(src, src)
                self.storage[res] = self.storage[root[res]]
            else:
                self.storage[res] = ("arena", res)
                root[res] = res
            last_use.setdefault(root.get(res, res), k)
            scratch = SCRATCH[type(op)](op, self.threads) if type(op) in SCRATCH else 0
            if scratch:  # live during the op only
                self.scratch[op] = scratch
        n = len(ops) - 1
        for i, v in enumerate(ret.arguments):
            _check_type(fn, v.type, f"result {i}")
            last_use[root.get(v, v)] = n
        buffers = [memory_plan.Buffer(("scratch", op), 0, memory_plan.align(nbytes), position[op], position[op])
                   for op, nbytes in self.scratch.items()]
        for v, (kind, key) in self.storage.items():
            if kind == "arena" and key is v:
                per_batch, constant = _nbytes(v.type)
                start = position[v.owner]
                buffers.append(memory_plan.Buffer(v, per_batch, constant, start, last_use[v]))
        return ops, memory_plan.plan(buffers)

    def run(self) -> func.FuncOp:
        fn = self.fn
        ops, plan = self.analyse()
        ret = ops[-1]
        in_types = list(fn.function_type.inputs.data)
        out_types = [v.type for v in ret.arguments]
        weights: list[str] = []
        for op in ops:
            syms = ([op.sym] if isinstance(op, nn.WeightRefOp) else
                    [self.storage[op.result][1]] if isinstance(op, nn.ConstantOp) else
                    self.tables.get(op, []))
            weights += [s for s in syms if s not in weights]
        use_arena = bool(plan.offsets)
        roles = ([ArgRole("input", n) for n in arg_names(fn)]
                 + [ArgRole("output", n) for n in self._output_names(len(out_types))]
                 + [ArgRole("weight", s) for s in weights] + ([ArgRole("arena", "")] if use_arena else []))
        arg_types = ([_memref(t) for t in in_types] + [_memref(t) for t in out_types]
                     + [_memref(self.weight_types[s]) for s in weights]
                     + ([MemRefType(i8, [DYN])] if use_arena else []))
        kernel = func.FuncOp(fn.sym_name.data, (arg_types, []))
        args = kernel.body.block.args
        ins, outs = args[:len(in_types)], args[len(in_types):len(in_types) + len(out_types)]
        wargs = dict(zip(weights, args[len(in_types) + len(out_types):]))
        arena = args[-1] if use_arena else None
        for a, role in zip(args, roles):
            hint = {"output": "out", "arena": "arena"}.get(role.kind, role.name)
            if re.fullmatch(r"[A-Za-z_][\w]*", hint):
                a.name_hint = hint
        b = Builder(kernel.body.block)
        b.threads = self.threads
        batch_arg = next((a for a, t in zip(ins, in_types) if nn.shape_of(t)[:1] == (DYN,)), None)
        needs_batch = any(DYN in nn.shape_of(t) for t in [*in_types, *out_types]) or any(
            DYN in nn.shape_of(r.type) for op in ops for r in op.results)
        if needs_batch:
            if batch_arg is None:
                raise fail(fn, "a dynamic dimension that no input carries (the batch must "
                               "come from an input's dimension 0)")
            b.batch = b.emit(memref.DimOp(batch_arg, b.idx(0)))
            b.batch.name_hint = "batch"

        bufs: dict[SSAValue, Buf] = {}

        def buf(v: SSAValue, ref: SSAValue) -> Buf:
            return Buf(ref, nn.shape_of(v.type), v.type.element_type)

        for a, t in zip(fn.body.block.args, ins):
            bufs[a] = buf(a, t)
        for op in ops[:-1]:
            v = op.results[0]
            kind, key = self.storage[v]
            if kind == "weight":
                bufs[v] = buf(v, wargs[key])
                continue
            if kind == "output":
                bufs[v] = buf(v, outs[key])
            else:
                a, c = plan.offsets[key]
                off = b.add_i(b.mul_i(b.batch, a), c) if a else b.idx(c)
                sizes = [b.batch] if nn.shape_of(v.type)[:1] == (DYN,) else []
                bufs[v] = buf(v, b.emit(memref.ViewOp(arena, off, sizes, _memref(v.type))))
            if isinstance(op, nn.ReshapeOp) and kind == "arena" and key is not v:
                continue  # a view of its input's bytes: nothing to compute
            tables = [Buf(wargs[s], nn.shape_of(self.weight_types[s]), self.weight_types[s].element_type)
                      for s in self.tables.get(op, [])]
            b.scratch = None
            if op in self.scratch:
                floats = self.scratch[op] // 4
                off = b.idx(plan.offsets[("scratch", op)][1])
                b.scratch = Buf(b.emit(memref.ViewOp(arena, off, [], MemRefType(f32, [floats]))), (floats,), f32)
            last = b.block.last_op
            LOWER[type(op)](b, op, bufs[v], [bufs[o] for o in op.operands] + tables)
            where = source_location(op)
            made = last.next_op if last is not None else b.block.first_op
            while made is not None:  # the kernel's code of `op` says where it came from (emit-c's comments)
                made.location = where
                made = made.next_op
        for i, v in enumerate(ret.arguments):
            if self.storage.get(v) != ("output", i):
                dst = buf(v, outs[i])
                map_nest(b, dst.shape, dst, identity_map, [(bufs[v], identity_map)], lambda x: x)
        b.emit(func.ReturnOp())
        KernelABI(fn.sym_name.data, tuple(roles), plan.per_batch, plan.constant).attach(kernel)
        self.externals = b.externals
        return kernel

    def _output_names(self, n: int) -> list[str]:
        return result_names(self.fn, "")


def source_location(op: Operation) -> NameLoc:
    """What an nn op is, for the code it lowers to: `nn.conv @w -> 1x64x112x112`,
    with the op's own location (file:line:col of the .mlir it was parsed from) inside."""
    weights = " ".join(f"@{o.owner.sym}" for o in op.operands if isinstance(o.owner, nn.WeightRefOp))
    shape = nn.fmt_shape(nn.shape_of(op.results[0].type)) if op.results else ""
    text = " ".join(t for t in (op.name, weights, f"-> {shape}" if shape else "") if t)
    return NameLoc(StringAttr(text), op.location if isinstance(op.location, FileLineColLoc) else NoneAttr())


def is_nn_function(op: Operation) -> bool:
    if not isinstance(op, func.FuncOp) or not op.body.blocks:
        return False
    types = [*op.function_type.inputs.data, *op.function_type.outputs.data]
    return any(isinstance(t, TensorType) for t in types) or any(
        o.dialect_name() == "nn" for o in op.body.block.ops)


@dataclass(frozen=True)
class LowerToLoopsPass(ModulePass):
    """Lower nn functions to loop-level kernels (memref, scf, arith, math) with an
    arena plan; option threads: the OpenMP team of each GEMM and of the loops
    parallelize-loops marks."""

    name = "lower-to-loops"
    sparse_unroll_limit: int = 256  # sparse_matmul with more nonzeros loops over index tables
    threads: int = 1  # the OpenMP team size (the GEMMs' workspaces are sized for it)

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        symbols = {o.sym_name.data for o in op.ops if hasattr(o, "sym_name")}
        functions = {o.sym_name.data: o for o in op.ops if isinstance(o, func.FuncOp)}
        for fn in [f for f in op.ops if is_nn_function(f)]:
            if self.threads < 1:
                raise PassFailedException(f"lower-to-loops: threads must be >= 1, got {self.threads}")
            lowering = FunctionLowering(op, fn, symbols, self.sparse_unroll_limit, self.threads)
            kernel = lowering.run()
            if self.threads > 1:  # loops other than the GEMMs' split over the same team
                parallelize(kernel, self.threads)
            declarations = []
            for name, (ins, outs) in lowering.externals.items():
                decl = func.FuncOp.external(name, ins, outs)
                if name not in functions:
                    functions[name] = decl
                    symbols.add(name)
                    declarations.append(decl)
                elif functions[name].body.blocks or functions[name].function_type != decl.function_type:
                    raise fail(functions[name], f"@{name} is a C math library function the "
                               "kernels call: the module may not define it otherwise")
            Rewriter.insert_op([*declarations, *lowering.new_weights, kernel], InsertPoint.before(fn))
            Rewriter.erase_op(fn)
