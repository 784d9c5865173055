"""The library kernels' variants, for the kernel tests: the native ones
(passes/lowering/qgemm.py, spmm.py, transpose.py per instruction set) and their C
definitions (passes/lowering/c_library.py) built alone with the system's C
compiler, run on the same cases."""

from __future__ import annotations

import ctypes
import os
import re
import shutil
import subprocess
import tempfile

import pytest

from ncc.passes.lowering.c_library import LIBRARY

CC = shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
CFLAGS = ["-std=c99", "-O2", "-Wall", "-Wextra", "-Werror"]
# the instruction sets a C compiler may vectorize the kernels for: name -> (host features needed, flags)
C_VARIANTS = {
    "c": (set(), []),
    "c-avx2": ({"avx2", "fma"}, ["-mavx2", "-mfma"]),
    "c-avx512": ({"avx512f", "avx512bw"}, ["-mavx512f", "-mavx512bw", "-mavx2", "-mfma"]),
    "c-avx512vnni": ({"avx512f", "avx512bw", "avx512vnni"},
                     ["-mavx512f", "-mavx512bw", "-mavx512vnni", "-mavx2", "-mfma"]),
}


def host_features() -> set[str]:
    import llvmlite.binding as llvm

    return {k for k, v in llvm.get_host_cpu_features().items() if v}


def c_kernel(symbol: str, variant: str = "c") -> tuple[ctypes.CDLL, int]:
    """The library holding `symbol`'s C definition built for `variant` (keep
    it alive) and the address of an exported function that calls it; skips
    without a C compiler or where the host lacks the variant's instructions."""
    if CC is None:
        pytest.skip("no C compiler (cc, gcc or clang) on the PATH")
    needs, flags = C_VARIANTS[variant]
    if needs - host_features():
        pytest.skip(f"this host lacks {', '.join(sorted(needs - host_features()))}: {variant} cannot run here")
    text = LIBRARY[symbol]
    params = re.search(rf"static void {symbol}\((.*?)\) {{", text, re.S).group(1)
    names = [p.split()[-1].lstrip("*") for p in params.split(",")]
    source = (f"#include <math.h>\n#include <stdint.h>\n\n{text}\n\nvoid exported_{symbol}({params}) {{\n"
              f"    {symbol}({', '.join(names)});\n}}\n")
    with tempfile.TemporaryDirectory() as work:
        path, so = os.path.join(work, "kernel.c"), os.path.join(work, "kernel.so")
        with open(path, "w") as f:
            f.write(source)
        done = subprocess.run([CC, *CFLAGS, *flags, "-shared", "-fPIC", "-o", so, path, "-lm"], capture_output=True,
                              text=True)
        assert done.returncode == 0, done.stderr
        lib = ctypes.CDLL(so)
    return lib, ctypes.cast(getattr(lib, f"exported_{symbol}"), ctypes.c_void_p).value


def kernel_variant(kernel, variant: str, team_min_work: int | None = None):
    """(library, ctypes function) of `kernel` (the module passes/lowering/qgemm,
    spmm or transpose) as `variant`: one of its native variants (team_min_work=0: a team
    of threads for any size) or of C_VARIANTS; skips what the host cannot run."""
    from ncc.runtime import engine

    name = kernel.__name__.rsplit(".", 1)[1]
    as_function = getattr(kernel, f"callable_{name}")
    if variant in C_VARIANTS:  # the emitted C's definition (one thread whatever it is given)
        lib, address = c_kernel(kernel.SYMBOL, variant)
        return lib, as_function(address)
    missing = kernel.REQUIRES[variant] - engine.host_features()
    if missing:
        pytest.skip(f"this host lacks {', '.join(sorted(missing))}: the {variant} {name} kernel cannot run here")
    tm = engine.target_machine()
    saved = getattr(kernel, "TEAM_MIN_WORK", None)  # a kernel without threads has none
    if team_min_work is not None:
        kernel.TEAM_MIN_WORK = team_min_work
    try:
        module = getattr(kernel, f"{name}_module")(kernel.VARIANTS[variant], tm.triple, str(tm.target_data))
        lib = engine.compile_llvm_ir(str(module))
    finally:
        if team_min_work is not None:
            kernel.TEAM_MIN_WORK = saved
    return lib, as_function(lib.address(kernel.SYMBOL))
