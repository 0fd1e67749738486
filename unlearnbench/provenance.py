"""Hardware and software manifest carried by every record (PROTOCOL §8.6)."""
from __future__ import annotations

import os
import platform
import subprocess
from pathlib import Path


# What "uncommitted code" means for a record (PROTOCOL §11 v2: every record on a board comes from
# committed code): a change, or a file git does not track, under the paths the installed package is
# built from (pyproject's package-dir and entry points). Records, results and boards being written
# (runs/, leaderboards/, benchmarks/results/), tests and docs do not change what a run computes.
SOURCE_PATHS = ("unlearnbench", "methods", "scenarios", "pyproject.toml")
DIRTY_RULE = ("dirty = tracked changes or untracked files under " + ", ".join(SOURCE_PATHS)
              + " (records, results, tests and docs do not count)")


def _git(args: list[str], here: Path) -> str | None:
    out = subprocess.run(["git", *args], cwd=here, capture_output=True, text=True, timeout=5)
    return out.stdout if out.returncode == 0 else None


def git_state(path: Path | None = None) -> dict | None:
    """The commit the package's code is at and the source files that differ from it (``DIRTY_RULE``):
    ``{"sha", "dirty": [paths relative to the repository root]}``; None outside a git checkout."""
    here = path or Path(__file__).resolve().parent
    try:
        sha = _git(["rev-parse", "HEAD"], here)
        top = _git(["rev-parse", "--show-toplevel"], here)
        if sha is None or top is None:
            return None
        status = _git(["status", "--porcelain", "--untracked-files=all", "--", *SOURCE_PATHS], Path(top.strip()))
    except (OSError, subprocess.SubprocessError):
        return None
    dirty = sorted(line[3:].strip() for line in (status or "").splitlines() if line.strip())
    return {"sha": sha.strip(), "dirty": dirty}


def git_sha(path: Path | None = None) -> str | None:
    """The code's commit, with ``-dirty`` when a source file differs from it (``DIRTY_RULE``)."""
    state = git_state(path)
    if state is None:
        return None
    return state["sha"] + ("-dirty" if state["dirty"] else "")


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cpu_capability() -> str | None:
    """torch's CPU kernel dispatch level here (e.g. "AVX2", "AVX512"), None where torch has no such query."""
    import torch

    get = getattr(getattr(torch.backends, "cpu", None), "get_cpu_capability", None)
    return get() if get is not None else None


def provenance(device: str, threads: int) -> dict:
    import importlib.metadata as md

    import torch

    def ver(name: str) -> str | None:
        try:
            return md.version(name)
        except md.PackageNotFoundError:
            return None

    info = {
        "unlearnbench": ver("unlearnbench"),
        "torch": torch.__version__,
        "numpy": ver("numpy"),
        "scikit-learn": ver("scikit-learn"),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu": cpu_model(),
        # the vector ISA torch's CPU kernels dispatch to (AVX2, AVX512...): one model string ("AMD EPYC")
        # covers generations whose kernels sum in another order, so bitwise reruns need this too
        "cpu_capability": cpu_capability(),
        "cores_available": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "threads": threads,
        "device": device,
        "cuda": torch.version.cuda if torch.cuda.is_available() else None,
    }
    state = git_state()
    info["git_sha"] = None if state is None else state["sha"] + ("-dirty" if state["dirty"] else "")
    if state is not None:
        info["git_dirty"] = state["dirty"][:50]  # which source files differed (a long list is cut)
        info["git_dirty_count"] = len(state["dirty"])
        info["git_dirty_rule"] = DIRTY_RULE
    if device.startswith("cuda") and torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
        info["deterministic_kernels"] = torch.are_deterministic_algorithms_enabled() and torch.backends.cudnn.deterministic
    return info


def where(rec: dict) -> str:
    """Where a run record was computed, in a few words: the GPU or CPU and the torch version."""
    p = rec.get("provenance") or {}
    dev = p.get("gpu") or (f"CPU {p['cpu']}" if p.get("cpu") else p.get("device") or "?")
    return f"{dev}, torch {p.get('torch', '?')}"
