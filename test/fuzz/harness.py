"""The fuzz harness: inputs mutated from valid ones, for every frontend and for
run-time calls, and a driver that classifies what ncc did with each.

    ok         accepted (an input mutated into another valid one)
    error      an NccError: a one-line diagnostic
    traceback  any other exception escaping ncc's API
    crash      the worker process died (a signal: an abort, a segfault)
    hang       no answer within the timeout

Targets (`TARGETS`), each with the seeds it mutates and what it runs:

    adjacency  examples/*.txt, mutated as text     ncc.import_adjacency_text, layerize, lower-to-loops
    mlir       test/lit/**/*.mlir, mutated as text ncc.parse_module, its passes, printing
    onnx       onnx's test models, mutated         ncc.import_onnx, fuse, lower-to-loops
               as protobufs (attribute types and
               values, shapes, element types, ...)
    runtime    two compiled models, called with    CompiledModel.__call__ and .run
               wrong arguments

Inputs run in a worker process (multiprocessing, spawn), so that a crash or a
hang is seen and the worker restarted. `run_campaign` is deterministic for a
seed: the default test suite runs a short campaign, `python test/fuzz/campaign.py`
(or `pytest -m slow test/fuzz`) a long one, printing the table of outcomes.
"""

from __future__ import annotations

import multiprocessing
import random
import re
import traceback
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parents[2]
KINDS = ("ok", "error", "traceback", "crash", "hang")
HUGE = ["2147483648", "9223372036854775807", "18446744073709551616", "99999999999999999999", "-1", "0",
        "fffffffffffffffff", "7fffffffffffffff", "1e308", "nan", "-2147483649", "4294967296"]


# ---------------------------------------------------------------------------
# Text mutations (adjacency files, MLIR)


def mutate_text(rng: random.Random, text: str, tokens: list[str]) -> str:
    """One to three edits of `text`: a number made huge or negative, a token
    from `tokens` inserted, a line deleted, duplicated or swapped, a character
    flipped, the text cut short, a quote left open, nesting made deep."""
    for _ in range(rng.randint(1, 3)):
        lines = text.split("\n")
        kind = rng.randrange(10)
        if kind == 0 and (numbers := list(re.finditer(r"-?\d+(\.\d+)?", text))):
            m = rng.choice(numbers)
            text = text[:m.start()] + rng.choice(HUGE) + text[m.end():]
        elif kind == 1 and text:
            at = rng.randrange(len(text))
            text = text[:at] + rng.choice(tokens) + text[at:]
        elif kind == 2 and len(lines) > 1:
            del lines[rng.randrange(len(lines))]
            text = "\n".join(lines)
        elif kind == 3 and lines:
            at = rng.randrange(len(lines))
            lines.insert(at, lines[at])
            text = "\n".join(lines)
        elif kind == 4 and len(lines) > 1:
            i, j = rng.randrange(len(lines)), rng.randrange(len(lines))
            lines[i], lines[j] = lines[j], lines[i]
            text = "\n".join(lines)
        elif kind == 5 and text:
            at = rng.randrange(len(text))
            text = text[:at] + chr(rng.choice([0, 9, 34, 35, 37, 40, 41, 44, 45, 58, 60, 62, 64, 91, 93, 94, 123,
                                               125, 0xE9, 0x2028, 0xFFFD])) + text[at + 1:]
        elif kind == 6 and text:
            text = text[:rng.randrange(len(text))]
        elif kind == 7 and text:
            at = rng.randrange(len(text))
            text = text[:at] + '"' + "".join(rng.choice("ab\\ 1") for _ in range(rng.randint(1, 40))) + text[at:]
        elif kind == 8 and text:
            at = rng.randrange(len(text))
            depth = rng.choice([50, 300, 2000])
            opener = rng.choice(["tensor<", "[", "(", "{", "memref<"])
            text = text[:at] + opener * depth + text[at:]
        elif kind == 9 and text:
            at = rng.randrange(len(text))
            text = text[:at] + text[at:at + rng.randint(1, 60)] * rng.randint(2, 5) + text[at:]
    return text


ADJACENCY_TOKENS = [" ", "\n", "-", "#", "x", "0", "1", "fffffffffffffffff", "7fffffffffffffff", ":", ",",
                    "=", "tanh", "relu", "@", "1e400", "NaN", "\t", "[", "]", "->", "N", "b"]
MLIR_TOKENS = ["%0", "%x", "tensor<*xf32>", "tensor<?xf32>", "memref<f32>", "nn.weight_ref", "@t", ":",
               "->", "perm", "[18446744073709551616]", "axis 99999999999999999999", "{", "}", "(", ")",
               "builtin.module {", "func.func @g() {", "scf.for", "step %i", '"', "dense<", "0x7FC00000",
               "i1", "f64", "si8", "nn.constant", "activation", "\"nn.relu\"(", "^bb0", "loc(", "#map"]


