"""fold-weights: values computed from weights alone become weights of their own.

    nn.weight @fc.weight : tensor<12x64xf32>          nn.weight @fc.weight : tensor<12x64xf32>
    func.func @main(%x: tensor<?x64xf32>) ...   ==>   nn.weight @fc.weight.transpose {ncc.derived_from = [@fc.weight]}
      %w = nn.weight_ref @fc.weight                              : tensor<64x12xf32>
      %t = nn.transpose %w perm [1, 0]                func.func @main(%x: tensor<?x64xf32>) ...
      %y = nn.matmul %x, %t                             %t = nn.weight_ref @fc.weight.transpose
                                                        %y = nn.matmul %x, %t

A model keeps its parameters as its file declares them (a Gemm's `transB`
weight, a Conv's 1-D bias, a weight assembled by Concat from several
parameters): the ONNX importer leaves the ops on them in the graph, so that
training differentiates through them. For inference those ops need not run
on every call: this pass replaces each value that depends on weights and
literals only (a static shape, used by an op that does depend on the inputs)
by a *derived* weight, `ncc.derived_from` naming its sources. Values of
literals only become a literal (constant folding), up to LITERAL_LIMIT
elements; a larger one (a layer's weights given as a splat constant, then
scaled by a folded batch norm and packed) is a derived weight of no
sources (`@literal.<op>`): computed once, never on every call.

`fold_weights(module)` also returns the recipes: a module holding one
function per derived weight, `@<derived>() -> tensor<...>`, that recomputes
it from its sources. `ncc.compile` keeps them, so that setting a parameter
recomputes the kernels' derived copies (runtime/compiled_model.py). As a pass
(`ncc-opt --fold-weights`) the derived data is computed once from the
sources' data; a derived weight of a source without data has none either.
"""

from __future__ import annotations

from xdsl.context import Context
from xdsl.dialects import func
from xdsl.dialects.builtin import ArrayAttr, ModuleOp, StringAttr, SymbolRefAttr, TensorType
from xdsl.ir import Operation, SSAValue
from xdsl.passes import ModulePass
from xdsl.rewriter import InsertPoint, Rewriter

from ncc.dialects import nn
from ncc.reference import EVAL, run

DERIVED_FROM = "ncc.derived_from"  # on a derived nn.weight: the weights it is computed from
LITERAL_LIMIT = 1 << 16  # a fold of literals only is kept as a literal up to this many elements


def _static_type(v: SSAValue) -> bool:
    return isinstance(v.type, TensorType) and all(d >= 0 for d in v.type.get_shape())


def _foldable(op: Operation, static: set[SSAValue]) -> bool:
    """An nn op of one static-shaped result whose operands are all weight- or literal-valued."""
    return (type(op) in EVAL and len(op.results) == 1 and bool(op.operands)
            and all(v in static for v in op.operands) and _static_type(op.results[0]))


def _slice_of(root: SSAValue) -> list[Operation]:
    """The ops computing `root`, in program order."""
    seen: set[Operation] = set()
    todo = [root.owner]
    while todo:
        op = todo.pop()
        if op in seen:
            continue
        seen.add(op)
        todo.extend(v.owner for v in op.operands)
    block = root.owner.parent_block()
    return [op for op in block.ops if op in seen]


def _fresh(base: str, used: set[str]) -> str:
    name, k = base, 1
    while name in used:
        name, k = f"{base}_{k}", k + 1
    used.add(name)
    return name


