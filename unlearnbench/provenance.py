"""Hardware and software manifest carried by every record (PROTOCOL §8.6)."""
from __future__ import annotations

import os
import platform
import subprocess
from pathlib import Path


def git_sha(path: Path | None = None) -> str | None:
    here = path or Path(__file__).resolve().parent
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=5)
        if out.returncode != 0:
            return None
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=here,
                               capture_output=True, text=True, timeout=5).stdout.strip()
        return out.stdout.strip() + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return None


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
        "git_sha": git_sha(),
    }
    if device.startswith("cuda") and torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
        info["deterministic_kernels"] = torch.are_deterministic_algorithms_enabled() and torch.backends.cudnn.deterministic
    return info


def where(rec: dict) -> str:
    """Where a run record was computed, in a few words: the GPU or CPU and the torch version."""
    p = rec.get("provenance") or {}
    dev = p.get("gpu") or (f"CPU {p['cpu']}" if p.get("cpu") else p.get("device") or "?")
    return f"{dev}, torch {p.get('torch', '?')}"
