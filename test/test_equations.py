"""The equations emitter: the spec's text byte for byte, and equations that compute.

The forward and backward texts are executed line by line by a small evaluator
written here, and checked against a direct numpy evaluation of the graph and
against central finite differences of a scalar loss.
"""

import re
from pathlib import Path

import numpy as np
import pytest
from xdsl.dialects.builtin import ModuleOp

from ncc.adjacency import import_adjacency, import_adjacency_text, parse_adjacency
from ncc.diagnostics import NccError
from ncc.dialects import activations
from ncc.dialects.neuron import NeuronGraph, bias_name, name_width
from ncc.equations import emit_equations

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"

# The spec's text, literally (adjacency-format.md).
SPEC_LIST_FORWARD = """\
n04 = f04( +n00*w0004 +n01*w0104)
n05 = f05( +n00*w0005 +n01*w0105 +n02*w0205)
n06 = f06( +n01*w0106 +n02*w0206 +n03*w0306)
n07 = f07( +n02*w0207 +n03*w0307)
n08 = f08( +n04*w0408 +n05*w0508)
n09 = f09( +n04*w0409 +n05*w0509 +n06*w0609)
n0a = f0a( +n05*w050a +n06*w060a +n07*w070a)
n0b = f0b( +n06*w060b +n07*w070b)
n0c = f0c( +n08*w080c +n09*w090c +n0a*w0a0c +n0b*w0b0c)
n0d = f0d( +n08*w080d +n09*w090d +n0a*w0a0d +n0b*w0b0d)
"""
SPEC_MATRIX_FORWARD = """\
n00 = f00()
n01 = f01()
n02 = f02()
n03 = f03()
""" + SPEC_LIST_FORWARD

SMOOTH = ["identity", "sigmoid", "tanh", "softplus", "silu", "sin", "gaussian"]


# ---------------------------------------------------------------------------
# An evaluator of the emitted text.

_SYM = r"[A-Za-z_][\w]*"
_SUM = rf"((?: \+{_SYM}(?:\*{_SYM})?)*)"
_FORWARD = re.compile(rf"(n[0-9a-f]+) = f([0-9a-f]+)\({_SUM}\)")
_DZ = re.compile(rf"(dz[0-9a-f]+) = (dn[0-9a-f]+)\*f([0-9a-f]+)'\((z[0-9a-f]+)\)")
_SUM_LINE = re.compile(rf"(d{_SYM}) =(?: 0|{_SUM})")


def _sum(terms: str, env: dict):
    total = 0.0
    for term in terms.split(" +")[1:]:
        value = 1.0
        for factor in term.split("*"):
            value = value * env[factor]
        total = total + value
    return total


def run_equations(text: str, g: NeuronGraph, env: dict) -> dict:
    """Execute forward or backward equations over env (symbol -> value), strictly:
    every line must have one of the documented shapes, and every symbol is
    assigned once."""
    for line in text.splitlines():
        if line.startswith("%"):
            continue
        if m := _FORWARD.fullmatch(line):
            name, idx, terms = m.groups()
            j = int(idx, 16)
            if g.activation[j] is None:  # a matrix-spelled input line: n00 = f00()
                assert terms == "" and name in env, line
                continue
            z = _sum(terms, env)
            assert "z" + idx not in env, line
            env["z" + idx] = z
            value = activations.BY_NAME[g.activation[j]].fn(np.asarray(z, dtype=np.float64))
        elif m := _DZ.fullmatch(line):
            name, dn, idx, z = m.groups()
            assert dn == "dn" + idx and z == "z" + idx, line
            value = env[dn] * activations.BY_NAME[g.activation[int(idx, 16)]].derivative(
                np.asarray(env[z], dtype=np.float64))
        elif m := _SUM_LINE.fullmatch(line):
            name = m.group(1)
            value = _sum(m.group(2) or "", env)
        else:
            raise AssertionError(f"line of unknown shape: {line!r}")
        assert name not in env, f"{name} assigned twice"
        env[name] = value
    return env


# ---------------------------------------------------------------------------
# An independent evaluation of the graph, batched over parameter sets.


