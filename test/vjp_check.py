"""Checking VJP rules: one op as a function, its gradients from the combined
vjp function (reference interpreter and native code) against central finite
differences in float64 and torch.func.vjp (skipped without torch)."""

from __future__ import annotations

import numpy as np
from xdsl.dialects import func
from xdsl.dialects.builtin import ModuleOp, TensorType, f64
from xdsl.ir import Block, Region

import ncc
from ncc.passes.autodiff import differentiate

try:
    import torch
except ImportError:  # the torch checks skip; finite differences always run
    torch = None


def one_op_module(build, shapes, dtype=f64, int_args=()) -> ModuleOp:
    """func @f(args of `shapes`) -> build(*args); args in `int_args` are i64."""
    from xdsl.dialects.builtin import i64

    types = [TensorType(i64 if k in int_args else dtype, s) for k, s in enumerate(shapes)]
    block = Block(arg_types=types)
    op = build(*block.args)
    block.add_op(op)
    block.add_op(func.ReturnOp(op.results[0]))
    f = func.FuncOp("f", (types, [op.results[0].type]), Region([block]))
    return ModuleOp([f])


def vjp_reference(module: ModuleOp, inputs: list[np.ndarray], cot: np.ndarray, **kw) -> list[np.ndarray]:
    m = module.clone()
    differentiate(m, "f", mode="combined", **kw)
    return ncc.reference.run(m, [*inputs, cot], function="f_vjp")[1:]


def finite_differences(module: ModuleOp, inputs: list[np.ndarray], cot: np.ndarray,
                       wrt: list[int], h: float = 1e-6) -> list[np.ndarray]:
    out = []
    for k in wrt:
        g = np.zeros_like(inputs[k])
        for idx in np.ndindex(*inputs[k].shape):
            vals = []
            for sign in (1, -1):
                xs = [x.copy() for x in inputs]
                xs[k][idx] += sign * h
                vals.append(np.sum(ncc.reference.run(module, xs)[0] * cot))
            g[idx] = (vals[0] - vals[1]) / (2 * h)
        out.append(g)
    return out


def check_rule(build, inputs: list[np.ndarray], *, int_args=(), native=True, rtol=1e-6, atol=1e-8,
               torch_fn=None):
    shapes = [x.shape for x in inputs]
    module = one_op_module(build, shapes, int_args=int_args)
    y = ncc.reference.run(module, inputs)[0]
    rng = np.random.default_rng(1)
    cot = rng.standard_normal(y.shape)
    wrt = [k for k in range(len(inputs)) if k not in int_args]
    grads = vjp_reference(module, inputs, cot)
    fd = finite_differences(module, inputs, cot, wrt)
    for k, g, d in zip(wrt, grads, fd):
        np.testing.assert_allclose(g, d, rtol=1e-5, atol=1e-6, err_msg=f"operand {k} vs finite differences")
    if torch_fn is not None and torch is not None:
        tin = [torch.tensor(x) for x in inputs]
        fixed = {k: tin[k] for k in int_args}

        def f(*xs):
            it = iter(xs)
            return torch_fn(*[fixed[k] if k in fixed else next(it) for k in range(len(inputs))])

        _, pull = torch.func.vjp(f, *[tin[k] for k in wrt])
        for k, g, t in zip(wrt, grads, pull(torch.tensor(cot))):
            np.testing.assert_allclose(g, t.numpy(), rtol=rtol, atol=atol, err_msg=f"operand {k} vs torch")
    if native:
        m = module.clone()
        differentiate(m, "f", mode="combined")
        m.body.block.first_op.detach()  # keep only f_vjp
        got = ncc.compile(m, cache=False).run(
            {**{f"arg{i}": x for i, x in enumerate(inputs)}, "cotangent:0": cot})
        for g, n in zip(grads, got[1:]):
            np.testing.assert_allclose(n, g, rtol=1e-9, atol=1e-12)
    return grads


RNG = np.random.default_rng(0)


def rand(*shape, low=-2.0, high=2.0):
    return np.asarray(RNG.uniform(low, high, shape))