# ---------------------------------------------------------------------------
# Targets


class Target:
    """seeds() (parent side), mutate(rng, seed) -> a picklable payload (parent
    side), run(payload) (worker side: raises what ncc raises)."""

    name = ""

    def seeds(self, quick: bool = False) -> list[Any]:
        """The valid inputs mutated (`quick`: a smaller set, fast to gather)."""
        raise NotImplementedError

    def mutate(self, rng: random.Random, seed: Any) -> Any:
        raise NotImplementedError

    @staticmethod
    def run(payload: Any) -> None:
        raise NotImplementedError


class Adjacency(Target):
    name = "adjacency"

    def seeds(self, quick=False) -> list[str]:
        return [p.read_text() for p in sorted((ROOT / "examples").glob("*.txt"))]

    def mutate(self, rng, seed):
        return mutate_text(rng, seed, ADJACENCY_TOKENS)

    @staticmethod
    def run(payload):
        import ncc

        module = ncc.import_adjacency_text(payload, "<fuzz>")
        ncc.run_passes(module, "layerize,lower-to-loops")


class Mlir(Target):
    name = "mlir"

    def seeds(self, quick=False) -> list[str]:
        texts = []
        for p in sorted((ROOT / "test" / "lit").rglob("*.mlir")):
            text = "\n".join(line for line in p.read_text().splitlines() if not line.lstrip().startswith("//"))
            if len(text) < 6000:
                texts.append(text)
        return texts

    def mutate(self, rng, seed):
        return mutate_text(rng, seed, MLIR_TOKENS)

    @staticmethod
    def run(payload):
        import ncc

        module = ncc.parse_module(payload, "<fuzz>")
        ncc.print_module(module)
        if "nn." in payload:
            ncc.run_passes(module, "fuse,lower-to-loops")


ATTRIBUTE_TYPES = ("INT", "INTS", "FLOAT", "FLOATS", "STRING", "STRINGS", "TENSOR")


def _odd_attribute(rng: random.Random, name: str):
    """An attribute named `name` of a random type and value."""
    import numpy as np
    from onnx import AttributeProto, helper, numpy_helper

    kind = rng.choice(ATTRIBUTE_TYPES)
    big = rng.choice([0, -1, 1, 3, 2 ** 31, 2 ** 62, -(2 ** 40)])
    value = {"INT": big, "INTS": [big] * rng.randint(0, 9), "FLOAT": rng.choice([0.0, -1.0, 1e30, float("nan")]),
             "FLOATS": [1.5] * rng.randint(0, 4), "STRING": rng.choice([b"", b"\xff\xfe", b"NOTSET", b"x" * 100]),
             "STRINGS": [b"a", b"\xff"], "TENSOR": numpy_helper.from_array(np.zeros((2, 3), np.float32))}[kind]
    return helper.make_attribute(name, value, attr_type=getattr(AttributeProto, kind))


