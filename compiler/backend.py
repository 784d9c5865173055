"""`ncc.backend`: ncc as a standard ONNX backend (`onnx.backend.base`), like
`onnxruntime.backend`, so that ONNX's own tooling (its backend test runner)
can drive ncc.

    import ncc.backend as backend
    rep = backend.prepare(model)                  # a ModelProto, its bytes, a .onnx path
    y, = rep.run([x])                              # outputs in graph-output order
    outs = backend.run_model(model, [x])
    outs = backend.run_node(node, [a, b])          # one NodeProto on these inputs
    backend.supports_device("CPU")                 # True (the only device)

Models are imported with `ncc.import_onnx` (an unsupported model raises its
NccError, listing every unsupported op) and compiled to native code with
`ncc.compile`. `prepare(model, mode="reference")` runs the numpy reference
interpreter instead (for triage: it tells a lowering bug from an import bug).
Other keyword options are `ncc.compile`'s: `fuse`, `cache`. An xDSL module may
be given in place of an ONNX model.

Specialization on constant inputs. ncc needs some operands at import time: the
axes of Reduce*/Squeeze/Unsqueeze, the shape of Reshape/Expand, Slice's
starts/ends/axes/steps, Split's sizes, Pad's pads, ... Models (ONNX's node
tests among them) often feed them as graph inputs. When the import fails only
because of that (the NccError's `needs_constant` names the graph inputs), the
rep `prepare` returns is *specializing*, as a JIT specializes on static
arguments: its `input_names` are still all the graph inputs, in order, and
`run` imports and compiles the model with the needed inputs' values as
constants (`ncc.import_onnx(model, constants=...)`), keeping one compiled
model per distinct value (dtype, shape and bytes; the last
`SPECIALIZATIONS_KEPT` are kept) and reusing it when the same values come
again. `rep.constant_names` lists the inputs it specializes on (it grows if a
specialized import needs more) and `rep.specializations` maps each key to its
prepared rep. An import that fails for any other reason raises at `prepare`;
an error that depends on the values (an axis out of range, say) is raised by
`run`.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any, Sequence

import numpy as np
from onnx.backend.base import Backend, BackendRep, Device, DeviceType, namedtupledict

import ncc
from ncc.diagnostics import NccError
from ncc.onnx import import_model, load_model
from ncc.reference import arg_names, result_names, select_function

MODES = ("native", "reference")
COMPILE_OPTIONS = ("fuse", "cache")
SPECIALIZATIONS_KEPT = 64  # compiled specializations a rep keeps (least recently used dropped)


def _check_options(mode: str, options: Mapping[str, Any]) -> None:
    if mode not in MODES:
        raise NccError(f"unknown mode '{mode}' (known: {', '.join(MODES)})")
    unknown = sorted(set(options) - set(COMPILE_OPTIONS))
    if unknown:
        raise NccError(f"unknown option(s) {', '.join(unknown)} "
                       f"(known: mode, {', '.join(COMPILE_OPTIONS)})")


class NccRep(BackendRep):
    """A prepared model: `run(inputs)` takes arrays in graph-input order (or a
    mapping by name, or one array) and returns the outputs in graph-output
    order, as a tuple that can also be indexed by output name."""

    def __init__(self, module: Any, mode: str = "native", **options: Any):
        _check_options(mode, options)
        f = select_function(module, None)
        self.mode = mode
        self.input_names, self.output_names = arg_names(f), result_names(f)
        self.module = module
        if mode == "native":
            self.model = ncc.compile(module, **options)
            self._run = self.model.run
        else:
            self._run = lambda feeds: ncc.reference.run(module, feeds)

    def run(self, inputs: Any, **kwargs: Any) -> tuple[Any, ...]:
        if isinstance(inputs, (np.ndarray, np.generic)):
            inputs = [inputs]
        if isinstance(inputs, Mapping):
            feeds = dict(inputs)
        else:
            inputs = list(inputs)
            if len(inputs) != len(self.input_names):
                raise NccError(f"the model takes {len(self.input_names)} input(s) "
                               f"({', '.join(self.input_names)}), got {len(inputs)}")
            feeds = dict(zip(self.input_names, inputs))
        outs = self._run(feeds)
        return namedtupledict("Outputs", self.output_names)(*outs)


def _array(name: str, value: Any) -> np.ndarray:
    try:
        return np.asarray(value)
    except Exception as e:  # noqa: BLE001 -- numpy raises several kinds here
        raise NccError(f"input '{name}' is not an array: {e}") from None


class SpecializingRep(NccRep):
    """A model ncc imports only once some graph inputs are known: each `run`
    compiles (or reuses) the model specialized on those inputs' values."""

    def __init__(self, model: Any, where: str, needs: Sequence[str], mode: str = "native",
                 **options: Any):
        _check_options(mode, options)
        graph = model.graph
        inits = {t.name for t in graph.initializer}
        self.mode, self.options = mode, options
        self._model, self._where = model, where
        self.input_names = [i.name for i in graph.input if i.name not in inits]
        self.output_names = [o.name for o in graph.output]
        self.constant_names = [n for n in self.input_names if n in needs]
        self.specializations: OrderedDict[tuple, NccRep] = OrderedDict()
        self._lock = threading.Lock()

    def _run(self, feeds: Mapping[str, Any]) -> list[Any]:
        if feeds.keys() != set(self.input_names):
            missing = [n for n in self.input_names if n not in feeds]
            unknown = [str(k) for k in feeds if k not in self.input_names]
            raise NccError(f"the model takes inputs {', '.join(self.input_names)}"
                           + (f"; missing: {', '.join(missing)}" if missing else "")
                           + (f"; unknown: {', '.join(unknown)}" if unknown else ""))
        rep = self.specialize(feeds)
        return rep._run({n: feeds[n] for n in rep.input_names})

    def specialize(self, feeds: Mapping[str, Any]) -> NccRep:
        """The rep for these values of the constant inputs: cached, or imported
        and compiled now (with more constant inputs if the import asks)."""
        with self._lock:
            while True:
                values = {n: _array(n, feeds[n]) for n in self.constant_names}
                key = tuple((n, v.dtype.str, v.shape, v.tobytes()) for n, v in values.items())
                rep = self.specializations.get(key)
                if rep is not None:
                    self.specializations.move_to_end(key)
                    return rep
                try:
                    module = import_model(self._model, self._where, values)
                except NccError as e:
                    more = [n for n in e.needs_constant if n not in self.constant_names]
                    if not more:
                        raise
                    self.constant_names = [n for n in self.input_names
                                           if n in more or n in self.constant_names]
                    continue
                rep = NccRep(module, self.mode, **self.options)
                self.specializations[key] = rep
                if len(self.specializations) > SPECIALIZATIONS_KEPT:
                    self.specializations.popitem(last=False)
                return rep


