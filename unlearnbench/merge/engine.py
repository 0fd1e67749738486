"""Chunked merging of task vectors stored as safetensors files, close to the I/O floor.

A per-file streaming loop (load τ_i whole, update the reducer, next file) moves every
accumulator through main memory once per file: for NegMerge that is S (fp32) and C plus
temporaries, several times the bytes of the file itself. Merging is memory traffic, not
arithmetic. Here the loops are swapped: for each chunk of each tensor (``CHUNK`` elements,
sized to stay in cache), the chunk is read from all n files (read-only memory maps: the page
cache is read in place, no copy) and reduced at once, so each file byte is read once.
Resident memory: the output τ plus a few chunks, whatever n.

Reducers that name a ``fused_op`` (Uniform, MagMax, NegMerge with full consensus and all its
§4.7 variants) are computed by kernel.c in one pass with the accumulators in L1; in torch
each accumulator is its own pass over the chunk (unlearnbench.merge.kernel: built once with
the system compiler; without one, torch, and it says so). ``ChunkReducer`` and
``FusedReducer`` below are the contract.

This applies to *elementwise* operators only (``MergeMethod.elementwise``: Uniform,
NegMerge and its variants, MagMax): element j of the result depends only on element j of
the inputs. The chunk's reducer sees the n candidates in canonical order, so the result is
bitwise the per-file streaming result. TIES (a global trim threshold per candidate) and
Greedy (evaluations of whole models) take the per-file path.
"""
from __future__ import annotations

import json
import math
import mmap
import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Protocol, runtime_checkable

from ..errors import StoreError
from .check import DTYPE_BITS, check_candidates, merged_keys, nonfinite, nonfinite_base

if TYPE_CHECKING:
    import torch

    Tau = dict[str, torch.Tensor]

CHUNK = 1 << 20  # elements per chunk: 4 MiB of fp32; accumulators stay in cache, per-chunk overhead stays small
_DTYPES = {"F32": ("float32", 4), "F16": ("float16", 2), "BF16": ("bfloat16", 2), "F64": ("float64", 8)}


class ChunkReducer(Protocol):
    """What ``merge_safetensors`` asks of ``make_reducer()``: a fresh one per chunk, fed with
    ``update`` the n candidates' chunks ({tensor name: flat fp32 chunk}) in the order of the files,
    then ``result()``: the merged chunk under the same name. Elementwise operators only: element
    j of the result may depend only on element j of the inputs (``MergeMethod.elementwise``),
    which is what makes the chunked result bitwise the per-file one."""

    def update(self, tau: Tau) -> None: ...

    def result(self) -> Tau: ...


@runtime_checkable
class FusedReducer(ChunkReducer, Protocol):
    """A ``ChunkReducer`` whose merge kernel.c also computes, in one pass over the candidates.

    ``fused_op`` names the kernel's op (a key of ``kernel.OPS``, the C enum). The op keeps some
    of the accumulators sum (Σ v, in file order), min, max (elementwise) and absmax (the first
    value of largest |v|), and ends with ``finish(n, acc)``: the reducer's own torch form of that
    last step, from those accumulators ({name: tensor}) over n candidates, which ``result()``
    uses. The kernel must give the same floats; tests/test_merge_cli.py holds every fused op to
    bitwise equality with the torch path."""

    fused_op: str

    def finish(self, n: int, acc: dict[str, torch.Tensor]) -> torch.Tensor: ...


def fused_op(reducer: ChunkReducer) -> str | None:
    """The kernel op a reducer is computed by, or None: it runs in torch (``update``/``result``)."""
    if not isinstance(reducer, FusedReducer):
        return None
    from .kernel import OPS

    if reducer.fused_op not in OPS:
        raise ValueError(f"{type(reducer).__name__}.fused_op={reducer.fused_op!r} is not an op of kernel.c "
                         f"({', '.join(OPS)})")
    return reducer.fused_op


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


_FIX = "; the file is damaged or was not written by safetensors: copy it again, or re-save it with " \
       "safetensors.torch.save_file"