def fold_weights(module: ModuleOp, compute: bool = True) -> ModuleOp:
    """Fold weight-only values of every nn function of `module` in place into
    derived weights (their data computed when `compute` and every source has
    data) and literal-only values into literals (large ones into derived
    weights of no sources); returns the recipes module."""
    weights = {op.sym: op for op in module.ops if isinstance(op, nn.WeightOp)}
    used = {op.sym_name.data for op in module.ops if hasattr(op, "sym_name")}
    recipes = ModuleOp([])
    recipe_sources: set[str] = set()
    functions = [op for op in module.ops if isinstance(op, func.FuncOp) and op.body.blocks]
    for fn in functions:
        static: set[SSAValue] = set()
        computed: list[Operation] = []  # ops of static values other than weight refs and literals
        for op in fn.body.block.ops:
            if isinstance(op, (nn.WeightRefOp, nn.ConstantOp)):
                static.add(op.results[0])
            elif _foldable(op, static):
                static.add(op.results[0])
                computed.append(op)
        static_ops = {v.owner for v in static}
        roots = [op.results[0] for op in computed
                 if any(u.operation not in static_ops for u in op.results[0].uses)]
        # every recipe made before any fold: a root may feed another root's slice (common
        # subexpressions), and each recipe must compute from sources, not from another derived weight
        made = []
        for root in roots:
            ops = _slice_of(root)
            sources = list(dict.fromkeys(op.sym for op in ops if isinstance(op, nn.WeightRefOp)))
            recipe = func.FuncOp("recipe", ((), (root.type,)))
            mapping: dict[SSAValue, SSAValue] = {}
            for op in ops:
                recipe.body.block.add_op(op.clone(mapping))
            recipe.body.block.add_op(func.ReturnOp(mapping[root]))
            made.append((root, sources, recipe))
        for root, sources, recipe in made:
            if not sources and root.type.element_count() <= LITERAL_LIMIT:
                new: Operation = nn.ConstantOp(run(recipe, {})[0])
            else:  # a large fold of literals only is a derived weight of no sources: computed once
                sym = _fresh(f"{sources[0] if sources else 'literal'}.{root.owner.name.removeprefix('nn.')}",
                             used)
                recipe.sym_name = StringAttr(sym)
                data = None
                if compute and all(weights[s].data is not None for s in sources):
                    data = run(_with_weights(recipe, [weights[s] for s in sources]), {})[0]
                w = nn.WeightOp(sym, data, root.type)
                w.attributes[DERIVED_FROM] = ArrayAttr([SymbolRefAttr(s) for s in sources])
                Rewriter.insert_op(w, InsertPoint.before(fn))
                weights[sym] = w
                recipes.body.block.add_op(recipe)
                recipe_sources.update(sources)
                new = nn.WeightRefOp(w)
            Rewriter.insert_op(new, InsertPoint.before(root.owner))
            root.replace_all_uses_with(new.results[0])
        for op in reversed(list(fn.body.block.ops)):  # what the folds left unused
            if op.results and not any(r.uses for r in op.results) and not isinstance(op, func.ReturnOp):
                if isinstance(op, (nn.WeightRefOp, nn.ConstantOp)) or any(r in static for r in op.results):
                    Rewriter.erase_op(op)
    for sym in sorted(recipe_sources):
        recipes.body.block.insert_op_before(_type_only(weights[sym]), recipes.body.block.first_op)
    return recipes


def _type_only(w: nn.WeightOp) -> nn.WeightOp:
    """A source weight as the recipes declare it: its type (the data comes from params)."""
    return nn.WeightOp(w.sym, None, w.type)


def _with_weights(recipe: func.FuncOp, sources: list[nn.WeightOp]) -> ModuleOp:
    """A module to evaluate a recipe in: a copy of it beside its source weights."""
    return ModuleOp([nn.WeightOp(w.sym, w.data, w.type) for w in sources] + [recipe.clone()])


def derived_sources(w: nn.WeightOp) -> list[str] | None:
    """The weights a derived weight is computed from (None: not derived)."""
    attr = w.attributes.get(DERIVED_FROM)
    return None if attr is None else [s.root_reference.data for s in attr.data]


class FoldWeightsPass(ModulePass):
    """Fold values computed from weights alone into derived weights (transposes, reshapes, concats of parameters)."""

    name = "fold-weights"

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        fold_weights(op)
