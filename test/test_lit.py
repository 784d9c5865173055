"""Runs the FileCheck suite in test/lit, so that `pytest` runs every test:
one pytest test per chapter (top-level directory), so that pytest's workers
share the suite."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

LIT_DIR = Path(__file__).parent / "lit"


def lit_tests(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.suffix in (".mlir", ".adj")
            and not {"Inputs", "Output"} & set(p.relative_to(LIT_DIR).parts)]


CHAPTERS = sorted(d.name for d in LIT_DIR.iterdir() if d.is_dir() and lit_tests(d))


def test_the_chapters_hold_the_whole_suite():
    assert len(lit_tests(LIT_DIR)) >= 40, f"expected at least 40 lit tests, found {len(lit_tests(LIT_DIR))}"
    assert sum(len(lit_tests(LIT_DIR / c)) for c in CHAPTERS) == len(lit_tests(LIT_DIR)), \
        "a lit test lies outside every chapter directory"


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_lit_chapter(chapter: str):
    tests = lit_tests(LIT_DIR / chapter)
    proc = subprocess.run(
        # lit.main has no __main__ guard: call its entry point.
        [sys.executable, "-c", "import lit.main; lit.main.main()", "-sv", f"-j{os.cpu_count() or 1}",
         str(LIT_DIR / chapter)],
        capture_output=True, text=True)
    assert proc.returncode == 0, f"lit failures:\n{proc.stdout}\n{proc.stderr}"
    # The summary proves lit ran every test: "Passed: N (100.00%)".
    assert f"Passed: {len(tests)} (100.00%)" in proc.stdout + proc.stderr, proc.stdout + proc.stderr
