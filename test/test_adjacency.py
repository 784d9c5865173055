"""The adjacency frontend: three spellings, the value extension, located diagnostics."""

import time
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from xdsl.dialects.builtin import ModuleOp

from ncc.adjacency import import_adjacency, import_adjacency_text, parse_adjacency
from ncc.diagnostics import NccError
from ncc.dialects import activations
from ncc.dialects.neuron import NetOp, NeuronOp
from ncc.ir import parse_module, print_module, verify_module

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"

# The spec's examples, literally (adjacency-format.md).
SPEC_LIST = """\
% after the N line, every line has the form: j fj Ij
N 0e
00
01
02
03
04 03 00,01
05 03 00,01,02
06 03 01,02,03
07 03 02,03
08 03 04,05
09 03 04,05,06
0a 03 05,06,07
0b 03 06,07
0c 03 08,09,0a,0b
0d 03 08,09,0a,0b
"""
SPEC_MATRIX = """\
00001100000000
00001110000000
00000111000000
00000011000000
00000000110000
00000000111000
00000000011100
00000000001100
00000000000011
00000000000011
00000000000011
00000000000011
00000000000000
00000000000000
"""
SEED_INPUTS = [[], [], [], [], [0, 1], [0, 1, 2], [1, 2, 3], [2, 3], [4, 5], [4, 5, 6], [5, 6, 7],
               [6, 7], [8, 9, 10, 11], [8, 9, 10, 11]]


def test_examples_are_the_spec_text():
    assert (EXAMPLES / "seed_list.txt").read_text() == SPEC_LIST
    assert (EXAMPLES / "seed_matrix.txt").read_text() == SPEC_MATRIX


@pytest.mark.parametrize("file, spelling, w4", [
    ("seed_list.txt", "list", ["w0004", "w0104"]), ("seed_matrix.txt", "matrix", ["w0004", "w0104"]),
    ("seed_matrix_decorated.txt", "matrix", ["w0004", "w0104"]), ("seed_edges.txt", "edges", ["w0004", "w0104"]),
    ("seed_matrix_sparse.txt", "matrix", ["w0004", "w0104"]), ("seed_matrix_letters.txt", "matrix", ["ae", "be"])])
def test_every_spelling_of_the_seed_is_the_same_graph(file, spelling, w4):
    g = parse_adjacency((EXAMPLES / file).read_text(), file)
    assert g.spelling == spelling
    assert g.inputs == SEED_INPUTS
    assert g.activation == [None] * 4 + ["tanh"] * 10
    assert g.input_indices == [0, 1, 2, 3] and g.outputs == [12, 13]
    assert g.weights[4] == w4
    assert parse_adjacency((EXAMPLES / file).read_text(), format=spelling).inputs == SEED_INPUTS


def test_labels_name_the_neurons_and_the_row_order_gives_the_index():
    g = parse_adjacency((EXAMPLES / "seed_matrix_sparse.txt").read_text())
    assert g.names == [f"n{k}" for k in ("00", "01", "02", "03", "04", "05", "06", "07",
                                         "10", "11", "12", "13", "14", "15")]
    assert g.weights[8] == ["w0410", "w0510"] and g.weights[12] == ["w1014", "w1114", "w1214", "w1314"]
    letters = parse_adjacency((EXAMPLES / "seed_matrix_letters.txt").read_text())
    assert letters.names == list("abcdefghijklmn") and letters.weights[12] == ["im", "jm", "km", "lm"]
    # labels that are the indices themselves are no names at all
    assert parse_adjacency((EXAMPLES / "seed_matrix_decorated.txt").read_text()).names is None


# Each decoration alone and mixed, with `%` and `#` comments and blank lines anywhere.
DECORATED = {
    "letter row": "nnn\n001\n001\n000\n",
    "digit rows": "i:000\nj:012\n001\n001\n000\n",
    "rule and labels": "-----\nn00|001\nn01|001\n\nn02|000\n",
    "everything": "% a net\nnnn\ni:000\nj:012\n------  # a rule\nn00|001\n# between rows\nn01|001\nn02|000\n",
    "hex labels": "00|001\n01|001\n02|000\n",
    "letters glued": "abc\na001\nb001\nc000\n",
    "letters glued, no header": "a001\nb001\nc000\n",
    "sparse labels": "n00|001\nn10|001\nn20|000\n",
}