def read_index(path: str | os.PathLike) -> dict[str, Entry]:
    """The tensor table of a safetensors file, from its JSON header (no tensor data is read),
    validated as safetensors itself validates it: a header length inside the file, a JSON object
    whose entries (but ``__metadata__``, strings to strings) each have a known ``dtype``, a
    ``shape`` of non-negative integers and ``data_offsets`` [start, end] spanning exactly
    numel × itemsize bytes; the ranges, sorted, cover the data section contiguously (no overlap,
    no gap, nothing after the last one, nothing past the end of the file). Anything else is a
    StoreError naming the file (and the tensor)."""
    p = Path(path)

    def bad(why: str) -> StoreError:
        return StoreError(f"{p} is not a valid safetensors file: {why}{_FIX}")

    try:
        size = p.stat().st_size
        f = open(p, "rb")
    except OSError as e:
        raise StoreError(f"{p} cannot be read: {e.strerror or e}") from None
    with f:
        head = f.read(8)
        if len(head) != 8:
            raise StoreError(f"{p} is not a safetensors file (too short: {size} bytes){_FIX}")
        (n,) = struct.unpack("<Q", head)
        if n > 100_000_000:
            raise StoreError(f"{p} is not a safetensors file (header length {n}){_FIX}")
        if 8 + n > size:
            raise bad(f"its header length {n} runs past the end of the file ({size} bytes)")
        raw = f.read(n)
    try:
        header = json.loads(raw.decode("utf-8"))
    except ValueError as e:  # UnicodeDecodeError is a ValueError
        raise StoreError(f"{p} has a corrupt safetensors header: {e}{_FIX}") from None
    if not isinstance(header, dict):
        raise bad(f"its header is a JSON {type(header).__name__}, not an object")
    meta = header.get("__metadata__")
    if meta is not None and not (isinstance(meta, dict) and all(isinstance(v, str) for v in meta.values())):
        raise bad("its __metadata__ is not an object of strings")
    data_len = size - 8 - n
    spans = []
    for name, m in header.items():
        if name == "__metadata__":
            continue
        if not isinstance(m, dict):
            raise bad(f"tensor {name!r} has a JSON {type(m).__name__} for its entry, not an object with dtype, "
                      "shape and data_offsets")
        for field in ("dtype", "shape", "data_offsets"):
            if field not in m:
                raise bad(f"tensor {name!r} has no {field!r}")
        dt, shape, off = m["dtype"], m["shape"], m["data_offsets"]
        if not isinstance(dt, str) or dt not in DTYPE_BITS:
            raise bad(f"tensor {name!r} has an unknown dtype {dt!r}")
        if not (isinstance(shape, list) and all(_nat(s) for s in shape)):
            raise bad(f"tensor {name!r} has shape {shape!r}, not a list of non-negative integers")
        if not (isinstance(off, list) and len(off) == 2 and all(_nat(o) for o in off) and off[0] <= off[1]):
            raise bad(f"tensor {name!r} has data_offsets {off!r}, not [start, end] with 0 <= start <= end")
        numel = math.prod(shape)
        bits = numel * DTYPE_BITS[dt]
        start, end = off
        if bits % 8 or end - start != bits // 8:
            raise bad(f"tensor {name!r} ({dt}, shape {tuple(shape)}) needs {bits / 8:g} bytes, but its "
                      f"data_offsets [{start}, {end}] span {end - start}")
        spans.append((start, end, name, Entry(dt, tuple(shape), 8 + n + start, 8 + n + end)))
    spans.sort(key=lambda s: (s[0], s[1]))
    pos, prev = 0, None
    for start, end, name, _ in spans:
        if start < pos:
            raise bad(f"tensor {name!r} (data_offsets [{start}, {end}]) overlaps tensor {prev!r}, which ends at "
                      f"{pos}")
        if start > pos:
            raise bad(f"bytes [{pos}, {start}) of its data belong to no tensor (before tensor {name!r}); the "
                      "tensors must cover the data contiguously")
        pos, prev = end, name
    if pos > data_len:
        raise StoreError(f"{p} is truncated: tensor {prev!r} ends at byte {8 + n + pos}, the file has {size}"
                         f"{_FIX}")
    if pos < data_len:
        raise bad(f"its last {data_len - pos} bytes belong to no tensor")
    by_name = {name: e for _, _, name, e in spans}
    return {name: by_name[name] for name in header if name != "__metadata__"}  # the header's order


