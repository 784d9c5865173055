"""The library kernels' C definitions (passes/lowering/c_library.py) built
alone with the system's C compiler, so the kernel tests run them next to the
native variants, on the same cases."""

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


def c_kernel(symbol: str) -> tuple[ctypes.CDLL, int]:
    """The library holding `symbol`'s C definition (keep it alive) and the
    address of an exported function that calls it; skips without a C compiler."""
    if CC is None:
        pytest.skip("no C compiler (cc, gcc or clang) on the PATH")
    text = LIBRARY[symbol]
    params = re.search(rf"static void {symbol}\((.*?)\) {{", text, re.S).group(1)
    names = [p.split()[-1].lstrip("*") for p in params.split(",")]
    source = (f"#include <math.h>\n#include <stdint.h>\n\n{text}\n\nvoid exported_{symbol}({params}) {{\n"
              f"    {symbol}({', '.join(names)});\n}}\n")
    with tempfile.TemporaryDirectory() as work:
        path, so = os.path.join(work, "kernel.c"), os.path.join(work, "kernel.so")
        with open(path, "w") as f:
            f.write(source)
        done = subprocess.run([CC, *CFLAGS, "-shared", "-fPIC", "-o", so, path, "-lm"], capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        lib = ctypes.CDLL(so)
    return lib, ctypes.cast(getattr(lib, f"exported_{symbol}"), ctypes.c_void_p).value
