"""The XOR net as a C program: emitted by ncc, compiled by the system's cc.

    python examples/c_xor.py [--keep DIR]

Writes xor.c and xor.h (`ncc.emit_c`, the same as `ncc-translate
examples/xor_values.txt --import-adjacency --emit-c -o DIR/xor.c`) and a main.c
that calls xor_forward on the four inputs of examples/xor_x.npy, builds them
with `cc -std=c99 -O2 -Wall -Wextra -Werror ... -lm`, runs the program, and
prints its numbers beside what `ncc-run` prints for the same inputs (the JIT).
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

import ncc

HERE = Path(__file__).parent

MAIN = r"""#include <stdio.h>
#include <stdlib.h>
#include "xor.h"

int main(void) {
    const float x[4][2] = {%s};
    float y[4][1];
    void *workspace = malloc(xor_workspace_size(4) + 1);  /* the caller owns all memory */
    if (xor_forward(&x[0][0], &y[0][0], 4, workspace) != 0) return 1;
    for (int i = 0; i < 4; ++i) printf("%%g %%g -> %%.9g\n", x[i][0], x[i][1], y[i][0]);
    free(workspace);
    return 0;
}
"""


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--keep", metavar="DIR", help="write the files into DIR (default: a temporary directory)")
    args = ap.parse_args()
    cc = shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
    if cc is None:
        print("no C compiler (cc, gcc or clang) on the PATH: nothing to build")
        return 0
    x = np.load(HERE / "xor_x.npy").astype(np.float32)
    work = Path(args.keep or tempfile.mkdtemp())
    work.mkdir(parents=True, exist_ok=True)
    _, c_file = ncc.emit_c(HERE / "xor_values.txt", "xor").write(work)
    (work / "main.c").write_text(MAIN % ", ".join(f"{{{a!r}f, {b!r}f}}" for a, b in x.tolist()))
    exe = work / "xor"
    build = [cc, "-std=c99", "-O2", "-Wall", "-Wextra", "-Werror", "-o", str(exe), str(work / "main.c"), str(c_file),
             "-lm"]
    print("$", " ".join(build))
    subprocess.run(build, check=True)
    ran = subprocess.run([str(exe)], check=True, capture_output=True, text=True).stdout
    print("the C program:\n" + ran.rstrip())
    jit = ncc.compile(HERE / "xor_values.txt")(x)
    print("ncc-run (the JIT) on the same inputs:")
    for (a, b), v in zip(x, jit[:, 0]):
        print(f"{a:g} {b:g} -> {v:.9g}")
    same = [float(line.split()[-1]) for line in ran.splitlines()] == [float(v) for v in jit[:, 0]]
    print("the same numbers" if same else "the numbers DIFFER")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
