"""Layers import downward only, and no module imports another's underscore
names: the rule, checked over the AST of every module of the package.

    base          ncc.diagnostics, ncc.text (aligned tables), ncc.laws (Amdahl, scaling)
    dialects      ncc.dialects.*, ncc.ir (their text form), ncc.reference (their semantics)
    passes        ncc.passes.*, ncc.pipeline, and the translations in and out of the
                  dialects: ncc.adjacency, ncc.equations, ncc.dot, ncc.onnx.*
    runtime       ncc.runtime.*
    facade        ncc (the package), ncc.backend, ncc.optim, ncc.stats_report, ncc.plot, ncc.c_source; the tools

A module may import its own layer and the ones below it."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = {"compiler": "ncc", "dialects": "ncc.dialects", "dialects/nn": "ncc.dialects.nn", "compiler/onnx": "ncc.onnx", "passes": "ncc.passes", "passes/autodiff": "ncc.passes.autodiff",
            "passes/lowering": "ncc.passes.lowering", "passes/lowering/nn_to_loops": "ncc.passes.lowering.nn_to_loops", "runtime": "ncc.runtime", "tools": "ncc.tools"}
LAYERS = {"ncc.diagnostics": 0, "ncc.text": 0, "ncc.laws": 0,
          "ncc.dialects": 1, "ncc.ir": 1, "ncc.reference": 1,
          "ncc.passes": 2, "ncc.pipeline": 2, "ncc.adjacency": 2, "ncc.equations": 2, "ncc.dot": 2,
          "ncc.onnx": 2,
          "ncc.runtime": 3, "ncc.tools": 4}
FACADE = 4
FACADE_MODULES = {"ncc", "ncc.backend", "ncc.optim", "ncc.stats_report", "ncc.plot", "ncc.c_source"}


def layer(module: str) -> int:
    for prefix, k in sorted(LAYERS.items(), key=lambda kv: -len(kv[0])):
        if module == prefix or module.startswith(prefix + "."):
            return k
    return FACADE


def modules():
    for folder, package in PACKAGES.items():
        for path in sorted((ROOT / folder).glob("*.py")):
            yield (package if path.stem == "__init__" else f"{package}.{path.stem}"), path


def imports(path: Path):
    """(imported module, names) of every import of ncc in the file, at any depth."""
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "ncc":
            yield node.module, [a.name for a in node.names], node.lineno
        elif isinstance(node, ast.Import):
            for a in node.names:
                if a.name.split(".")[0] == "ncc":
                    yield a.name, [], node.lineno


def test_layers_import_downward_only():
    upward = [f"{path.relative_to(ROOT)}:{line}: {me} imports {target}"
              for me, path in modules() for target, _, line in imports(path)
              if layer(target) > layer(me)]
    assert not upward, "\n".join(upward)


def test_no_module_imports_another_modules_private_names():
    private = [f"{path.relative_to(ROOT)}:{line}: {me} imports {target}.{name}"
               for me, path in modules() for target, names, line in imports(path)
               for name in names if name.startswith("_") and target != me]
    assert not private, "\n".join(private)


def test_every_module_has_a_layer():
    found = {me for me, _ in modules()}
    assert FACADE_MODULES <= found
    assert all(layer(m) < FACADE for m in found - {*FACADE_MODULES, "ncc.tools"}
               if not m.startswith("ncc.tools")), sorted(m for m in found if layer(m) == FACADE)
