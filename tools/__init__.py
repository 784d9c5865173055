"""ncc.tools: the command-line tools ncc-opt and ncc-translate."""
