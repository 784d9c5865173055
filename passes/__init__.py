"""ncc's passes. `ALL_PASSES` maps each pass name (as used by ncc-opt) to its class."""

from __future__ import annotations

from typing import Callable

from xdsl.passes import ModulePass


def _layerize() -> type[ModulePass]:
    from ncc.passes.layerize import LayerizePass

    return LayerizePass


def _fuse() -> type[ModulePass]:
    from ncc.passes.fuse import FusePass

    return FusePass


# Loaded lazily so that `ncc-opt --help` stays fast and a broken pass cannot
# break the others.
ALL_PASSES: dict[str, Callable[[], type[ModulePass]]] = {
    "layerize": _layerize,
    "fuse": _fuse,
}
