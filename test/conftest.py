"""Puts test/ on sys.path for test/ops/: the op-family tests there run their
cases through the harness of the level test files here
(test_lower_to_loops.py, test_onnx_export.py, ...)."""
