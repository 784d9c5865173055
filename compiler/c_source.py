"""C source of a model (`ncc.emit_c`, ncc-translate --emit-c): a header with
the entry points and sizes, and a .c file in plain C99 that needs only
<math.h> and allocates nothing.

The model is lowered as `ncc.compile` lowers it for one thread (the loop
level, passes/lowering/loops_to_c.py prints it) and its weights -- those the
kernel reads, derived ones included (a transposed or packed weight) -- are
`static const` arrays, with the values `ncc.compile` gives them. The ABI, for
a model NAME with inputs x1..xn and outputs y1..ym in its signature's order:

    size_t NAME_workspace_size(int64_t batch);   /* bytes of scratch for `batch` rows */
    int NAME_forward(const T *x1, ..., T *y1, ..., int64_t batch, void *workspace);

Arrays are row-major, dimension 0 is the batch where the model's is dynamic;
`workspace` holds NAME_workspace_size(batch) bytes, aligned to at least 8
(64 is best for vector loads). NAME_forward returns 0, or 1 for a negative
batch, 2 for a missing workspace.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import numpy as np
from xdsl.dialects.builtin import MemRefType

from ncc.diagnostics import NccError
from ncc.passes.lowering.abi import KernelABI
from ncc.passes.lowering.loops_to_c import HELPERS, c_identifier, c_type, emit_kernel
from ncc.runtime.build import compile as compile_model, load_source, lower_to_loops, select_kernel


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


def emit_c(source: Any, name: str | None = None, *, function: str | None = None, fuse: bool = True,
           net_name: str = "net") -> CSource:
    """The C files of `source` (a path, text or module, as ncc.compile takes);
    `name` prefixes every symbol (default: the file's name, else the function's)."""
    module = load_source(source, name=net_name)
    model = compile_model(module, fuse=fuse, function=function, threads=1, cache=True)
    lowered = module.clone()
    lower_to_loops(lowered, fuse=fuse, threads=1)
    kernel = select_kernel(lowered, function)
    if name is None:
        name = os.path.splitext(os.path.basename(source))[0] if isinstance(source, (str, os.PathLike)) and \
            "\n" not in str(source) else kernel.sym_name.data
    name = c_identifier(name)
    abi = KernelABI.of(kernel)
    if [str(r) for r in abi.roles] != [str(r) for r in model.abi.roles]:
        raise NccError("emit-c: the lowering differs from the compiled model's (arguments "
                       f"{[str(r) for r in abi.roles]} vs {[str(r) for r in model.abi.roles]})")
    body, helpers = emit_kernel(kernel, f"{name}_kernel")
    kernel_weights = model.kernel_weights()
    types = kernel.function_type.inputs.data

    weights, args, params, doc = [], [], [], []
    for k, (role, t) in enumerate(zip(abi.roles, types)):
        ctype = c_type(t.element_type) if isinstance(t, MemRefType) else c_type(t)
        dims = ", ".join("batch" if d < 0 else str(d) for d in t.get_shape()) if isinstance(t, MemRefType) else ""
        if role.kind == "weight":
            data = kernel_weights.get(role.name)
            if data is None:
                raise NccError(f"emit-c: weight @{role.name} has no value (set it on the model first)")
            symbol = f"{name}_w_{c_identifier(role.name)}"
            weights.append(f"/* @{role.name}: {list(data.shape)} */\nstatic const {ctype} {symbol}"
                           f"[{max(data.size, 1)}] = {_array(np.asarray(data))};")
            args.append(symbol)
        elif role.kind == "arena":
            args.append("workspace")
        else:
            pname = c_identifier(role.name)
            const = "const " if role.kind == "input" else ""
            params.append((role.kind, f"{const}{ctype} *{pname}"))
            doc.append(f" *   {role.kind} {role.name}: {ctype} [{dims}]")
            args.append(pname)
    signature = ", ".join([p for kind, p in params if kind == "input"] + [p for kind, p in params if kind == "output"]
                          + ["int64_t batch", "void *workspace"])
    per_batch, constant = abi.arena_per_batch, abi.arena_constant

    guard = f"{name.upper()}_H"
    header = "\n".join([
        f"/* {name}.h: a model compiled to C by ncc (ncc-translate --emit-c).",
        " *",
        f" * {name}_forward computes the model on `batch` rows: arrays are row-major, in the",
        " * model's signature order, dimension 0 the batch where it is dynamic:",
        *doc,
        f" * `workspace` holds {name}_workspace_size(batch) bytes of scratch, aligned to 8 at least",
        " * (64 is best). Returns 0; 1 for a negative batch, 2 for a missing workspace. */",
        f"#ifndef {guard}", f"#define {guard}", "", "#include <stddef.h>", "#include <stdint.h>", "",
        "#ifdef __cplusplus", 'extern "C" {', "#endif", "",
        f"size_t {name}_workspace_size(int64_t batch);",
        f"int {name}_forward({signature});", "",
        "#ifdef __cplusplus", "}", "#endif", "", f"#endif /* {guard} */", ""])
    source_text = "\n".join([
        f"/* {name}.c: a model compiled to C by ncc (ncc-translate --emit-c); see {name}.h. */",
        f'#include "{name}.h"', "", "#include <math.h>", "#include <stdint.h>", "",
        *[HELPERS[h] + "\n" for h in sorted(helpers)],
        *[w + "\n" for w in weights],
        body, "",
        f"size_t {name}_workspace_size(int64_t batch) {{",
        f"    return (size_t)(INT64_C({per_batch}) * (batch < 0 ? 0 : batch) + INT64_C({constant}));", "}", "",
        f"int {name}_forward({signature}) {{",
        "    if (batch < 0) return 1;",
        f"    if (workspace == NULL && {name}_workspace_size(batch) > 0) return 2;",
        f"    {name}_kernel({', '.join(args + ['batch'])});",
        "    return 0;", "}", ""])
    return CSource(name, header, source_text)
