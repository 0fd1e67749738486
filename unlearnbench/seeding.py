"""Named random streams per trial (PROTOCOL §0): each random quantity has its own stream
seeded by (trial, name), so changing the pool never re-draws the forget set."""
from __future__ import annotations

import hashlib
import json
from typing import Any

STREAMS = ("forget", "init", "order", "pool", "mia")


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
