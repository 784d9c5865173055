"""ONNX conformance: ONNX's own backend test cases run through `ncc.backend`.

    python test/conformance/onnx_conformance.py                 # everything, native code
    python test/conformance/onnx_conformance.py -k 'conv|gemm'  # names matching a regex
    python test/conformance/onnx_conformance.py --kind node --mode reference
    python test/conformance/onnx_conformance.py --check         # exit 1 if a listed case regressed
    python test/conformance/onnx_conformance.py --update        # rewrite the table of passing cases

The cases are ONNX's node test cases (generated in memory by the installed
onnx: `onnx.backend.test.case.node.collect_testcases`), its `pytorch-converted`,
`pytorch-operator` and `simple` model directories, and the `light` models
(`onnx/backend/test/data/light`). Outputs are compared as ONNX's runner does
(same shape and dtype, `assert_allclose` at the case's rtol/atol).

Each case ends in one of:
  pass         every data set matches;
  fail         a wrong result, a crash, a timeout or an internal error (a bug);
  unsupported  ncc refused the model with a clear NccError (an op, attribute or
               element type it does not support): no result was produced
               (a specializing rep of ncc.backend imports the model once it
               has the first data set's constant inputs: a refusal then too).

`passing.txt` next to this file is the table of cases known to pass (as
onnx-mlir keeps one): `--check` fails when one of them does not, so
"supported" means "has a passing test". Cases run in worker processes, so a
crash in native code is a `fail` of that case, not of the run.
"""

from __future__ import annotations

import argparse
import collections
import glob
import json
import os
import re
import select
import subprocess
import sys
import threading
import time
import traceback
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
TABLE = os.path.join(HERE, "passing.txt")
KINDS = ("node", "pytorch-converted", "pytorch-operator", "simple", "light")
FLOAT_TYPES = (1, 11)  # TensorProto.FLOAT, DOUBLE


@dataclass
class Case:
    name: str
    kind: str
    rtol: float
    atol: float
    load: Any = field(repr=False)  # () -> (ModelProto, [(inputs, outputs), ...])
    op: str = ""


# ---------------------------------------------------------------------------
# Collecting cases


def _data_dir() -> str:
    import onnx

    return os.path.join(os.path.dirname(onnx.__file__), "backend", "test", "data")


def _read_proto(path: str) -> Any:
    import onnx
    from onnx import numpy_helper

    raw = open(path, "rb").read()
    for proto, convert in ((onnx.TensorProto, numpy_helper.to_array),
                           (onnx.SequenceProto, numpy_helper.to_list),
                           (onnx.OptionalProto, numpy_helper.to_optional)):
        p = proto()
        try:
            p.ParseFromString(raw)
        except Exception:
            continue
        if p.ListFields():
            return convert(p)
    raise ValueError(f"cannot read {path}")


def _dir_loader(model_dir: str):
    def load():
        import onnx

        model = onnx.load(os.path.join(model_dir, "model.onnx"))
        sets = []
        for d in sorted(glob.glob(os.path.join(model_dir, "test_data_set_*"))):
            ins = [_read_proto(p) for p in sorted(glob.glob(os.path.join(d, "input_*.pb")),
                                                  key=lambda p: int(p.rsplit("_", 1)[1][:-3]))]
            outs = [_read_proto(p) for p in sorted(glob.glob(os.path.join(d, "output_*.pb")),
                                                   key=lambda p: int(p.rsplit("_", 1)[1][:-3]))]
            sets.append((ins, outs))
        return model, sets
    return load


def _light_loader(path: str):
    """The light models' weights are zeros (ConstantOfShape), so their stored
    output is what any input gives; the input is random, as in onnx's runner."""
    def load():
        import onnx
        from onnx import numpy_helper

        model = onnx.load(path)
        inits = {t.name for t in model.graph.initializer}
        inp = next(i for i in model.graph.input if i.name not in inits)
        shape = [d.dim_value or 1 for d in inp.type.tensor_type.shape.dim]
        x = np.random.default_rng(0).normal(size=shape).astype(np.float32)
        want = numpy_helper.to_array(onnx.load_tensor(path.replace(".onnx", "_output_0.pb")))
        return model, [([x], [want])]
    return load


def _array(value: Any) -> Any:
    """A node case's data as its test_data_set file would give it: some cases
    hold TensorProtos (the exact bits of float16, float8, ...), read as arrays."""
    if type(value).__name__ == "TensorProto":
        from onnx import numpy_helper

        return numpy_helper.to_array(value)
    return value


