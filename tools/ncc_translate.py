"""ncc-translate: between ncc IR (MLIR text) and the outside world.

    ncc-translate --import-adjacency net.txt                  adjacency file -> neuron dialect
    ncc-translate --import-onnx model.onnx                    ONNX model -> nn dialect
    ncc-translate --import-adjacency net.txt --emit-equations the forward equations
    ncc-translate net.mlir --emit-equations=backward          the backward (gradient) equations
    ncc-translate net.mlir --emit-equations=table             the seed's term matrix
    ncc-translate net.mlir --emit-llvm                        LLVM IR (O3, for this host)
    ncc-translate net.mlir --emit-llvm --target-cpu=haswell   LLVM IR for a named CPU
    ncc-translate net.mlir --export-onnx -o net.onnx          an ONNX model (binary: -o is required)
    ncc-translate --import-onnx m.onnx --emit-dot -o m.dot    the graph as Graphviz DOT (-o m.svg: rendered)
    ncc-translate net.mlir --emit-c -o out/net.c              C99: out/net.c and out/net.h

One `--import-*` flag picks how the input is read (default: MLIR text) and one
`--emit-*` flag what is written (default: MLIR text).
"""

from __future__ import annotations

import argparse
import os
import sys

from xdsl.dialects.builtin import ModuleOp

from ncc.diagnostics import NccError
from ncc.adjacency import import_adjacency_text
from ncc.dialects import activations
from ncc.c_source import emit_c
from ncc.dot import emit_dot, render_svg
from ncc.equations import emit_equations
from ncc.ir import parse_module, print_module
from ncc.onnx import export_onnx, import_onnx
from ncc.runtime.build import NEURON_MODES
from ncc.runtime.engine import llvm_ir_text
from ncc.tools.common import add_constant_option, constants_of, read_input, run_tool, write_output

EQUATION_DIRECTIONS = ("forward", "backward", "table")


def make_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="ncc-translate",
        description="Translate between ncc IR (MLIR text) and other formats.",
        epilog="activations (codes and names): "
        + ", ".join(f"{a.code:02x}={a.name}" for a in activations.ACTIVATIONS),
    )
    p.add_argument("input", nargs="?", default="-", help="input file ('-' or none: stdin)")
    p.add_argument("-o", "--output", default="-", help="output file (default: stdout)")
    src = p.add_argument_group("input translations (default: MLIR text)")
    src.add_argument("--import-adjacency", action="store_true",
                     help="read a neuron-level adjacency list, matrix or edge list")
    src.add_argument("--import-onnx", action="store_true",
                     help="read a binary ONNX model (opsets 7 and newer) into the nn dialect")
    src.add_argument("--format", choices=("list", "matrix", "edges"), default=None,
                     help="adjacency spelling (default: detected from the text)")
    src.add_argument("--activation", default=None, metavar="NAME",
                     help="activation (code or name) of every non-input neuron: the matrix and "
                     f"edge list carry none (default {activations.DEFAULT_ACTIVATION}); for a list "
                     "it replaces the written codes")
    src.add_argument("--name", default="net", help="symbol name of the imported net (default: net)")
    add_constant_option(src)
    dst = p.add_argument_group("output translations (default: MLIR text)")
    dst.add_argument("--emit-equations", choices=EQUATION_DIRECTIONS, default=None,
                     metavar="{forward,backward,table}",
                     help="print a neuron net's equations: --emit-equations (forward), "
                     "--emit-equations=backward (the gradient of every weight and input) or "
                     "--emit-equations=table (the seed's term matrix: a row per source neuron, "
                     "a cell per destination)")
    dst.add_argument("--emit-llvm", action="store_true",
                     help="print the LLVM IR, optimised at O3 for this host (or --target-cpu), of "
                     "a neuron, nn, loop-level or llvm-dialect module (lowered with the default "
                     "pipeline)")
    dst.add_argument("--target-cpu", default=None, metavar="CPU",
                     help="with --emit-llvm: optimise for this CPU, by LLVM's name (haswell, "
                     "skylake-avx512, znver3, x86-64-v3, ...) with its own features, as llc's "
                     "-mcpu; default: host (this machine's CPU and features)")
    dst.add_argument("--emit-c", action="store_true",
                     help="write the model as portable C99 for any C compiler: -o DIR/NAME.c writes NAME.c "
                     "(the kernel, its weights embedded) and NAME.h (NAME_forward, NAME_workspace_size)")
    dst.add_argument("--weights", choices=("embed", "params"), default="embed",
                     help="with --emit-c: the weights as static arrays in NAME.c (embed, the default) or "
                     "read from a NAME_params struct of pointers the caller fills, NAME_forward's first argument "
                     "(params)")
    dst.add_argument("--neuron-mode", choices=NEURON_MODES, default=None,
                     help="with --emit-c: a neuron net's lowering: neuron (straight-line code per neuron), "
                     "layers (dense layers), or auto: chosen by size and density, as ncc.compile (default)")
    dst.add_argument("--training", action="store_true",
                     help="with --emit-c: also NAME_vjp (the gradients), NAME_sgd_step and NAME_adam_step, the parameters "
                     "writable arrays the header declares, so that a program can train without Python")
    dst.add_argument("--emit-dot", action="store_true",
                     help="write the model's graph as Graphviz DOT: a node per op (shape, parameters, "
                     "FLOPs at batch 1) or per neuron, an edge per value or synapse; -o FILE.svg renders "
                     "it with Graphviz's dot")
    dst.add_argument("--export-onnx", action="store_true",
                     help="write an nn (or neuron) module as a binary ONNX model to -o FILE")
    dst.add_argument("--elide-weights-if-larger", type=int, metavar="N", default=None,
                     help="print weights with more than N elements as dense_resource<__elided__>")
    return p