def direct(g: NeuronGraph, inputs: dict, params: dict) -> dict:
    n = dict(inputs)
    for j in g.topological_order():
        if g.activation[j] is None:
            continue
        z = sum(n[i] * params[w] for i, w in zip(g.inputs[j], g.weights[j]))
        if g.bias[j] is not None:
            z = z + params[g.bias[j]]
        n[j] = activations.BY_NAME[g.activation[j]].fn(np.asarray(z, dtype=np.float64))
    return n


def random_values(g: NeuronGraph, rng):
    names = sorted({w for ws in g.weights for w in ws} | {b for b in g.bias if b})
    params = {s: rng.normal(0, 0.7) for s in names}
    inputs = {j: rng.normal() for j in g.input_indices}
    dy = {o: rng.normal() for o in g.outputs}
    return params, inputs, dy


def check_gradients(g: NeuronGraph, seed: int = 0):
    """Forward text == direct evaluation; backward text == finite differences."""
    rng = np.random.default_rng(seed)
    params, inputs, dy = random_values(g, rng)
    name = lambda j: f"{j:0{name_width(g.size)}x}"

    env = dict(params) | {f"n{name(j)}": v for j, v in inputs.items()}
    env = run_equations(emit_equations(g, "forward"), g, env)
    ref = direct(g, inputs, params)
    for j in range(g.size):
        assert env[f"n{name(j)}"] == pytest.approx(ref[j], rel=1e-12, abs=1e-12)

    env |= {f"dy{name(o)}": v for o, v in dy.items()}
    env = run_equations(emit_equations(g, "backward"), g, env)

    # Central differences of L = sum(dy * outputs), all parameters at once.
    keys = list(params) + [("input", j) for j in inputs]
    base = np.array([params[k] for k in params] + list(inputs.values()))
    h = 1e-6
    theta = base + h * np.vstack([np.eye(len(base)), -np.eye(len(base))])
    cols = dict(zip(keys, theta.T))
    out = direct(g, {j: cols[("input", j)] for j in inputs}, {k: cols[k] for k in params})
    loss = sum(dy[o] * out[o] for o in g.outputs)
    fd = (loss[: len(base)] - loss[len(base):]) / (2 * h)
    analytic = np.array([env["d" + k] for k in params] + [env[f"dn{name(j)}"] for j in inputs])
    np.testing.assert_allclose(analytic, fd, rtol=1e-6, atol=1e-7 * max(1.0, np.abs(fd).max()))
    return env


def random_dag(rng, n: int = 200, n_in: int = 8, fan_in: int = 4, permute: bool = True,
               extra_outputs: int = 5, biases: bool = True, shared: int = 3) -> NeuronGraph:
    """A random DAG: skip connections from anywhere earlier, outputs that also
    feed other neurons, biases, a few shared weights, and (when permute) an
    index order that is not a topological order."""
    perm = rng.permutation(n) if permute else np.arange(n)
    acts: list = [None] * n
    ins: list = [[] for _ in range(n)]
    for t in range(n_in, n):
        k = int(rng.integers(1, fan_in + 1))
        src = set(rng.choice(t, size=min(k, t), replace=False).tolist())
        if rng.random() < 0.2:
            src.add(int(rng.integers(n_in)))  # a long skip straight from an input
        j = int(perm[t])
        ins[j] = sorted(int(perm[s]) for s in src)
        acts[j] = SMOOTH[int(rng.integers(len(SMOOTH)))]
    g = NeuronGraph(activation=acts, inputs=ins)
    if biases:
        g.bias = [bias_name(j, name_width(n)) if a and rng.random() < 0.5 else None
                  for j, a in enumerate(acts)]
    for s in range(shared):  # tie a few weights together
        for _ in range(3):
            j = int(rng.choice([j for j in range(n) if ins[j]]))
            g.weights[j][int(rng.integers(len(ins[j])))] = f"shared{s}"
    fed = {i for i in range(n) if any(i in x for x in ins)}
    inner = [j for j in range(n) if acts[j] and j in fed]
    g.outputs = sorted(set(g.outputs) | set(rng.choice(inner, size=extra_outputs, replace=False).tolist()))
    return g


# ---------------------------------------------------------------------------
# The spec's text


def test_forward_list_matches_spec():
    assert emit_equations(import_adjacency(EXAMPLES / "seed_list.txt")) == SPEC_LIST_FORWARD


