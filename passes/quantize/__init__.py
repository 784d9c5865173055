"""quantize: int8 post-training quantization, written as QDQ (quantize and
dequantize around the float ops, as onnxruntime's `quantize_static` writes
it): the reference runs it as fake quantization, `ncc.compile`'s fold-qdq
runs its contractions on the integers, and ONNX export writes the QDQ model
that onnxruntime runs the same way.

    ncc-opt model.mlir --quantize='calibration="batches.npz"'            static, minmax
    ncc-opt model.mlir -p 'quantize{calibration="b.npz" method=entropy report=true}'
    ncc-opt model.mlir --quantize="mode=dynamic"                           weights only; inputs at run time
    report = ncc.quantize(module, batches, method="percentile")            batches: dicts of input arrays

Per op (QUANTIZABLE; the report says why one stays float): a matmul with a
2-D weight known at compile time, or a convolution with one, both f32.
  * its weight becomes an int8 weight `<name>_quantized` (symmetric, one
    scale per output feature with per_channel, else one) and a dequantize;
  * its input (static mode) a quantize-dequantize pair at the calibrated
    range (asymmetric, per tensor; int8 or uint8: activation_type), one pair
    per value however many ops read it; the max pool of such a pair's value
    takes the pair's parameters (fold-qdq then pools the integers);
  * a bias add after it an int32 bias at the accumulator's scale
    (input scale x weight scale) and a dequantize;
  * the end of its chain (the bias add, then an activation) a
    quantize-dequantize pair at that value's calibrated range.
Dynamic mode quantizes the input at run time (nn.dynamic_parameters, uint8)
and leaves the bias and result float.

Calibration runs the model on the batches with every calibrated value as an
extra result: natively when the runtime is loaded (`ncc.quantize`, ncc-opt),
else with the reference interpreter. `calibrate.py` turns what it saw into
ranges (minmax, percentile, entropy) and parameters.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Sequence

import numpy as np
from xdsl.context import Context
from xdsl.dialects import func
from xdsl.dialects.builtin import ModuleOp, f32
from xdsl.ir import Operation, SSAValue
from xdsl.passes import ModulePass
from xdsl.rewriter import InsertPoint, Rewriter
from xdsl.transforms.dead_code_elimination import region_dce

from ncc.diagnostics import NccError
from ncc.text import text_table
from ncc.dialects import activations, nn
from ncc.dialects.nn import shape_of
from ncc.passes.pack_weights import weight_only
from ncc.passes.quantize.calibrate import METHODS, Range, activation_parameters, weight_parameters
from ncc.reference import EVAL

__all__ = ["QuantizeOptions", "QuantizePass", "QuantizeReport", "quantize", "set_runner"]

MODES = ("static", "dynamic")
ACTIVATION_TYPES = {"int8": np.int8, "uint8": np.uint8}
# op -> (the axis of its weight's output features, its output's)
QUANTIZABLE: dict[type, tuple[int, int]] = {nn.MatmulOp: (1, -1), nn.ConvOp: (0, 1)}
# Contractions that stay float, and why (the report lists them too)
STAY_FLOAT: dict[type, str] = {
    nn.SparseMatmulOp: "a sparse layer: no int8 kernel", nn.ConvTransposeOp: "no int8 conv_transpose",
    nn.FusedMatmulOp: "already fused: quantize before fuse", nn.FusedConvOp: "already fused: quantize before fuse",
    nn.MatmulTransposeAOp: "no int8 matmul_transpose_a", nn.MatmulTransposeBOp: "no int8 matmul_transpose_b"}

# Prepares a module's function to run: -> a call from one batch (dict of
# input arrays) to its results.
Runner = Callable[[ModuleOp, str], Callable[[dict[str, np.ndarray]], Sequence[np.ndarray]]]
_runner: list[Runner] = []


def set_runner(run: Runner) -> None:
    """How calibration runs the model: the runtime registers native code."""
    _runner[:] = [run]


def _reference_runner(module: ModuleOp, function: str) -> Callable[[dict[str, np.ndarray]], Sequence[np.ndarray]]:
    from ncc import reference

    return lambda batch: reference.run(module, batch, function=function)


@dataclass(frozen=True)
class QuantizeOptions:
    mode: str = "static"
    method: str = "minmax"
    per_channel: bool = True
    activation_type: str = "int8"
    percentile: float = 99.999

    def __post_init__(self) -> None:
        def bad(option: str, why: str) -> NccError:
            return NccError(f"quantize: option {option}: {why}")
        if self.mode not in MODES:
            raise bad("mode", f"must be static or dynamic, got '{self.mode}'")
        if self.method not in METHODS:
            raise bad("method", f"must be one of {', '.join(METHODS)}, got '{self.method}'")
        if self.activation_type not in ACTIVATION_TYPES:
            raise bad("activation_type", f"must be int8 or uint8, got '{self.activation_type}'")
        if not 0 < self.percentile <= 100:
            raise bad("percentile", f"must be in (0, 100], got {self.percentile}")


@dataclass
class Decision:
    op: str  # e.g. "nn.matmul #2"
    weight: str
    quantized: bool
    why: str
    input_range: tuple[float, float] | None = None
    output_range: tuple[float, float] | None = None


@dataclass
class QuantizeReport:
    mode: str
    method: str
    decisions: list[Decision] = field(default_factory=list)

    @property
    def quantized(self) -> int:
        return sum(d.quantized for d in self.decisions)

    def __str__(self) -> str:
        rows = [("op", "weight", "int8", "input range", "output range / why not")]
        for d in self.decisions:
            fmt = (lambda r: "" if r is None else f"[{r[0]:.4g}, {r[1]:.4g}]")
            rows.append((d.op, d.weight, "yes" if d.quantized else "no", fmt(d.input_range),
                         fmt(d.output_range) if d.quantized else d.why))
        return f"quantize ({self.mode}, {self.method}): {self.quantized} of {len(self.decisions)} ops int8\n" \
            + text_table(rows, indent="  ")


# ---------------------------------------------------------------------------
# What is quantized


def _function(module: ModuleOp, name: str | None) -> func.FuncOp:
    fns = [op for op in module.ops if isinstance(op, func.FuncOp) and op.body.blocks]
    if name is not None:
        match = [f for f in fns if f.sym_name.data == name]
        if not match:
            raise NccError(f"quantize: no function @{name} (functions: "
                           + ", ".join("@" + f.sym_name.data for f in fns) + ")")
        return match[0]
    if len(fns) != 1:
        raise NccError("quantize: the module has " + ("no nn function" if not fns else
                       f"{len(fns)} functions ({', '.join('@' + f.sym_name.data for f in fns)}): name one "
                       "with function="))
    return fns[0]


def _weight_name(v: SSAValue) -> str:
    """The weight symbol a value is read from (through transposes, reshapes...)."""
    while isinstance(v.owner, Operation) and not isinstance(v.owner, (nn.WeightRefOp, nn.ConstantOp)) \
            and v.owner.operands:
        v = v.owner.operands[0]
    if isinstance(v.owner, nn.WeightRefOp):
        return v.owner.sym
    return "(literal)" if isinstance(v.owner, nn.ConstantOp) else "(an input)"


def _why_not(op: Operation) -> str | None:
    """Why op stays float (None: it is quantized)."""
    x, w = op.operands[0], op.operands[1]
    if x.type.element_type != f32 or w.type.element_type != f32:
        return "not float32"
    if not weight_only(w):
        return "its weight is not known at compile time"
    if isinstance(op, nn.MatmulOp) and len(shape_of(w.type)) != 2:
        return "its weight is not 2-D"
    if weight_only(x):
        return "its input is known at compile time"
    return None


def _chain_end(op: Operation) -> tuple[SSAValue, nn.AddOp | None, SSAValue | None]:
    """op's result followed through a bias add (of a weight along the output
    features) and an activation, each its only user: (the chain's end, the
    add, the bias)."""
    v, add, bias = op.results[0], None, None
    user = v.get_user_of_unique_use()
    if isinstance(user, nn.AddOp):
        other = user.rhs if user.lhs is v else user.lhs
        out_axis = QUANTIZABLE[type(op)][1] % len(shape_of(v.type))
        if weight_only(other) and nn.broadcasts_along(shape_of(other.type), shape_of(v.type), out_axis) \
                and shape_of(user.result.type) == shape_of(v.type):
            v, add, bias = user.result, user, other
            user = v.get_user_of_unique_use()
    if type(user) in _ACTIVATIONS:
        v = user.results[0]
    return v, add, bias


_ACTIVATIONS = {cls for name, cls in nn.UNARY_OPS.items() if name in activations.BY_NAME}


def _targets(fn: func.FuncOp) -> list[tuple[Operation, str | None]]:
    """Every contraction and why it stays float (None: it is quantized)."""
    return [(op, _why_not(op) if type(op) in QUANTIZABLE else STAY_FLOAT[type(op)])
            for op in fn.body.block.ops if type(op) in QUANTIZABLE or type(op) in STAY_FLOAT]


def calibration_points(fn: func.FuncOp) -> list[SSAValue]:
    """The values whose ranges static quantization needs, each once, in order:
    every quantized op's input and the end of its chain."""
    points: list[SSAValue] = []
    for op, why in _targets(fn):
        if why is None:
            for v in (op.operands[0], _chain_end(op)[0]):
                if v not in points:
                    points.append(v)
    return points


