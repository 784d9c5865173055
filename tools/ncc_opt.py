"""ncc-opt: parse, verify, transform and print ncc IR, with mlir-opt's conventions.

    ncc-opt input.mlir --layerize --fuse           passes run in command-line order
    ncc-opt input.mlir -p 'layerize,fuse' -o out.mlir
    ncc-opt errors.mlir --split-input-file --verify-diagnostics
    cat input.mlir | ncc-opt --fuse                reads stdin without a file (or with '-')
"""

from __future__ import annotations

import argparse
import re
import textwrap
import sys
import time
from dataclasses import dataclass, replace

from xdsl.passes import ModulePass, get_pass_option_infos

from ncc.diagnostics import NccError
from ncc.ir import make_context, parse_module, print_module
from ncc.pipeline import apply_pass, build_pipeline
from ncc.passes import ALL_PASSES
from ncc.tools.common import read_input, report, run_tool, split_input, write_output

# ---------------------------------------------------------------------------
# The pass pipeline: `--NAME[=OPTIONS]` flags and `-p PIPELINE` in command-line order.


def split_pipeline_args(argv: list[str]) -> tuple[list[str], list[str]]:
    """Take the pass flags out of argv, in order, as pipeline text pieces."""
    pieces: list[str] = []
    rest: list[str] = []
    it = iter(argv)
    for arg in it:
        m = re.fullmatch(r"--([A-Za-z][\w-]*)(?:=(.*))?", arg, re.DOTALL)
        if m and m.group(1) in ALL_PASSES:
            name, opts = m.group(1), m.group(2)
            pieces.append(name if not opts else f"{name}{{{opts}}}")
        elif arg in ("-p", "--passes"):
            value = next(it, None)
            if value is None:
                raise NccError(f"{arg} expects a pipeline, e.g. -p 'layerize,fuse'")
            pieces.append(value)
        elif arg.startswith(("-p=", "--passes=")):
            pieces.append(arg.split("=", 1)[1])
        else:
            rest.append(arg)
    return [p for p in pieces if p.strip()], rest


def pass_summary(cls: type) -> str:
    """A pass's summary: the first paragraph of its docstring, whole."""
    paragraph = (cls.__doc__ or "").strip().split("\n\n")[0]
    return " ".join(line.strip() for line in paragraph.splitlines())


def pass_help() -> str:
    lines = ["passes (run in command-line order; options in MLIR syntax):"]
    for name, load in ALL_PASSES.items():
        try:
            cls = load()
        except ImportError as e:  # pragma: no cover - a broken install
            lines.append(f"  --{name:<20} (unavailable: {e})")
            continue
        lines.append(textwrap.fill(pass_summary(cls), width=100, initial_indent=f"  --{name:<20} ",
                                   subsequent_indent=" " * 25))
        for opt in get_pass_option_infos(cls):
            default = f" (default {opt.default_value})" if opt.default_value is not None else ""
            kind = opt.expected_type.strip("'").replace("float | int", "float")
            lines.append(f"  {'':22}   {opt.name.replace('_', '-')}=<{kind}>{default}")
    return "\n".join(lines)


# ---------------------------------------------------------------------------
# --verify-diagnostics: MLIR's `// expected-error @+1 {{message}}` annotations.

EXPECTATION = re.compile(
    r"//\s*expected-(error|warning|note|remark)\s*(?:@(above|below|[+-]\d+))?\s*\{\{(.*?)\}\}")


@dataclass
class Expectation:
    line: int  # the line the diagnostic must be reported on
    text: str
    written_at: int
    seen: bool = False


def expectations(text: str, line_offset: int) -> list[Expectation]:
    found = []
    for n, line in enumerate(text.splitlines(), start=1 + line_offset):
        for m in EXPECTATION.finditer(line):
            where = m.group(2)
            target = {None: n, "above": n - 1, "below": n + 1}.get(where)
            if target is None:
                target = n + int(where)
            found.append(Expectation(target, m.group(3), n))
    return found


