"""Runs the FileCheck suite in test/lit, so that `pytest` runs every test."""

import os
import subprocess
import sys
from pathlib import Path

LIT_DIR = Path(__file__).parent / "lit"


def test_lit_suite():
    lit_tests = [p for p in LIT_DIR.rglob("*") if p.suffix in (".mlir", ".adj")
                 and not {"Inputs", "Output"} & set(p.relative_to(LIT_DIR).parts)]
    assert len(lit_tests) >= 40, f"expected at least 40 lit tests, found {len(lit_tests)}"
    proc = subprocess.run(
        # lit.main has no __main__ guard: call its entry point.
        [sys.executable, "-c", "import lit.main; lit.main.main()", "-sv", f"-j{os.cpu_count() or 1}",
         str(LIT_DIR)],
        capture_output=True, text=True)
    assert proc.returncode == 0, f"lit failures:\n{proc.stdout}\n{proc.stderr}"
    # The summary proves lit ran every test: "Passed: N (100.00%)".
    assert f"Passed: {len(lit_tests)} (100.00%)" in proc.stdout + proc.stderr, proc.stdout + proc.stderr
