"""Chunked merging of task vectors stored as safetensors files, close to the I/O floor.

A per-file streaming loop (load τ_i whole, update the reducer, next file) moves every
accumulator through main memory once per file: for NegMerge that is S (fp32) and C plus
temporaries, several times the bytes of the file itself. Merging is memory traffic, not
arithmetic. Here the loops are swapped: for each chunk of each tensor (``CHUNK`` elements,
sized to stay in cache), the chunk is read from all n files with ``pread`` into one reused
buffer and reduced at once, so the accumulators never leave cache and each file byte is
read once. Resident memory: the output τ plus a few chunks, whatever n.

This applies to *elementwise* operators only (``MergeMethod.elementwise``: Uniform,
NegMerge and its variants, MagMax): element j of the result depends only on element j of
the inputs. The chunk's reducer sees the n candidates in canonical order, so the result is
bitwise the per-file streaming result. TIES (a global trim threshold per candidate) and
Greedy (evaluations of whole models) take the per-file path.
"""
from __future__ import annotations

import json
import math
import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from .errors import StoreError

CHUNK = 1 << 18  # elements per chunk: 1 MiB of fp32, so a chunk and its accumulators stay in L2
_DTYPES = {"F32": ("float32", 4), "F16": ("float16", 2), "BF16": ("bfloat16", 2), "F64": ("float64", 8)}


@dataclass(frozen=True)
class Entry:
    dtype: str
    shape: tuple[int, ...]
    start: int  # absolute byte offset in the file
    end: int

    @property
    def numel(self) -> int:
        n = 1
        for s in self.shape:
            n *= s
        return n


def read_index(path: str | os.PathLike) -> dict[str, Entry]:
    """The tensor table of a safetensors file, from its JSON header (no tensor data is read)."""
    p = Path(path)
    with open(p, "rb") as f:
        head = f.read(8)
        if len(head) != 8:
            raise StoreError(f"{p} is not a safetensors file (too short)")
        (n,) = struct.unpack("<Q", head)
        if n > 100_000_000:
            raise StoreError(f"{p} is not a safetensors file (header length {n})")
        try:
            header = json.loads(f.read(n))
        except ValueError as e:
            raise StoreError(f"{p} has a corrupt safetensors header: {e}") from e
    size = p.stat().st_size
    out = {}
    for name, meta in header.items():
        if name == "__metadata__":
            continue
        start, end = meta["data_offsets"]
        e = Entry(meta["dtype"], tuple(meta["shape"]), 8 + n + start, 8 + n + end)
        if e.end > size:
            raise StoreError(f"{p} is truncated: tensor {name!r} ends at byte {e.end}, the file has {size}")
        out[name] = e
    return out


class ChunkReader:
    """Reads element ranges of one file's tensors as fp32 torch tensors via pread, into a reused buffer."""

    def __init__(self, path: str | os.PathLike):
        self.path = str(path)
        self.index = read_index(path)
        self.fd = os.open(self.path, os.O_RDONLY)
        self._bufs: dict[str, Any] = {}

    def close(self) -> None:
        os.close(self.fd)

    def read(self, name: str, lo: int, hi: int):
        """Elements [lo, hi) of tensor ``name`` (flattened), as a float32 tensor that is
        valid until the next ``read`` of the same dtype."""
        import torch

        e = self.index[name]
        if e.dtype not in _DTYPES:
            raise StoreError(f"{self.path}: tensor {name!r} has dtype {e.dtype}, not a float type")
        tname, size = _DTYPES[e.dtype]
        buf = self._bufs.get(e.dtype)
        if buf is None or buf.numel() < hi - lo:
            buf = torch.empty(CHUNK, dtype=getattr(torch, tname))
            self._bufs[e.dtype] = buf
        view = buf[: hi - lo]
        mv = memoryview(view.view(torch.uint8).numpy())
        off, want = e.start + lo * size, (hi - lo) * size
        got = 0
        while got < want:
            k = os.preadv(self.fd, [mv[got:want]], off + got)
            if k <= 0:
                raise StoreError(f"{self.path}: unexpected end of file reading {name!r}")
            got += k
        return view if view.dtype == torch.float32 else view.float()


def merge_safetensors(
    make_reducer: Callable[[], Any],
    paths: list[str],
    base: str | None = None,
    keys: list[str] | None = None,
    on_tensor: Callable[[str], None] | None = None,
) -> dict:
    """Merge the files' tensors (or, with ``base``, the task vectors file − base) chunk by chunk.

    ``make_reducer()`` returns a fresh elementwise reducer (``update(dict)``, ``result()``);
    one is used per chunk, fed the n candidates' chunks in the order of ``paths``."""
    import torch

    readers = [ChunkReader(p) for p in paths]
    base_r = ChunkReader(base) if base else None
    try:
        ref = base_r.index if base_r else readers[0].index
        names = keys if keys is not None else list(ref)
        for r in readers:
            for name in names:
                if name not in r.index or r.index[name].shape != ref[name].shape:
                    got = r.index[name].shape if name in r.index else "missing"
                    raise StoreError(f"{r.path}: tensor {name!r} is {got}, expected shape {ref[name].shape}")
        out = {}
        for name in names:
            numel = ref[name].numel
            res = torch.empty(numel, dtype=torch.float32)
            for lo in range(0, numel, CHUNK):
                hi = min(lo + CHUNK, numel)
                b = base_r.read(name, lo, hi).clone() if base_r else None
                red = make_reducer()
                for r in readers:
                    v = r.read(name, lo, hi)
                    if b is not None:
                        v = v - b  # τ_i = θ_i − θ_0 in fp32 (§3)
                    if not math.isfinite(float(v.sum())):  # §3: a non-finite candidate is rejected
                        raise StoreError(f"{r.path}: task vector has non-finite values in {name!r}")
                    red.update({name: v})
                res[lo:hi] = red.result()[name]
            out[name] = res.view(ref[name].shape)
            if on_tensor is not None:
                on_tensor(name)
        return out
    finally:
        for r in readers:
            r.close()
        if base_r:
            base_r.close()
