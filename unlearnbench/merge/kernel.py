"""The fused merge kernel (kernel.c): compiled once per machine with the system C compiler,
cached, loaded with ctypes.

No compiler is a supported setup, not an error: the chunked engine then reduces in torch
(slower, bitwise the same) and says so — ``kernel_status()`` gives the reason, and
``unlearnbench merge`` reports ``"kernel": "torch"`` with it. ``UNLEARNBENCH_KERNEL=torch``
forces the torch path (for comparisons); ``UNLEARNBENCH_KERNEL=c`` makes a failed build fatal.
"""
from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from ..errors import ConfigError

SOURCE = Path(__file__).with_name("kernel.c")
# -ffp-contract=off: no fused multiply-add, so results are bitwise torch's on every compiler.
FLAGS = ["-O3", "-march=native", "-ffp-contract=off", "-fno-math-errno", "-shared", "-fPIC"]

_lib: ctypes.CDLL | None = None
_why: str = ""


def _cpu_tag() -> str:
    """-march=native code is tied to the CPU it was built on: the cache key names its model and flags."""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        lines = []
    ident = [ln for ln in lines if ln.startswith(("model name", "flags"))][:2]
    return hashlib.sha256("\n".join([platform.machine(), *ident]).encode()).hexdigest()[:12]


def _cache_dir() -> Path:
    env = os.environ.get("UNLEARNBENCH_KERNEL_DIR")
    if env:
        return Path(env)
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("unlearnbench")) / "kernels"


def _build() -> ctypes.CDLL:
    cc = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
    if not cc:
        raise OSError("no C compiler found (set CC, or install gcc)")
    src = SOURCE.read_bytes()
    key = hashlib.sha256(src + " ".join([cc, *FLAGS, _cpu_tag()]).encode()).hexdigest()[:16]
    out = _cache_dir() / f"merge_kernel-{key}.so"
    if not out.exists():
        out.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(suffix=".so", dir=out.parent)
        os.close(fd)
        try:
            r = subprocess.run([cc, *FLAGS, str(SOURCE), "-o", tmp, "-lm"], capture_output=True, text=True)
            if r.returncode != 0:
                raise OSError(f"{cc} failed to build {SOURCE.name}: {r.stderr.strip()[:500]}")
            os.replace(tmp, out)  # atomic: a concurrent build or an interrupted one never leaves half a file
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
    lib = ctypes.CDLL(str(out))
    f = lib.ub_merge_f32
    f.restype = ctypes.c_int
    f.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.POINTER(ctypes.c_uint64), ctypes.c_void_p, ctypes.c_int64,
                  ctypes.c_void_p]
    return lib


# kernel.c's op codes (its enum), by the names reducers give as ``fused_op`` (engine.FusedReducer).
# consensus_* and conflict_mean are NegMerge's rule and its §4.7 variants: a new variant means a new
# op here and in kernel.c (a known wart, code-review-2 §3; left as is when merge/ was formed).
OPS = {"sum_mean": 0, "consensus_mean": 1, "conflict_mean": 2, "consensus_min_mag": 3, "consensus_max_mag": 4,
       "consensus_min": 5, "consensus_max": 6, "absmax": 7}


def kernel() -> ctypes.CDLL | None:
    """The loaded kernel, or None (with the reason in ``kernel_status()``) when it cannot be used."""
    global _lib, _why
    mode = os.environ.get("UNLEARNBENCH_KERNEL", "auto")
    if mode not in ("auto", "c", "torch"):
        raise ConfigError(f"UNLEARNBENCH_KERNEL must be auto, c or torch, not {mode!r}")
    if mode == "torch":
        return None
    if _lib is None and not _why:
        try:
            _lib = _build()
        except OSError as e:
            _why = str(e)
            print(f"unlearnbench: fused merge kernel unavailable ({_why}); merging in torch, bitwise the same "
                  "but slower", file=sys.stderr)
    if _lib is None and mode == "c":
        raise ConfigError(f"UNLEARNBENCH_KERNEL=c but the merge kernel cannot be built: {_why}")
    return _lib


def kernel_status() -> str:
    """'c', or 'torch (<why>)'."""
    if os.environ.get("UNLEARNBENCH_KERNEL") == "torch":
        return "torch (UNLEARNBENCH_KERNEL=torch)"
    return "c" if kernel() is not None else f"torch ({_why})"