@pytest.mark.parametrize("kind", list(DECORATED))
def test_decorations_alone_and_mixed(kind):
    g = parse_adjacency(DECORATED[kind], kind)  # detected as a matrix
    assert g.spelling == "matrix" and g.inputs == [[], [], [0, 1]]
    names = {"letters glued": "abc", "letters glued, no header": "abc"}.get(kind)
    if names:
        assert g.names == list(names) and g.weights[2] == ["ac", "bc"]
    elif kind == "sparse labels":
        assert g.names == ["n00", "n10", "n20"] and g.weights[2] == ["w0020", "w1020"]
    else:
        assert g.names is None and g.weights[2] == ["w0002", "w0102"]


def test_import_builds_a_verified_module():
    for path in (EXAMPLES / "seed_list.txt", str(EXAMPLES / "seed_matrix.txt")):
        module = import_adjacency(path, name="seed")
        assert isinstance(module, ModuleOp)
        (net,) = module.ops
        assert isinstance(net, NetOp) and net.sym_name.data == "seed"
        verify_module(module)
        assert net.graph().inputs == SEED_INPUTS
        # The printed IR reads back to the same net.
        again = parse_module(print_module(module))
        assert print_module(again) == print_module(module)
    assert next(iter(import_adjacency(EXAMPLES / "seed_matrix.txt").ops)).spelling == "matrix"
    assert next(iter(import_adjacency(EXAMPLES / "seed_edges.txt").ops)).spelling == "edges"
    assert next(iter(import_adjacency_text(SPEC_LIST).ops)).spelling == "list"


def test_missing_file_is_a_diagnostic(tmp_path):
    with pytest.raises(NccError) as e:
        import_adjacency(tmp_path / "nope.txt")
    assert str(e.value) == f"{tmp_path / 'nope.txt'}: error: cannot read the file: No such file or directory"


def test_comments_blank_lines_crlf_and_any_order():
    text = ("% a net\r\n\r\nN 04   % four neurons\r\n03 tanh 02,00 % last\r\n\t00\r\n"
            "  % indented comment\r\n02 01 00,01\r\n01\r\n")
    g = parse_adjacency(text)
    assert g.inputs == [[], [], [0, 1], [0, 2]] and g.activation == [None, None, "relu", "tanh"]


def test_codes_and_names():
    for a in activations.ACTIVATIONS:
        for tok in (f"{a.code:02x}", f"{a.code:X}", a.name):
            assert parse_adjacency(f"N 02\n00\n01 {tok} 00\n").activation[1] == a.name


def test_activation_option():
    assert parse_adjacency(SPEC_MATRIX, activation="relu").activation[4:] == ["relu"] * 10
    assert parse_adjacency(SPEC_MATRIX, activation="02").activation[4] == "sigmoid"
    assert parse_adjacency(SPEC_LIST, activation="sin").activation[4:] == ["sin"] * 10
    assert parse_adjacency(SPEC_MATRIX).activation[4] == activations.DEFAULT_ACTIVATION
    with pytest.raises(NccError) as e:
        parse_adjacency(SPEC_MATRIX, activation="swish")
    assert str(e.value).startswith("error: option activation=swish: unknown activation (expected a hex code 00..0e")
    with pytest.raises(NccError) as e:
        parse_adjacency(SPEC_MATRIX, format="csv")
    assert str(e.value) == "error: unknown adjacency format 'csv' (expected one of: list, matrix, edges)"


def test_value_extension_list():
    g = parse_adjacency("N 04\n00\n01\n02 03 01,00 w=0.5,-1.25e1 b=.1\n03 tanh 00,02 b=-2\n")
    assert g.inputs[2] == [0, 1] and g.values[2] == [-12.5, 0.5]  # sorted with the in-indices
    assert g.bias == [None, None, "b02", "b03"] and g.bias_value == [None, None, 0.1, -2.0]
    assert g.values[3] is None  # no w=: the seeded initial rule applies
    (net,) = import_adjacency_text("N 03\n00\n01\n02 03 00,01 b=1 w=2,3\n").ops
    op = list(net.neurons)[2]
    assert isinstance(op, NeuronOp)
    assert op.weight_values == (2.0, 3.0) and op.bias.data == "b02" and op.bias_value.value.data == 1.0


