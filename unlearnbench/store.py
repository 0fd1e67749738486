"""Content-addressed artifact store.

Each artifact (an original model, a retrain oracle, a pool member, a manifest, cached
metrics) is keyed by the hash of the spec that defines it, so it is computed once and
reused by every later run and method. Tensors are safetensors files written atomically;
a JSON sidecar, written last, holds the spec and the file's sha256, checked on every
load. A missing sidecar means an interrupted write (the artifact does not exist yet); a
checksum mismatch means corruption: it is reported and the artifact recomputed, never loaded.

Several processes may share one store. Each artifact has a lock (``fcntl.flock`` on
``<key>.lock`` beside it, removed by the holder when it is done; the kernel releases the lock of
a process that dies, so a stale lock file is simply taken over). ``get_or_compute`` holds it
around "check, compute, put", so an artifact is computed once however many processes ask for
it: the others wait, then read it. Every write holds it too, and never removes the old sidecar
first: data and sidecar are each replaced atomically, so a lock-free reader sees either pair
complete; if it reads the old sidecar and the new file (a checksum mismatch), it reads again
under the lock, when no write is in progress, before calling anything corrupt.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any, Callable

from .data import file_sha256
from .errors import ManifestMismatch, StoreError
from .seeding import canonical_json, sha256_hex

STORE_ENV = "UNLEARNBENCH_STORE"


def default_root() -> Path:
    env = os.environ.get(STORE_ENV)
    if env:
        return Path(env)
    import platformdirs

    return Path(platformdirs.user_cache_dir("unlearnbench")) / "store"


def tensor_digest(tensors: dict) -> str:
    """sha256 of the weights themselves: every tensor's name, dtype, shape and bytes, in name
    order. Unlike the file's hash it does not depend on how the file was written (safetensors
    writes its metadata map in a random order, so one state dict gave two file hashes)."""
    import torch

    h = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name].detach().to("cpu").contiguous()
        h.update(f"{name}\0{t.dtype}\0{tuple(t.shape)}\0".encode())
        h.update(memoryview(t.reshape(-1).view(torch.uint8).numpy()))  # any dtype, bf16 too
    return h.hexdigest()


def _nearest_existing(path: Path) -> Path:
    p = path
    while not os.path.lexists(p) and p != p.parent:
        p = p.parent
    return p


def dir_problem(path: Path, what: str, fix: str) -> str | None:
    """Why ``path`` cannot be used as a folder to write in (None if it can): it, or the nearest
    folder above it that exists, is a file or is not writable. Checked before anything computes."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        return f"{what} {path} is a file, not a folder; {fix}"
    base = path if path.exists() else _nearest_existing(path.absolute())
    if not base.is_dir():
        return f"{what} {path} cannot be created: {base} is a file, not a folder; {fix}"
    if not os.access(base, os.W_OK | os.X_OK):
        where = "" if base == path else f" (it does not exist, and {base} is not writable)"
        return f"{what} {path} is not writable{where}; {fix}"
    return None


def _atomic_write_bytes(path: Path, payload: bytes) -> None:
    _atomic_write(path, lambda tmp: Path(tmp).write_bytes(payload))


