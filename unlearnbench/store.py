"""Content-addressed artifact store.

Each artifact (an original model, a retrain oracle, a pool member, a manifest, cached
metrics) is keyed by the hash of the spec that defines it, so it is computed once and
reused by every later run and method. Tensors are safetensors files written atomically;
a JSON sidecar, written last, holds the spec and the file's sha256, checked on every
load. A missing sidecar means an interrupted write (the artifact does not exist yet); a
checksum mismatch means corruption: it is reported and the artifact recomputed, never loaded.
"""
from __future__ import annotations

import hashlib
import json
import os
import sys
import tempfile
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


class Store:
    def __init__(self, root: str | os.PathLike | None = None):
        self.root = Path(root) if root is not None else default_root()
        self.stats = {"hits": 0, "computed": 0, "corrupt": 0}

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
        from safetensors.torch import save_file

        data, side = self._paths(kind, key)
        flat = {k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}
        for k, v in flat.items():
            if v.is_floating_point() and not torch.isfinite(v).all():
                raise StoreError(f"refusing to store {kind} {key[:12]}: tensor {k!r} has non-finite values")
        if side.exists():
            side.unlink()  # the sidecar is the commit marker: drop it before replacing the data
        _atomic_write(data, lambda tmp: save_file(flat, tmp, metadata={"artifact": f"{kind}/{key}"}))  # one key: same bytes every time
        record = {"kind": kind, "key": key, "sha256": file_sha256(data), "bytes": data.stat().st_size,
                  "manifest": manifest, "spec": spec}
        _atomic_write(side, lambda tmp: Path(tmp).write_text(json.dumps(record, indent=1, default=str)))

    def get(self, kind: str, key: str, manifest: str | None) -> tuple[dict, dict]:
        """Load and verify an artifact; raises StoreError if it is corrupt, ManifestMismatch if
        it was built on another index manifest."""
        from safetensors.torch import load_file

        data, side = self._paths(kind, key)
        try:
            record = json.loads(side.read_text())
        except (OSError, ValueError) as e:
            raise StoreError(f"{kind} {key[:12]}: unreadable sidecar {side}: {e}") from e
        if manifest is not None and record.get("manifest") != manifest:
            raise ManifestMismatch(
                f"{kind} {key[:12]} was built on index manifest {str(record.get('manifest'))[:12]}, "
                f"but this stage uses {manifest[:12]}; refusing to mix splits (PROTOCOL §1.2)"
            )
        if not data.exists() or file_sha256(data) != record.get("sha256"):
            raise StoreError(f"{kind} {key[:12]} at {data} is corrupt (checksum mismatch)")
        try:
            return load_file(str(data)), record
        except Exception as e:
            raise StoreError(f"{kind} {key[:12]} at {data} could not be read: {e}") from e

    def get_or_compute(self, kind: str, spec: dict, compute: Callable[[], dict], manifest: str | None) -> tuple[dict, str, bool]:
        """Return (tensors, key, computed_now). A corrupt artifact is reported and recomputed."""
        key = self.key(spec)
        if self.has(kind, key):
            try:
                tensors, _ = self.get(kind, key, manifest)
                self.stats["hits"] += 1
                return tensors, key, False
            except ManifestMismatch:
                raise
            except StoreError as e:
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
        for p in self._paths(kind, key):
            if p.exists():
                p.unlink()

    # -- JSON documents (manifests, cached metrics) -----------------------------
    def _json_path(self, kind: str, key: str) -> Path:
        return self.root / kind / key[:2] / f"{key}.json"

    def put_json(self, kind: str, key: str, doc: Any) -> None:
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
            p.unlink()
            return None