def test_forward_matrix_matches_spec():
    for f in ("seed_matrix.txt", "seed_matrix_decorated.txt"):
        assert emit_equations(import_adjacency(EXAMPLES / f)) == SPEC_MATRIX_FORWARD


def test_forward_edges_is_the_list_text():
    assert emit_equations(import_adjacency(EXAMPLES / "seed_edges.txt")) == SPEC_LIST_FORWARD


def test_accepts_module_net_and_graph():
    module = import_adjacency(EXAMPLES / "seed_list.txt")
    net = next(iter(module.ops))
    for x in (module, net, net.graph()):
        assert emit_equations(x) == SPEC_LIST_FORWARD


def test_bias_is_the_last_term_and_symbols_come_from_the_ir():
    g = parse_adjacency("N 03\n00\n01\n02 tanh 01,00 w=2,3 b=0.5\n")
    assert emit_equations(g) == "n02 = f02( +n00*w0002 +n01*w0102 +b02)\n"
    g.weights[2] = ["a", "a"]  # a shared, renamed weight
    assert emit_equations(g) == "n02 = f02( +n00*a +n01*a +b02)\n"
    back = emit_equations(g, "backward")
    assert "da = +dz02*n00 +dz02*n01\n" in back and "db02 = +dz02\n" in back
    assert back.count("da =") == 1


def test_three_digit_names():
    n = 0x102
    text = f"N {n:x}\n" + "".join(f"{j:x}\n" for j in range(n - 1)) + f"{n - 1:x} 03 0,ff,100\n"
    out = emit_equations(parse_adjacency(text))
    assert out == "n101 = f101( +n000*w000101 +n0ff*w0ff101 +n100*w100101)\n"


def test_backward_seed_text():
    back = emit_equations(import_adjacency(EXAMPLES / "seed_list.txt"), "backward").splitlines()
    assert back[0].startswith("% backward: reverse-mode chain rule")
    assert back[1] == "% given: dy0c dy0d = dL/dn of the outputs n0c n0d"
    assert back[2:6] == ["dn0d = +dy0d", "dz0d = dn0d*f0d'(z0d)", "dw080d = +dz0d*n08",
                         "dw090d = +dz0d*n09"]
    assert "dn08 = +dz0c*w080c +dz0d*w080d" in back
    assert "dw080c = +dz0c*n08" in back  # the last layer's weights too
    assert back[-1] == "dn00 = +dz04*w0004 +dz05*w0005"
    weights = {w for ws in parse_adjacency((EXAMPLES / "seed_list.txt").read_text()).weights for w in ws}
    assert {ln.split(" =")[0][1:] for ln in back if ln.startswith("dw")} == weights


def test_output_that_feeds_another_neuron_gets_both_contributions():
    g = NeuronGraph(activation=[None, "tanh", "sigmoid"], inputs=[[], [0], [1]], outputs=[1, 2])
    back = emit_equations(g, "backward")
    assert "dn01 = +dy01 +dz02*w0102\n" in back
    check_gradients(g)


def test_unused_input_and_errors():
    g = NeuronGraph(activation=[None, None, "tanh"], inputs=[[], [], [0]])
    assert "dn01 = 0\n" in emit_equations(g, "backward")
    check_gradients(g)
    with pytest.raises(NccError, match="unknown direction 'sideways'"):
        emit_equations(g, "sideways")
    with pytest.raises(NccError, match="expected a module holding one neuron.net, found 0"):
        emit_equations(ModuleOp([]))


# ---------------------------------------------------------------------------
# Equations that compute


@pytest.mark.parametrize("act", SMOOTH)
def test_seed_net_gradients(act):
    g = parse_adjacency((EXAMPLES / "seed_list.txt").read_text(), activation=act)
    check_gradients(g, seed=1)


def test_seed_matrix_gradients():
    check_gradients(parse_adjacency((EXAMPLES / "seed_matrix.txt").read_text()), seed=2)


def test_xor_values_gradients():
    # relu kinks are away from the random points with probability 1.
    check_gradients(parse_adjacency((EXAMPLES / "xor_values.txt").read_text()), seed=3)