def test_value_extension_edges():
    g = parse_adjacency("01 02 0.25\n00 02 -1\n% c\n00 01 3e-2\n")
    assert g.spelling == "edges" and g.inputs == [[], [0], [0, 1]]
    assert g.values == [None, [0.03], [-1.0, 0.25]]


def test_xor_example_computes_xor():
    g = parse_adjacency((EXAMPLES / "xor_values.txt").read_text())
    assert g.activation == [None, None, "relu", "relu", "identity"]
    for x0 in (0, 1):
        for x1 in (0, 1):
            n = {0: float(x0), 1: float(x1)}
            for j in g.topological_order():
                if g.activation[j] is not None:
                    z = float(np.dot([n[i] for i in g.inputs[j]], g.weight_values(j))) + g.bias_of(j)
                    n[j] = float(activations.BY_NAME[g.activation[j]].fn(np.float64(z)))
            assert n[4] == float(x0 ^ x1)


def test_hex_beyond_ff():
    n = 0x123
    text = f"N {n:x}\n" + "".join(f"{j:03x}\n" for j in range(0x120)) + \
        "120 03 000,0ff,100\n121 03 11f,120\n122 relu 121,0a0\n"
    g = parse_adjacency(text)
    assert g.inputs[0x120] == [0, 0xff, 0x100] and g.weights[0x121] == ["w11f121", "w120121"]
    assert g.outputs == [0x122]
    (net,) = import_adjacency_text(text).ops
    assert "neuron.neuron n122 relu(n0a0 * @w0a0122, n121 * @w121122)" in print_module(net)
    # Short indices are fine too: the width is the net's, not the file's.
    assert parse_adjacency(f"N {n:x}\n" + "".join(f"{j:x}\n" for j in range(n - 1)) + "122 3 0\n"
                           ).weights[0x122] == ["w000122"]


def test_auto_detection():
    assert parse_adjacency("N 03\n0 2\n1 2\n").spelling == "edges"  # N header, two fields
    assert parse_adjacency("N 03\n0 2 .5\n1 2 1\n").spelling == "edges"
    assert parse_adjacency("N 03\n00\n01\n02 03 00,01\n").spelling == "list"
    assert parse_adjacency("01\n00\n").spelling == "matrix"
    assert parse_adjacency("n00|01\nn01|00\n").spelling == "matrix"
    assert parse_adjacency("0 1\n").spelling == "edges"


def _spell(inputs, fmt):
    n = len(inputs)
    if fmt == "list":
        return f"N {n:x}\n" + "".join(
            f"{j:x}" + (" 03 " + ",".join(f"{i:x}" for i in ins) if ins else "") + "\n"
            for j, ins in enumerate(inputs))
    if fmt == "matrix":
        return "".join("".join("1" if i in inputs[j] else "0" for j in range(n)) + "\n" for i in range(n))
    return f"N {n:x}\n" + "".join(f"{i:x} {j:x}\n" for j, ins in enumerate(inputs) for i in ins)


@st.composite
def dags(draw):
    n = draw(st.integers(2, 40))
    perm = draw(st.permutations(range(n)))
    inputs = [[] for _ in range(n)]
    for t in range(1, n):
        srcs = draw(st.sets(st.integers(0, t - 1), max_size=4))
        inputs[perm[t]] = sorted(perm[s] for s in srcs)
    if not any(inputs):
        inputs[perm[1]] = [perm[0]]
    return inputs


@settings(max_examples=60, deadline=None)
@given(dags())
def test_spellings_round_trip(inputs):
    for fmt in ("list", "matrix", "edges"):
        g = parse_adjacency(_spell(inputs, fmt))
        assert g.spelling == fmt and g.inputs == inputs


def test_large_list_imports_quickly():
    """10,000 neurons, 100,000 edges (prints the time; no timing assertion)."""
    rng = np.random.default_rng(0)
    n, n_in = 10_000, 100
    lines = [f"N {n:x}"] + [f"{j:04x}" for j in range(n_in)]
    for j in range(n_in, n):  # fan-in 20 for 100 neurons, 10 for the rest: 100,000 edges
        ins = np.sort(rng.choice(j, size=20 if j < 2 * n_in else 10, replace=False))
        lines.append(f"{j:04x} 03 " + ",".join(f"{i:04x}" for i in ins))
    text = "\n".join(lines) + "\n"
    t0 = time.perf_counter()
    g = parse_adjacency(text)
    t1 = time.perf_counter()
    module = import_adjacency_text(text)
    t2 = time.perf_counter()
    assert sum(map(len, g.inputs)) == 100_000
    assert len(list(next(iter(module.ops)).neurons)) == n
    print(f"\n10,000 neurons / 100,000 edges: parse {t1 - t0:.2f} s, "
          f"parse + build IR {t2 - t1:.2f} s")


