// RUN: %python %S/Inputs/make_models.py %t
// RUN: not ncc-translate --import-onnx %t/unsupported.onnx 2>&1 | FileCheck %s --check-prefix=UNSUP
// RUN: not ncc-translate --import-onnx %t/truncated.onnx 2>&1 | FileCheck %s --check-prefix=TRUNC
// RUN: not ncc-translate --import-onnx %t/none.onnx 2>&1 | FileCheck %s --check-prefix=MISSING
// Every unsupported op at once; bad files are one diagnostic line, no traceback.

// UNSUP: unsupported.onnx: error: unsupported ONNX ops: Foo (nodes n1, n2), Bar (node n3)
// TRUNC: truncated.onnx: error: not a valid ONNX model (malformed or truncated protobuf
// TRUNC-NOT: Traceback
// MISSING: none.onnx: error: cannot read the ONNX file: No such file or directory
