"""C source of a model (`ncc.emit_c`, ncc-translate --emit-c): a header with
the entry points and sizes, and a .c file in plain C99 that needs only
<math.h> and allocates nothing.

The model is lowered as `ncc.compile` lowers it for one thread (the loop
level, with expand-math's arithmetic for f32 exp, tanh, erf, ... as the JIT
has it; passes/lowering/loops_to_c.py prints it) and its weights -- those the
kernel reads, derived ones included (a transposed or packed weight) -- are
`static const` arrays, with the values `ncc.compile` gives them. The ABI, for
a model NAME with inputs x1..xn and outputs y1..ym in its signature's order:

    size_t NAME_workspace_size(int64_t batch);   /* bytes of scratch for `batch` rows */
    int NAME_forward(const T *x1, ..., T *y1, ..., int64_t batch, void *workspace);

With `weights="params"` the parameters are not in the .c: NAME_forward's first
argument is a `const NAME_params *` whose members (one pointer per weight,
named after it, in the header) the caller fills; they are read as they are
(nothing packed or folded from them), so new values need no new C.

With `training=True` the C trains without Python: the parameters are
writable arrays the header declares (`NAME_w_<weight>`, read as they are:
nothing packed or folded from them; a neuron net's are one array,
`NAME_w_net_params`, in the order the header lists), and beside the forward:

    size_t NAME_vjp_workspace_size(int64_t batch);
    int NAME_vjp(const T *x1, ..., const T *cotangent_y1, ..., T *y1, ..., T *grad_<param>, ...,
                 T *grad_x1, ..., int64_t batch, void *workspace);
    int NAME_sgd_step(const T *grad_<param>, ..., double lr, double momentum, double dampening,
                      double weight_decay, int nesterov, int64_t step);
    int NAME_adam_step(const T *grad_<param>, ..., double lr, double beta1, double beta2, double eps,
                       double weight_decay, int decoupled, int64_t step);

NAME_vjp is ncc's vjp kernel (`model.vjp`): the outputs and the gradients of
sum(cotangent * output); NAME_sgd_step updates every parameter in place as
ncc.optim.SGD (torch.optim.SGD) does at step `step` (1, 2, ...: the momentum
buffer starts as step 1's update), its momentum buffers kept in the .c;
NAME_adam_step is ncc.optim.Adam's update (AdamW's with `decoupled`) at step
`step`, its moments kept in the .c. Both return 1 for a step below 1 (and
SGD for nesterov without momentum or with dampening), as ncc.optim refuses.
A neuron net lowered as layers keeps its layer weights in the .c too, copied
from the parameters by `int NAME_load_params(void)`, which the steps call
(and a caller who writes the parameters). A model without trainable
parameters (its weights int8) has the vjp and no steps. With
`weights="params"` a neuron net's struct holds its flat parameters; as
layers, the entry point copies them into its workspace at each call.

Arrays are row-major, dimension 0 the batch where the model's is dynamic;
`workspace` holds the size function's bytes, aligned to at least 8 (64 is
best for vector loads). The entry points return 0, or 1 for an argument out
of range (a negative batch, a step below 1, ...), 2 for a missing workspace.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

import numpy as np
from xdsl.dialects import func
from xdsl.dialects.builtin import MemRefType, ModuleOp, f32

from ncc.diagnostics import NccError
from ncc.dialects.nn import element_type_of
from ncc.passes.lowering.abi import KernelABI
from ncc.pipeline import run_passes
from ncc.passes.lowering.loops_to_c import HELPERS, c_identifier, c_type, emit_kernel
from ncc.passes.lowering.straight_line import params_symbol
from ncc.runtime.build import compile as compile_model, load_source, lower_to_loops, select_kernel
from ncc.runtime.optim import SGD, Adam, update_kernel_module
from ncc.runtime.training import LayersTraining, NeuronTraining, NNTraining, training_of


@dataclass(frozen=True)
class CSource:
    """The two files of `emit_c`: `header` (NAME.h) and `source` (NAME.c)."""

    name: str
    header: str
    source: str

    def write(self, directory: str | os.PathLike) -> tuple[str, str]:
        """Write NAME.h and NAME.c into `directory`; their paths."""
        paths = (os.path.join(directory, f"{self.name}.h"), os.path.join(directory, f"{self.name}.c"))
        for path, text in zip(paths, (self.header, self.source)):
            try:
                with open(path, "w", encoding="utf-8") as f:
                    f.write(text)
            except OSError as e:
                raise NccError(f"cannot write output file: {e.strerror}", path) from None
        return paths


def _array(values: np.ndarray) -> str:
    """The initializer of a weight: exact values (9 significant digits round-trip a float32)."""
    flat = values.reshape(-1)
    if flat.dtype.kind == "f":
        width = "%.9g" if flat.dtype == np.float32 else "%.17g"
        text = np.char.mod(width, flat.astype(np.float64))
        suffix = "f" if flat.dtype == np.float32 else ""
        special = {"nan": "NAN", "inf": "INFINITY", "-inf": "-INFINITY"}
        items = [special.get(t, t + ("" if "." in t or "e" in t else ".0") + suffix) for t in text.tolist()]
    else:
        items = [str(v) for v in flat.astype(np.int64).tolist()]
    lines = [", ".join(items[k:k + 8]) for k in range(0, len(items), 8)]
    return "{\n    " + ",\n    ".join(lines) + "\n}"


def _kernel_of(module: ModuleOp, name: str) -> func.FuncOp:
    return next(op for op in module.ops if isinstance(op, func.FuncOp) and op.sym_name.data == name)


class _Writer:
    """The parts of the files, kernel by kernel: weights once, helpers once."""

    def __init__(self, name: str, values: dict[str, np.ndarray], params: list[str],
                 internal: frozenset[str] = frozenset()):
        self.name, self.values, self.params = name, values, params
        self.internal = internal  # writable weights the header does not declare (layers copied from the params)
        self.helpers: set[str] = set()
        self.arrays: dict[str, str] = {}  # symbol -> its definition
        self.functions: list[str] = []
        self.declarations: list[str] = []
        self.doc: list[str] = []

    def array(self, sym: str, t: MemRefType | None = None) -> str:
        ident = f"{self.name}_w_{c_identifier(sym)}"
        if sym not in self.arrays:
            data = self.values.get(sym)
            if data is None:
                raise NccError(f"emit-c: weight @{sym} has no value (set it on the model first)")
            data = np.asarray(data)
            ctype = c_type(t.element_type if t is not None else element_type_of(data.dtype))
            if sym in self.params:  # trained in place: declared in the header
                self.arrays[sym] = f"/* @{sym}: {list(data.shape)} */\n{ctype} {ident}[{max(data.size, 1)}] = " \
                                   f"{_array(data)};"
                self.declarations.append(f"extern {ctype} {ident}[{max(data.size, 1)}];  /* @{sym}, a parameter */")
            elif sym in self.internal:
                self.arrays[sym] = f"/* @{sym}: {list(data.shape)} */\nstatic {ctype} {ident}[{max(data.size, 1)}] = " \
                                   f"{_array(data)};"
            else:
                self.arrays[sym] = f"/* @{sym}: {list(data.shape)} */\nstatic const {ctype} {ident}" \
                                   f"[{max(data.size, 1)}] = {_array(data)};"
        return ident

    def table(self, key: str, data: np.ndarray) -> str:
        """A static const index table (int32, or int64 past 2^31)."""
        ident = f"{self.name}_{c_identifier(key)}"
        ctype = "int32_t" if data.size == 0 or data.max() < 2 ** 31 else "int64_t"
        self.arrays.setdefault(key, f"static const {ctype} {ident}[{max(data.size, 1)}] = {_array(data)};")
        return ident

    def state(self, sym: str, size: int) -> str:
        """A zero-initialized float array the update kernels keep between calls (Adam's moments)."""
        ident = f"{self.name}_{c_identifier(sym)}"
        self.arrays.setdefault(sym, f"static float {ident}[{max(size, 1)}];  /* zeros: an optimizer's state */")
        return ident

    def kernel(self, fn: func.FuncOp, entry: str, what: str, bound: dict[str, str] | None = None,
               public: dict[str, str] | None = None, tail: tuple[tuple[str, str], ...] = (),
               before: str = "", writable: frozenset[str] = frozenset(), lead: tuple[str, ...] = (),
               exported: bool = True, after: str = "", reserved: int = 0,
               replaced: dict[str, tuple[str, str]] | None = None) -> None:
        """The kernel `fn` and its entry point `entry`: arguments in the
        kernel's order (inputs, then outputs; `public` renames them), then
        `tail` (C type, name) pairs, or batch and workspace, after the `lead`
        ones; `bound` gives the C expression of an argument the entry point
        does not take (a parameter array, a local); the kernel may write the
        `writable` weights; an entry point not `exported` is static, for
        another entry point to call. `before` and `after` are C run around the
        kernel's call; `reserved` bytes at the start of the workspace (a
        multiple of 64) are the entry point's, the kernel's arena after them;
        `replaced` puts a parameter (its declaration, its doc) where a bound
        argument was."""
        abi = KernelABI.of(fn)
        bound, public, replaced = bound or {}, public or {}, replaced or {}
        run_passes(fn.parent_op(), "expand-math")  # f32 exp, tanh, erf... as arithmetic: loops stay vectorizable
        body, helpers = emit_kernel(fn, f"{entry}_kernel", writable)
        self.helpers |= helpers
        types = fn.function_type.inputs.data
        params, call = [], []
        for role, t in zip(abi.roles, types):
            ctype = c_type(t.element_type)
            if role.name in replaced:
                declaration, doc = replaced[role.name]
                params.append(declaration)
                if exported:
                    self.doc.append(f" *   {entry}: {doc}")
            if role.name in bound:
                call.append(bound[role.name])
            elif role.kind == "weight":
                call.append(self.array(role.name, t))
            elif role.kind == "arena":
                call.append(f"({ctype} *)(void *)((char *)workspace + {reserved})" if reserved else "workspace")
            else:
                shown = public.get(role.name, role.name)
                ident = c_identifier(shown)
                params.append(f"{'const ' if role.kind == 'input' else ''}{ctype} *{ident}")
                dims = ", ".join("batch" if d < 0 else str(d) for d in t.get_shape())
                if exported:
                    self.doc.append(f" *   {entry}: {role.kind} {shown}: {ctype} [{dims}]")
                call.append(ident)
        self.functions.append(body)
        if tail:
            signature = ", ".join([*lead, *params] + [f"{ctype} {n}" for ctype, n in tail])
            checks = ""
        else:
            size = f"{entry}_workspace_size" if what != "forward" else f"{self.name}_workspace_size"
            self.declarations.append(f"size_t {size}(int64_t batch);")
            self.functions.append(
                f"size_t {size}(int64_t batch) {{\n    return (size_t)(INT64_C({abi.arena_per_batch}) * "
                f"(batch < 0 ? 0 : batch) + INT64_C({abi.arena_constant + reserved}));\n}}")
            signature = ", ".join([*lead, *params] + ["int64_t batch", "void *workspace"])
            checks = (f"    if (batch < 0) return 1;\n    if (workspace == NULL && {size}(batch) > 0) return 2;\n")
            call.append("batch")
        if tail:
            call.append("0")  # the batch: an update kernel has none
        if exported:
            self.declarations.append(f"int {entry}({signature});")
        self.functions.append(f"{'' if exported else 'static '}int {entry}({signature}) {{\n{checks}{before}    "
                              f"{entry}_kernel({', '.join(call)});\n{after}    return 0;\n}}")

    def files(self) -> CSource:
        name, guard = self.name, f"{self.name.upper()}_H"
        header = "\n".join([
            f"/* {name}.h: a model compiled to C by ncc (ncc-translate --emit-c).",
            " *",
            " * Arrays are row-major, in each entry point's order, dimension 0 the batch where",
            " * it is dynamic:",
            *self.doc,
            " * `workspace` holds the matching *_workspace_size(batch) bytes of scratch, aligned to",
            " * 8 at least (64 is best). Entry points return 0; 1 for an argument out of range (a",
            " * negative batch, an optimizer step below 1, nesterov without momentum), 2 for a",
            " * missing workspace. */",
            f"#ifndef {guard}", f"#define {guard}", "", "#include <stddef.h>", "#include <stdint.h>", "",
            "#ifdef __cplusplus", 'extern "C" {', "#endif", "", *self.declarations, "",
            "#ifdef __cplusplus", "}", "#endif", "", f"#endif /* {guard} */", ""])
        source = "\n".join([
            f"/* {name}.c: a model compiled to C by ncc (ncc-translate --emit-c); see {name}.h. */",
            f'#include "{name}.h"', "", "#include <math.h>", "#include <stdint.h>", "",
            *[HELPERS[h] + "\n" for h in sorted(self.helpers)],
            *[a + "\n" for a in self.arrays.values()],
            *[f + "\n" for f in self.functions]])
        return CSource(name, header, source)


WEIGHTS = ("embed", "params")


def emit_c(source: Any, name: str | None = None, *, function: str | None = None, fuse: bool = True,
           net_name: str = "net", training: bool = False, weights: str = "embed",
           constants: Mapping[str, Any] | None = None, neuron_mode: str = "auto") -> CSource:
    """The C files of `source` (a path, text or module, as ncc.compile takes);
    `name` prefixes every symbol (default: the file's name, else the
    function's); `training` adds the vjp and the optimizer steps;
    `weights="params"` takes the parameters from a struct the caller fills
    (module docstring); `constants` (ONNX models) gives graph inputs as
    constants and `neuron_mode` lowers a neuron net, as ncc.compile's."""
    if weights not in WEIGHTS:
        raise NccError(f"weights must be one of {', '.join(WEIGHTS)}, got '{weights}'")
    if training and weights != "embed":
        raise NccError("training in C keeps the parameters in the .c (weights='embed'): the update writes them")
    module = load_source(source, name=net_name, constants=constants)
    model = compile_model(module, fuse=fuse, function=function, threads=1, cache=True, neuron_mode=neuron_mode)
    if name is None:
        name = os.path.splitext(os.path.basename(source))[0] if isinstance(source, (str, os.PathLike)) and \
            "\n" not in str(source) else model.abi.name
    name = c_identifier(name)
    if weights == "params":
        return _with_params(model, name)
    if not training:
        lowered = module.clone()
        lower_to_loops(lowered, fuse=fuse, threads=1, neuron_mode=neuron_mode)
        kernel = select_kernel(lowered, function)
        if [str(r) for r in KernelABI.of(kernel).roles] != [str(r) for r in model.abi.roles]:
            raise NccError("emit-c: the lowering differs from the compiled model's")
        writer = _Writer(name, model.kernel_weights(), [])
        writer.kernel(kernel, f"{name}_forward", "forward")
        return writer.files()

    return _with_training(model, name)


def _aligned(size: int) -> int:
    return -(-size // 64) * 64


class _LayerCopies:
    """A neuron net lowered as layers (runtime/training.py's LayersTraining):
    its parameters are one flat float array in equation-name order, copied
    to their places in the layer weights the kernels read (the gather's
    index tables, in the .c); a parameter at several places gets the sum of
    their gradients."""

    def __init__(self, writer: _Writer, t: LayersTraining):
        self.flat, self.names = params_symbol(t.function), list(t.gather.names)
        self.layers = {sym: (writer.table(f"{sym}_at", dst), writer.table(f"{sym}_from", src), len(dst),
                             np.asarray(writer.values[sym]).size) for sym, (dst, src) in t.gather.by_sym.items()}
        self.offsets, at = {}, 0  # each layer weight's bytes in a workspace
        for sym, (_, _, _, size) in self.layers.items():
            self.offsets[sym], at = at, at + _aligned(4 * size)
        self.bytes = at

    def in_workspace(self, sym: str, qual: str = "") -> str:
        return f"(({qual}float *)((char *)workspace + {self.offsets[sym]}))"

    def copy_in(self, params: str, layer: Callable[[str], str], zero: bool) -> str:
        """C: each layer weight (`layer(sym)`, zeroed first if `zero`) gets its parameters from `params`."""
        lines = []
        for sym, (at, frm, count, size) in self.layers.items():
            if zero:
                lines.append(f"    for (int64_t i = 0; i < {size}; ++i) {layer(sym)}[i] = 0.0f;")
            lines.append(f"    for (int64_t i = 0; i < {count}; ++i) {layer(sym)}[{at}[i]] = {params}[{frm}[i]];")
        return "\n".join(lines) + "\n"

    def sum_out(self, grads: str, layer: Callable[[str], str]) -> str:
        """C: `grads` (one per parameter) = the sum of the layer gradients `layer(sym)` at its places."""
        lines = [f"    for (int64_t i = 0; i < {len(self.names)}; ++i) {grads}[i] = 0.0f;"]
        lines += [f"    for (int64_t i = 0; i < {count}; ++i) {grads}[{frm}[i]] += {layer(sym)}[{at}[i]];"
                  for sym, (at, frm, count, _) in self.layers.items()]
        return "\n".join(lines) + "\n"


def _param_order(writer: _Writer, ident: str, names: Sequence[str]) -> None:
    """The header's list of the flat parameters' names, in order."""
    lines, line = [], f" * {ident}: {len(names)} parameters, in order:"
    for n in names:
        if len(line) + len(n) > 100:
            lines.append(line)
            line = " *  "
        line += f" {n}"
    writer.doc += [*lines, line]


def _with_training(model: Any, name: str) -> CSource:
    """The forward, the vjp and the optimizer steps, the parameters writable
    arrays the header declares (module docstring)."""
    t = _training(model)
    forward, forward_name = t.forward_loops()
    vjp, vjp_name = t.vjp_loops(frozenset())
    values = _weight_values(model, forward, vjp)
    layered = isinstance(t, LayersTraining)
    if layered:
        flat = params_symbol(t.function)
        values[flat] = np.zeros(len(t.gather.names), np.float32)
        t.gather.read(model.weight_buffers, values[flat])
        params = [flat]
    else:
        params = [t.flat_symbol] if isinstance(t, NeuronTraining) else list(t.trainable)
    writer = _Writer(name, values, params, frozenset(t.gather.by_sym) if layered else frozenset())
    forward_fn, vjp_fn = _kernel_of(forward, forward_name), _kernel_of(vjp, vjp_name)
    writer.kernel(forward_fn, f"{name}_forward", "forward")
    after = ""
    if layered:
        copies = _LayerCopies(writer, t)
        ident = writer.array(flat, MemRefType(f32, [len(copies.names)]))
        _param_order(writer, ident, copies.names)
        # the vjp's layer gradients in the workspace's first bytes, summed into grad_<flat>
        roles = [r.name for r in KernelABI.of(vjp_fn).roles]
        grads = {f"grad:{sym}": copies.in_workspace(sym) for sym in copies.layers if f"grad:{sym}" in roles}
        first = min(grads, key=roles.index)
        out = c_identifier(f"grad:{flat}")
        writer.kernel(vjp_fn, f"{name}_vjp", "vjp", bound=grads, reserved=copies.bytes,
                      replaced={first: (f"float *{out}", f"output grad:{flat}: float [{len(copies.names)}]")},
                      after=copies.sum_out(out, lambda sym: copies.in_workspace(sym, "const ")))
        writer.declarations.append(f"int {name}_load_params(void);  /* copies {ident} into the layers the "
                                   "kernels read: after writing it yourself (the steps do it) */")
        writer.functions.append(f"int {name}_load_params(void) {{\n"
                                f"{copies.copy_in(ident, lambda sym: writer.array(sym), zero=False)}"
                                f"    return 0;\n}}")
        after = f"    {name}_load_params();\n"
    else:
        if isinstance(t, NeuronTraining):
            _param_order(writer, writer.array(t.flat_symbol), model.abi.param_names)
        writer.kernel(vjp_fn, f"{name}_vjp", "vjp")
    if not params:  # nothing trains (an int8 model's weights): the vjp gives the inputs' gradients
        return writer.files()
    buffers = [(np.asarray(values[p]).dtype, np.asarray(values[p]).size) for p in params]
    arrays = {f"param{k}": writer.array(p, MemRefType(_elt(values[p]), [np.asarray(values[p]).size]))
              for k, p in enumerate(params)}
    grads = {f"grad{k}": f"grad:{p}" for k, p in enumerate(params)}
    # SGD (torch.optim.SGD's momentum, dampening, nesterov), its momentum buffers kept in the .c: the
    # hyperparameters of ncc.optim.SGD.hyperparameters(step); no momentum: every step is a first step
    momenta = {f"state{k}_0": writer.state(f"sgd_{c_identifier(p)}_momentum", size)
               for k, (p, (_, size)) in enumerate(zip(params, buffers))}
    sgd_tail = (("double", "lr"), ("double", "momentum"), ("double", "dampening"), ("double", "weight_decay"),
                ("int", "nesterov"), ("int64_t", "step"))
    sgd_before = ("    if (step < 1 || (nesterov && (momentum <= 0.0 || dampening != 0.0))) return 1;\n"
                  "    const int first = step == 1 || momentum == 0.0;\n"
                  "    const double hyperparameters[5] = {lr, weight_decay, first ? 0.0 : momentum,"
                  " first ? 1.0 : 1.0 - dampening, momentum};\n")
    forwarded = ", ".join([c_identifier(g) for g in grads.values()] + [n for _, n in sgd_tail])
    for nesterov in (True, False):
        update, abi = update_kernel_module(SGD(model, lr=1.0, momentum=0.5, nesterov=nesterov), buffers)
        writer.kernel(_kernel_of(update, abi.name), f"{name}_sgd_{'nesterov_' if nesterov else ''}step", "update",
                      bound={**arrays, **momenta, "hyperparameters": "hyperparameters"},
                      writable=frozenset(arrays) | frozenset(momenta), public=grads, tail=sgd_tail,
                      before=sgd_before if nesterov else
                      f"    if (nesterov) return {name}_sgd_nesterov_step({forwarded});\n{sgd_before}",
                      exported=not nesterov, after=after)
    # Adam (AdamW with `decoupled`), its moments kept in the .c: ncc.optim.Adam.hyperparameters(step)
    update, abi = update_kernel_module(Adam(model, lr=1.0), buffers)
    moments = {f"state{k}_{m}": writer.state(f"adam_{c_identifier(p)}_{'mv'[m]}", size)
               for k, (p, (_, size)) in enumerate(zip(params, buffers)) for m in range(2)}
    writer.kernel(_kernel_of(update, abi.name), f"{name}_adam_step", "update",
                  bound={**arrays, **moments, "hyperparameters": "hyperparameters"},
                  writable=frozenset(arrays) | frozenset(moments), public=grads,
                  tail=(("double", "lr"), ("double", "beta1"), ("double", "beta2"), ("double", "eps"),
                        ("double", "weight_decay"), ("int", "decoupled"), ("int64_t", "step")),
                  before="    if (step < 1) return 1;\n"
                         "    const double hyperparameters[8] = {lr / (1.0 - pow(beta1, (double)step)), 1.0 - beta1,"
                         " beta2, 1.0 - beta2, sqrt(1.0 - pow(beta2, (double)step)), eps,"
                         " decoupled ? 0.0 : weight_decay, decoupled ? 1.0 - lr * weight_decay : 1.0};\n",
                  after=after)
    return writer.files()


def _training(model: Any) -> Any:
    t = training_of(model)
    if not isinstance(t, (NNTraining, NeuronTraining, LayersTraining)):
        raise NccError(f"emit-c: training and weights='params' cover nn modules and neuron nets; "
                       f"not {type(t).__name__}")
    return t


def _with_params(model: Any, name: str) -> CSource:
    """The forward reading its parameters from `const NAME_params *params`,
    one pointer per parameter (as the model names it; a neuron net's flat
    parameters in equation-name order), as training sees them: nothing
    packed or folded from them; constants stay in the .c. A net lowered as
    layers copies its parameters into the layer weights, in the workspace,
    at each call."""
    t = _training(model)
    forward, forward_name = t.forward_loops()
    fn = _kernel_of(forward, forward_name)
    values = _weight_values(model, forward)
    writer = _Writer(name, values, [])
    roles, types = KernelABI.of(fn).roles, fn.function_type.inputs.data
    if isinstance(t, LayersTraining):
        copies = _LayerCopies(writer, t)
        flat = c_identifier(copies.flat)
        writer.declarations.append(f"typedef struct {{\n    const float *{flat};  /* @{copies.flat} "
                                   f"[{len(copies.names)}]: the parameters in the order below */\n}} {name}_params;")
        _param_order(writer, f"{name}_params.{flat}", copies.names)
        writer.kernel(fn, f"{name}_forward", "forward", lead=(f"const {name}_params *params",),
                      bound={sym: copies.in_workspace(sym, "const ") for sym in copies.layers},
                      reserved=copies.bytes,
                      before=copies.copy_in(f"params->{flat}", copies.in_workspace, zero=True))
        return writer.files()
    params = [r.name for r in roles if r.kind == "weight" and r.name in model.weight_buffers]
    fields = []
    for sym in params:
        t_ = next(ty for r, ty in zip(roles, types) if r.name == sym)
        fields.append(f"    const {c_type(t_.element_type)} *{c_identifier(sym)};  /* @{sym} "
                      f"{list(np.asarray(values[sym]).shape)} */")
    writer.declarations.append("typedef struct {\n" + "\n".join(fields) + f"\n}} {name}_params;")
    if isinstance(t, NeuronTraining):
        _param_order(writer, f"{name}_params.{c_identifier(t.flat_symbol)}", model.abi.param_names)
    writer.kernel(fn, f"{name}_forward", "forward", bound={s: f"params->{c_identifier(s)}" for s in params},
                  lead=(f"const {name}_params *params",))
    return writer.files()


def _weight_values(model: Any, *lowered: ModuleOp) -> dict[str, Any]:
    """The data of every weight the `lowered` kernels read: the model's
    buffers, and the constants a lowering made (its tables), from the module."""
    values = dict(model.weight_buffers)
    for m in lowered:
        values.update((op.sym, op.data) for op in m.ops if op.name == "nn.weight" and op.data is not None
                      and op.sym not in values)
    return values


def _elt(values: Any):
    return element_type_of(np.asarray(values).dtype)
