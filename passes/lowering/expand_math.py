"""expand-math: f32 transcendental math ops -> arith-only code (polynomial approximations).

LLVM here has no vector math library: a loop calling `expf` is either not
vectorized or calls the scalar function once per lane. Rewriting the calls into
arith (range reduction, a polynomial, exponent bit tricks through
arith.bitcast) -- as MLIR's `PolynomialApproximation` patterns do -- lets the
loop vectorizer run 16 lanes per AVX-512 instruction.

    op          method (f32)                                            max error vs.
                                                                          float64, tested
    math.exp    clamp, n = round(x log2 e) (add-magic rounding), Cody-Waite r,
                degree-7 Cephes polynomial, 2^n as two exponent-bit scalings
                (so results down to the subnormals are right)
    math.log    subnormals scaled by 2^23; x = m 2^e with m in [sqrt(1/2), sqrt 2),
                Cephes degree-9 polynomial in m - 1
    math.tanh   |x| < 0.625: odd Cephes polynomial; else 1 - 2 / (exp(2|x|) + 1)
    math.erf    clamp to [-4, 4]; odd rational approximation x P(x^2) / Q(x^2)
    math.log1p  u = 1 + x; x if u == 1, else log(u) x / (u - 1)   (Goldberg)
    math.expm1  u = exp(x); x if u == 1, else (u - 1) x / log(u)   (Kahan)

Special values follow libm: NaN in -> NaN out, exp(+-inf) = inf / 0, log(0) =
-inf, log(<0) = NaN, tanh/erf(+-inf) = +-1. test/test_lower_to_llvm.py measures
the error in ulps of each over wide ranges and the edges. f64 ops are left
alone (they become LLVM intrinsics / libm calls in lower-to-llvm), as are
vector-typed ones. `lower-to-llvm` runs this pass first unless
`expand-math=false`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from xdsl.context import Context
from xdsl.dialects import arith, func, math
from xdsl.dialects.builtin import FloatAttr, IntegerAttr, ModuleOp, f32, i32
from xdsl.ir import Operation, SSAValue
from xdsl.passes import ModulePass
from xdsl.pattern_rewriter import (
    PatternRewriter, PatternRewriteWalker, RewritePattern,
)
from xdsl.rewriter import InsertPoint


class V:
    """An f32 or i32 SSA value; Python operators emit arith ops before the rewritten op."""

    def __init__(self, em: "Emitter", value: SSAValue):
        self.em, self.value = em, value

    def _bin(self, other, op, swap=False):
        other = self.em.lift(other, self.value.type)
        a, b = (other, self) if swap else (self, other)
        return self.em.emit(op(a.value, b.value))

    def __add__(self, o): return self._bin(o, arith.AddfOp)
    def __radd__(self, o): return self._bin(o, arith.AddfOp, True)
    def __sub__(self, o): return self._bin(o, arith.SubfOp)
    def __rsub__(self, o): return self._bin(o, arith.SubfOp, True)
    def __mul__(self, o): return self._bin(o, arith.MulfOp)
    def __rmul__(self, o): return self._bin(o, arith.MulfOp, True)
    def __truediv__(self, o): return self._bin(o, arith.DivfOp)
    def __rtruediv__(self, o): return self._bin(o, arith.DivfOp, True)

    def cmp(self, pred: str, o) -> "V":
        return self.em.emit(arith.CmpfOp(self.value, self.em.lift(o, f32).value, pred))

    # i32 operations, for exponent bit tricks
    def iadd(self, o): return self._bin(o, arith.AddiOp)
    def isub(self, o): return self._bin(o, arith.SubiOp)
    def iand(self, o): return self._bin(o, arith.AndIOp)
    def ior(self, o): return self._bin(o, arith.OrIOp)
    def shl(self, o): return self._bin(o, arith.ShLIOp)
    def shrs(self, o): return self._bin(o, arith.ShRSIOp)
    def shru(self, o): return self._bin(o, arith.ShRUIOp)


class Emitter:
    def __init__(self, rewriter: PatternRewriter, anchor: Operation, constants: dict):
        self.rewriter, self.anchor, self.constants = rewriter, anchor, constants

    def emit(self, op: Operation) -> V:
        self.rewriter.insert(op, InsertPoint.before(self.anchor))
        return V(self, op.results[0])

    def lift(self, x, t) -> V:
        if isinstance(x, V):
            return x
        # Constants are shared by all expansions in a function and placed at its entry:
        # a net with hundreds of tanh would otherwise build thousands of copies.
        fn = self.anchor.parent_op()
        while fn is not None and not isinstance(fn, func.FuncOp):
            fn = fn.parent_op()
        key = (fn, repr(float(x)) if t == f32 else int(x), t)
        if key not in self.constants:
            op = arith.ConstantOp(FloatAttr(float(x), t) if t == f32 else IntegerAttr(int(x), t))
            last = self.constants.get(fn)  # keep them in order of first use
            where = (InsertPoint.after(last) if last is not None else
                     InsertPoint.at_start(fn.body.blocks.first) if fn is not None
                     else InsertPoint.before(self.anchor))
            self.rewriter.insert(op, where)
            self.constants[key] = op.result
            if fn is not None:
                self.constants[fn] = op
        return V(self, self.constants[key])

    def select(self, c: V, a, b) -> V:
        a = self.lift(a, f32 if not isinstance(b, V) else b.value.type)
        return self.emit(arith.SelectOp(c.value, a.value, self.lift(b, a.value.type).value))

    def clamp(self, x: V, lo: float, hi: float) -> V:
        # maximumf/minimumf propagate NaN
        x = self.emit(arith.MaximumfOp(x.value, self.lift(lo, f32).value))
        return self.emit(arith.MinimumfOp(x.value, self.lift(hi, f32).value))

    def unary(self, op, x: V) -> V:
        return self.emit(op(x.value))

    def bits(self, x: V) -> V:
        return self.emit(arith.BitcastOp(x.value, i32))

    def from_bits(self, n: V) -> V:
        return self.emit(arith.BitcastOp(n.value, f32))

    def to_float(self, n: V) -> V:
        return self.emit(arith.SIToFPOp(n.value, f32))

    @staticmethod
    def horner(x: V, coeffs) -> V:
        acc = coeffs[0]
        for c in coeffs[1:]:
            acc = acc * x + c if isinstance(acc, V) else x * acc + c
        return acc


INF = float("inf")
MAGIC = 12582912.0  # 1.5 * 2^23: adding it rounds |t| < 2^22 to an integer in the low bits
LN2_HI, LN2_LO = 0.693359375, -2.12194440e-4  # ln 2 = LN2_HI + LN2_LO (Cody-Waite)


def _exp_reduced(em: Emitter, x: V) -> tuple[V, V]:
    """(p, n) with exp(x) = p * 2^n: n = round(x / ln 2), p = exp(r) of the rest r (Cody-Waite) by
    its polynomial."""
    k = x * 1.44269504088896341 + MAGIC
    nf = k - MAGIC
    n = em.bits(k).isub(em.bits(em.lift(MAGIC, f32)))
    r = x - nf * LN2_HI - nf * LN2_LO
    p = em.horner(r, [1.9875691500e-4, 1.3981999507e-3, 8.3334519073e-3, 4.1665795894e-2,
                      1.6666665459e-1, 5.0000001201e-1]) * (r * r) + r + 1.0
    return p, n


def exp(em: Emitter, x: V) -> V:
    p, n = _exp_reduced(em, em.clamp(x, -104.0, 89.0))  # exp beyond is 0 / inf in f32
    # 2^n for n in [-150, 128] as 2^n1 * 2^n2, both normal numbers
    n1 = n.shrs(1)
    n2 = n.isub(n1)
    return p * em.from_bits(n1.iadd(127).shl(23)) * em.from_bits(n2.iadd(127).shl(23))


def exp_approximate(em: Emitter, x: V) -> V:
    """exp(x) of a math.exp marked `afn` (what 1 + exp(x) needs: sigmoid, the tanh Gelu): as
    exact as `exp` from 2^-125 to 2^127, with one scale 2^n instead of two; x under -86.5 gives
    exp(-86.5) (2.7e-38: 1 + it is 1 all the same, and no result is subnormal), x from 88.38 on
    inf (instead of up to 3.4e38 until 88.72). Four operations fewer per element."""
    p, n = _exp_reduced(em, em.clamp(x, -86.5, 89.0))  # n in [-125, 128]: 2^n normal, or inf at 128
    return p * em.from_bits(n.iadd(127).shl(23))


def log(em: Emitter, x: V) -> V:
    small = x.cmp("olt", 1.17549435e-38)  # subnormal (or <= 0: handled below)
    xs = em.select(small, x * 8388608.0, x)
    b = em.bits(xs)
    e = b.shru(23).isub(126).isub(em.select(small, em.lift(23, i32), 0))
    m = em.from_bits(b.iand(0x007FFFFF).ior(0x3F000000))  # in [0.5, 1)
    lt = m.cmp("olt", 0.707106781186547524)
    e = e.isub(em.select(lt, em.lift(1, i32), 0))
    m = em.select(lt, m + m, m) - 1.0
    z = m * m
    y = m * z * em.horner(m, [7.0376836292e-2, -1.1514610310e-1, 1.1676998740e-1,
                              -1.2420140846e-1, 1.4249322787e-1, -1.6668057665e-1,
                              2.0000714765e-1, -2.4999993993e-1, 3.3333331174e-1])
    ef = em.to_float(e)
    y = y + ef * LN2_LO - z * 0.5
    r = m + y + ef * LN2_HI
    r = em.select(x.cmp("oeq", INF), INF, r)
    r = em.select(x.cmp("oeq", 0.0), -INF, r)
    return em.select(x.cmp("ult", 0.0), float("nan"), r)  # negative or NaN


def tanh(em: Emitter, x: V) -> V:
    ax = em.unary(math.AbsFOp, x)
    z = x * x
    small = x * z * em.horner(z, [-5.70498872745e-3, 2.06390887954e-2, -5.37397155531e-2,
                                  1.33314422036e-1, -3.33332819422e-1]) + x
    large = 1.0 - 2.0 / (exp(em, ax + ax) + 1.0)
    large = em.emit(math.CopySignOp(large.value, x.value))
    return em.select(ax.cmp("olt", 0.625), small, large)


def erf(em: Emitter, x: V) -> V:
    x = em.clamp(x, -4.0, 4.0)
    x2 = x * x
    p = em.horner(x2, [-2.72614225801306e-10, 2.77068142495902e-08, -2.10102402082508e-06,
                           -5.69250639462346e-05, -7.34990630326855e-04, -2.95459980854025e-03,
                           -1.60960333262415e-02])
    q = em.horner(x2, [-1.45660718464996e-05, -2.13374055278905e-04, -1.68282697438203e-03,
                       -7.37332916720468e-03, -1.42647390514189e-02])
    return x * (p / q)  # x * (P/Q): x * P would go subnormal for tiny x


def log1p(em: Emitter, x: V) -> V:
    u = x + 1.0
    d = u - 1.0
    r = em.select(u.cmp("oeq", INF), INF, log(em, u) * (x / d))
    return em.select(d.cmp("oeq", 0.0), x, r)


def expm1(em: Emitter, x: V) -> V:
    u = exp(em, x)
    d = u - 1.0
    r = em.select(u.cmp("oeq", INF), INF, d * (x / log(em, u)))
    r = em.select(d.cmp("oeq", -1.0), -1.0, r)
    return em.select(u.cmp("oeq", 1.0), x, r)


EXPANSIONS: dict[type[Operation], Callable[[Emitter, V], V]] = {
    math.ExpOp: exp, math.LogOp: log, math.TanhOp: tanh, math.ErfOp: erf,
    math.Log1pOp: log1p, math.ExpM1Op: expm1,
}


class ExpandMath(RewritePattern):
    def __init__(self):
        self.constants: dict = {}

    def match_and_rewrite(self, op: Operation, rewriter: PatternRewriter, /):
        expand = EXPANSIONS.get(type(op))
        if expand is None or op.results[0].type != f32:
            return
        if isinstance(op, math.ExpOp) and op.fastmath is not None and "afn" in op.fastmath.data:
            expand = exp_approximate
        em = Emitter(rewriter, op, self.constants)
        rewriter.replace(op, [], [expand(em, V(em, op.operands[0])).value])


@dataclass(frozen=True)
class ExpandMathPass(ModulePass):
    """f32 exp/log/tanh/erf/log1p/expm1 -> arith-only polynomial code (range reduction and
    Cephes polynomials), so that loops calling them vectorize; f64 ops are left alone."""

    name = "expand-math"

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        PatternRewriteWalker(ExpandMath(), apply_recursively=False).rewrite_module(op)