def check_expectations(produced: list[NccError], expected: list[Expectation], filename: str) -> list[str]:
    problems = []
    for err in produced:
        match = next((x for x in expected if not x.seen and x.line == err.line and x.text in err.message),
                     None)
        if match is None:
            problems.append(f"{err.location}: error: unexpected error: {err.message}")
        else:
            match.seen = True
    for x in expected:
        if not x.seen:
            problems.append(f"{filename}:{x.written_at}: error: expected error \"{x.text}\" "
                            f"on line {x.line} was not produced")
    return problems


# ---------------------------------------------------------------------------


def make_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="ncc-opt",
        description="Parse, verify, transform and print ncc IR (mlir-opt conventions).",
        epilog=pass_help(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("input", nargs="?", default="-", help="input .mlir file ('-' or none: stdin)")
    p.add_argument("-o", "--output", default="-", help="output file (default: stdout)")
    # Taken out of argv (with the --PASS flags) before parsing, to keep their order.
    p.add_argument("-p", "--passes", metavar="PIPELINE", action="append",
                   help="comma-separated passes with MLIR-style options, e.g. -p 'layerize,fuse'; "
                   "-p and --PASS flags run in command-line order")
    p.add_argument("--split-input-file", action="store_true",
                   help="process each '// -----' separated chunk on its own")
    p.add_argument("--verify-diagnostics", action="store_true",
                   help="check errors against '// expected-error @+N {{...}}' annotations")
    p.add_argument("--print-ir-after-all", action="store_true",
                   help="print the IR to stderr after every pass")
    p.add_argument("--time-passes", action="store_true", help="print each pass's time to stderr")
    p.add_argument("--fuse-stats", action="store_true",
                   help="each fuse pass prints what fused to stderr: rewrites per pattern, nn ops, loop "
                   "nests and arena bytes before and after (the pass option fuse{stats=true})")
    p.add_argument("--elide-weights-if-larger", type=int, metavar="N", default=None,
                   help="print weights with more than N elements as dense_resource<__elided__>")
    return p


def process_chunk(text: str, filename: str, line_offset: int, passes: list[ModulePass],
                  args: argparse.Namespace, collect: list[NccError] | None) -> str | None:
    """Parse, verify, run passes, print. With `collect`, errors are appended, not raised."""
    ctx = make_context()
    try:
        module = parse_module(text, filename, ctx, line_offset)
        for p in passes:
            start = time.perf_counter()
            apply_pass(p, module, ctx)
            if args.time_passes:
                print(f"{p.name}: {time.perf_counter() - start:.4f} s", file=sys.stderr)
            if args.print_ir_after_all:
                print(f"// -----// IR Dump After {p.name} //----- //", file=sys.stderr)
                print(print_module(module), file=sys.stderr)
        return print_module(module, elide_weights_if_larger=args.elide_weights_if_larger)
    except NccError as e:
        if collect is None:
            raise
        collect.append(e)
        return None


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)

    def body() -> int:
        pieces, rest = split_pipeline_args(argv)
        args = make_parser().parse_args(rest)
        passes = build_pipeline(*pieces)
        if args.fuse_stats:
            if not any(p.name == "fuse" for p in passes):
                raise NccError("--fuse-stats reports what the fuse pass does: add --fuse to the pipeline")
            passes = [replace(p, stats=True) if p.name == "fuse" else p for p in passes]
        text, filename = read_input(args.input)
        outputs: list[str] = []
        failed = False
        for chunk in split_input(text, args.split_input_file):
            if args.verify_diagnostics:
                produced: list[NccError] = []
                out = process_chunk(chunk.text, filename, chunk.line_offset, passes, args, produced)
                problems = check_expectations(produced, expectations(chunk.text, chunk.line_offset),
                                              filename)
                for problem in problems:
                    print(problem, file=sys.stderr)
                failed |= bool(problems)
            else:
                try:
                    out = process_chunk(chunk.text, filename, chunk.line_offset, passes, args, None)
                except NccError as e:
                    if not args.split_input_file:
                        raise
                    report(e)
                    failed, out = True, None
            if out is not None:
                outputs.append(out)
        if failed:
            return 1
        write_output("// -----\n".join(outputs), args.output)
        return 0

    return run_tool(body)


if __name__ == "__main__":
    sys.exit(main())
