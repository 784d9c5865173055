"""RNN, GRU and LSTM in ONNX (import only): the recurrence unrolled over the
(static) sequence, with the input projections of all steps done first as
one matmul per gate.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
from xdsl.ir import SSAValue

from ncc.dialects import nn
from ncc.dialects.nn import DYN, shape_of
from ncc.onnx.elementwise import elu, hard_sigmoid, leaky_relu, softsign
from ncc.onnx.importer import UNROLLED_STEPS, Importer, ImportRule, from_onnx


# ONNX activation name -> (default alpha, default beta, f(b, x, alpha, beta));
# None: the function takes no such value
RNN_ACTIVATIONS: dict[str, tuple[float | None, float | None, Callable[..., SSAValue]]] = {
    "Sigmoid": (None, None, lambda b, x, al, be: b.unary("sigmoid", x)),
    "Tanh": (None, None, lambda b, x, al, be: b.unary("tanh", x)),
    "Relu": (None, None, lambda b, x, al, be: b.unary("relu", x)),
    "Softsign": (None, None, lambda b, x, al, be: softsign(b, x)),
    "Softplus": (None, None, lambda b, x, al, be: b.unary("softplus", x)),
    "LeakyRelu": (0.01, None, lambda b, x, al, be: leaky_relu(b, x, al)),
    "ThresholdedRelu": (1.0, None, lambda b, x, al, be: b.binary(
        "mul", x, b.unary("step", b.binary("sub", x, b.scalar(al, x))))),
    "Elu": (1.0, None, lambda b, x, al, be: elu(b, x, al)),
    "HardSigmoid": (0.2, 0.5, lambda b, x, al, be: hard_sigmoid(b, x, al, be)),
    "Affine": (1.0, 0.0, lambda b, x, al, be: b.binary("add", b.binary("mul", x, b.scalar(al, x)),
                                                       b.scalar(be, x))),
    "ScaledTanh": (1.0, 1.0, lambda b, x, al, be: b.binary(
        "mul", b.unary("tanh", b.binary("mul", x, b.scalar(be, x))), b.scalar(al, x))),
}


RNN_DEFAULTS = {"RNN": ["Tanh"], "GRU": ["Sigmoid", "Tanh"], "LSTM": ["Sigmoid", "Tanh", "Tanh"]}


RNN_GATES = {"RNN": 1, "GRU": 3, "LSTM": 4}  # gate order: RNN i, GRU z r h, LSTM i o f c


def _rnn_activations(b: Importer, a: dict, kind: str, dirs: int) -> list[list[Callable]]:
    """Each direction's activation functions; activation_alpha/beta are taken
    in order by the functions that have such a parameter."""
    names = list(a.get("activations", []))
    per = len(RNN_DEFAULTS[kind])
    names = names or RNN_DEFAULTS[kind] * dirs
    if len(names) != per * dirs:
        raise b.error(f"{kind} takes {per * dirs} activations here, got {len(names)}")
    alphas, betas = list(a.get("activation_alpha", [])), list(a.get("activation_beta", []))
    by_lower = {k.lower(): k for k in RNN_ACTIVATIONS}
    fns = []
    for name in names:
        if name.lower() not in by_lower:
            raise b.error(f"unknown activation '{name}' (known: {', '.join(RNN_ACTIVATIONS)})")
        da, db, f = RNN_ACTIVATIONS[by_lower[name.lower()]]
        al = alphas.pop(0) if da is not None and alphas else da
        be = betas.pop(0) if db is not None and betas else db
        fns.append(lambda x, f=f, al=al, be=be: f(b, x, al, be))
    return [fns[d * per:(d + 1) * per] for d in range(dirs)]


def _recurrent(kind: str) -> ImportRule:
    def f(b, a):
        x, w, r = b.v(0), b.v(1), b.v(2)
        layout = a.get("layout", 0)
        direction = a.get("direction", "forward")
        if direction not in ("forward", "reverse", "bidirectional"):
            raise b.error(f"unknown direction '{direction}' (known: forward, reverse, bidirectional)")
        dirs, gates, hid = 2 if direction == "bidirectional" else 1, RNN_GATES[kind], a.get("hidden_size")
        xs = shape_of(x.type)
        if len(xs) != 3 or DYN in xs[layout:] or not hid:
            order = "(batch, seq, input)" if layout else "(seq, batch, input)"
            raise b.error(f"needs hidden_size and an input {order} with static sizes"
                          f"{' but the batch' if layout else ''}, got {x.type}")
        steps, n, isize = (xs[1], xs[0], xs[2]) if layout else xs
        if steps > UNROLLED_STEPS:
            raise b.error(f"{steps} steps: the recurrence is unrolled, at most {UNROLLED_STEPS}")
        for what, t, shape in (("W", w, [dirs, gates * hid, isize]), ("R", r, [dirs, gates * hid, hid])):
            if list(shape_of(t.type)) != shape:
                raise b.error(f"{what} must be {nn.fmt_shape(shape)}, got {t.type}")
        # Every state is (1, N, H) in layout 0 and (N, 1, H) in layout 1: a step
        # of the input projections, sliced along the sequence axis, has that shape.
        lead, taxis = -1 if n == DYN else n, layout
        acts = _rnn_activations(b, a, kind, dirs)
        clip = a.get("clip")
        lbr, coupled = a.get("linear_before_reset", 0), a.get("input_forget", 0)
        opt = lambda i: b.v(i) if b.has(i) else None  # noqa: E731
        bias, lens, h0, c0 = opt(3), opt(4), opt(5), opt(6) if kind == "LSTM" else None
        peep = opt(7) if kind == "LSTM" else None
        if lens is not None:  # step t counts for batch entry j iff t < lens[j]: a lookup at t - lens + T
            steps_table = b.array((np.arange(2 * steps + 1) < steps).astype(np.float64), x)

        def rows(v: SSAValue, d: int, start: int, size: int) -> SSAValue:
            """v[d, start:start + size] of a (dirs, rows, ...) tensor, without the dirs axis."""
            v = b.build(nn.SliceOp, v, [d, start], [d + 1, start + size], [0, 1])
            return b.build(nn.ReshapeOp, v, list(shape_of(v.type)[1:]))

        def gate(v: SSAValue, g: int, count: int = 1) -> SSAValue:
            return b.build(nn.SliceOp, v, [g * hid], [(g + count) * hid], [-1])

        def cl(v: SSAValue) -> SSAValue:
            if clip is None:
                return v
            return b.binary("min", b.binary("max", v, b.scalar(-clip, v)), b.scalar(clip, v))

        def plus_matmul(v: SSAValue, state: SSAValue | None, weight: SSAValue) -> SSAValue:
            return v if state is None else b.binary("add", v, b.build(nn.MatmulOp, state, weight))

        ys, hs, cs = [], [], []
        for d in range(dirs):
            fa, ga, ha = (acts[d] + [None, None])[:3]
            wt = b.build(nn.TransposeOp, rows(w, d, 0, gates * hid), [1, 0])  # (I, G*H)
            rt = b.build(nn.TransposeOp, rows(r, d, 0, gates * hid), [1, 0])  # (H, G*H)
            xw = b.build(nn.MatmulOp, x, wt)  # every step's input projection
            rec_h_bias = None
            if bias is not None:  # Wb + Rb, but GRU's Rb_h with linear_before_reset stays inside r * (...)
                rb = rows(bias, d, gates * hid, gates * hid)
                if kind == "GRU" and lbr:
                    rec_h_bias = gate(rb, 2)
                    rb = b.binary("mul", rb, b.array(np.repeat([1, 1, 0], hid), rb))
                xw = b.binary("add", xw, b.binary("add", rows(bias, d, 0, gates * hid), rb))
            if kind == "GRU":
                rt_zr, rt_h = (b.build(nn.SliceOp, rt, [s], [e], [1])
                               for s, e in ((0, 2 * hid), (2 * hid, 3 * hid)))
            h = b.build(nn.SliceOp, h0, [d], [d + 1], [taxis]) if h0 is not None else None  # None: zeros
            c = b.build(nn.SliceOp, c0, [d], [d + 1], [taxis]) if c0 is not None else None
            outs: list[SSAValue | None] = [None] * steps
            for t in (range(steps - 1, -1, -1) if direction == "reverse" or d == 1 else range(steps)):
                xt = b.build(nn.SliceOp, xw, [t], [t + 1], [taxis])
                c_new = None
                if kind == "RNN":
                    h_new = fa(cl(plus_matmul(xt, h, rt)))
                elif kind == "GRU":
                    zr = plus_matmul(gate(xt, 0, 2), h, rt_zr)
                    z, rr = fa(cl(gate(zr, 0))), fa(cl(gate(zr, 1)))
                    if lbr:  # r * (h R_h + Rb_h)
                        rec = None if h is None else b.build(nn.MatmulOp, h, rt_h)
                        if rec_h_bias is not None:
                            rec = rec_h_bias if rec is None else b.binary("add", rec, rec_h_bias)
                        cand = gate(xt, 2) if rec is None else b.binary(
                            "add", gate(xt, 2), b.binary("mul", rr, rec))
                    else:  # (r * h) R_h
                        cand = plus_matmul(gate(xt, 2), None if h is None else b.binary("mul", rr, h), rt_h)
                    cand = ga(cl(cand))
                    # (1 - z) * cand + z * h
                    h_new = b.binary("sub", cand, b.binary("mul", z, cand)) if h is None else \
                        b.binary("add", cand, b.binary("mul", z, b.binary("sub", h, cand)))
                else:  # LSTM: gates i o f c, peepholes i o f
                    pre = plus_matmul(xt, h, rt)
                    gi, go, gf, gc = (gate(pre, g) for g in range(4))
                    if peep is not None and c is not None:
                        gi = b.binary("add", gi, b.binary("mul", rows(peep, d, 0, hid), c))
                        gf = b.binary("add", gf, b.binary("mul", rows(peep, d, 2 * hid, hid), c))
                    gi = fa(cl(gi))
                    gf = b.binary("sub", b.scalar(1, gi), gi) if coupled else fa(cl(gf))
                    c_new = b.binary("mul", gi, ga(cl(gc)))
                    if c is not None:
                        c_new = b.binary("add", c_new, b.binary("mul", gf, c))
                    if peep is not None:
                        go = b.binary("add", go, b.binary("mul", rows(peep, d, hid, hid), c_new))
                    h_new = b.binary("mul", fa(cl(go)), ha(c_new))
                if lens is not None:  # past a sequence's end: output 0, the states kept
                    at = b.binary("sub", b.scalar(t + steps, lens), lens)
                    m = b.build(nn.ReshapeOp, b.build(nn.GatherOp, steps_table, at, 0),
                                [lead, 1, 1] if layout else [1, lead, 1])
                    outs[t] = b.binary("mul", m, h_new)
                    h = outs[t] if h is None else b.binary(
                        "add", h, b.binary("mul", m, b.binary("sub", h_new, h)))
                    if c_new is not None:
                        c = b.binary("mul", m, c_new) if c is None else b.binary(
                            "add", c, b.binary("mul", m, b.binary("sub", c_new, c)))
                else:
                    outs[t], h, c = h_new, h_new, c_new
            if b.node.output and b.node.output[0]:  # Y: (T, dirs, N, H) or (N, T, dirs, H)
                y = outs[0] if steps == 1 else b.build(nn.ConcatOp, outs, taxis)
                ys.append(b.build(nn.ReshapeOp, y,
                                  [lead, steps, 1, hid] if layout else [steps, 1, lead, hid]))
            hs.append(h)
            cs += [c] if c is not None else []

        def join(vs: list[SSAValue], axis: int) -> SSAValue | None:
            return None if not vs else vs[0] if len(vs) == 1 else b.build(nn.ConcatOp, vs, axis)

        return [join(ys, 2 if layout else 1), join(hs, taxis), join(cs, taxis)]
    return f


for _kind in ("RNN", "GRU", "LSTM"):
    from_onnx(_kind)(_recurrent(_kind))
