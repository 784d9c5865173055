"""The OpenMP runtime calls of ncc's native code, in llvmlite IR.

Parallel work (the GEMM's column panels, the loops parallelize-loops marks) is
run as MLIR's OpenMP lowering does it: the arguments go into an array of i64
words, and libgomp's `GOMP_parallel(body, words, team, 0)` runs
`body(words)` on each thread of the team, which finds its share from
`omp_get_thread_num()` and `omp_get_num_threads()` (the team libgomp gave,
which may be smaller than the one asked for). On a system without libgomp,
`serial_openmp` defines these three functions so that the team's bodies run
one after another on the calling thread (the same results).
"""

from __future__ import annotations

from typing import Sequence

from llvmlite import ir

I64 = ir.IntType(64)
I32 = ir.IntType(32)
PTR = ir.PointerType()
BODY = ir.FunctionType(ir.VoidType(), [PTR])  # void body(i64 *words)
TEAM_SUFFIX = "_team"  # a body's name ends with it
_SIGNATURES = {
    "GOMP_parallel": ir.FunctionType(ir.VoidType(), [PTR, PTR, I32, I32]),
    "omp_get_thread_num": ir.FunctionType(I32, []),
    "omp_get_num_threads": ir.FunctionType(I32, []),
}


def _runtime(module: ir.Module, name: str) -> ir.Function:
    return module.globals.get(name) or ir.Function(module, _SIGNATURES[name], name)


def to_words(b: ir.IRBuilder, values: Sequence[ir.Value]) -> ir.Value:
    """A stack array of one i64 word per value (pointers, integers, floats' bits)."""
    words = b.alloca(I64, size=ir.Constant(I64, len(values)))
    for k, v in enumerate(values):
        if isinstance(v.type, ir.PointerType):
            v = b.ptrtoint(v, I64)
        elif isinstance(v.type, (ir.FloatType, ir.DoubleType)):  # its bits
            v = b.bitcast(v, ir.IntType(32 if isinstance(v.type, ir.FloatType) else 64))
        if v.type != I64:
            v = b.zext(v, I64)
        b.store(v, b.gep(words, [ir.Constant(I64, k)], inbounds=True))
    return words


def from_words(b: ir.IRBuilder, words: ir.Value, types: Sequence[ir.Type]) -> list[ir.Value]:
    """The values `to_words` stored, as `types`."""
    out = []
    for k, t in enumerate(types):
        v = b.load(b.gep(words, [ir.Constant(I64, k)], inbounds=True, source_etype=I64), typ=I64)
        if isinstance(t, ir.PointerType):
            v = b.inttoptr(v, t)
        elif isinstance(t, (ir.FloatType, ir.DoubleType)):
            v = b.bitcast(v if isinstance(t, ir.DoubleType) else b.trunc(v, I32), t)
        elif t != I64:
            v = b.trunc(v, t)
        out.append(v)
    return out


def parallel(b: ir.IRBuilder, body: ir.Function, words: ir.Value, team: ir.Value) -> None:
    """Run `body(words)` on a team of `team` (i64) threads and wait for all."""
    gomp = _runtime(b.module, "GOMP_parallel")
    b.call(gomp, [b.bitcast(body, PTR), words, b.trunc(team, I32), I32(0)])


def alone_or_on_team(b: ir.IRBuilder, serial: ir.Function, serial_args: list[ir.Value], body: ir.Function,
                     body_args: list[ir.Value], team: ir.Value) -> None:
    """serial(serial_args) on the calling thread when `team` is 1, else
    body(words of body_args) on an OpenMP team of `team` threads."""
    with b.if_else(b.icmp_signed(">", team, ir.Constant(I64, 1))) as (on_team, alone):
        with alone:
            b.call(serial, serial_args)
        with on_team:
            parallel(b, body, to_words(b, body_args), team)


def thread_and_team(b: ir.IRBuilder) -> tuple[ir.Value, ir.Value]:
    """(this thread's number, the team's size), as i64, inside a body."""
    tid = b.call(_runtime(b.module, "omp_get_thread_num"), [])
    team = b.call(_runtime(b.module, "omp_get_num_threads"), [])
    return b.sext(tid, I64), b.sext(team, I64)


def thread_columns(b: ir.IRBuilder, n: ir.Value, width: int) -> tuple[ir.Value, ir.Value, ir.Value]:
    """(this thread's number, its first column, its end) of n columns split
    over the team in runs of whole `width`-column groups, inside a body
    (a thread past the columns gets an empty run)."""
    tid, team = thread_and_team(b)
    one = ir.Constant(I64, 1)
    groups = b.sdiv(b.add(n, ir.Constant(I64, width - 1)), ir.Constant(I64, width))
    per = b.mul(b.sdiv(b.add(groups, b.sub(team, one)), team), ir.Constant(I64, width))
    first = b.mul(tid, per)
    end = b.add(first, per)
    return tid, first, b.select(b.icmp_signed("<", end, n), end, n)


