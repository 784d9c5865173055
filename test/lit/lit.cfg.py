# lit configuration for ncc's FileCheck tests: `lit test/lit` (pytest runs it too).
import os
import shutil
import sys

import lit.formats

config.name = "ncc"
config.test_format = lit.formats.ShTest()
config.suffixes = [".mlir", ".adj"]
config.excludes = ["Inputs"]
config.test_source_root = os.path.dirname(__file__)

# The tools come from the Python environment running lit (a venv's bin/ first).
bin_dir = os.path.dirname(sys.executable)
config.environment["PATH"] = os.pathsep.join([bin_dir, os.environ.get("PATH", "")])
config.environment["PYTHONWARNINGS"] = "ignore"

filecheck = shutil.which("filecheck", path=config.environment["PATH"])
if filecheck is None:
    lit_config.fatal("filecheck not found: pip install -e '.[test]'")
config.substitutions.append(("FileCheck", filecheck))
config.substitutions.append(("%python", sys.executable))
for tool in ("ncc-opt", "ncc-translate", "ncc-stats"):
    if shutil.which(tool, path=config.environment["PATH"]) is None:
        lit_config.fatal(f"{tool} not found: install ncc with pip install -e '.[test]'")