# ---------------------------------------------------------------------------
# Calibration


def calibrate(module: ModuleOp, function: str, batches: Iterable[dict[str, Any]], options: QuantizeOptions,
              run: Runner | None = None) -> list[Range]:
    """Each calibration point's Range over the batches (in calibration_points' order)."""
    probe = module.clone()
    fn = _function(probe, function)
    points = calibration_points(fn)
    if not points:
        return []
    ret = fn.body.block.last_op
    outs = list(ret.operands)
    Rewriter.replace_op(ret, func.ReturnOp(*outs, *points))
    fn.function_type = type(fn.function_type).from_lists(
        list(fn.function_type.inputs.data), [*fn.function_type.outputs.data, *(p.type for p in points)])
    if fn.res_attrs is not None:
        fn.res_attrs = None
    ranges = [Range(options.method, options.percentile) for _ in points]
    call = (run or (_runner or [_reference_runner])[0])(probe, fn.sym_name.data)
    seen = 0
    for batch in batches:
        if not isinstance(batch, dict):
            raise NccError(f"quantize: a calibration batch must be a dict of input arrays, got {type(batch).__name__}")
        results = list(call(batch))
        for r, value in zip(ranges, results[len(outs):]):
            r.add(value)
        seen += 1
    if not seen:
        raise NccError("quantize: static quantization needs calibration data (at least one batch)")
    return ranges


