"""Named random streams per trial (PROTOCOL §0): each random quantity has its own stream
seeded by (trial, name), so changing the pool never re-draws the forget set."""
from __future__ import annotations

import hashlib
import json
from typing import Any


def canonical_json(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)


def sha256_hex(obj: Any) -> str:
    data = obj if isinstance(obj, bytes) else canonical_json(obj).encode()
    return hashlib.sha256(data).hexdigest()


def stream_seed(trial: int, name: str, *extra: Any) -> int:
    """A 63-bit seed for stream ``name`` of ``trial``; ``extra`` sub-keys it (e.g. a pool member)."""
    digest = hashlib.sha256(canonical_json([int(trial), name, *extra]).encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


def numpy_rng(trial: int, name: str, *extra: Any):
    import numpy as np

    return np.random.Generator(np.random.PCG64(stream_seed(trial, name, *extra)))


def torch_gen(trial: int, name: str, *extra: Any):
    import torch

    g = torch.Generator()
    g.manual_seed(stream_seed(trial, name, *extra))
    return g


def deterministic_kernels(device: str) -> None:
    """Ask torch for bitwise-reproducible kernels on ``device``.

    On the H200, two trainings of the same fmnist original under the same seeds differed
    (test 92.52 vs 92.28) without this: cuDNN picks weight-gradient algorithms that sum with
    atomics. A trial that does not reproduce cannot be filled in over several sessions, and
    its store key would name different weights on different days. CPU kernels here are
    already deterministic for a given thread count (digits reruns match bit for bit; another
    thread count sums in another order), so only CUDA is touched.
    ``warn_only``: an op with no deterministic CUDA kernel warns instead of failing the run;
    the weight hashes in run.json tell whether a trial reproduced.
    """
    if not device.startswith("cuda"):
        return
    import os

    import torch

    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # read when cuBLAS starts
    torch.backends.cudnn.deterministic = True
    torch.backends.cudnn.benchmark = False
    torch.use_deterministic_algorithms(True, warn_only=True)