def normalize_argv(argv: list[str]) -> list[str]:
    # `--emit-equations` alone means forward; its value is only ever given with '='
    # so that `--emit-equations net.txt` keeps net.txt as the input file.
    return ["--emit-equations=forward" if a == "--emit-equations" else a for a in argv]


def import_input(args: argparse.Namespace) -> ModuleOp:
    if args.import_onnx:  # binary: read as bytes, not text
        return import_onnx(sys.stdin.buffer.read() if args.input == "-" else args.input,
                           constants=constants_of(args))
    if args.constant:
        raise NccError("--constant applies only with --import-onnx")
    text, filename = read_input(args.input)
    if args.import_adjacency:
        return import_adjacency_text(text, filename, name=args.name, format=args.format,
                                     activation=args.activation)
    for flag in ("format", "activation"):
        if getattr(args, flag) is not None:
            raise NccError(f"--{flag} applies only with --import-adjacency")
    return parse_module(text, filename)


def emit_output(module: ModuleOp, args: argparse.Namespace) -> str:
    if args.emit_llvm:
        return llvm_ir_text(module, cpu=args.target_cpu)
    if args.target_cpu is not None:
        raise NccError("--target-cpu applies only with --emit-llvm")
    if args.emit_equations:
        return emit_equations(module, args.emit_equations)
    if args.emit_dot:
        return emit_dot(module)
    return print_module(module, elide_weights_if_larger=args.elide_weights_if_larger)


def main(argv: list[str] | None = None) -> int:
    argv = normalize_argv(list(sys.argv[1:] if argv is None else argv))

    def body() -> int:
        args = make_parser().parse_args(argv)
        if args.export_onnx:
            if args.output == "-":
                raise NccError("--export-onnx writes a binary model: give the file with -o FILE")
            export_onnx(import_input(args), args.output)
            return 0
        if args.emit_c:
            if args.output == "-" or not args.output.endswith(".c"):
                raise NccError("--emit-c writes NAME.c and NAME.h: give the C file with -o DIR/NAME.c")
            directory, base = os.path.split(args.output)
            emit_c(import_input(args), base[:-2], training=args.training, weights=args.weights,
                   neuron_mode=args.neuron_mode or "auto").write(directory or ".")
            return 0
        if args.training or args.weights != "embed" or args.neuron_mode:
            raise NccError("--training, --weights and --neuron-mode apply only with --emit-c")
        text = emit_output(import_input(args), args)
        if args.emit_dot and args.output.lower().endswith(".svg"):
            render_svg(text, args.output)
        else:
            write_output(text, args.output)
        return 0

    return run_tool(body)


if __name__ == "__main__":
    sys.exit(main())