# ---------------------------------------------------------------------------
# The QDQ form


class _Writer:
    """Inserts ops before an anchor and new weights into the module."""

    def __init__(self, module: ModuleOp, fn: func.FuncOp):
        self.module, self.fn = module, fn
        self.weights = {op.sym: op for op in module.ops if isinstance(op, nn.WeightOp)}
        self.symbols = {op.sym_name.data for op in module.ops if hasattr(op, "sym_name")} | set(self.weights)

    def before(self, anchor: Operation, op: Operation) -> SSAValue:
        Rewriter.insert_op(op, InsertPoint.before(anchor))
        return op.results[0]

    def value(self, v: SSAValue) -> np.ndarray:
        """A weight-only value's data."""
        op = v.owner
        if isinstance(op, nn.WeightRefOp):
            return np.asarray(self.weights[op.sym].data)
        if isinstance(op, nn.ConstantOp):
            return np.asarray(op.data)
        return np.asarray(EVAL[type(op)](op, *(self.value(o) for o in op.operands)))

    def weight(self, base: str, data: np.ndarray, anchor: Operation) -> SSAValue:
        name, k = f"{base}_quantized", 1
        while name in self.symbols:
            name, k = f"{base}_quantized_{k}", k + 1
        self.symbols.add(name)
        w = nn.WeightOp(name, data)
        Rewriter.insert_op(w, InsertPoint.before(self.fn))
        self.weights[name] = w
        return self.before(anchor, nn.WeightRefOp(w))

    def literal(self, data: Any, anchor: Operation) -> SSAValue:
        return self.before(anchor, nn.ConstantOp(np.asarray(data)))