def _op_names() -> dict[str, str]:
    import onnx

    return {s.name.lower(): s.name for s in onnx.defs.get_all_schemas_with_history()}


def _op_of(name: str, model: Any, ops: dict[str, str]) -> str:
    """The op a node test is about: its single node's type, else the op whose
    name is the longest prefix of the test name (`test_softmax_axis_0_expanded`
    -> Softmax)."""
    nodes = model.graph.node
    if len(nodes) == 1:
        return nodes[0].op_type
    flat = name[len("test_"):].replace("_", "").lower()
    best = max((k for k in ops if flat.startswith(k)), key=len, default=None)
    return ops[best] if best else (nodes[0].op_type if nodes else "?")


def collect(kinds: tuple[str, ...] = KINDS) -> dict[str, Case]:
    cases: dict[str, Case] = {}
    if "node" in kinds:
        from onnx.backend.test.case.node import collect_testcases

        ops = _op_names()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            node_cases = collect_testcases(None)
        for t in node_cases:
            sets = [([_array(x) for x in i], [_array(x) for x in o]) for i, o in t.data_sets]
            cases[t.name] = Case(t.name, "node", t.rtol, t.atol,
                                 (lambda m=t.model, s=sets: (m, s)), _op_of(t.name, t.model, ops))
    for kind in ("pytorch-converted", "pytorch-operator", "simple"):
        if kind in kinds:
            for d in sorted(glob.glob(os.path.join(_data_dir(), kind, "test_*"))):
                if os.path.exists(os.path.join(d, "model.onnx")):
                    rtol, atol = 1e-3, 1e-7
                    if os.path.exists(os.path.join(d, "data.json")):
                        data = json.load(open(os.path.join(d, "data.json")))
                        rtol, atol = data.get("rtol", rtol), data.get("atol", atol)
                    name = os.path.basename(d)
                    cases[name] = Case(name, kind, rtol, atol, _dir_loader(d), kind)
    if "light" in kinds:
        from onnx.backend.test.case.model import collect_testcases as model_cases

        tols = {t.model_name: (t.rtol, t.atol) for t in model_cases() if t.kind == "real"}
        for path in sorted(glob.glob(os.path.join(_data_dir(), "light", "light_*.onnx"))):
            model_name = os.path.basename(path)[len("light_"):-len(".onnx")]
            rtol, atol = tols.get(model_name, (1e-3, 1e-7))
            cases[f"test_{model_name}"] = Case(f"test_{model_name}", "light", rtol, atol,
                                               _light_loader(path), "light")
    return cases


def float_kind(model: Any) -> str:
    """'float' when every graph input and output is a float32/float64 tensor,
    'float-output' when only the outputs are (e.g. int64 axes or labels in),
    else ''."""
    def floats(vals):
        return all(v.type.HasField("tensor_type") and v.type.tensor_type.elem_type in FLOAT_TYPES
                   for v in vals)
    if not floats(model.graph.output):
        return ""
    return "float" if floats(model.graph.input) else "float-output"


# ---------------------------------------------------------------------------
# Running one case


def _compare(want: list, got: list, rtol: float, atol: float) -> None:
    """ONNX's runner's comparison (onnx.backend.test.runner.assert_similar_outputs)."""
    if len(got) != len(want):
        raise AssertionError(f"{len(got)} outputs, expected {len(want)}")
    for i, (w, g) in enumerate(zip(want, got)):
        if isinstance(w, (list, tuple)):
            _compare(list(w), list(g), rtol, atol)
            continue
        g = np.asarray(g)
        if g.shape != w.shape:
            raise AssertionError(f"output {i} has shape {g.shape}, expected {w.shape}")
        if w.dtype == object:
            np.testing.assert_array_equal(g, w)
            continue
        if g.dtype != w.dtype:
            raise AssertionError(f"output {i} has dtype {g.dtype}, expected {w.dtype}")
        np.testing.assert_allclose(g, w, rtol=rtol, atol=atol, err_msg=f"output {i}")