def serial_openmp(module: ir.Module) -> None:
    """Define the OpenMP calls `module` declares for a system without libgomp:
    GOMP_parallel runs the body for thread 0, 1, ... in turn."""
    if not any(name in module.globals and module.globals[name].is_declaration for name in _SIGNATURES):
        return
    state = {}
    for name in ("tid", "team"):
        g = ir.GlobalVariable(module, I32, f"ncc_serial_{name}")
        g.linkage, g.initializer, g.thread_local = "internal", I32(0), "localdynamic"
        state[name] = g
    for name, var in (("omp_get_thread_num", "tid"), ("omp_get_num_threads", "team")):
        fn = module.globals.get(name)
        if fn is not None and fn.is_declaration:
            fn.linkage = "internal"
            b = ir.IRBuilder(fn.append_basic_block("entry"))
            b.ret(b.load(state[var], typ=I32))
    par = module.globals.get("GOMP_parallel")
    if par is None or not par.is_declaration:
        return
    par.linkage = "internal"
    # the bodies are this module's (the GEMM's, the launchers'): compared, not called through
    # a pointer, so every call stays direct
    bodies = [f for f in module.functions if f.function_type == BODY and f.name.endswith(TEAM_SUFFIX)]
    fn, data, n, _ = par.args
    b = ir.IRBuilder(par.append_basic_block("entry"))
    head, step, done = (par.append_basic_block(x) for x in ("head", "body", "done"))
    b.store(n, state["team"])
    b.branch(head)
    b.position_at_end(head)
    t = b.phi(I32)
    t.add_incoming(I32(0), par.blocks[0])
    b.cbranch(b.icmp_signed("<", t, n), step, done)
    b.position_at_end(step)
    b.store(t, state["tid"])
    for body in bodies:
        with b.if_then(b.icmp_unsigned("==", fn, body)):
            b.call(body, [data])
    t.add_incoming(b.add(t, I32(1)), b.block)
    b.branch(head)
    b.position_at_end(done)
    b.store(I32(0), state["tid"])
    b.store(I32(1), state["team"])
    b.ret_void()


def define_launcher(module: ir.Module, name: str, loop: str, team: int, step: int, min_trips: int) -> None:
    """Define the declared `name(lo, hi, args...)`: run `loop(lo, hi, args...)`
    (a function looping over [lo, hi) by `step`) with [lo, hi) split into one
    run of whole iterations per thread of a team of at most `team`; alone if
    it has fewer than `min_trips` iterations."""
    launcher, body_of = module.get_global(name), module.get_global(loop)
    if not launcher.is_declaration or launcher.function_type != body_of.function_type:
        raise ValueError(f"@{name} must be declared with the type of @{loop}")
    launcher.linkage = "internal"
    lo, hi, *rest = launcher.args
    b = ir.IRBuilder(launcher.append_basic_block("entry"))
    trips = b.sdiv(b.add(b.sub(hi, lo), I64(step - 1)), I64(step))
    threads = b.select(b.icmp_signed("<", trips, I64(team)), trips, I64(team))
    threads = b.select(b.icmp_signed("<", trips, I64(min_trips)), I64(1), threads)
    with b.if_else(b.icmp_signed(">", threads, I64(1))) as (split, alone):
        with alone:
            b.call(body_of, launcher.args)
        with split:
            parallel(b, _loop_team(module, body_of, step, name), to_words(b, launcher.args), threads)
    b.ret_void()


def _loop_team(module: ir.Module, loop: ir.Function, step: int, name: str) -> ir.Function:
    """void body(i64 *words): thread t runs iterations [lo + t*per*step, ...) of `loop`."""
    fn = ir.Function(module, BODY, name + TEAM_SUFFIX)
    fn.linkage = "internal"
    b = ir.IRBuilder(fn.append_basic_block("entry"))
    lo, hi, *rest = from_words(b, fn.args[0], [a.type for a in loop.args])
    tid, team = thread_and_team(b)
    trips = b.sdiv(b.add(b.sub(hi, lo), I64(step - 1)), I64(step))
    per = b.mul(b.sdiv(b.add(trips, b.sub(team, I64(1))), team), I64(step))  # iterations per thread, x step
    first = b.add(lo, b.mul(tid, per))
    end = b.add(first, per)
    last = b.select(b.icmp_signed("<", end, hi), end, hi)
    with b.if_then(b.icmp_signed("<", first, last)):
        b.call(loop, [first, last, *rest])
    b.ret_void()
    return fn