def _atomic_write(path: Path, write: Callable[[str], None]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _digest_of(path: Path) -> str | None:
    try:
        return file_sha256(path)
    except OSError:
        return None


class Store:
    def __init__(self, root: str | os.PathLike | None = None):
        from_env = root is None and bool(os.environ.get(STORE_ENV))
        self.root = Path(root) if root is not None else default_root()
        self.stats = {"hits": 0, "computed": 0, "corrupt": 0}
        self._local = threading.local()  # the artifact locks this thread holds (flock is per open file,
        # so another thread, like another process, waits for them)
        # A store that is a file can never work; one that cannot be written may still serve every
        # read (a complete store shared read-only): its first write is refused, before computing.
        what = f"the store ({STORE_ENV})" if from_env else "the store"
        self._fix = (f"set {STORE_ENV} to a writable folder (or unset it)" if from_env
                     else "pass --store a writable folder")
        self.problem = dir_problem(self.root, what, self._fix)
        if self.problem and not self.root.is_dir():
            raise StoreError(self.problem)  # a file, or missing and cannot be created: nothing to read either

    def _check_writable(self, kind: str, key: str) -> None:
        if self.problem:
            raise StoreError(f"{self.problem.rsplit('; ', 1)[0]}, and it lacks {kind} {key[:12]}, which must be "
                             "computed and stored (a read-only store works only when it already holds everything a "
                             f"run needs); {self._fix}")

    @property
    def _held(self) -> set:
        if not hasattr(self._local, "held"):
            self._local.held = set()
        return self._local.held

    @contextlib.contextmanager
    def lock(self, kind: str, key: str):
        """Hold the artifact's lock (reentrant within one thread)."""
        import fcntl

        path = self.root / kind / key[:2] / f"{key}.lock"
        if path in self._held:
            yield
            return
        self._check_writable(kind, key)
        path.parent.mkdir(parents=True, exist_ok=True)
        while True:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                try:
                    same = os.path.samestat(os.fstat(fd), os.stat(path))
                except FileNotFoundError:
                    same = False
            except BaseException:
                os.close(fd)
                raise
            if same:
                break
            os.close(fd)  # the holder before us removed this file as it let go: lock the current one
        self._held.add(path)
        try:
            yield
        finally:
            self._held.discard(path)
            with contextlib.suppress(OSError):
                path.unlink()  # still holding it, so whoever opened this file re-opens the new one
            os.close(fd)

    # -- keys and paths -------------------------------------------------------
    @staticmethod
    def key(spec: dict) -> str:
        return sha256_hex(spec)

    def _paths(self, kind: str, key: str) -> tuple[Path, Path]:
        d = self.root / kind / key[:2]
        return d / f"{key}.safetensors", d / f"{key}.json"

    # -- tensors --------------------------------------------------------------
    def has(self, kind: str, key: str) -> bool:
        data, side = self._paths(kind, key)
        return data.exists() and side.exists()

    def put(self, kind: str, key: str, tensors: dict, spec: dict, manifest: str | None) -> None:
        import torch
        from safetensors.torch import save

        data, side = self._paths(kind, key)
        flat = {k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}
        for k, v in flat.items():
            if v.is_floating_point() and not torch.isfinite(v).all():
                raise StoreError(f"refusing to store {kind} {key[:12]}: tensor {k!r} has non-finite values")
        # serialised here and written by Python (not safetensors' save_file), so any path the file
        # system holds works, a non-UTF-8 one too; one metadata key: the same bytes every time
        payload = save(flat, metadata={"artifact": f"{kind}/{key}"})
        record = {"kind": kind, "key": key, "sha256": hashlib.sha256(payload).hexdigest(), "bytes": len(payload),
                  "manifest": manifest, "spec": spec}
        with self.lock(kind, key):
            # The old sidecar stays until the new one replaces it: a reader sees the old pair, or
            # the new data with the old sidecar (a mismatch it re-reads under this lock), never none.
            if _digest_of(data) != record["sha256"]:
                _atomic_write_bytes(data, payload)
            _atomic_write(side, lambda tmp: Path(tmp).write_text(json.dumps(record, indent=1, default=str)))

    def put_new(self, kind: str, key: str, tensors: dict, spec: dict, manifest: str | None) -> bool:
        """Store a result computed elsewhere (an executor's worker) unless another writer stored it
        meanwhile (checked under the artifact's lock); True when this call wrote it."""
        with self.lock(kind, key):
            if self.has(kind, key):
                return False
            self.put(kind, key, tensors, spec, manifest)
            return True

    def get(self, kind: str, key: str, manifest: str | None) -> tuple[dict, dict]:
        """Load and verify an artifact; raises StoreError if it is corrupt, ManifestMismatch if
        its sidecar names another index manifest. A failed lock-free read is tried once more under
        the artifact's lock, so a write in progress in another process is never taken for damage."""
        try:
            return self._read(kind, key, manifest)
        except StoreError:
            lock = self.root / kind / key[:2] / f"{key}.lock"
            if lock in self._held or self.problem:  # already consistent, or a read-only store: no writer
                raise
        with self.lock(kind, key):
            return self._read(kind, key, manifest)

    def _read(self, kind: str, key: str, manifest: str | None) -> tuple[dict, dict]:
        from safetensors.torch import load

        data, side = self._paths(kind, key)
        try:
            record = json.loads(side.read_text())
            if not isinstance(record, dict):
                raise ValueError(f"a JSON {type(record).__name__}, not an object")
        except (OSError, ValueError) as e:
            raise StoreError(f"{kind} {key[:12]}: unreadable sidecar {side}: {e}") from e
        if manifest is not None and record.get("manifest") != manifest:
            raise ManifestMismatch(
                f"{kind} {key[:12]}: its sidecar {side} names index manifest {record.get('manifest')!r}, "
                f"but this stage uses {manifest!r}; the manifest is part of the key, so the sidecar is "
                "corrupt (PROTOCOL §1.2)"
            )
        try:
            payload = data.read_bytes()  # one read: the bytes checked are the bytes loaded
        except OSError as e:
            raise StoreError(f"{kind} {key[:12]} at {data} could not be read: {e}") from e
        if hashlib.sha256(payload).hexdigest() != record.get("sha256"):
            raise StoreError(f"{kind} {key[:12]} at {data} is corrupt (checksum mismatch)")
        try:
            # from bytes: any path Python can open, a non-UTF-8 one too. In name order, as load_file gives
            # them (load() keeps the file's layout order): key order reaches methods that iterate a state dict
            return dict(sorted(load(payload).items())), record
        except Exception as e:
            raise StoreError(f"{kind} {key[:12]} at {data} could not be read: {e}") from e

    def get_or_compute(self, kind: str, spec: dict, compute: Callable[[], dict], manifest: str | None) -> tuple[dict, str, bool]:
        """Return (tensors, key, computed_now). A corrupt artifact is reported and recomputed."""
        key = self.key(spec)
        if self.has(kind, key):  # the common case, lock-free: stored and whole
            try:
                tensors, _ = self._read(kind, key, manifest)
                self.stats["hits"] += 1
                return tensors, key, False
            except StoreError:
                pass  # absent, mid-write in another process, or corrupt: decided under the lock
        with self.lock(kind, key):  # one process computes; the others wait here, then read
            if self.has(kind, key):
                try:
                    tensors, _ = self._read(kind, key, manifest)
                    self.stats["hits"] += 1
                    return tensors, key, False
                except StoreError as e:  # a manifest mismatch too: the manifest is in the key
                    self.stats["corrupt"] += 1
                    print(f"unlearnbench: {e}; recomputing it", file=sys.stderr)
                    self.discard(kind, key)
            tensors = compute()
            self.put(kind, key, tensors, spec, manifest)
        self.stats["computed"] += 1
        return tensors, key, True

    def digest(self, kind: str, key: str) -> str | None:
        """The sha256 of an artifact's file, from its sidecar (checked against the file on every
        ``get``, to catch corruption). To tell whether two runs hold the same weights, compare
        :func:`tensor_digest` instead: the file's bytes can differ for equal weights."""
        try:
            return json.loads(self._paths(kind, key)[1].read_text()).get("sha256")
        except (OSError, ValueError):
            return None

    def discard(self, kind: str, key: str) -> None:
        with self.lock(kind, key):
            data, side = self._paths(kind, key)
            for p in (side, data):  # the commit marker first
                if p.exists():
                    p.unlink()

    # -- JSON documents (manifests, cached metrics) -----------------------------
    def _json_path(self, kind: str, key: str) -> Path:
        return self.root / kind / key[:2] / f"{key}.json"

    def put_json(self, kind: str, key: str, doc: Any) -> None:
        self._check_writable(kind, key)
        body = canonical_json(doc)
        payload = json.dumps({"sha256": hashlib.sha256(body.encode()).hexdigest(), "doc": doc}, default=str)
        _atomic_write(self._json_path(kind, key), lambda tmp: Path(tmp).write_text(payload))

    def get_json(self, kind: str, key: str) -> Any | None:
        """The document, or None when absent; a corrupt one is reported and treated as absent."""
        p = self._json_path(kind, key)
        if not p.exists():
            return None
        try:
            wrapper = json.loads(p.read_text())
            doc = wrapper["doc"]
            if hashlib.sha256(canonical_json(doc).encode()).hexdigest() != wrapper["sha256"]:
                raise ValueError("checksum mismatch")
            return doc
        except (ValueError, KeyError, TypeError) as e:
            self.stats["corrupt"] += 1
            print(f"unlearnbench: stored {kind} {key[:12]} at {p} is corrupt ({e}); recomputing it", file=sys.stderr)
            with contextlib.suppress(OSError):
                p.unlink()
            return None
