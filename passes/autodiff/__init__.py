"""autodiff: reverse-mode differentiation of nn functions.

    func.func @f(%x) -> %y              func.func @f_forward(%x) -> (%y, saved...)
      (nn ops)                 ==>      func.func @f_backward(saved..., %dy) -> (grads...)
                                        (or, combined: @f_vjp(%x, %dy) -> (%y, grads...))

The gradient is taken with respect to every trainable weight (a float
`nn.weight` that is not `frozen` and not a folded constant, `ncc.constant`) and
the float inputs. Only *active* values get a cotangent: those that depend on
something being differentiated (a frozen weight's branch is never
differentiated: its dead gradient is not computed) and that a result depends
on. Ops are visited in reverse; each op's rule `VJP[type(op)]` maps the
cotangent of its result to cotangents of its operands, built from nn ops (so
the backward is lowered and compiled like any other nn code). A rule reads
forward values through `bw.primal(v)`: in split mode exactly those values
become the forward function's extra `saved:<k>` results (weights and constants
are re-read instead of saved), so the forward saves only what the backward
needs.

Names (`ncc.name` attributes, which become the kernel roles after
lower-to-loops): cotangent arguments `cotangent:<result name>`, gradients
`grad:<weight>` (module order) then `grad:<input name>` (argument order).

One module per op family, as in dialects/nn/: `core` (the `Backward` builder
every rule gets), then `elementwise`, `matmul`, `conv`, `sparse`, `pool`,
`reduce`, `softmax`, `normalization`, `shape`, `gather_scatter`, `resize`,
each with its `VJP` table; `engine` gathers the tables and holds
`differentiate` and the pass.
"""

from ncc.passes.autodiff.core import *  # noqa: F401,F403
from ncc.passes.autodiff.elementwise import *  # noqa: F401,F403
from ncc.passes.autodiff.matmul import *  # noqa: F401,F403
from ncc.passes.autodiff.conv import *  # noqa: F401,F403
from ncc.passes.autodiff.sparse import *  # noqa: F401,F403
from ncc.passes.autodiff.pool import *  # noqa: F401,F403
from ncc.passes.autodiff.reduce import *  # noqa: F401,F403
from ncc.passes.autodiff.softmax import *  # noqa: F401,F403
from ncc.passes.autodiff.normalization import *  # noqa: F401,F403
from ncc.passes.autodiff.shape import *  # noqa: F401,F403
from ncc.passes.autodiff.gather_scatter import *  # noqa: F401,F403
from ncc.passes.autodiff.resize import *  # noqa: F401,F403
from ncc.passes.autodiff.quant import *  # noqa: F401,F403
from ncc.passes.autodiff.engine import *  # noqa: F401,F403
from ncc.passes.autodiff.engine import VJP  # noqa: F401,E402
