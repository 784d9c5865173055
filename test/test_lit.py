"""Runs the FileCheck suite in test/lit, so that `pytest` runs every test."""

import os
import subprocess
import sys
from pathlib import Path

LIT_DIR = Path(__file__).parent / "lit"


def test_lit_suite():
    lit_tests = [p for p in LIT_DIR.rglob("*") if p.suffix in (".mlir", ".adj") and "Inputs" not in p.parts]
    assert len(lit_tests) >= 40, f"expected at least 40 lit tests, found {len(lit_tests)}"
    proc = subprocess.run(
        [sys.executable, "-m", "lit.main", "-sv", f"-j{os.cpu_count() or 1}", str(LIT_DIR)],
        capture_output=True, text=True)
    summary = proc.stdout[-3000:] + proc.stderr[-3000:]
    assert proc.returncode == 0, f"lit failures:\n{proc.stdout}\n{proc.stderr}"
    assert "Passed" in summary