def run_case(case: Case, mode: str) -> dict[str, Any]:
    """{"name", "status", "detail", "float", "seconds"} for one case."""
    import ncc.backend as backend
    from ncc.diagnostics import NccError

    start = time.perf_counter()
    result: dict[str, Any] = {"name": case.name, "float": ""}
    try:
        model, sets = case.load()
        result["float"] = float_kind(model)
        try:
            rep = backend.prepare(model, mode=mode, cache=False) if mode == "native" \
                else backend.prepare(model, mode=mode)
            if hasattr(rep, "specialize"):  # imports and compiles at its first run: a refusal there too
                rep.specialize(dict(zip(rep.input_names, sets[0][0])) if sets else {})
        except NccError as e:
            result.update(status="unsupported", detail=str(e).splitlines()[0])
            return result
        for inputs, outputs in sets:
            with warnings.catch_warnings(), np.errstate(all="ignore"):
                warnings.simplefilter("ignore")
                got = rep.run(inputs)
            _compare(outputs, list(got), case.rtol, case.atol)
        result.update(status="pass", detail="")
    except AssertionError as e:
        result.update(status="fail", detail="wrong result: " + " ".join(str(e).split())[:300])
    except Exception as e:  # a bug of ncc's: any exception other than a clear refusal
        from ncc.diagnostics import NccError as _E

        where = traceback.extract_tb(e.__traceback__)[-1]
        kind = "error" if isinstance(e, _E) else f"{type(e).__name__} at " \
            f"{os.path.basename(where.filename)}:{where.lineno}"
        result.update(status="fail", detail=f"{kind}: {' '.join(str(e).split())[:300]}")
    finally:
        result["seconds"] = round(time.perf_counter() - start, 3)
    return result


# ---------------------------------------------------------------------------
# Workers: one process per job; a case that kills its worker is a `fail`.


def _worker(kinds: tuple[str, ...], mode: str) -> None:
    cases = collect(kinds)
    print("ready", flush=True)
    for line in sys.stdin:
        print(json.dumps(run_case(cases[line.strip()], mode)), flush=True)


class _Worker:
    def __init__(self, kinds: tuple[str, ...], mode: str):
        cmd = [sys.executable, os.path.abspath(__file__), "--worker", "--mode", mode,
               "--kind", ",".join(kinds)]
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.DEVNULL, text=True, bufsize=1)
        if self._readline(600) != "ready":
            raise RuntimeError("a conformance worker did not start")

    def _readline(self, timeout: float) -> str | None:
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        if not ready:
            return None
        line = self.proc.stdout.readline()
        return line.strip() if line else None

    def run(self, name: str, timeout: float) -> dict[str, Any]:
        self.proc.stdin.write(name + "\n")
        self.proc.stdin.flush()
        line = self._readline(timeout)
        if line:
            return json.loads(line)
        self.proc.kill()
        code = self.proc.wait()
        why = f"timed out after {timeout:.0f} s" if code == -9 else f"worker died (exit code {code})"
        return {"name": name, "status": "fail", "detail": f"crash: {why}", "float": "", "seconds": timeout}

    def alive(self) -> bool:
        return self.proc.poll() is None

    def close(self) -> None:
        if self.alive():
            self.proc.stdin.close()
            self.proc.wait()


