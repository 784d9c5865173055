"""Pass pipelines in MLIR syntax, shared by the Python API and ncc-opt:
`"layerize,fuse"`, `"prune{sparsity=0.9}"`."""

from __future__ import annotations

from xdsl.dialects.builtin import ModuleOp
from xdsl.passes import ModulePass
from xdsl.utils.arg_spec import parse_pipeline
from xdsl.utils.exceptions import ArgSpecParseError, DiagnosticException

from ncc.diagnostics import NccError
from ncc.ir import make_context, verify_module
from ncc.passes import ALL_PASSES


def build_pipeline(*pieces: str) -> list[ModulePass]:
    """The passes named by pipeline texts, in order."""
    passes: list[ModulePass] = []
    for text in pieces:
        try:
            specs = list(parse_pipeline(text))
        except ArgSpecParseError as e:
            raise NccError(f"invalid pass pipeline '{text}': {e}") from None
        for spec in specs:
            if spec.name not in ALL_PASSES:
                raise NccError(f"unknown pass '{spec.name}' (available: {', '.join(ALL_PASSES)})")
            cls = ALL_PASSES[spec.name]()
            try:
                passes.append(cls.from_pass_spec(spec))
            except Exception as e:  # xDSL reports bad options with several exception types
                raise NccError(f"invalid options for pass '{spec.name}': {e}") from None
    return passes


def check_flat(module: ModuleOp) -> None:
    """ncc's passes and compile take one module, its functions and weights at
    the top level: a nested builtin.module is an error at it."""
    nested = next((op for op in module.ops if isinstance(op, ModuleOp)), None)
    if nested is not None:
        raise NccError.at_op(nested, "a nested builtin.module: ncc takes one module, its functions and "
                                     "weights at the top level")


def apply_pass(p: ModulePass, module: ModuleOp, ctx=None, verify: bool = True) -> None:
    """Run one pass and verify its result (unless `verify=False`); a pass
    failure is an NccError."""
    check_flat(module)
    try:
        p.apply(ctx or make_context(), module)
    except DiagnosticException as e:
        op = getattr(e, "op", None)
        msg = f"pass '{p.name}' failed: {str(e).strip().splitlines()[0]}"
        raise (NccError.at_op(op, msg) if op is not None else NccError(msg)) from None
    if verify:
        verify_module(module)


def run_passes(module: ModuleOp, pipeline: str, verify: bool = True) -> ModuleOp:
    """Run a pipeline in place on `module` (and return it), verifying after
    each pass. `verify=False` is for ncc.compile's last step: xDSL's verifier
    is quadratic in the blocks of a function (a CNN's kernel has thousands
    after scf-to-cf), and LLVM's own verifier checks the result anyway."""
    ctx = make_context()
    for p in build_pipeline(pipeline):
        apply_pass(p, module, ctx, verify)
    return module
