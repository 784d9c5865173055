"""ncc-run as a user runs it: inputs from files or seeded, the summary, -o .npz,
--bench, options, and one-line errors with exit code 1."""

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import ncc

ROOT = Path(__file__).parent.parent
EXAMPLES = ROOT / "examples"
XOR = EXAMPLES / "xor_values.txt"


@pytest.fixture(autouse=True)
def cache_dir(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("NCC_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "ncc-run-cache"))


def run(*args):
    return subprocess.run([sys.executable, "-m", "ncc.tools.ncc_run", *map(str, args)],
                          capture_output=True, text=True, timeout=600)


def test_readme_example_computes_xor(tmp_path):
    out = tmp_path / "out.npz"
    proc = run(XOR, "--input", f"x={EXAMPLES / 'xor_x.npy'}", "-o", out)
    assert proc.returncode == 0, proc.stderr
    assert "output 'y': [4, 1] float32" in proc.stdout
    assert "first: [0., 1., 1., 0.]" in proc.stdout
    with np.load(out) as z:
        assert list(z.files) == ["y"] and np.array_equal(z["y"][:, 0], [0, 1, 1, 0])


def test_seeded_random_inputs_are_reproducible_and_match_the_reference(tmp_path):
    outs = []
    for k in range(2):
        proc = run(EXAMPLES / "seed_list.txt", "--batch", 17, "--seed", 3, "-o", tmp_path / f"{k}.npz")
        assert proc.returncode == 0, proc.stderr
        assert "input 'x': generated [17, 4] float32 (seed 3)" in proc.stdout
        outs.append(np.load(tmp_path / f"{k}.npz")["y"])
    assert np.array_equal(outs[0], outs[1])
    x = np.random.default_rng(3).standard_normal((17, 4)).astype(np.float32)
    want = ncc.reference.run(ncc.import_adjacency(EXAMPLES / "seed_list.txt"), [x])[0]
    np.testing.assert_allclose(outs[0], want, rtol=1e-5, atol=1e-6)


def test_npz_inputs_by_name_and_by_position(tmp_path):
    x = np.array([[1, 0], [1, 1]], np.float32)
    np.savez(tmp_path / "named.npz", x=x)
    np.savez(tmp_path / "positional.npz", x)
    for f in ("named.npz", "positional.npz"):
        proc = run(XOR, "--inputs", tmp_path / f, "-o", tmp_path / "o.npz")
        assert proc.returncode == 0, proc.stderr
        assert np.array_equal(np.load(tmp_path / "o.npz")["y"][:, 0], [1, 0])


def test_mlir_model_with_options(tmp_path):
    text = ncc.print_module(ncc.run_passes(ncc.import_adjacency(XOR), "layerize"))
    (tmp_path / "xor.mlir").write_text(text)
    proc = run(tmp_path / "xor.mlir", "--input", f"x={EXAMPLES / 'xor_x.npy'}", "--no-fuse",
               "--no-cache")
    assert proc.returncode == 0, proc.stderr
    assert "cache: off" in proc.stdout and "first: [0., 1., 1., 0.]" in proc.stdout
    proc = run(XOR, "--neuron-mode", "layers", "--input", f"x={EXAMPLES / 'xor_x.npy'}")
    assert "neuron lowering: layers" in proc.stdout and "first: [0., 1., 1., 0.]" in proc.stdout


def test_bench_prints_statistics():
    proc = run(XOR, "--batch", 64, "--bench", 50)
    assert proc.returncode == 0, proc.stderr
    m = re.search(r"bench: 50 calls, batch 64: per call min ([\d.]+) us  median ([\d.]+) us  "
                  r"mean ([\d.]+) us  p90 ([\d.]+) us\n  throughput ([\d.e+]+) rows/s", proc.stdout)
    assert m, proc.stdout
    lo, median, _, p90, _ = map(float, m.groups())
    assert 0 < lo <= median <= p90


@pytest.mark.parametrize("args, message", [
    (["nosuch.txt"], r"nosuch.txt: error: no such file"),
    ([XOR, "--input", "y=EX"], r"error: the model has no input y \(inputs: x\)"),
    ([XOR, "--input", "x"], r"error: --input takes NAME=FILE.npy, got 'x'"),
    ([XOR, "--input", "x=missing.npy"], r"missing.npy: error: cannot load array file"),
    ([XOR, "--input", f"x={XOR}"], r"xor_values.txt: error: not a .npy or .npz file"),
    ([XOR, "--input", "x=WRONG"], r"error: input 'x' has shape \[3\], expected \[batch, 2\] float32"),
    ([XOR, "--batch", "-2"], r"error: --batch must be >= 0"),
    ([XOR, "--threads", "0"], r"error: threads must be an integer >= 1, got 0"),
    ([XOR, "--constant", "x=EX"], r"error: --constant applies to ONNX models only"),
    ([EXAMPLES / "xor.py"], r"xor.py:\d+:\d+: error: "),
])
def test_errors_are_one_line_and_exit_1(tmp_path, args, message):
    np.save(tmp_path / "wrong.npy", np.zeros(3, np.float32))
    args = [str(a).replace("EX", str(EXAMPLES / "xor_x.npy")).replace("WRONG", str(tmp_path / "wrong.npy"))
            for a in args]
    proc = run(*args)
    assert proc.returncode == 1
    assert len(proc.stderr.splitlines()) == 1 and re.search(message, proc.stderr), proc.stderr
    assert "Traceback" not in proc.stderr


def test_the_names_in_the_ir_are_the_model_inputs_and_outputs(tmp_path):
    """`%x` in ncc-opt's output is the input ncc-run takes; the returned `%y` the output."""
    src = tmp_path / "named.mlir"
    src.write_text("func.func @main(%x: tensor<?x3xf32>, %bias: tensor<3xf32>) -> tensor<?x3xf32> {\n"
                   "  %y = nn.add %x, %bias : tensor<?x3xf32>, tensor<3xf32> -> tensor<?x3xf32>\n"
                   "  func.return %y : tensor<?x3xf32>\n}\n")
    np.save(tmp_path / "x.npy", np.ones((2, 3), np.float32))
    np.save(tmp_path / "b.npy", np.arange(3, dtype=np.float32))
    proc = run(src, "--input", f"x={tmp_path / 'x.npy'}", "--input", f"bias={tmp_path / 'b.npy'}")
    assert proc.returncode == 0, proc.stderr
    assert "(x: [batch, 3] float32, bias: [3] float32) -> (y: [batch, 3] float32)" in proc.stdout
    assert "output 'y': [2, 3] float32  min 1  max 3" in proc.stdout


def test_a_directory_is_not_a_model(tmp_path):
    proc = run(tmp_path)
    assert proc.returncode == 1
    assert proc.stderr.strip() == f"{tmp_path}: error: is a directory: expected a model file (.mlir, .onnx or an adjacency file)"


def test_threads_option_is_reported_and_changes_no_result(tmp_path):
    outs = []
    for threads in (1, 2):
        out = tmp_path / f"out{threads}.npz"
        proc = run(XOR, "--input", f"x={EXAMPLES / 'xor_x.npy'}", "--threads", threads, "-o", out)
        assert proc.returncode == 0, proc.stderr
        assert f"threads: {threads})" in proc.stdout
        outs.append(np.load(out)["y"])
    np.testing.assert_array_equal(outs[0], outs[1])


def _reshape_model(path):
    """A Reshape whose shape is a graph input: ncc needs its value at import time."""
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph([helper.make_node("Reshape", ["x", "shape"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3, 4]),
                               helper.make_tensor_value_info("shape", TensorProto.INT64, [2])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)


def test_constant_inputs_of_an_onnx_model(tmp_path):
    model = tmp_path / "reshape.onnx"
    _reshape_model(model)
    proc = run(model)
    assert proc.returncode == 1 and len(proc.stderr.splitlines()) == 1
    assert "graph input 'shape'" in proc.stderr and "(on the command line: --constant shape=FILE.npy)" in proc.stderr
    np.save(tmp_path / "shape.npy", np.array([4, 6], np.int64))
    x = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
    np.save(tmp_path / "x.npy", x)
    proc = run(model, "--constant", f"shape={tmp_path / 'shape.npy'}", "--input", f"x={tmp_path / 'x.npy'}",
               "-o", tmp_path / "y.npz")
    assert proc.returncode == 0, proc.stderr
    np.testing.assert_array_equal(np.load(tmp_path / "y.npz")["y"], x.reshape(4, 6))