def _qdq(w: _Writer, v: SSAValue, lo: float, hi: float, dtype: np.dtype, anchor: Operation) -> SSAValue:
    scale, zero = activation_parameters(lo, hi, dtype)
    s, z = w.literal(scale, anchor), w.literal(zero, anchor)
    q = w.before(anchor, nn.QuantizeOp(v, s, z))
    return w.before(anchor, nn.DequantizeOp(q, s, z))


def _replace_uses(v: SSAValue, new: SSAValue, keep: set[Operation]) -> None:
    for use in list(v.uses):
        if use.operation not in keep:
            use.operation.operands[use.index] = new


def _erase_dead(fn: func.FuncOp, module: ModuleOp, replaced: set[str]) -> None:
    """Ops left without users, then the float weights the int8 ones replaced (if nothing else reads them)."""
    region_dce(fn.body)
    used = {op.sym for f in module.ops if isinstance(f, func.FuncOp) for op in f.walk()
            if isinstance(op, nn.WeightRefOp)}
    for op in [op for op in module.ops if isinstance(op, nn.WeightOp) and op.sym not in used and op.sym in replaced]:
        module.body.block.detach_op(op).erase()


def quantize_module(module: ModuleOp, options: QuantizeOptions, ranges: Sequence[Range] = (),
                    function: str | None = None) -> QuantizeReport:
    """Rewrite `module`'s function into the QDQ form (ranges from `calibrate`
    for static mode); returns the per-op report."""
    fn = _function(module, function)
    report = QuantizeReport(options.mode, options.method if options.mode == "static" else "run time")
    bounds = dict(zip(calibration_points(fn), (r.bounds() for r in ranges))) if options.mode == "static" else {}
    w = _Writer(module, fn)
    dtype = ACTIVATION_TYPES[options.activation_type]
    dequantized: dict[SSAValue, SSAValue] = {}  # a value -> its quantize-dequantize pair
    made: set[SSAValue] = set()  # the pairs' dequantized values
    replaced_biases: set[str] = set()
    ranges_of: dict[SSAValue, tuple[float, float]] = {}  # a pair's dequantized value -> its range
    for k, (op, why) in enumerate(_targets(fn)):
        name = f"{op.name} #{k}"
        decision = Decision(name, _weight_name(op.operands[1]) if len(op.operands) > 1 else "", why is None, why or "")
        report.decisions.append(decision)
        if why is not None:
            continue
        w_axis, out_axis = QUANTIZABLE[type(op)]
        x, wv = op.operands[0], op.operands[1]
        end, add, bias = _chain_end(op)
        # the input
        if x in made:  # already the dequantized end of an earlier op's chain
            dequantized[x] = x
            decision.input_range = ranges_of.get(x)
        pooled = x.owner.input if isinstance(x.owner, nn.MaxPoolOp) else None
        if x not in dequantized and pooled in made and options.mode == "static":
            # a max pool of quantized values keeps their parameters (its range is within
            # theirs): fold-qdq then pools the integers
            pair = pooled.owner
            s, z = w.literal(pair.scale.owner.data, op), w.literal(pair.zero_point.owner.data, op)
            dequantized[x] = w.before(op, nn.DequantizeOp(w.before(op, nn.QuantizeOp(x, s, z)), s, z))
            decision.input_range = ranges_of.get(pooled)
        if x not in dequantized:
            if options.mode == "static":
                decision.input_range = bounds[x]
                dequantized[x] = _qdq(w, x, *bounds[x], dtype, op)
            else:
                s, z = nn.dynamic_parameters(lambda o: w.before(op, o), x)
                dequantized[x] = w.before(op, nn.DequantizeOp(w.before(op, nn.QuantizeOp(x, s, z)), s, z))
        xs = dequantized[x]
        made.add(xs)
        x_scale = xs.owner.scale
        op.operands[0] = xs
        # the weight
        scale, q = weight_parameters(w.value(wv), w_axis if options.per_channel else None)
        ws = w.literal(scale, op)
        wq = w.before(op, nn.DequantizeOp(w.weight(decision.weight, q, op), ws, w.literal(np.zeros(scale.shape, np.int8), op),
                                          axis=w_axis))
        op.operands[1] = wq
        # the bias, at the accumulator's scale (computed in f32, as fold-qdq's product)
        if bias is not None and options.mode == "static":
            acc_scale = (np.float32(x_scale.owner.data) * scale).astype(np.float32)
            b = w.value(bias).astype(np.float32)
            rank = b.ndim
            feature_axis = rank - (len(shape_of(op.results[0].type)) - out_axis % len(shape_of(op.results[0].type)))
            shaped = acc_scale if acc_scale.ndim == 0 else acc_scale.reshape(
                [-1 if d == feature_axis else 1 for d in range(rank)])
            bq = np.clip(np.rint(b / shaped), -2**31, 2**31 - 1).astype(np.int32)
            replaced_biases.add(_weight_name(bias))
            bref = w.weight(_weight_name(bias), bq, add)
            bdq = w.before(add, nn.DequantizeOp(bref, w.literal(acc_scale, add),
                                                w.literal(np.zeros(acc_scale.shape, np.int32), add),
                                                axis=max(feature_axis, 0)))
            add.operands[1 if add.rhs is bias else 0] = bdq
        # the result
        if options.mode == "static":
            decision.output_range = bounds[end]
            pair = _qdq(w, end, *bounds[end], dtype, end.owner.next_op)
            dequantized[end] = pair
            made.add(pair)
            ranges_of[pair] = bounds[end]
            _replace_uses(end, pair, keep={pair.owner.input.owner})
    _erase_dead(fn, module, {d.weight for d in report.decisions if d.quantized} | replaced_biases)
    return report


