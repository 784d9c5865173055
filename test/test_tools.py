"""The command-line tools as a user runs them: exit codes, one-line diagnostics,
nothing written on failure."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent
BAD_ADJACENCY = sorted((ROOT / "test/lit/translate/errors").glob("*.adj"))
EXAMPLES = ROOT / "examples"


def run(tool, *args, stdin=None):
    # Run the installed entry point's module, so the test uses this checkout's code.
    module = {"ncc-opt": "ncc.tools.ncc_opt", "ncc-translate": "ncc.tools.ncc_translate"}[tool]
    return subprocess.run([sys.executable, "-m", module, *map(str, args)], input=stdin,
                          capture_output=True, text=True)


@pytest.mark.parametrize("path", BAD_ADJACENCY, ids=lambda p: p.stem)
def test_bad_adjacency_is_one_located_line_and_exit_1(path, tmp_path):
    out = tmp_path / "out.mlir"
    proc = run("ncc-translate", "--import-adjacency", path, "-o", out)
    assert proc.returncode == 1
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, proc.stderr
    assert re.fullmatch(rf"{re.escape(str(path))}:\d+:\d+: error: .+", lines[0]), lines[0]
    assert proc.stdout == "" and not out.exists()


def test_input_that_is_not_utf8_and_a_bad_activation_are_located(tmp_path):
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"N 03\n00 02\n01 \xff2\n")
    proc = run("ncc-translate", "--import-adjacency", bad)
    assert proc.returncode == 1
    assert proc.stderr.strip() == f"{bad}:3:4: error: input is not UTF-8 text (byte 0xff at offset 14)"
    proc = run("ncc-translate", "--import-adjacency", EXAMPLES / "seed_list.txt", "--activation=bogus")
    assert proc.returncode == 1 and "option activation=bogus: unknown activation" in proc.stderr
    crlf = tmp_path / "crlf.txt"  # universal newlines, as before
    crlf.write_bytes((EXAMPLES / "seed_list.txt").read_bytes().replace(b"\n", b"\r\n"))
    assert run("ncc-translate", "--import-adjacency", crlf).returncode == 0


def test_every_bad_input_kind_of_the_spec_has_a_case():
    kinds = {p.stem for p in BAD_ADJACENCY}
    assert {"malformed-index", "unknown-activation", "index-out-of-range", "defined-twice",
            "count-too-large", "count-too-small", "matrix-ragged", "matrix-not-square",
            "self-loop", "cycle", "empty"} <= kinds


def test_translate_seed_equations_exactly():
    proc = run("ncc-translate", "--import-adjacency", EXAMPLES / "seed_list.txt", "--emit-equations")
    assert proc.returncode == 0
    expected = (ROOT / "test/lit/translate/Inputs/seed_list.forward").read_text()
    assert proc.stdout == expected


def test_opt_reads_stdin_and_reports_parse_errors_with_location():
    good = "neuron.net @n -> (n01) {\n  neuron.input n00\n  neuron.neuron n01 relu(n00 * @w0001)\n}\n"
    proc = run("ncc-opt", stdin=good)
    assert proc.returncode == 0 and "neuron.neuron n01 relu(n00 * @w0001)" in proc.stdout
    proc = run("ncc-opt", stdin=good.replace("relu", "relu relu"))
    assert proc.returncode == 1
    assert proc.stderr.strip().startswith("<stdin>:3:")
    assert "Traceback" not in proc.stderr


def test_opt_help_lists_every_pass():
    from ncc.passes import ALL_PASSES

    proc = run("ncc-opt", "--help")
    assert proc.returncode == 0
    for name in ALL_PASSES:
        assert f"--{name}" in proc.stdout
    assert "unavailable" not in proc.stdout
    # each summary is whole: the first paragraph of the pass's docstring, ending a sentence
    text = " ".join(proc.stdout.split("passes (run in command-line order")[1].split())
    for name, load in ALL_PASSES.items():
        summary = " ".join(load().__doc__.strip().split("\n\n")[0].split())
        assert summary.endswith(".") and summary in text, name


def test_an_empty_file_is_an_empty_module(tmp_path):
    for text in ("", "\n  \n", "// only a comment\n"):
        (tmp_path / "empty.mlir").write_text(text)
        for tool in ("ncc-opt", "ncc-translate"):
            proc = run(tool, tmp_path / "empty.mlir")
            assert proc.returncode == 0 and proc.stdout == "builtin.module {\n}\n", (tool, proc.stderr)


def test_translate_rejects_adjacency_options_without_import(tmp_path):
    f = tmp_path / "n.mlir"
    f.write_text("neuron.net @n -> (n01) {\n  neuron.input n00\n  neuron.neuron n01 relu(n00 * @w)\n}\n")
    proc = run("ncc-translate", f, "--format=matrix")
    assert proc.returncode == 1
    assert proc.stderr.strip() == "error: --format applies only with --import-adjacency"


def test_quick_start_example_runs():
    proc = subprocess.run([sys.executable, str(EXAMPLES / "xor.py")], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "ok: every level computes XOR" in proc.stdout


def test_readme_activation_table_matches_the_code():
    from ncc.dialects.activations import table_markdown

    assert table_markdown() in (ROOT / "README.md").read_text()


def test_translate_target_cpu_errors(tmp_path):
    src = ROOT / "test/lit/lowering/to-llvm/emit-llvm.mlir"
    proc = run("ncc-translate", src, "--emit-llvm", "--target-cpu=nonesuch")
    assert proc.returncode == 1 and proc.stdout == ""
    assert proc.stderr.startswith("error: unknown target CPU 'nonesuch'")
    proc = run("ncc-translate", src, "--target-cpu=haswell")
    assert proc.returncode == 1 and "error: --target-cpu applies only with --emit-llvm" in proc.stderr
