"""Control flow in ONNX (import only), with static trip counts: Scan
unrolled, If on a constant condition; their bodies are imported in place.
"""

from __future__ import annotations

import numpy as np
from xdsl.ir import SSAValue

from ncc.dialects import nn
from ncc.dialects.nn import DYN, shape_of
from ncc.onnx.importer import UNROLLED_STEPS, from_onnx


@from_onnx("Scan")
def _scan(b, a):
    # per step t: the body maps (states, the t-th slices of the scan inputs)
    # to (new states, per-step outputs), which are stacked along their axes
    if b.opset < 9:
        raise b.error("Scan of opset 8 (with a batch axis and sequence_lens) is not supported")
    body, m = a["body"], a["num_scan_inputs"]
    ins = [b.v(i) for i in range(len(b.node.input))]
    if not 0 < m <= len(ins):
        raise b.error(f"num_scan_inputs is {m}, but the node has {len(ins)} inputs")
    n_state = len(ins) - m
    states, scans = ins[:n_state], ins[n_state:]
    k = len(body.output) - n_state
    if k < 0 or len(body.input) != n_state + m:
        raise b.error(f"the body takes {len(body.input)} inputs and gives {len(body.output)} outputs; "
                      f"{n_state} states and {m} scan inputs need {n_state + m} and at least {n_state}")
    in_axes = [ax % len(shape_of(x.type)) for ax, x in zip(a.get("scan_input_axes", [0] * m), scans)]
    in_rev = a.get("scan_input_directions", [0] * m)
    out_axes, out_rev = a.get("scan_output_axes", [0] * k), a.get("scan_output_directions", [0] * k)
    lengths = {shape_of(x.type)[ax] for x, ax in zip(scans, in_axes)}
    if len(lengths) != 1 or DYN in lengths:
        raise b.error(f"the scan inputs must have one static length, got {sorted(lengths)}")
    steps = lengths.pop()
    if steps < 1:
        raise b.error("the scan inputs have length 0: Scan's outputs would have no element type to stack")
    if steps > UNROLLED_STEPS:
        raise b.error(f"{steps} steps: Scan is unrolled, at most {UNROLLED_STEPS}")
    per_step: list[list[SSAValue]] = [[] for _ in range(k)]
    for t in range(steps):
        slices = []
        for x, ax, rev in zip(scans, in_axes, in_rev):
            i = steps - 1 - t if rev else t
            shape = [d for j, d in enumerate(shape_of(x.type)) if j != ax]
            slices.append(b.reshape_to(b.build(nn.SliceOp, x, [i], [i + 1], [ax]), shape))
        outs = b.subgraph(body, states + slices, "Scan body")
        states = outs[:n_state]
        for j, y in enumerate(outs[n_state:]):
            per_step[j].append(y)
    stacked = []
    for ys, ax, rev in zip(per_step, out_axes, out_rev):
        shape = list(shape_of(ys[0].type))
        ax %= len(shape) + 1
        parts = [b.reshape_to(y, shape[:ax] + [1] + shape[ax:]) for y in (ys[::-1] if rev else ys)]
        stacked.append(parts[0] if len(parts) == 1 else b.build(nn.ConcatOp, parts, ax))
    return states + stacked


@from_onnx("If")
def _if(b, a):
    # the branch the (import-time) condition selects
    cond = np.asarray(b.static(0)).reshape(-1)
    if cond.size != 1:
        raise b.error(f"the condition must hold one value, got {cond.size}")
    branch = "then_branch" if cond[0] else "else_branch"
    return b.subgraph(a[branch], [], branch)