def quantize(module: ModuleOp, batches: Iterable[dict[str, Any]] | None = None, *, mode: str = "static",
             method: str = "minmax", per_channel: bool = True, activation_type: str = "int8",
             percentile: float = 99.999, function: str | None = None, run: Runner | None = None) -> QuantizeReport:
    """Quantize `module` in place (see the module docstring); `batches`: the
    calibration data, an iterable of {input name: array} (static mode)."""
    options = QuantizeOptions(mode, method, per_channel, activation_type, percentile)
    fn = _function(module, function)
    ranges: list[Range] = []
    if mode == "static":
        if batches is None:
            raise NccError("quantize: static quantization needs calibration data: an iterable of "
                           "{input name: array} batches (or mode=dynamic)")
        ranges = calibrate(module, fn.sym_name.data, batches, options, run)
    return quantize_module(module, options, ranges, fn.sym_name.data)


def _npz_batches(path: str, batch: int) -> Iterable[dict[str, np.ndarray]]:
    try:
        data = dict(np.load(path))
    except (OSError, ValueError) as e:
        raise NccError(f"quantize: cannot read the calibration file: {e}", path) from None
    if not data:
        raise NccError("quantize: the calibration file holds no arrays", path)
    n = min(len(a) for a in data.values())
    for start in range(0, n, batch):
        yield {k: a[start:start + batch] for k, a in data.items()}


@dataclass(frozen=True)
class QuantizePass(ModulePass):
    """Quantize matmuls and convolutions to int8 as QDQ: weights per channel, inputs and results at calibrated
    ranges (static: calibration="<.npz of input arrays named as the inputs, quoted>") or at run time (mode=dynamic)."""

    name = "quantize"

    calibration: str = ""
    mode: str = "static"
    method: str = "minmax"
    per_channel: bool = True
    activation_type: str = "int8"
    percentile: float | int = 99.999
    batch: int = 32
    function: str = ""
    report: bool = False

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        if self.mode == "static" and not self.calibration:
            raise NccError("quantize: static quantization needs calibration=<file.npz> (arrays named as the "
                           "model's inputs, the first axis the samples) or mode=dynamic")
        batches = _npz_batches(self.calibration, self.batch) if self.calibration else None
        result = quantize(op, batches, mode=self.mode, method=self.method, per_channel=self.per_channel,
                          activation_type=self.activation_type, percentile=float(self.percentile),
                          function=self.function or None)
        if self.report:
            print(result, file=sys.stderr)
