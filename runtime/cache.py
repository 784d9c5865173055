"""The on-disk compile cache: native object code keyed by what produced it.

    cache = CompileCache()                 # $NCC_CACHE_DIR, else ~/.cache/ncc
    key = cache.key(loop_ir_text, options)
    entry = cache.load(key)                # (object_code, meta) or None
    cache.store(key, object_code, meta)

The key is the sha256 of the loop-level IR text (weights elided: kernels take
weights as buffers, so their values never change the code), the compile
options, and everything else the object code depends on: the ncc version and a
fingerprint of the sources that lower loops to native code, the llvmlite and
LLVM versions, and the host CPU name and features. An entry is one file
`<key>.ncc`: a magic line, a JSON header (format version, key, sha256 and size
of the code, the caller's metadata such as the kernel ABI) and the object code.
`ncc.compile` also stores, under a key of the imported nn IR (and
`sources_fingerprint()`), what lowering made besides the code -- the kernel's
ABI and argument types, the recipes of its derived weights (as the payload)
and the key of its object code -- so that a cached compile skips the passes.

Concurrency: an entry is written to a temporary file in the cache directory and
moved into place with `os.replace`, which is atomic on POSIX and Windows, so a
reader sees either no entry or a whole one, and processes compiling the same
model at once each write a valid entry (the last one wins; they are equal).
A truncated, corrupt or mismatching entry is ignored (counted in
`stats["corrupt"]`) and rebuilt by the caller.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from functools import lru_cache
from pathlib import Path
from typing import Any

MAGIC = b"ncc-object-cache\n"
FORMAT = 1
SUFFIX = ".ncc"

# Sources whose changes change the object code for the same loop-level IR.
_CODEGEN_SOURCES = ("passes/lowering/loops_to_llvm.py", "passes/lowering/expand_math.py",
                    "runtime/engine.py", "runtime/cache.py")


def default_directory() -> Path:
    env = os.environ.get("NCC_CACHE_DIR")
    return Path(env) if env else Path.home() / ".cache" / "ncc"


@lru_cache(maxsize=1)
def environment_fingerprint() -> dict[str, str]:
    """Everything besides the IR and options that the object code depends on."""
    import llvmlite
    import llvmlite.binding as llvm

    from importlib.metadata import PackageNotFoundError, version

    try:
        ncc_version = version("ncc")
    except PackageNotFoundError:  # run from a checkout without installing
        ncc_version = "unknown"
    root = Path(__file__).resolve().parent.parent
    sources = hashlib.sha256()
    for rel in _CODEGEN_SOURCES:
        path = root / rel
        sources.update(rel.encode() + b"\0" + (path.read_bytes() if path.exists() else b""))
    return {
        "format": str(FORMAT),
        "ncc": ncc_version,
        "ncc_codegen_sources": sources.hexdigest(),
        "llvmlite": llvmlite.__version__,
        "llvm": ".".join(map(str, llvm.llvm_version_info)),
        "cpu": llvm.get_host_cpu_name(),
        "features": llvm.get_host_cpu_features().flatten(),
    }


@lru_cache(maxsize=1)
def sources_fingerprint() -> str:
    """The sha256 of every ncc source file: a compile cached from the nn level
    (imported IR -> kernel) depends on all of them, not just the code generator."""
    root = Path(__file__).resolve().parent.parent
    h = hashlib.sha256()
    for path in sorted(root.glob("*/**/*.py")):
        rel = path.relative_to(root).as_posix()
        if rel.split("/")[0] in ("compiler", "dialects", "passes", "runtime"):
            h.update(rel.encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()


class CompileCache:
    """A directory of compiled kernels; `stats` counts hits, misses, stores and
    corrupt entries seen by this instance."""

    def __init__(self, directory: str | os.PathLike | None = None):
        self.directory = Path(directory) if directory is not None else default_directory()
        self.stats = {"hits": 0, "misses": 0, "stores": 0, "corrupt": 0}

    @staticmethod
    def key(ir_text: str, options: dict[str, Any]) -> str:
        h = hashlib.sha256()
        for part in (json.dumps(environment_fingerprint(), sort_keys=True),
                     json.dumps(options, sort_keys=True, default=str), ir_text):
            h.update(part.encode())
            h.update(b"\0")
        return h.hexdigest()

    def path(self, key: str) -> Path:
        return self.directory / (key + SUFFIX)

    def load(self, key: str) -> tuple[bytes, dict[str, Any]] | None:
        try:
            blob = self.path(key).read_bytes()
        except OSError:
            self.stats["misses"] += 1
            return None
        entry = _decode(blob, key)
        if entry is None:
            self.stats["corrupt"] += 1
            self.stats["misses"] += 1
            return None
        self.stats["hits"] += 1
        return entry

    def store(self, key: str, code: bytes, meta: dict[str, Any]) -> bool:
        """Write an entry atomically; a cache that cannot be written (read-only
        directory, full disk) only costs the next compile its time: False."""
        header = json.dumps({"format": FORMAT, "key": key, "size": len(code),
                             "sha256": hashlib.sha256(code).hexdigest(), "meta": meta}).encode()
        blob = MAGIC + len(header).to_bytes(8, "little") + header + code
        tmp = None
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=f".{key[:16]}.", suffix=".tmp", dir=self.directory)
            with os.fdopen(fd, "wb") as f:
                f.write(blob)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path(key))
        except OSError:
            if tmp is not None:
                Path(tmp).unlink(missing_ok=True)
            return False
        self.stats["stores"] += 1
        return True


def _decode(blob: bytes, key: str) -> tuple[bytes, dict[str, Any]] | None:
    """The entry in `blob`, or None if it is not a whole, matching entry."""
    if not blob.startswith(MAGIC) or len(blob) < len(MAGIC) + 8:
        return None
    at = len(MAGIC)
    n = int.from_bytes(blob[at:at + 8], "little")
    try:
        header = json.loads(blob[at + 8:at + 8 + n])
    except (ValueError, UnicodeDecodeError):
        return None
    code = blob[at + 8 + n:]
    ok = (isinstance(header, dict) and header.get("format") == FORMAT and header.get("key") == key
          and header.get("size") == len(code)
          and header.get("sha256") == hashlib.sha256(code).hexdigest()
          and isinstance(header.get("meta"), dict))
    return (code, header["meta"]) if ok else None
