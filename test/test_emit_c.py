"""ncc-translate --emit-c: the emitted C compiles warning-free with the
system's C compiler (cc -std=c99 -O2 -Wall -Wextra -Werror) and computes
what the JIT computes; skipped where there is no C compiler."""

import ctypes
import os
import subprocess

import numpy as np
import onnx
import pytest

import ncc
from ncc.c_source import emit_c

from c_kernels import CC, CFLAGS

pytestmark = pytest.mark.skipif(CC is None, reason="no C compiler (cc, gcc or clang) on the PATH")
LIGHT = os.path.join(os.path.dirname(onnx.__file__), "backend", "test", "data", "light")


def _built(c, tmp_path):
    """The C files of `c` written into tmp_path and built into a shared library, loaded."""
    _, path = c.write(tmp_path)
    so = tmp_path / f"lib{c.name}.so"
    done = subprocess.run([CC, *CFLAGS, "-shared", "-fPIC", "-o", str(so), path, "-lm"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return ctypes.CDLL(str(so))


class Library:
    """The emitted C of a model built as a shared library, called like the JIT's model."""

    def __init__(self, source, tmp_path, name="model", constants=None):
        self.c = emit_c(source, name, constants=constants)
        self.lib = _built(self.c, tmp_path)
        self.size = getattr(self.lib, f"{name}_workspace_size")
        self.size.restype, self.size.argtypes = ctypes.c_size_t, [ctypes.c_int64]
        self.forward = getattr(self.lib, f"{name}_forward")
        self.forward.restype = ctypes.c_int

    def __call__(self, like, batch, *inputs):
        """The outputs (arrays shaped as `like`'s) of `batch` rows of `inputs`."""
        outs = [np.zeros_like(a) for a in like]
        workspace = np.zeros(self.size(batch) + 64, np.uint8)
        kept = [np.ascontiguousarray(a) for a in inputs]  # alive until the call returns
        args = [a.ctypes.data for a in kept] + [o.ctypes.data for o in outs]
        self.forward.argtypes = [ctypes.c_void_p] * len(args) + [ctypes.c_int64, ctypes.c_void_p]
        assert self.forward(*args, batch, workspace.ctypes.data) == 0
        return outs[0] if len(outs) == 1 else tuple(outs)


def check(source, tmp_path, inputs, rtol=1e-5, atol=1e-5):
    model = ncc.compile(source, threads=1)
    lib = Library(source, tmp_path)
    want = model(*inputs)
    want = want if isinstance(want, tuple) else (want,)
    batch = inputs[0].shape[0] if model.input_shapes[0][:1] == ["batch"] else 1
    got = lib(want, batch, *inputs)
    for g, w in zip(got if isinstance(got, tuple) else (got,), want):
        np.testing.assert_allclose(g, w, rtol=rtol, atol=atol)
    return lib


def test_mlp_with_the_gemm(tmp_path):
    rng = np.random.default_rng(0)
    w1, w2 = rng.standard_normal((64, 128)).astype(np.float32), rng.standard_normal((128, 10)).astype(np.float32)
    text = f"""
nn.weight @w1 : tensor<64x128xf32> = dense<{ncc.dialects.nn.format_literal(w1)}>
nn.weight @b1 : tensor<128xf32> = dense<0.1>
nn.weight @w2 : tensor<128x10xf32> = dense<{ncc.dialects.nn.format_literal(w2)}>
func.func @main(%x: tensor<?x64xf32>) -> tensor<?x10xf32> {{
  %w1 = nn.weight_ref @w1 : tensor<64x128xf32>
  %b1 = nn.weight_ref @b1 : tensor<128xf32>
  %h = nn.matmul %x, %w1 : tensor<?x64xf32>, tensor<64x128xf32> -> tensor<?x128xf32>
  %hb = nn.add %h, %b1 : tensor<?x128xf32>, tensor<128xf32> -> tensor<?x128xf32>
  %a = nn.relu %hb : tensor<?x128xf32>
  %w2 = nn.weight_ref @w2 : tensor<128x10xf32>
  %o = nn.matmul %a, %w2 : tensor<?x128xf32>, tensor<128x10xf32> -> tensor<?x10xf32>
  %p = nn.softmax %o : tensor<?x10xf32>
  func.return %p : tensor<?x10xf32>
}}
"""
    lib = check(text, tmp_path, [rng.standard_normal((33, 64)).astype(np.float32)])
    assert "ncc_sgemm(" in lib.c.source and "int model_forward(const float *x, float *p, int64_t batch, " \
        "void *workspace);" in lib.c.header


@pytest.mark.parametrize("net", ["seed_list.txt", "ncp19.txt"])
def test_seed_nets(tmp_path, net):
    path = os.path.join("examples", net)
    model = ncc.compile(path, threads=1)
    x = np.random.default_rng(1).standard_normal((17, *[d for d in model.input_shapes[0][1:]])).astype(np.float32)
    check(path, tmp_path, [x])


def test_light_squeezenet(tmp_path):
    x = np.random.default_rng(2).standard_normal((1, 3, 224, 224)).astype(np.float32)
    check(os.path.join(LIGHT, "light_squeezenet.onnx"), tmp_path, [x], rtol=1e-4, atol=1e-6)


def test_transformer_block(tmp_path):
    torch = pytest.importorskip("torch")
    import io
    import warnings

    class Block(torch.nn.Module):
        """Pre-LayerNorm self-attention (4 heads, causal) and an erf-Gelu MLP."""

        def __init__(self, d=32, heads=4):
            super().__init__()
            self.heads, self.ln1, self.ln2 = heads, torch.nn.LayerNorm(d), torch.nn.LayerNorm(d)
            self.qkv, self.out = torch.nn.Linear(d, 3 * d), torch.nn.Linear(d, d)
            self.mlp = torch.nn.Sequential(torch.nn.Linear(d, 4 * d), torch.nn.GELU(), torch.nn.Linear(4 * d, d))

        def forward(self, x):
            b, s, d = x.shape
            q, k, v = self.qkv(self.ln1(x)).reshape(b, s, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
            scores = (q @ k.transpose(-2, -1) / (d // self.heads) ** 0.5).masked_fill(
                torch.ones(s, s, dtype=torch.bool).triu(1), float("-inf"))
            x = x + self.out((scores.softmax(-1) @ v).transpose(1, 2).reshape(b, s, d))
            return x + self.mlp(self.ln2(x))

    torch.manual_seed(0)
    layer = Block().eval()
    f = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(layer, (torch.zeros(1, 8, 32),), f, dynamo=False, opset_version=17)
    x = np.random.default_rng(3).standard_normal((1, 8, 32)).astype(np.float32)
    proto = onnx.load_from_string(f.getvalue())
    check(proto, tmp_path, [x], rtol=1e-4, atol=1e-5)
    # backward: every parameter's gradient and the input's, against model.vjp
    model = ncc.compile(proto, threads=1)
    out = model.output_names[0]
    dy = np.random.default_rng(4).standard_normal((1, 8, 32)).astype(np.float32)
    got = vjp_in_c(emit_c(proto, "block", training=True), tmp_path, {model.input_names[0]: x}, {out: dy})
    want = model.vjp({model.input_names[0]: x}, {out: dy})
    grads = [k for k in got if k.startswith("grad:")]
    assert len(grads) == len(model.params) + 1
    for k in grads:
        np.testing.assert_allclose(got[k], want[k[5:]], rtol=1e-3, atol=1e-5, err_msg=k)


# maximumf / minimumf of x and each constant (either operand order), and of two values
MINMAX_PAIRS = [(op, c, first) for op in ("maximumf", "minimumf") for c in ("-0.0", "0.0", "2.5")
                for first in (True, False)] + [("maximumf", None, True), ("minimumf", None, True)]


def test_min_and_max_keep_nan_and_the_sign_of_zero(tmp_path):
    """IEEE maximum/minimum (llvm.maximum's): NaN in, NaN out; max(-0, +0) = +0.
    Against a constant the C is one comparison (what vectorizes well); its
    results must equal the JIT's bit for bit on NaN, +-0, +-inf."""
    n = len(MINMAX_PAIRS)
    body = []
    for k, (op, c, first) in enumerate(MINMAX_PAIRS):
        other = f"%c{k}" if c else "%w"
        if c:
            body.append(f"%c{k} = arith.constant {c} : f32")
        a, b = ("%v", other) if first else (other, "%v")
        body += [f"%r{k} = arith.{op} {a}, {b} : f32", f"%j{k} = arith.constant {k} : index",
                 f"memref.store %r{k}, %y[%i, %j{k}] : memref<?x{n}xf32>"]
    text = f"""
func.func @minmax(%x: memref<?xf32>, %y: memref<?x{n}xf32>)
    attributes {{ncc.arg_roles = ["input:x", "output:y"], ncc.arena_bytes = array<i64: 0, 0>}} {{
  %zero = arith.constant 0 : index
  %one = arith.constant 1 : index
  %n = memref.dim %x, %zero : memref<?xf32>
  scf.for %i = %zero to %n step %one {{
    %v = memref.load %x[%i] : memref<?xf32>
    %w = arith.negf %v : f32
    {chr(10).join(body)}
  }}
  func.return
}}
"""
    x = np.array([np.nan, -0.0, 0.0, 2.5, -2.5, -3, 7, np.inf, -np.inf, 1e-45], np.float32)
    want = ncc.compile(text, threads=1)(x)
    source = emit_c(text, "minmax").source
    assert source.count("ncc_maximum_f(") == 2 and source.count("ncc_minimum_f(") == 2  # helpers + 1 call each
    got = Library(text, tmp_path, "minmax")((want,), len(x), x)
    np.testing.assert_array_equal(got, want)  # NaN where NaN
    numbers = ~np.isnan(want)  # a NaN's sign is not specified
    np.testing.assert_array_equal(np.signbit(got)[numbers], np.signbit(want)[numbers])


def test_refusals_are_errors(tmp_path):
    text = """
func.func @main(%x: tensor<?x4xf32>) -> tensor<?x4xf32> {
  %y = nn.relu %x : tensor<?x4xf32>
  func.return %y : tensor<?x4xf32>
}
"""
    c = emit_c(text, "relu")
    assert c.name == "relu" and "int relu_forward(const float *x, float *y, int64_t batch, void *workspace);" \
        in c.header


# ---------------------------------------------------------------------------
# The library kernels: int8 (ncc_qgemm: a quantized matmul, a convolution
# with its weight rows prepacked, dynamic quantization's int32 product) and
# sparse (ncc_spmm: a pruned matmul, a pruned 1x1 convolution channels first)


def _net(kind):
    from onnx import helper
    from onnx_models import onnx_model

    rng = np.random.default_rng(9)
    if kind == "mlp":  # 40 features: a panel of 32 columns and an edge of 8
        w = {"W1": rng.standard_normal((40, 23)).astype(np.float32) * 0.3, "B1": rng.standard_normal(40).astype(np.float32),
             "W2": rng.standard_normal((40, 5)).astype(np.float32) * 0.3}
        nodes = [helper.make_node("Gemm", ["x", "W1", "B1"], ["h"], transB=1), helper.make_node("Relu", ["h"], ["r"]),
                 helper.make_node("MatMul", ["r", "W2"], ["y"])]
        return onnx_model(nodes, {"x": (1, ["N", 23])}, inits=w), (23,)
    w = {"K1": rng.standard_normal((9, 3, 3, 3)).astype(np.float32) * 0.3, "C1": rng.standard_normal(9).astype(np.float32),
         "K2": rng.standard_normal((6, 9, 1, 1)).astype(np.float32) * 0.3}
    nodes = [helper.make_node("Conv", ["x", "K1", "C1"], ["c"], pads=[1, 1, 1, 1], strides=[2, 2]),
             helper.make_node("Relu", ["c"], ["r"]), helper.make_node("Conv", ["r", "K2"], ["y"])]
    return onnx_model(nodes, {"x": (1, ["N", 3, 9, 9])}, inits=w), (3, 9, 9)


def _c_matches_the_jit(module, shape, tmp_path, kernel, rtol=1e-5, atol=1e-5):
    c = emit_c(module.clone(), "lib")
    assert f"static void {kernel}(" in c.source
    model = ncc.compile(module.clone(), threads=1, cache=False)
    lib = Library(module.clone(), tmp_path, "lib")
    for batch in (1, 5, 70):  # 70 rows: more than a block of the sparse kernel's 64
        x = np.random.default_rng(batch).standard_normal((batch, *shape)).astype(np.float32)
        want = model(x)
        np.testing.assert_allclose(lib((want,), batch, x), want, rtol=rtol, atol=atol)


@pytest.mark.parametrize("kind, activations", [("mlp", "int8"), ("mlp", "uint8"), ("cnn", "int8"), ("cnn", "uint8"),
                                               ("mlp", "dynamic")])  # dynamic quantization covers matmuls
def test_quantized_nets_in_c(kind, activations, tmp_path):
    proto, shape = _net(kind)
    module = ncc.import_onnx(proto)
    rng = np.random.default_rng(4)
    if activations == "dynamic":
        ncc.quantize(module, mode="dynamic")
    else:
        batches = [{"x": rng.standard_normal((8, *shape)).astype(np.float32)} for _ in range(2)]
        ncc.quantize(module, batches, activation_type=activations)
    # the same integers: outputs differ by float rounding of the dequantization at most
    _c_matches_the_jit(module, shape, tmp_path, "ncc_qgemm")
    if (kind, activations) == ("mlp", "int8"):  # no trainable parameter: the vjp alone, the inputs' gradient
        c = emit_c(module.clone(), "t", training=True)
        assert "t_sgd_step" not in c.header
        lib = _built(c, tmp_path)
        x, dy = rng.standard_normal((3, *shape)).astype(np.float32), rng.standard_normal((3, 5)).astype(np.float32)
        y, gx = np.zeros((3, 5), np.float32), np.zeros_like(x)
        P, I64 = ctypes.c_void_p, ctypes.c_int64
        lib.t_vjp_workspace_size.restype, lib.t_vjp_workspace_size.argtypes = ctypes.c_size_t, [I64]
        ws = np.zeros(lib.t_vjp_workspace_size(3) + 64, np.uint8)
        lib.t_vjp.argtypes = [P] * 4 + [I64, P]
        assert lib.t_vjp(x.ctypes.data, dy.ctypes.data, y.ctypes.data, gx.ctypes.data, 3, ws.ctypes.data) == 0
        model = ncc.compile(module.clone(), threads=1, cache=False)
        np.testing.assert_allclose(gx, model.vjp({"x": x}, {"y": dy})["x"], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("kind", ["mlp", "cnn"])
def test_pruned_nets_in_c(kind, tmp_path):
    proto, shape = _net(kind)
    module = ncc.import_onnx(proto)
    ncc.prune(module, sparsity=0.8)
    _c_matches_the_jit(module, shape, tmp_path, "ncc_spmm", rtol=1e-4)


def test_the_xor_example_prints_the_jits_numbers():
    import sys

    done = subprocess.run([sys.executable, "examples/c_xor.py"], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "the C program:\n0 0 -> 0\n0 1 -> 1\n1 0 -> 1\n1 1 -> 0\n" in done.stdout
    assert done.stdout.rstrip().endswith("the same numbers")


CNN = """
nn.weight @conv_w : tensor<4x1x3x3xf32> = dense<[[[[0.5, -0.25, 0.1], [0.3, 0.2, -0.4], [0.05, 0.6, -0.1]]],
  [[[-0.3, 0.2, 0.4], [0.1, -0.5, 0.2], [0.3, 0.1, 0.0]]], [[[0.2, 0.2, -0.2], [0.4, 0.1, 0.3], [-0.6, 0.2, 0.1]]],
  [[[0.1, -0.1, 0.5], [-0.2, 0.3, 0.2], [0.4, -0.3, 0.2]]]]>
nn.weight @fc_w : tensor<16x10xf32>
nn.weight @fc_b : tensor<10xf32>
func.func @main(%x: tensor<?x1x4x4xf32>) -> tensor<?x10xf32> {
  %w = nn.weight_ref @conv_w : tensor<4x1x3x3xf32>
  %c = nn.conv %x, %w pads [1, 1, 1, 1] : tensor<?x1x4x4xf32>, tensor<4x1x3x3xf32> -> tensor<?x4x4x4xf32>
  %r = nn.tanh %c : tensor<?x4x4x4xf32>
  %p = nn.max_pool %r kernel [2, 2] strides [2, 2] : tensor<?x4x4x4xf32> -> tensor<?x4x2x2xf32>
  %f = nn.reshape %p : tensor<?x4x2x2xf32> -> tensor<?x16xf32>
  %fw = nn.weight_ref @fc_w : tensor<16x10xf32>
  %fb = nn.weight_ref @fc_b : tensor<10xf32>
  %y = nn.matmul %f, %fw : tensor<?x16xf32>, tensor<16x10xf32> -> tensor<?x10xf32>
  %z = nn.add %y, %fb : tensor<?x10xf32>, tensor<10xf32> -> tensor<?x10xf32>
  %s = nn.softmax %z : tensor<?x10xf32>
  func.return %s : tensor<?x10xf32>
}
"""


def test_training_kernels_in_c_match_the_jit(tmp_path):
    rng = np.random.default_rng(4)
    model = ncc.compile(CNN, threads=1)
    params = {"fc_w": rng.standard_normal((16, 10)).astype(np.float32) * 0.3,
              "fc_b": rng.standard_normal(10).astype(np.float32) * 0.1}
    for name, value in params.items():
        model.params[name] = value
    module = ncc.parse_module(CNN)
    for op in module.ops:  # the same values in the module the C is made from
        if op.name == "nn.weight" and op.sym in params:
            op.data = params[op.sym]
    c = emit_c(module, "net", training=True)
    lib = _built(c, tmp_path)
    batch = 6
    x = rng.standard_normal((batch, 1, 4, 4)).astype(np.float32)
    dy = rng.standard_normal((batch, 10)).astype(np.float32)
    P, I64 = ctypes.c_void_p, ctypes.c_int64
    lib.net_vjp_workspace_size.restype, lib.net_vjp_workspace_size.argtypes = ctypes.c_size_t, [I64]
    ws = np.zeros(lib.net_vjp_workspace_size(batch) + 64, np.uint8)
    y, gx = np.zeros((batch, 10), np.float32), np.zeros_like(x)
    grads = {"conv_w": np.zeros((4, 1, 3, 3), np.float32), "fc_w": np.zeros((16, 10), np.float32),
             "fc_b": np.zeros(10, np.float32)}
    lib.net_vjp.argtypes = [P] * 7 + [I64, P]
    assert lib.net_vjp(x.ctypes.data, dy.ctypes.data, y.ctypes.data, *[g.ctypes.data for g in grads.values()],
                       gx.ctypes.data, batch, ws.ctypes.data) == 0
    want = model.vjp({"x": x}, {"s": dy})
    np.testing.assert_allclose(y, model(x), rtol=1e-5, atol=1e-6)
    for name, g in grads.items():
        np.testing.assert_allclose(g, want[name], rtol=1e-4, atol=1e-6, err_msg=name)
    np.testing.assert_allclose(gx, want["x"], rtol=1e-4, atol=1e-6)
    # one SGD step in C: p -= lr * (g + weight_decay * p), as ncc.optim.SGD
    before = {n: np.ctypeslib.as_array((ctypes.c_float * g.size).in_dll(lib, f"net_w_{n}")).copy()
              for n, g in grads.items()}
    lib.net_sgd_step.argtypes = [P] * 3 + [ctypes.c_double] * 4 + [ctypes.c_int, I64]
    g_args = [g.ctypes.data for g in grads.values()]
    assert lib.net_sgd_step(*g_args, 0.1, 0.0, 0.0, 0.01, 0, 1) == 0
    ncc.optim.SGD(model, lr=0.1, weight_decay=0.01).step(want)
    for n in grads:
        after = np.ctypeslib.as_array((ctypes.c_float * grads[n].size).in_dll(lib, f"net_w_{n}"))
        np.testing.assert_allclose(after, before[n] - 0.1 * (grads[n].reshape(-1) + 0.01 * before[n]), rtol=1e-6,
                                   atol=1e-7)
        np.testing.assert_allclose(after, model.params[n].reshape(-1), rtol=1e-5, atol=1e-6)
    # momentum with dampening over three steps, then nesterov over two, as ncc.optim.SGD's (buffers restart at step 1)
    for options, steps in ((dict(momentum=0.9, dampening=0.1), 3), (dict(momentum=0.8, nesterov=True), 2)):
        sgd = ncc.optim.SGD(model, lr=0.05, weight_decay=0.01, **options)
        for step in range(1, steps + 1):
            assert lib.net_sgd_step(*g_args, 0.05, options["momentum"], options.get("dampening", 0.0), 0.01,
                                    int(options.get("nesterov", False)), step) == 0
            sgd.step(want)
        for n in grads:
            after = np.ctypeslib.as_array((ctypes.c_float * grads[n].size).in_dll(lib, f"net_w_{n}"))
            np.testing.assert_allclose(after, model.params[n].reshape(-1), rtol=1e-5, atol=1e-6, err_msg=f"{n} {options}")
    assert lib.net_sgd_step(*g_args, 0.05, 0.9, 0.1, 0.0, 1, 2) == 1  # nesterov with dampening: refused
    assert lib.net_sgd_step(*g_args, 0.05, 0.9, 0.0, 0.0, 0, 0) == 1  # steps count from 1
    # two Adam steps in C against ncc.optim.Adam's on the same parameters and gradients
    adam = ncc.optim.Adam(model, lr=0.01, weight_decay=0.001)
    lib.net_adam_step.argtypes = [P] * 3 + [ctypes.c_double] * 5 + [ctypes.c_int, I64]
    for step in (1, 2):
        assert lib.net_adam_step(*[g.ctypes.data for g in grads.values()], 0.01, 0.9, 0.999, 1e-8, 0.001, 0,
                                 step) == 0
        adam.step(want)
    for n in grads:
        after = np.ctypeslib.as_array((ctypes.c_float * grads[n].size).in_dll(lib, f"net_w_{n}"))
        np.testing.assert_allclose(after, model.params[n].reshape(-1), rtol=1e-5, atol=1e-6, err_msg=n)
    assert lib.net_adam_step(*[g.ctypes.data for g in grads.values()], 0.01, 0.9, 0.999, 1e-8, 0.0, 0, 0) == 1


C_DTYPES = {"float": np.float32, "double": np.float64, "int64_t": np.int64, "int32_t": np.int32,
            "int16_t": np.int16, "int8_t": np.int8, "uint8_t": np.uint8, "unsigned char": np.bool_}


def vjp_in_c(c, tmp_path, feeds, cotangents, batch=1):
    """NAME_vjp of the emitted C called on `feeds` (by input name) and
    `cotangents` (by output name), its arguments in the order the header
    documents; returns its outputs by name (`y`, `grad:x`, `grad:<param>`)."""
    lib = _built(c, tmp_path)
    entry = f" *   {c.name}_vjp: "
    args, outs = [], {}
    for line in c.header.splitlines():
        if not line.startswith(entry):
            continue
        kind, _, rest = line[len(entry):].partition(" ")
        shown, spec = rest.rsplit(": ", 1)
        ctype, dims = spec[:-1].split(" [")
        shape = [batch if d == "batch" else int(d) for d in dims.split(", ") if d]
        if kind == "input":
            array = np.ascontiguousarray(feeds[shown] if shown in feeds else cotangents[shown.split(":", 1)[1]])
        else:
            array = outs[shown] = np.zeros(shape, C_DTYPES[ctype])
        args.append(array)
    size = getattr(lib, f"{c.name}_vjp_workspace_size")
    size.restype, size.argtypes = ctypes.c_size_t, [ctypes.c_int64]
    ws = np.zeros(size(batch) + 64, np.uint8)
    vjp = getattr(lib, f"{c.name}_vjp")
    vjp.argtypes = [ctypes.c_void_p] * len(args) + [ctypes.c_int64, ctypes.c_void_p]
    assert vjp(*[a.ctypes.data for a in args], batch, ws.ctypes.data) == 0
    return outs


@pytest.mark.parametrize("mode", ["neuron", "layers"])
def test_a_neuron_nets_training_in_c(mode, tmp_path):
    """ncp19 lowered straight (one flat parameter buffer) or as layers (the
    flat parameters copied into layer weights, a shared one's gradients
    summed): the vjp's gradient per equation parameter, in the header's
    order, SGD and Adam steps as ncc.optim's, and NAME_load_params."""
    model = ncc.compile("examples/ncp19.txt", threads=1, neuron_mode=mode)
    assert model.compile_info["neuron_mode"] == mode
    c = emit_c("examples/ncp19.txt", "ncp", training=True, neuron_mode=mode)
    names = list(model.params)
    assert " ".join(names[:3]) in c.header and ("int ncp_load_params(void);" in c.header) == (mode == "layers")
    lib = _built(c, tmp_path)
    rng = np.random.default_rng(5)
    x = rng.standard_normal((9, 5)).astype(np.float32)
    dy = rng.standard_normal((9, 4)).astype(np.float32)
    flat, y, gx = np.zeros(len(names), np.float32), np.zeros((9, 4), np.float32), np.zeros_like(x)
    P, I64 = ctypes.c_void_p, ctypes.c_int64
    lib.ncp_vjp_workspace_size.restype, lib.ncp_vjp_workspace_size.argtypes = ctypes.c_size_t, [I64]
    ws = np.zeros(lib.ncp_vjp_workspace_size(9) + 64, np.uint8)
    lib.ncp_vjp.argtypes = [P] * 5 + [I64, P]
    assert lib.ncp_vjp(x.ctypes.data, dy.ctypes.data, y.ctypes.data, flat.ctypes.data, gx.ctypes.data, 9,
                       ws.ctypes.data) == 0
    want = model.vjp({"x": x}, {"y": dy})
    np.testing.assert_allclose(y, model(x), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(gx, want["x"], rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(flat, [want[n] for n in names], rtol=1e-4, atol=1e-6)
    # an SGD step with momentum, then Adam, on the flat parameters: the forward sees them
    params = np.ctypeslib.as_array((ctypes.c_float * len(names)).in_dll(lib, "ncp_w_net_params"))
    lib.ncp_sgd_step.argtypes = [P] + [ctypes.c_double] * 4 + [ctypes.c_int, I64]
    lib.ncp_adam_step.argtypes = [P] + [ctypes.c_double] * 5 + [ctypes.c_int, I64]
    assert lib.ncp_sgd_step(flat.ctypes.data, 0.1, 0.9, 0.0, 0.01, 0, 1) == 0
    ncc.optim.SGD(model, lr=0.1, momentum=0.9, weight_decay=0.01).step(want)
    assert lib.ncp_adam_step(flat.ctypes.data, 0.01, 0.9, 0.999, 1e-8, 0.0, 1, 1) == 0
    ncc.optim.AdamW(model, lr=0.01, weight_decay=0.0).step(want)
    np.testing.assert_allclose(params, [model.params[n] for n in names], rtol=1e-5, atol=1e-6)
    lib.ncp_forward.argtypes = [P, P, I64, P]
    fws = np.zeros(1 << 16, np.uint8)
    assert lib.ncp_forward(x.ctypes.data, y.ctypes.data, 9, fws.ctypes.data) == 0
    np.testing.assert_allclose(y, model(x), rtol=1e-5, atol=1e-6)
    if mode == "layers":  # parameters written by the caller reach the layers through ncp_load_params
        params[:] = 0.05
        assert lib.ncp_load_params() == 0
        assert lib.ncp_forward(x.ctypes.data, y.ctypes.data, 9, fws.ctypes.data) == 0
        for n in names:
            model.params[n] = 0.05
        np.testing.assert_allclose(y, model(x), rtol=1e-5, atol=1e-6)


def test_a_pruned_net_trains_in_c_and_its_pruned_weights_stay_zero(tmp_path):
    proto, _ = _net("mlp")
    module = ncc.import_onnx(proto)
    ncc.prune(module, sparsity=0.6)
    model = ncc.compile(module.clone(), threads=1, cache=False)
    lib = _built(emit_c(module.clone(), "p", training=True), tmp_path)
    rng = np.random.default_rng(12)
    x, dy = rng.standard_normal((6, 23)).astype(np.float32), rng.standard_normal((6, 5)).astype(np.float32)
    shapes = {"W1": (40, 23), "B1": (40,), "W2": (40, 5)}
    pruned = {n: np.asarray(model.params[n]) == 0 for n in ("W1", "W2")}
    grads = {n: np.zeros(s, np.float32) for n, s in shapes.items()}
    y, gx = np.zeros((6, 5), np.float32), np.zeros_like(x)
    P, I64 = ctypes.c_void_p, ctypes.c_int64
    lib.p_vjp_workspace_size.restype, lib.p_vjp_workspace_size.argtypes = ctypes.c_size_t, [I64]
    ws = np.zeros(lib.p_vjp_workspace_size(6) + 64, np.uint8)
    lib.p_vjp.argtypes = [P] * 7 + [I64, P]
    lib.p_sgd_step.argtypes = [P] * 3 + [ctypes.c_double] * 4 + [ctypes.c_int, I64]
    sgd = ncc.optim.SGD(model, lr=0.05, momentum=0.9, weight_decay=0.01)
    for step in (1, 2, 3):
        assert lib.p_vjp(x.ctypes.data, dy.ctypes.data, y.ctypes.data, *[g.ctypes.data for g in grads.values()],
                         gx.ctypes.data, 6, ws.ctypes.data) == 0
        want = model.vjp({"x": x}, {"y": dy})
        for n, g in grads.items():
            np.testing.assert_allclose(g, want[n], rtol=1e-4, atol=1e-5, err_msg=n)
        assert lib.p_sgd_step(*[g.ctypes.data for g in grads.values()], 0.05, 0.9, 0.0, 0.01, 0, step) == 0
        sgd.step(want)
    for n, zero in pruned.items():
        after = np.ctypeslib.as_array((ctypes.c_float * zero.size).in_dll(lib, f"p_w_{n}")).reshape(zero.shape)
        assert (after[zero] == 0).all() and (after[~zero] != 0).all()
        np.testing.assert_allclose(after, model.params[n], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("mode", ["neuron", "layers"])
def test_a_neuron_nets_params_struct(mode, tmp_path):
    model = ncc.compile("examples/ncp19.txt", threads=1, neuron_mode=mode)
    names = list(model.params)
    lib = _built(emit_c("examples/ncp19.txt", "ncp", weights="params", neuron_mode=mode), tmp_path)

    class Params(ctypes.Structure):
        _fields_ = [("net_params", ctypes.c_void_p)]

    values = np.random.default_rng(8).standard_normal(len(names)).astype(np.float32) * 0.5
    for n, v in zip(names, values):
        model.params[n] = v
    x = np.random.default_rng(9).standard_normal((21, 5)).astype(np.float32)
    y = np.zeros((21, 4), np.float32)
    lib.ncp_workspace_size.restype, lib.ncp_workspace_size.argtypes = ctypes.c_size_t, [ctypes.c_int64]
    ws = np.zeros(lib.ncp_workspace_size(21) + 64, np.uint8)
    lib.ncp_forward.argtypes = [ctypes.POINTER(Params), ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64,
                                ctypes.c_void_p]
    assert lib.ncp_forward(ctypes.byref(Params(values.ctypes.data)), x.ctypes.data, y.ctypes.data, 21,
                           ws.ctypes.data) == 0
    np.testing.assert_allclose(y, model(x), rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------------------
# Every op family: ONNX's node test cases that ncc passes (test/conformance),
# the first listed case of each op, as C against the JIT

def _node_cases():
    import sys as _sys

    _sys.path.insert(0, os.path.join(os.path.dirname(__file__), "conformance"))
    import onnx_conformance as conformance

    cases, first = conformance.collect(), {}
    for name in conformance.read_table():
        if name in cases and cases[name].kind == "node":
            first.setdefault(cases[name].op, cases[name])
    return [first[op] for op in sorted(first)]


NODE_CASES = _node_cases()


def _compiled_case(case):
    """A node case's model compiled, its given inputs, and the graph inputs
    the import needs as constants (a shape, an axis), as ncc.backend gives them."""
    model_proto, sets = case.load()
    given = dict(zip([i.name for i in model_proto.graph.input], sets[0][0]))
    constants = {}
    while True:
        try:
            model = ncc.compile(model_proto, threads=1, cache=False, constants=constants or None)
            return model_proto, model, given, constants or None
        except ncc.NccError as e:
            if not e.needs_constant or set(e.needs_constant) <= set(constants):
                raise
            constants.update((n, given[n]) for n in e.needs_constant)


def _c_against_the_jit(case, tmp_path):
    model_proto, model, given, constants = _compiled_case(case)
    inputs = [given[n] for n in model.input_names]
    if any(a.dtype.kind not in "fiub" for a in inputs):
        pytest.skip("inputs ctypes does not pass")
    lib = Library(model_proto, tmp_path, "node", constants=constants)
    want = model(*inputs)
    want = want if isinstance(want, tuple) else (want,)
    batch = inputs[0].shape[0] if model.input_shapes and model.input_shapes[0][:1] == ["batch"] else 1
    got = lib(want, batch, *inputs)
    for g, w in zip(got if isinstance(got, tuple) else (got,), want):
        np.testing.assert_allclose(g, w, rtol=max(case.rtol, 1e-5), atol=max(case.atol, 1e-6))


def _c_vjp_against_the_jit(case, tmp_path):
    """The op's vjp in C (its inputs' gradients: a node case has no
    parameters) against model.vjp, for the ops ncc differentiates."""
    model_proto, model, given, constants = _compiled_case(case)
    feeds = {n: given[n] for n in model.input_names}
    if not any(a.dtype.kind == "f" for a in feeds.values()):
        pytest.skip("no float input to differentiate")
    outs = model.run(feeds)
    rng = np.random.default_rng(0)
    cotangents = {n: rng.standard_normal(o.shape).astype(o.dtype) if o.dtype.kind == "f" else np.zeros_like(o)
                  for n, o in zip(model.output_names, outs)}  # an integer output's cotangent changes nothing
    try:
        want = model.vjp(feeds, cotangents)
    except ncc.NccError as e:
        pytest.skip(f"ncc does not differentiate it: {e}")
    batch = next(iter(feeds.values())).shape[0] if model.input_shapes[0][:1] == ["batch"] else 1
    got = vjp_in_c(emit_c(model_proto, "node", training=True, constants=constants), tmp_path, feeds,
                   cotangents, batch)
    grads = [k for k in got if k.startswith("grad:")]
    assert grads
    for k in grads:
        np.testing.assert_allclose(got[k], want[k[5:]], rtol=max(case.rtol, 1e-4), atol=max(case.atol, 1e-5),
                                   err_msg=k)


@pytest.mark.parametrize("case", NODE_CASES[::4], ids=lambda c: c.op)
def test_op_families_in_c(case, tmp_path):
    _c_against_the_jit(case, tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("case", [c for k, c in enumerate(NODE_CASES) if k % 4], ids=lambda c: c.op)
def test_op_families_in_c_all(case, tmp_path):
    _c_against_the_jit(case, tmp_path)


def test_weights_from_a_params_struct(tmp_path):
    rng = np.random.default_rng(6)
    params = {"fc_w": rng.standard_normal((16, 10)).astype(np.float32), "fc_b": rng.standard_normal(10).astype(
        np.float32)}
    model = ncc.compile(CNN, threads=1)
    for k, v in params.items():
        model.params[k] = v
    module = ncc.parse_module(CNN)
    for op in module.ops:
        if op.name == "nn.weight" and op.sym in params:
            op.data = params[op.sym]
    c = emit_c(module, "net", weights="params")
    assert "} net_params;" in c.header and "static const float net_w_fc_w" not in c.source
    lib = _built(c, tmp_path)

    class Params(ctypes.Structure):
        _fields_ = [(n, ctypes.c_void_p) for n in ("conv_w", "fc_w", "fc_b")]

    conv_w = np.asarray(model.weight_buffers["conv_w"], np.float32)
    arrays = {"conv_w": conv_w, **params}
    p = Params(*[arrays[n].ctypes.data for n in ("conv_w", "fc_w", "fc_b")])
    x = rng.standard_normal((5, 1, 4, 4)).astype(np.float32)
    y = np.zeros((5, 10), np.float32)
    lib.net_workspace_size.restype, lib.net_workspace_size.argtypes = ctypes.c_size_t, [ctypes.c_int64]
    ws = np.zeros(lib.net_workspace_size(5) + 64, np.uint8)
    lib.net_forward.argtypes = [ctypes.POINTER(Params), ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64,
                                ctypes.c_void_p]
    assert lib.net_forward(ctypes.byref(p), x.ctypes.data, y.ctypes.data, 5, ws.ctypes.data) == 0
    np.testing.assert_allclose(y, model(x), rtol=1e-5, atol=1e-6)
    arrays["fc_b"] = arrays["fc_b"] + 1.0  # new values, the same C
    p.fc_b = arrays["fc_b"].ctypes.data
    model.params["fc_b"] = arrays["fc_b"]
    assert lib.net_forward(ctypes.byref(p), x.ctypes.data, y.ctypes.data, 5, ws.ctypes.data) == 0
    np.testing.assert_allclose(y, model(x), rtol=1e-5, atol=1e-6)
    with pytest.raises(ncc.NccError, match="weights must be one of embed, params"):
        emit_c(module, "net", weights="heap")


# ---------------------------------------------------------------------------
# The C GEMM's register tiles: the preprocessor picks 6 x 32 with AVX-512,
# 6 x 16 otherwise; each variant this host can run is built and checked

def _host_variants():
    from c_kernels import C_VARIANTS, host_features

    return [(name, flags) for name, (needs, flags) in C_VARIANTS.items() if needs <= host_features()]


@pytest.mark.parametrize("variant,flags", _host_variants(), ids=[v for v, _ in _host_variants()])
def test_gemm_tiles_of_every_variant_the_host_runs(tmp_path, variant, flags):
    rng = np.random.default_rng(7)
    # 37 x 64 @ 64 x 70: edges in both directions of either tile; B a weight (prepacked), then an input
    w = rng.standard_normal((64, 70)).astype(np.float32)
    text = f"""
nn.weight @w : tensor<64x70xf32> = dense<{ncc.dialects.nn.format_literal(w)}>
func.func @main(%x: tensor<?x64xf32>) -> tensor<?x70xf32> {{
  %w = nn.weight_ref @w : tensor<64x70xf32>
  %y = nn.matmul %x, %w : tensor<?x64xf32>, tensor<64x70xf32> -> tensor<?x70xf32>
  func.return %y : tensor<?x70xf32>
}}
"""
    model = ncc.compile(text, threads=1)
    c = emit_c(text, "g")
    assert "ncc_sgemm(" in c.source.split("static void g_forward_kernel", 1)[1]  # the product is the GEMM's
    _, path = c.write(tmp_path)
    so = tmp_path / "libg.so"
    done = subprocess.run([CC, *CFLAGS, *flags, "-shared", "-fPIC", "-o", str(so), path, "-lm"],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    macro = subprocess.run([CC, *flags, "-dM", "-E", "-x", "c", "/dev/null"], capture_output=True, text=True).stdout
    assert ("__AVX512F__" in macro) == variant.startswith("c-avx512")  # the tile the preprocessor will pick
    lib = ctypes.CDLL(str(so))
    lib.g_workspace_size.restype, lib.g_workspace_size.argtypes = ctypes.c_size_t, [ctypes.c_int64]
    lib.g_forward.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64, ctypes.c_void_p]
    for batch in (1, 37, 64):
        x = rng.standard_normal((batch, 64)).astype(np.float32)
        y = np.zeros((batch, 70), np.float32)
        ws = np.zeros(lib.g_workspace_size(batch) + 64, np.uint8)
        assert lib.g_forward(x.ctypes.data, y.ctypes.data, batch, ws.ctypes.data) == 0
        np.testing.assert_allclose(y, model(x), rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(y, x @ w, rtol=1e-4, atol=1e-4)
    # B an input (not a weight): read in place, row-major
    plain = """
func.func @main(%x: tensor<37x64xf32>, %b: tensor<64x70xf32>) -> tensor<37x70xf32> {
  %y = nn.matmul %x, %b : tensor<37x64xf32>, tensor<64x70xf32> -> tensor<37x70xf32>
  func.return %y : tensor<37x70xf32>
}
"""
    c = emit_c(plain, "h")
    assert "ncc_sgemm(" in c.source.split("static void h_forward_kernel", 1)[1]
    _, path = c.write(tmp_path)
    done = subprocess.run([CC, *CFLAGS, *flags, "-shared", "-fPIC", "-o", str(tmp_path / "libh.so"), path, "-lm"],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    lib = ctypes.CDLL(str(tmp_path / "libh.so"))
    lib.h_forward.argtypes = [ctypes.c_void_p] * 3 + [ctypes.c_int64, ctypes.c_void_p]
    lib.h_workspace_size.restype, lib.h_workspace_size.argtypes = ctypes.c_size_t, [ctypes.c_int64]
    x, b = rng.standard_normal((37, 64)).astype(np.float32), rng.standard_normal((64, 70)).astype(np.float32)
    y = np.zeros((37, 70), np.float32)
    ws = np.zeros(lib.h_workspace_size(1) + 64, np.uint8)
    assert lib.h_forward(x.ctypes.data, b.ctypes.data, y.ctypes.data, 1, ws.ctypes.data) == 0
    np.testing.assert_allclose(y, x @ b, rtol=1e-4, atol=1e-4)


def test_translate_emit_c_options(tmp_path, capsys):
    from ncc.tools import ncc_translate

    src = tmp_path / "cnn.mlir"
    src.write_text(CNN.replace("nn.weight @fc_w : tensor<16x10xf32>\n", "nn.weight @fc_w : tensor<16x10xf32> = dense<0.1>\n")
                   .replace("nn.weight @fc_b : tensor<10xf32>\n", "nn.weight @fc_b : tensor<10xf32> = dense<0.0>\n"))
    assert ncc_translate.main([str(src), "--emit-c", "--training", "-o", str(tmp_path / "t.c")]) == 0
    header = (tmp_path / "t.h").read_text()
    assert "int t_vjp(" in header and "int t_sgd_step(" in header and "int t_adam_step(" in header
    assert "extern float t_w_fc_w[160];" in header
    assert ncc_translate.main([str(src), "--emit-c", "--weights=params", "-o", str(tmp_path / "p.c")]) == 0
    assert "} p_params;" in (tmp_path / "p.h").read_text()
    for mode, layers in (("layers", True), ("neuron", False)):  # a neuron net's lowering, as ncc.compile's
        assert ncc_translate.main(["--import-adjacency", "examples/ncp19.txt", "--emit-c", "--training",
                                   f"--neuron-mode={mode}", "-o", str(tmp_path / f"n_{mode}.c")]) == 0
        assert ("load_params(void);" in (tmp_path / f"n_{mode}.h").read_text()) == layers
    capsys.readouterr()
    for argv, message in [(["--emit-c"], "give the C file with -o DIR/NAME.c"),
                          (["--emit-c", "-o", str(tmp_path / "x.txt")], "give the C file with -o DIR/NAME.c"),
                          (["--training"], "apply only with --emit-c"),
                          (["--neuron-mode=layers"], "apply only with --emit-c"),
                          (["--emit-c", "--training", "--weights=params", "-o", str(tmp_path / "q.c")],
                           "training in C keeps the parameters in the .c")]:
        assert ncc_translate.main([str(src), *argv]) == 1
        err = capsys.readouterr().err
        assert message in err and len(err.strip().splitlines()) == 1, err


def test_translate_emit_c_with_a_constant_input(tmp_path, capsys):
    """An ONNX graph input ncc needs at import time (Reshape's shape) comes
    from --constant NAME=FILE.npy; without it, the error says so."""
    import onnx
    from onnx import TensorProto, helper

    from ncc.tools import ncc_translate

    graph = helper.make_graph([helper.make_node("Reshape", ["x", "shape"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3, 4]),
                               helper.make_tensor_value_info("shape", TensorProto.INT64, [2])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)])
    model = tmp_path / "reshape.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), model)
    out = ["--import-onnx", str(model), "--emit-c", "-o", str(tmp_path / "r.c")]
    assert ncc_translate.main(out) == 1
    assert "--constant shape=FILE.npy" in capsys.readouterr().err
    np.save(tmp_path / "shape.npy", np.array([6, 4], np.int64))
    assert ncc_translate.main([*out, "--constant", f"shape={tmp_path / 'shape.npy'}"]) == 0
    assert "int r_forward(const float *x, float *y, int64_t batch, void *workspace);" in (tmp_path / "r.h").read_text()
    assert ncc_translate.main([str(model), "--constant", f"shape={tmp_path / 'shape.npy'}"]) == 1
    assert "--constant applies only with --import-onnx" in capsys.readouterr().err


@pytest.mark.parametrize("case", NODE_CASES[1::4], ids=lambda c: c.op)
def test_op_families_vjp_in_c(case, tmp_path):
    _c_vjp_against_the_jit(case, tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("case", [c for k, c in enumerate(NODE_CASES) if k % 4 != 1], ids=lambda c: c.op)
def test_op_families_vjp_in_c_all(case, tmp_path):
    _c_vjp_against_the_jit(case, tmp_path)