class NccBackend(Backend):
    @classmethod
    def is_compatible(cls, model: Any, device: str = "CPU", **kwargs: Any) -> bool:
        return cls.supports_device(device)

    @classmethod
    def prepare(cls, model: Any, device: str = "CPU", **kwargs: Any) -> NccRep:
        from xdsl.dialects.builtin import ModuleOp

        if not cls.supports_device(device):
            raise NccError(f"ncc runs on the CPU only, not on '{device}'")
        if not isinstance(model, ModuleOp):
            proto, where = load_model(model)
            try:
                model = import_model(proto, where)
            except NccError as e:
                if not e.needs_constant:
                    raise
                return SpecializingRep(proto, where, e.needs_constant, **kwargs)
        return NccRep(model, **kwargs)

    @classmethod
    def run_model(cls, model: Any, inputs: Any, device: str = "CPU", **kwargs: Any) -> tuple[Any, ...]:
        return cls.prepare(model, device, **kwargs).run(inputs)

    @classmethod
    def run_node(cls, node: Any, inputs: Any, device: str = "CPU",
                 outputs_info: Sequence[tuple[Any, tuple[int, ...]]] | None = None,
                 **kwargs: Any) -> tuple[Any, ...]:
        """Run one node: it is wrapped in a model whose inputs have the given
        arrays' types (the outputs' types are `outputs_info` or inferred)."""
        from onnx import helper

        super().run_node(node, inputs, device=device, outputs_info=outputs_info, **kwargs)
        opset = kwargs.pop("opset_version", None)
        if opset is None:
            import onnx

            opset = onnx.defs.onnx_opset_version()
        names = [n for n in node.input if n]  # "" marks an omitted optional input
        if isinstance(inputs, Mapping):
            inputs = [inputs[n] for n in names]
        arrays = [np.asarray(a) for a in ([inputs] if isinstance(inputs, np.ndarray) else inputs)]
        if len(arrays) != len(names):
            raise NccError(f"node '{node.name or node.op_type}' has {len(names)} input(s) "
                           f"({', '.join(names)}), got {len(arrays)} array(s)")

        def info(name: str, dtype: Any, shape: Sequence[int]) -> Any:
            return helper.make_tensor_value_info(name, helper.np_dtype_to_tensor_dtype(np.dtype(dtype)),
                                                 list(shape))
        outs = [info(n, *oi) if outputs_info else helper.make_empty_tensor_value_info(n)
                for n, oi in zip(node.output, outputs_info or [None] * len(node.output))]
        opsets = [helper.make_opsetid(node.domain, opset)]
        graph = helper.make_graph([node], f"run_node_{node.op_type}",
                                  [info(n, a.dtype, a.shape) for n, a in zip(names, arrays)], outs)
        model = helper.make_model(graph, opset_imports=opsets,
                                  ir_version=helper.find_min_ir_version_for(opsets))
        return cls.prepare(model, device, **kwargs).run(arrays)

    @classmethod
    def supports_device(cls, device: str) -> bool:
        try:
            return Device(device).type == DeviceType.CPU
        except Exception:  # an unparsable device string is not a device ncc has
            return False


is_compatible = NccBackend.is_compatible
prepare = NccBackend.prepare
run_model = NccBackend.run_model
run_node = NccBackend.run_node
supports_device = NccBackend.supports_device