def _nat(x) -> bool:
    return isinstance(x, int) and not isinstance(x, bool) and x >= 0


class ChunkReader:
    """Element ranges of one file's tensors as fp32 tensors viewing a read-only memory map of
    the file: no copy for fp32 data (the page cache is read in place), an upcast for fp16/bf16."""

    def __init__(self, path: str | os.PathLike):
        self.path = str(path)
        self.index = read_index(path)
        try:
            with open(self.path, "rb") as f:
                self.mm = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        except (OSError, ValueError) as e:  # removed or emptied since its header was read
            raise StoreError(f"{self.path} cannot be read: {e}") from None
        self._addr0: int | None = None
        self._whole = None

    def spec(self) -> dict[str, tuple[str, tuple[int, ...]]]:
        """{name: (dtype, shape)}: what ``check.check_candidates`` compares."""
        return {k: (e.dtype, e.shape) for k, e in self.index.items()}

    def close(self) -> None:
        self._whole = None  # the tensor viewing the map goes first, or the map cannot close
        self.mm.close()

    def address(self, name: str, lo: int) -> int:
        """The memory address of element ``lo`` of tensor ``name`` in the map (for the C kernel)."""
        if self._addr0 is None:
            import warnings

            import torch

            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)
                self._whole = torch.frombuffer(self.mm, dtype=torch.uint8)  # keeps the address valid
            self._addr0 = self._whole.data_ptr()
        e = self.index[name]
        return self._addr0 + e.start + lo * _DTYPES[e.dtype][1]

    def release(self, name: str, lo: int, hi: int) -> None:
        """Unmap the pages of a range already reduced: they stay in the page cache, but leave
        this process's resident set, so RSS stays at the output's size whatever n."""
        e = self.index[name]
        size = _DTYPES[e.dtype][1]
        start = (e.start + lo * size) // mmap.PAGESIZE * mmap.PAGESIZE
        self.mm.madvise(mmap.MADV_DONTNEED, start, e.start + hi * size - start)

    def read(self, name: str, lo: int, hi: int):
        """Elements [lo, hi) of tensor ``name`` (flattened), as a float32 tensor. Valid until
        ``close``; never write to it."""
        import warnings

        import torch

        e = self.index[name]
        if e.dtype not in _DTYPES:
            raise StoreError(f"{self.path}: tensor {name!r} has dtype {e.dtype}, not a float type")
        tname, size = _DTYPES[e.dtype]
        with warnings.catch_warnings():  # the map is read-only on purpose: nothing writes through it
            warnings.simplefilter("ignore", UserWarning)
            view = torch.frombuffer(self.mm, dtype=getattr(torch, tname), count=hi - lo, offset=e.start + lo * size)
        return view if view.dtype == torch.float32 else view.float()


