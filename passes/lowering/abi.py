"""The kernel ABI: how loop-level kernels, their LLVM functions and the runtime agree.

Loop level (what `lower-to-loops` and `neuron-to-loops` produce, and
`lower-to-llvm` consumes): each kernel is a `func.func` whose arguments are all
memrefs and which returns nothing; it writes its outputs into output memrefs
(destination-passing style). Memrefs are row-major and contiguous (no layout
maps); only dimension 0 may be dynamic (`?`), and every dynamic dimension of a
kernel is the one run-time batch size. Intermediate buffers live in one arena
argument `memref<?xi8>`, taken with `memref.view` at byte offsets that are
`per_batch * batch + constant` (the static memory plan). Two attributes on the
`func.func` describe it:

    ncc.arg_roles   = ["input:x", "output:0", "weight:fc1_w", ..., "arena"]
    ncc.arena_bytes = array<i64: PER_BATCH, CONSTANT>

A role is `input:<name>`, `output:<name>`, `weight:<symbol>` (a module-level
`nn.weight`, whose data the runtime passes as a buffer so that it can be
updated in place) or `arena`. A neuron-level kernel's weights are one flat
buffer `weight:<net>.params` whose element k is the parameter named by
`ncc.param_names[k]` (`w0004`, `b04`, ...).

LLVM level (what `lower-to-llvm` produces): the kernel becomes
`llvm.func @name(ptr, ..., ptr, i64 batch)`, one `ptr` per memref argument in
the same order (all `noalias`: the runtime never passes overlapping buffers),
then always one `i64` batch size (ignored by kernels without a dynamic
dimension). It returns void.
"""

from __future__ import annotations

from dataclasses import dataclass

from xdsl.dialects.builtin import AnyFloat, ArrayAttr, DenseArrayBase, StringAttr, i64
from xdsl.dialects.func import FuncOp
from xdsl.ir import Attribute

ARG_ROLES = "ncc.arg_roles"


def element_bytes(t: Attribute) -> int:
    """Bytes of one element of a memref of element type `t` (an i1 takes a byte)."""
    width = t.bitwidth if isinstance(t, AnyFloat) else t.width.data
    return max(8, width) // 8

ARENA_BYTES = "ncc.arena_bytes"
PARAM_NAMES = "ncc.param_names"
ROLE_KINDS = ("input", "output", "weight", "arena")


@dataclass(frozen=True)
class ArgRole:
    kind: str  # input | output | weight | arena
    name: str  # the input/output name, the weight symbol; "" for the arena

    def __str__(self) -> str:
        return self.kind if self.kind == "arena" else f"{self.kind}:{self.name}"

    @classmethod
    def parse(cls, text: str) -> "ArgRole":
        kind, _, name = text.partition(":")
        if kind not in ROLE_KINDS or (kind == "arena") != (name == ""):
            raise ValueError(f"invalid kernel argument role '{text}'")
        return cls(kind, name)


@dataclass(frozen=True)
class KernelABI:
    """What a caller needs to know about one kernel."""

    name: str
    roles: tuple[ArgRole, ...]
    arena_per_batch: int = 0
    arena_constant: int = 0
    param_names: tuple[str, ...] = ()

    def arena_bytes(self, batch: int) -> int:
        return self.arena_per_batch * batch + self.arena_constant

    def attach(self, fn: FuncOp) -> None:
        """Record this ABI on a loop-level kernel."""
        fn.attributes[ARG_ROLES] = ArrayAttr([StringAttr(str(r)) for r in self.roles])
        fn.attributes[ARENA_BYTES] = DenseArrayBase.from_list(i64, [self.arena_per_batch,
                                                                   self.arena_constant])
        if self.param_names:
            fn.attributes[PARAM_NAMES] = ArrayAttr([StringAttr(n) for n in self.param_names])

    @classmethod
    def of(cls, fn: FuncOp) -> "KernelABI":
        """Read the ABI recorded on a loop-level kernel."""
        roles = fn.attributes.get(ARG_ROLES)
        if not isinstance(roles, ArrayAttr):
            raise ValueError(f"function @{fn.sym_name.data} is not a kernel: no {ARG_ROLES}")
        arena = fn.attributes.get(ARENA_BYTES)
        per_batch, constant = arena.get_values() if isinstance(arena, DenseArrayBase) else (0, 0)
        names = fn.attributes.get(PARAM_NAMES)
        return cls(
            fn.sym_name.data,
            tuple(ArgRole.parse(r.data) for r in roles.data),
            int(per_batch), int(constant),
            tuple(n.data for n in names.data) if isinstance(names, ArrayAttr) else (),
        )