class Onnx(Target):
    """The small models onnx ships as files (simple, pytorch-operator,
    pytorch-converted) and its node test models (those the conformance suite
    lists as passing), mutated: an attribute of another type or value, removed or added; an input
    or initializer dimension made huge, zero or symbolic; an element type
    changed; an input dropped; the opset or the domain changed; an
    initializer's data pointing at a missing external file."""

    name = "onnx"

    def seeds(self, quick=False) -> list[bytes]:
        import warnings

        import onnx

        data = Path(onnx.__file__).parent / "backend" / "test" / "data"
        models = [p.read_bytes() for kind in ("simple", "pytorch-operator", "pytorch-converted")
                  for p in sorted((data / kind).glob("test_*/model.onnx"))]
        if not quick:  # onnx's node test cases, generated in memory (about 5 s)
            from onnx.backend.test.case.node import collect_testcases

            listed = set((ROOT / "test" / "conformance" / "passing.txt").read_text().split())
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                cases = collect_testcases(None)
            models += [c.model.SerializeToString() for c in sorted(cases, key=lambda c: c.name) if c.name in listed]
        return [m for m in models if len(m) < 20000]

    def mutate(self, rng, seed):
        import onnx

        m = onnx.ModelProto()
        m.ParseFromString(seed)
        g = m.graph
        for _ in range(rng.randint(1, 2)):
            kind = rng.randrange(9)
            nodes = list(g.node)
            n = rng.choice(nodes) if nodes else None
            if kind == 0 and n is not None and n.attribute:  # an attribute of another type or value
                a = rng.choice(list(n.attribute))
                new = _odd_attribute(rng, a.name)
                a.CopyFrom(new)
            elif kind == 1 and n is not None and n.attribute:
                n.attribute.remove(rng.choice(list(n.attribute)))
            elif kind == 2 and n is not None:
                n.attribute.append(_odd_attribute(rng, rng.choice(["axis", "perm", "to", "body", "mode", "pads",
                                                                   "num_outputs", "kernel_shape", "xyz"])))
            elif kind == 3 and g.input:  # a dimension
                t = rng.choice(list(g.input)).type.tensor_type
                if t.shape.dim:
                    d = rng.choice(list(t.shape.dim))
                    choice = rng.choice([0, 2 ** 31, 2 ** 40, 1, "N"])
                    if isinstance(choice, str):
                        d.dim_param = choice
                    else:
                        d.dim_value = choice
            elif kind == 4 and g.initializer:
                t = rng.choice(list(g.initializer))
                if t.dims:
                    t.dims[rng.randrange(len(t.dims))] = rng.choice([0, 2 ** 31, 7, 1000])
            elif kind == 5 and g.input:
                rng.choice(list(g.input)).type.tensor_type.elem_type = rng.choice([0, 2, 8, 11, 14, 16, 99])
            elif kind == 6 and n is not None and n.input:
                n.input[rng.randrange(len(n.input))] = rng.choice(["", "missing", n.output[0] if n.output else ""])
            elif kind == 7:
                for o in m.opset_import:
                    o.version = rng.choice([1, 5, 99, o.version + 1])
                if n is not None and rng.random() < 0.5:
                    n.domain = rng.choice(["com.microsoft", "ai.onnx.ml", "x"])
            elif kind == 8 and g.initializer:
                t = rng.choice(list(g.initializer))
                t.data_location = onnx.TensorProto.EXTERNAL
                t.ClearField("raw_data")
                e = t.external_data.add()
                e.key, e.value = "location", "missing.bin"
        return m.SerializeToString()

    @staticmethod
    def run(payload):
        import ncc

        module = ncc.import_onnx(payload)
        ncc.run_passes(module, "fuse,lower-to-loops")


class Runtime(Target):
    """Two compiled models (an nn function of three inputs, a neuron net)
    called with wrong arguments: counts, names, types, shapes, dtypes, layouts,
    zero-stride views of a huge batch, feeds that are not a dict."""

    name = "runtime"

    def seeds(self, quick=False) -> list[int]:
        return [0]

    def mutate(self, rng, seed):
        return rng.randrange(2 ** 31)

    _models: dict = {}

    @staticmethod
    def run(payload):
        import numpy as np

        import ncc

        models = Runtime._models
        if not models:
            models["multi"] = ncc.compile(RUNTIME_MODEL, cache=False)
            models["net"] = ncc.compile(str(ROOT / "examples" / "seed_list.txt"), cache=False)
        rng = np.random.default_rng(payload)
        model = models["multi" if payload % 2 else "net"]
        names, shapes = list(model.input_names), model.input_shapes

        def value(shape):
            k = int(rng.integers(0, 12))
            if k == 0:
                return [None, 1.5, "x", [1.0, 2.0], (), {}, b"\x00" * 16, 123, object()][int(rng.integers(0, 9))]
            if k == 1:  # a zero-stride view of a huge batch
                return np.broadcast_to(np.float32(1), (2 ** 40, *[3 if d == "batch" else d for d in shape[1:]]))
            dims = [int(rng.integers(0, 40)) if isinstance(d, str) else d for d in shape]
            if k == 2 and dims:
                dims[-1] += 1
            dtype = [np.float32, np.float64, np.int64, bool, object, ">f4"][int(rng.integers(0, 6))]
            a = np.zeros(dims, dtype) if np.dtype(dtype).kind == "O" else rng.standard_normal(dims).astype(dtype)
            return a.T if k == 3 and a.ndim > 1 else a
        args = [value(shapes[i % len(shapes)]) for i in range(len(names) + int(rng.integers(-1, 2)))]
        how = int(rng.integers(0, 4))
        if how == 0:
            model(*args)
        elif how == 1:
            model.run(dict(zip(names, args)))
        elif how == 2:
            model.run(dict(zip(names, args)), [123, None, "y", names[0]][int(rng.integers(0, 4))])
        else:
            model.run([args, 123, None, "x"][int(rng.integers(0, 4))])


RUNTIME_MODEL = """
func.func @main(%a: tensor<?x3xf32>, %b: tensor<?x3xf32>, %i: tensor<2xi64>) -> tensor<?x2xf32> {
  %s = nn.add %a, %b : tensor<?x3xf32>, tensor<?x3xf32> -> tensor<?x3xf32>
  %g = nn.gather %s, %i axis 1 : tensor<?x3xf32>, tensor<2xi64> -> tensor<?x2xf32>
  func.return %g : tensor<?x2xf32>
}
"""

TARGETS: dict[str, type[Target]] = {t.name: t for t in (Adjacency, Mlir, Onnx, Runtime)}