def run_cases(names: list[str], kinds: tuple[str, ...], mode: str, jobs: int,
              timeout: float, progress: bool = False) -> list[dict[str, Any]]:
    todo = list(reversed(names))
    results: list[dict[str, Any]] = []
    lock = threading.Lock()

    def drive() -> None:
        worker = _Worker(kinds, mode)
        while True:
            with lock:
                if not todo:
                    break
                name = todo.pop()
            r = worker.run(name, timeout)
            with lock:
                results.append(r)
                if progress:
                    print(f"\r{len(results)}/{len(names)}", end="", file=sys.stderr, flush=True)
            if not worker.alive():
                worker = _Worker(kinds, mode)
        worker.close()

    threads = [threading.Thread(target=drive) for _ in range(max(1, min(jobs, len(names))))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if progress:
        print(file=sys.stderr)
    order = {n: i for i, n in enumerate(names)}
    return sorted(results, key=lambda r: order[r["name"]])


# ---------------------------------------------------------------------------
# The table of passing cases


def read_table(path: str = TABLE) -> list[str]:
    if not os.path.exists(path):
        return []
    return [ln.strip() for ln in open(path) if ln.strip() and not ln.startswith("#")]


def write_table(passing: dict[str, list[str]], path: str = TABLE) -> None:
    with open(path, "w") as f:
        f.write("# ONNX backend test cases that pass natively through ncc.backend, by kind.\n"
                "# Checked by test/test_conformance.py; rewritten by\n"
                "#   python test/conformance/onnx_conformance.py --update\n")
        for kind in KINDS:
            if passing.get(kind):
                f.write(f"\n# {kind}\n")
                f.writelines(n + "\n" for n in sorted(passing[kind]))


# ---------------------------------------------------------------------------
# Report


def report(results: list[dict[str, Any]], cases: dict[str, Case], out=sys.stdout) -> dict[str, Any]:
    by_op: dict[tuple[str, str], collections.Counter] = collections.defaultdict(collections.Counter)
    totals: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    for r in results:
        c = cases[r["name"]]
        by_op[(c.kind, c.op)][r["status"]] += 1
        totals[c.kind][r["status"]] += 1
        if c.kind == "node" and r.get("float"):  # float outputs (and maybe inputs)
            totals["node, float out"][r["status"]] += 1
            if r["float"] == "float":
                totals["node, float in+out"][r["status"]] += 1
    print(f"{'kind':18} {'op':28} {'pass':>5} {'fail':>5} {'unsup':>5}", file=out)
    for (kind, op), n in sorted(by_op.items()):
        print(f"{kind:18} {op:28} {n['pass']:5} {n['fail']:5} {n['unsupported']:5}", file=out)
    print(file=out)
    for kind, n in totals.items():
        total = sum(n.values())
        print(f"{kind:18} pass {n['pass']:4} / {total:4}   fail {n['fail']:4}   "
              f"unsupported {n['unsupported']:4}", file=out)
    return {k: dict(v) for k, v in totals.items()}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-k", "--filter", default="", help="run the cases whose name matches this regex")
    ap.add_argument("--kind", default=",".join(KINDS), help=f"comma-separated kinds (default: all of {', '.join(KINDS)})")
    ap.add_argument("--mode", choices=("native", "reference"), default="native",
                    help="native code (default) or ncc's numpy reference interpreter")
    ap.add_argument("--table-only", action="store_true", help="run only the cases listed in passing.txt")
    ap.add_argument("-j", "--jobs", type=int, default=os.cpu_count() or 1, help="worker processes")
    ap.add_argument("--timeout", type=float, default=300.0, help="seconds per case before it counts as failed")
    ap.add_argument("--check", action="store_true", help="exit 1 if a case in passing.txt does not pass")
    ap.add_argument("--update", action="store_true",
                    help="rewrite passing.txt with the cases that pass (of the kinds run)")
    ap.add_argument("--failures", action="store_true", help="list each failing and unsupported case with its reason")
    ap.add_argument("--json", metavar="FILE", help="write every case's result to FILE")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    kinds = tuple(k for k in args.kind.split(",") if k)
    bad = [k for k in kinds if k not in KINDS]
    if bad:
        ap.error(f"unknown kind(s) {', '.join(bad)} (known: {', '.join(KINDS)})")
    if args.worker:
        _worker(kinds, args.mode)
        return 0
    if args.update and (args.filter or args.table_only or args.mode != "native"):
        ap.error("--update needs a native run of whole kinds (no -k, --table-only or --mode)")

    cases = collect(kinds)
    names = [n for n in cases if re.search(args.filter, n)]
    if args.table_only:
        listed = set(read_table())
        names = [n for n in names if n in listed]
    results = run_cases(names, kinds, args.mode, args.jobs, args.timeout, progress=sys.stderr.isatty())
    report(results, cases)
    if args.failures:
        print()
        for r in results:
            if r["status"] != "pass":
                print(f"{r['status']:12} {r['name']}: {r['detail']}")
    if args.json:
        json.dump(results, open(args.json, "w"), indent=1)
    status = {r["name"]: r["status"] for r in results}
    if args.update:  # the kinds not run keep their entries
        every = collect()
        passing: dict[str, list[str]] = collections.defaultdict(list)
        for n in read_table():
            if n in every and every[n].kind not in kinds:
                passing[every[n].kind].append(n)
        for r in results:
            if r["status"] == "pass":
                passing[cases[r["name"]].kind].append(r["name"])
        write_table(passing)
        print(f"\nwrote {sum(map(len, passing.values()))} passing cases to {os.path.relpath(TABLE)}")
    if args.check:
        regressed = [n for n in read_table() if n in status and status[n] != "pass"]
        for n in regressed:
            r = next(r for r in results if r["name"] == n)
            print(f"REGRESSED {n}: {r['status']}: {r['detail']}")
        if regressed:
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