# ---------------------------------------------------------------------------
# Bad input: one case per kind, with its exact diagnostic.

BAD = {
    # empty nets
    "empty file": ("", None, "1:1: error: empty net: the input has no neurons"),
    "only comments": ("% nothing\n\n", None, "1:1: error: empty net: the input has no neurons"),
    "zero count": ("N 0\n", None, "1:3: error: empty net: `N 0` declares no neurons"),
    "no edges": ("N 02\n00\n01\n", None,
                 "1:1: error: the net has no edges: expected at least one neuron with in-edges"),
    # the N line
    "missing N line": ("04 03 00,01\n", None,
                       "1:1: error: expected `N <count>` (the number of neurons, hex), got '04'"),
    "N without count": ("N\n00\n", "list", "1:2: error: expected the number of neurons (hex) after `N`"),
    "bad count": ("N 1g\n", None, "1:3: error: expected the number of neurons (hex), got '1g'"),
    "junk after count": ("N 02 x\n00\n01 03 00\n", None, "1:6: error: unexpected 'x' after the neuron count"),
    # list lines
    "bad hex index": ("N 02\n0g\n01 03 00\n", None, "2:1: error: expected a hex neuron index, got '0g'"),
    "missing in-indices": ("N 02\n00\n01 03\n", None,
                           "3:6: error: expected the in-indices (comma-separated hex) after the activation"),
    "unknown activation code": (
        "N 02\n00\n01 1d 00\n", None,
        "3:4: error: unknown activation '1d' (expected a hex code 00..0e or a name: identity, relu, "
        "sigmoid, tanh, leaky_relu, elu, softplus, silu, sin, gaussian, abs, step, relu6, gelu, gelu_tanh)"),
    "bad in-index": ("N 03\n00\n01\n02 03 00,x1\n", None, "4:10: error: expected a hex in-index, got 'x1'"),
    "empty in-index": ("N 03\n00\n01\n02 03 00,,01\n", None,
                       "4:10: error: expected a hex in-index, got nothing"),
    "junk after in-indices": ("N 02\n00\n01 03 00 junk\n", None,
                              "3:10: error: unexpected 'junk': expected `w=<weights>`, `b=<bias>` or "
                              "the end of the line"),
    "index out of range": ("N 02\n00\n01 03 05\n", None,
                           "3:7: error: in-index 05 is out of range: `N 02` declares 2 neurons, n00..n01"),
    "count too small": ("N 02\n00\n01 03 00\n02 03 01\n", None,
                        "4:1: error: neuron index 02 is out of range: `N 02` declares 2 neurons, n00..n01"),
    "count too large": ("N 04\n00\n01 03 00\n", None,
                        "1:3: error: `N 04` declares 4 neurons but 2 are defined: no line for n02, n03"),
    "defined twice": ("N 02\n00\n00\n01 03 00\n", None,
                      "3:1: error: neuron n00 is defined twice (first on line 2)"),
    "in-index twice": ("N 03\n00\n01\n02 03 00,01,00\n", None, "4:13: error: in-index n00 is listed twice"),
    "self-loop": ("N 02\n00\n01 03 00,01\n", None, "3:10: error: neuron n01 feeds itself (a self-loop)"),
    "cycle": ("N 05\n00\n01 03 00,03\n02 03 01\n03 03 02\n04 03 03\n", None,
              "3:10: error: the net has a cycle: n01 -> n02 -> n03 -> n01"),
    # value extension
    "value count": ("N 03\n00\n01\n02 03 00,01 w=1,2,3\n", None,
                    "4:13: error: neuron n02 has 2 in-indices but 3 weight values"),
    "bad value": ("N 03\n00\n01\n02 03 00,01 w=1,x\n", None, "4:17: error: expected a finite decimal number, got 'x'"),
    "infinite value": ("N 03\n00\n01\n02 03 00,01 w=1,1e999\n", None,
                       "4:17: error: expected a finite decimal number, got '1e999'"),
    "missing bias value": ("N 03\n00\n01\n02 03 00,01 b=\n", None,
                           "4:15: error: expected a finite decimal number, got nothing"),
    "field twice": ("N 03\n00\n01\n02 03 00,01 w=1,2 w=1,2\n", None, "4:19: error: `w=` is given twice"),
    # matrix
    "ragged matrix": ("000\n01\n000\n", None, "2:1: error: ragged matrix: row n01 has 2 columns but row n00 has 3"),
    "too few rows": ("001\n001\n", None, "2:1: error: the matrix is not square: 2 rows of 3 columns"),
    "too many rows": ("01\n00\n00\n", None, "3:1: error: the matrix is not square: 3 rows of 2 columns"),
    "non-0/1 entry": ("01\n0x\n", "matrix", "2:2: error: expected a matrix entry 0 or 1, got 'x'"),
    "split row": ("01\n0 0\n", None, "2:3: error: unexpected '0': expected a matrix row of 0s and 1s as one field"),
    "matrix self-loop": ("01\n01\n", None, "2:2: error: neuron n01 feeds itself (a self-loop)"),
    "matrix cycle": ("011\n001\n010\n", None, "3:2: error: the net has a cycle: n01 -> n02 -> n01"),
    "row label against column header": ("   j: 00\n   j: 02\nn00|01\nn01|00\n", None,
                                        "4:1: error: row label 'n01' does not match the name the column "
                                        "headers give column 1, 'n02'"),
    "short column header": ("j: 012\n01\n00\n", None,
                            "1:4: error: column header has 3 digits but the matrix has 2 columns"),
    "short letter row": ("abc\n01\n00\n", None,
                         "1:1: error: column header has 3 letters but the matrix has 2 columns"),
    "two letter rows": ("ab\nab\n01\n00\n", None,
                        "2:1: error: a second header row of name letters (the first is on line 1)"),
    "name given twice": ("a01\na00\n", None, "2:1: error: neuron name 'a' is given to rows 0 and 1"),
    "unlabelled row among labelled": ("a01\n00\n", None,
                                      "2:1: error: row n01 has no label, but the first row has one"),
    "header without rows": ("j: 01\n", None, "1:1: error: expected the matrix rows (0s and 1s) after the header"),
    # edge list
    "edge missing target": ("0 1\n0\n", None,
                            "2:2: error: expected `i j` or `i j w`: source and target index (hex), "
                            "optional weight"),
    "edge junk": ("0 1\n0 2 1 3\n", None, "2:7: error: unexpected '3': an edge line is `i j` or `i j w`"),
    "edge self-loop": ("0 1\n2 2\n", None, "2:3: error: neuron n02 feeds itself (a self-loop)"),
    "edge twice": ("0 1\n0 2\n0 1\n", None, "3:1: error: edge n00 -> n01 is listed twice (first on line 1)"),
    "edge out of range": ("N 02\n0 1\n0 2\n", None,
                          "3:3: error: neuron index 2 is out of range: `N 02` declares 2 neurons, n00..n01"),
    "edge missing weight": ("0 1 0.5\n0 2\n", None,
                            "2:4: error: expected a weight value: every edge has a value or none does "
                            "(line 1 has one)"),
    "edge extra weight": ("0 1\n0 2 0.5\n", None,
                          "2:5: error: unexpected weight value: every edge has a value or none does "
                          "(line 1 has none)"),
    "edge bad weight": ("0 1 1.5.2\n", None, "1:5: error: expected a finite decimal number, got '1.5.2'"),
    "edge cycle": ("0 1\n1 2\n2 1\n", None, "3:1: error: the net has a cycle: n01 -> n02 -> n01"),
}


@pytest.mark.parametrize("kind", BAD)
def test_bad_input(kind):
    text, fmt, expected = BAD[kind]
    with pytest.raises(NccError) as e:
        parse_adjacency(text, "bad.txt", format=fmt)
    assert str(e.value) == "bad.txt:" + expected
    with pytest.raises(NccError):  # and never a module
        import_adjacency_text(text, "bad.txt", format=fmt)