# ---------------------------------------------------------------------------
# The worker and the driver


def signature(e: BaseException) -> str:
    """Exception type, the innermost frame in ncc's own code, the message's start."""
    frames = traceback.extract_tb(e.__traceback__)
    ours = [f for f in frames if "/test/fuzz/" not in f.filename and ("/ncc/" in f.filename or "/work" in f.filename
                                                                        or "site-packages" not in f.filename)]
    where = ours[-1] if ours else (frames[-1] if frames else None)
    at = f"{Path(where.filename).name}:{where.name}" if where else "?"
    return f"{type(e).__name__} at {at}: {str(e).splitlines()[0][:100] if str(e) else ''}"


def _worker(conn) -> None:
    from ncc import NccError

    while True:
        msg = conn.recv()
        if msg is None:
            return
        target, payload = msg
        try:
            TARGETS[target].run(payload)
            conn.send(("ok", ""))
        except NccError as e:
            text = str(e)
            if "internal error" in text:  # the importer's last line caught what a rule did not foresee
                conn.send(("traceback", "internal: " + re.sub(r"^.*?internal error", "", text)[:200]))
            elif "\n" in text.strip():  # a diagnostic is one line (not a repr inside)
                conn.send(("traceback", "multi-line: " + text[:200]))
            else:
                conn.send(("error", text[:300]))
        except Exception as e:  # noqa: BLE001 -- classifying every escape is the point
            conn.send(("traceback", signature(e)))


@dataclass
class Outcome:
    target: str
    kind: str
    detail: str
    payload: Any = field(repr=False, default=None)


class Campaign:
    """Runs inputs in a worker process, restarting it after a crash or a hang."""

    def __init__(self, timeout: float = 10.0):
        self.timeout = timeout
        self.ctx = multiprocessing.get_context("spawn")
        self.proc = None
        self.conn = None

    def _start(self) -> None:
        parent, child = self.ctx.Pipe()
        self.proc = self.ctx.Process(target=_worker, args=(child,), daemon=True)
        self.proc.start()
        self.conn = parent

    def _stop(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.join()
        self.proc = self.conn = None

    def close(self) -> None:
        if self.proc is not None and self.proc.is_alive():
            try:
                self.conn.send(None)
                self.proc.join(5)
            except OSError:
                pass
        self._stop()

    def run(self, target: str, payload: Any) -> Outcome:
        if self.proc is None or not self.proc.is_alive():
            self._start()
        try:
            self.conn.send((target, payload))
            if self.conn.poll(self.timeout):
                kind, detail = self.conn.recv()
                return Outcome(target, kind, detail, payload)
        except (EOFError, OSError):  # the worker died mid-answer
            self.proc.join(1)
        alive = self.proc.is_alive()
        code = self.proc.exitcode
        self._stop()
        if alive:
            return Outcome(target, "hang", f"no answer in {self.timeout:g} s", payload)
        return Outcome(target, "crash", f"exit code {code}", payload)


def run_campaign(targets: list[str], per_target: int, seed: int = 0, timeout: float = 10.0,
                 progress: Callable[[Outcome], None] | None = None, quick: bool = False) -> list[Outcome]:
    """`per_target` mutated inputs for each target, from `seed` (`quick`: from the smaller seed sets)."""
    campaign = Campaign(timeout)
    outcomes: list[Outcome] = []
    try:
        for name in targets:
            target = TARGETS[name]()
            seeds = target.seeds(quick)
            rng = random.Random(f"{seed}:{name}")
            for _ in range(per_target):
                payload = target.mutate(rng, rng.choice(seeds))
                outcome = campaign.run(name, payload)
                outcomes.append(outcome)
                if progress:
                    progress(outcome)
    finally:
        campaign.close()
    return outcomes


def table(outcomes: list[Outcome]) -> str:
    """Outcomes per target and kind, then each distinct traceback, crash and hang signature."""
    counts = Counter((o.target, o.kind) for o in outcomes)
    targets = sorted({o.target for o in outcomes})
    lines = [f"{'target':10s}" + "".join(f"{k:>11s}" for k in ("inputs", *KINDS))]
    for t in targets:
        lines.append(f"{t:10s}{sum(counts[t, k] for k in KINDS):11d}" + "".join(f"{counts[t, k]:11d}" for k in KINDS))
    lines.append(f"{'total':10s}{len(outcomes):11d}" + "".join(
        f"{sum(counts[t, k] for t in targets):11d}" for k in KINDS))
    bad = Counter((o.target, o.kind, o.detail) for o in outcomes if o.kind in ("traceback", "crash", "hang"))
    if bad:
        lines.append("")
        lines.append(f"{len(bad)} signatures:")
        for (t, k, d), n in bad.most_common():
            lines.append(f"  {n:5d}  {t:9s} {k:9s} {d}")
    return "\n".join(lines)