def merge_safetensors(
    make_reducer: Callable[[], ChunkReducer],
    paths: list[str],
    base: str | None = None,
    keys: list[str] | None = None,
    on_tensor: Callable[[str], None] | None = None,
    threads: int | None = None,
) -> dict:
    """Merge the files' tensors (or, with ``base``, the task vectors file − base) chunk by chunk.

    ``make_reducer()`` returns a fresh ``ChunkReducer``; one is used per chunk, fed the n
    candidates' chunks in the order of ``paths``. A ``FusedReducer`` is computed instead by the
    C kernel (one pass, ``threads`` ways, bitwise the same), when it builds (``kernel``).
    """
    import torch

    from .kernel import kernel

    if not paths:
        raise StoreError("nothing to merge: no task vector files given")
    threads = threads or torch.get_num_threads()
    readers: list[ChunkReader] = []
    base_r = None
    pool = None
    try:
        for p in paths:  # every header validated before any tensor byte is read
            readers.append(ChunkReader(p))
        base_r = ChunkReader(base) if base else None
        ref = base_r if base_r else readers[0]
        names = keys if keys is not None else merged_keys(ref.spec()) if base_r else list(ref.index)
        check_candidates((ref.path, ref.spec()), [(r.path, r.spec()) for r in readers], names,
                         ref_is_base=base_r is not None)
        op = fused_op(make_reducer())
        lib = kernel() if op is not None else None
        if lib is not None and threads > 1:
            from concurrent.futures import ThreadPoolExecutor

            pool = ThreadPoolExecutor(threads)  # ctypes drops the GIL: the kernel runs in parallel
        out = {}
        for name in names:
            numel = ref.index[name].numel
            res = torch.empty(numel, dtype=torch.float32)
            fused = lib is not None and all(r.index[name].dtype == "F32" for r in [*readers, *([base_r] if base_r else [])])
            for lo in range(0, numel, CHUNK):
                hi = min(lo + CHUNK, numel)
                if fused:
                    _fused_chunk(lib, pool, threads, op, res, readers, base_r, name, lo, hi)
                else:
                    red = make_reducer()
                    b = base_r.read(name, lo, hi).clone() if base_r else None
                    if b is not None and not _finite(b):
                        raise nonfinite_base(base_r.path, name)
                    for r in readers:
                        v = r.read(name, lo, hi)
                        if b is not None:
                            v = v - b  # τ_i = θ_i − θ_0 in fp32 (§3)
                        if not _finite(v):  # §3: a non-finite candidate is rejected
                            raise nonfinite(r.path, name, with_base=b is not None)
                        red.update({name: v})
                    res[lo:hi] = red.result()[name]
                for r in readers:
                    r.release(name, lo, hi)
            out[name] = res.view(ref.index[name].shape)
            if on_tensor is not None:
                on_tensor(name)
        return out
    finally:
        if pool is not None:
            pool.shutdown()
        for r in readers:
            r.close()
        if base_r:
            base_r.close()


def _finite(v) -> bool:
    """Whether a chunk is all finite: its sum first (one cheap pass), which can also overflow from
    finite values, so an inf sum is confirmed elementwise."""
    import torch

    return math.isfinite(float(v.sum())) or bool(torch.isfinite(v).all())


def _fused_chunk(lib, pool, threads: int, op: str, res, readers, base_r, name: str, lo: int, hi: int) -> None:
    """Elements [lo, hi) of tensor ``name`` merged by the C kernel into ``res[lo:hi]``: every
    candidate read once, the range split into ``threads`` contiguous parts."""
    import ctypes

    from .kernel import OPS

    code = OPS[op]
    base_addr = base_r.address(name, lo) if base_r else None
    addrs = [r.address(name, lo) for r in readers]
    out = res.data_ptr() + 4 * lo

    def part(a: int, b: int) -> int:  # elements [lo + a, lo + b)
        arr = (ctypes.c_uint64 * len(addrs))(*[x + 4 * a for x in addrs])
        return lib.ub_merge_f32(code, len(addrs), arr, None if base_addr is None else base_addr + 4 * a, b - a,
                                out + 4 * a)

    m = hi - lo
    step = -(-m // threads)
    bounds = [(a, min(a + step, m)) for a in range(0, m, step)]
    codes = [part(*bounds[0])] if pool is None or len(bounds) == 1 else list(pool.map(lambda ab: part(*ab), bounds))
    if -2 in codes:
        raise ValueError(f"kernel.c does not know op {op!r} ({code})")
    bad = [i for i in codes if i >= 0]
    if bad:  # §3: a non-finite candidate is rejected; a non-finite base would make every one look bad
        if base_r is not None and not _finite(base_r.read(name, lo, hi)):
            raise nonfinite_base(base_r.path, name)
        raise nonfinite(readers[min(bad)].path, name, with_base=base_r is not None)