@pytest.mark.parametrize("seed", range(6))
def test_random_dag_gradients(seed):
    rng = np.random.default_rng(seed)
    g = random_dag(rng, n=int(rng.integers(100, 320)), n_in=int(rng.integers(1, 12)),
                   fan_in=int(rng.integers(1, 6)), permute=seed % 3 != 0)
    assert any(o in i for o in g.outputs for i in g.inputs)  # an output feeds a neuron
    env = check_gradients(g, seed=seed)
    # Every parameter got a gradient; every neuron a dn.
    assert all("d" + w in env for ws in g.weights for w in ws)
    w = name_width(g.size)
    assert all(f"dn{j:0{w}x}" in env for j in range(g.size))


def test_random_dag_through_the_adjacency_list():
    rng = np.random.default_rng(11)
    g = random_dag(rng, n=300, n_in=10, biases=False, shared=0, extra_outputs=0)
    w = 3
    lines = [f"N {g.size:x}"] + [
        f"{j:0{w}x}" + (f" {g.activation[j]} " + ",".join(f"{i:0{w}x}" for i in g.inputs[j])
                        if g.activation[j] else "") for j in range(g.size)]
    parsed = parse_adjacency("\n".join(lines))
    assert parsed.inputs == g.inputs and parsed.activation == g.activation
    check_gradients(parsed, seed=11)
    module = import_adjacency_text("\n".join(lines))
    assert emit_equations(module) == emit_equations(parsed)


# ---------------------------------------------------------------------------
# Labelled matrices and the term table


def test_letter_named_neurons_keep_their_letters():
    text = emit_equations(import_adjacency(EXAMPLES / "seed_matrix_letters.txt"))
    lines = text.splitlines()
    assert lines[:5] == ["a = fa()", "b = fb()", "c = fc()", "d = fd()", "e = fe( +a*ae +b*be)"]
    assert lines[-1] == "n = fn( +i*in +j*jn +k*kn +l*ln)"
    back = emit_equations(import_adjacency(EXAMPLES / "seed_matrix_letters.txt"), "backward").splitlines()
    assert "dze = de*fe'(ze)" in back and "dae = +dze*a" in back and "da = +dze*ae +dzf*af" in back


def test_sparse_labels_name_the_neurons():
    lines = emit_equations(import_adjacency(EXAMPLES / "seed_matrix_sparse.txt")).splitlines()
    assert lines[8] == "n10 = f10( +n04*w0410 +n05*w0510)"
    assert lines[-1] == "n15 = f15( +n10*w1015 +n11*w1115 +n12*w1215 +n13*w1315)"


def test_term_table_of_the_seed_net():
    """The seed's "another output", built here from the spec's words: a header of
    N, weight blocks, N*N cells and 2 flops per synapse, the names, then per
    source neuron one 10-character cell per destination."""
    seed = import_adjacency(EXAMPLES / "seed_list.txt")
    names = [f"n{j:02x}" for j in range(14)]
    seed_inputs = [[], [], [], [], [0, 1], [0, 1, 2], [1, 2, 3], [2, 3], [4, 5], [4, 5, 6], [5, 6, 7],
                   [6, 7], [8, 9, 10, 11], [8, 9, 10, 11]]
    feeds = {(i, j) for j, ins in enumerate(seed_inputs) for i in ins}
    rows = [" ".join([names[i]] + [f"+{names[i]}*w{i:02x}{j:02x}" if (i, j) in feeds else "_" * 10
                                    for j in range(14)]) for i in range(14)]
    want = "\n".join(["14 1 196 56", " ".join(names), *rows]) + "\n"
    assert emit_equations(seed, "table") == want
    assert want.splitlines()[2].startswith(
        "n00 __________ __________ __________ __________ +n00*w0004 +n00*w0005 __________")
    for spelling in ("seed_matrix.txt", "seed_edges.txt", "seed_matrix_decorated.txt"):
        assert emit_equations(import_adjacency(EXAMPLES / spelling), "table") == want
    letters = emit_equations(import_adjacency(EXAMPLES / "seed_matrix_letters.txt"), "table").splitlines()
    assert letters[1] == "a b c d e f g h i j k l m n"
    assert letters[2] == "a _____ _____ _____ _____ +a*ae +a*af " + " ".join(["_____"] * 8)
