"""Helpers that several test files share: resolving a scenario, writing data sets in their native
formats (IDX, JPEG, archives), leaderboard records, and the batch reference merges.

tests/ is on sys.path (pytest's default `prepend` import mode puts tests/conftest.py's folder
there), so a test module anywhere below tests/ imports these as ``from helpers import ...``.
"""
from __future__ import annotations

import io
import math
import os
import struct
import tarfile
from pathlib import Path

import numpy as np

PLUGINS_DIR = Path(__file__).parent / "plugins"  # the example third-party distribution


def cli_env(**extra: str) -> dict:
    """The environment for a CLI subprocess: the tests' own (offline, quiet) plus ``extra``."""
    env = dict(os.environ)
    env.update(extra)
    return env


# -- scenarios --------------------------------------------------------------------------------------

def scen_cfg(host, name, **over):
    from unlearnbench.config import resolve

    res = resolve(host, scenario=name, method="retrain", overrides=[f"scenario.{k}={v}" for k, v in over.items()])
    return res.scenario, res.cfg.scenario


# -- data sets in their native formats ------------------------------------------------------------------

def idx_bytes(arr: np.ndarray) -> bytes:
    """An IDX file (MNIST, Fashion-MNIST) of unsigned bytes."""
    return struct.pack(">HBB", 0, 0x08, arr.ndim) + struct.pack(f">{arr.ndim}I", *arr.shape) + \
        arr.astype(np.uint8).tobytes()


def write_idx(path, arr, gz):
    import gzip

    data = idx_bytes(arr)
    if gz:
        with gzip.open(str(path) + ".gz", "wb") as f:
            f.write(data)
    else:
        path.write_bytes(data)


def jpeg(rng, w, h, *, gray=False, quality=None, fmt="JPEG"):
    """A random w×h image encoded as ``fmt``; ``quality`` None is Pillow's default."""
    from PIL import Image

    arr = rng.integers(0, 256, (h, w) if gray else (h, w, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format=fmt, **({} if quality is None else {"quality": quality}))
    return buf.getvalue()


def write_tree(root, files):
    """Write {relative path: bytes} below ``root``."""
    for rel, raw in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(raw)


def write_tar(path, files):
    """A .tar.gz of {member name: bytes}, as the data sets release them."""
    with tarfile.open(path, "w:gz") as tar:
        for member, raw in files.items():
            info = tarfile.TarInfo(member)
            info.size = len(raw)
            tar.addfile(info, io.BytesIO(raw))
    return path


# -- leaderboard records --------------------------------------------------------------------------------

def rec(method, trial, metrics, scenario="digits-10pct", rule="val_matched", oracle=False, chash=None):
    retrain = {"acc_retain": 100.0, "acc_forget": 95.0, "acc_test": 95.0, "acc_val": 95.0, "mia": 10.0}
    original = {"acc_retain": 100.0, "acc_forget": 100.0, "acc_test": 95.0, "acc_val": 95.0, "mia": 0.0}
    return {"scenario": scenario, "method": method, "trial": trial, "config_hash": chash or f"h-{method}-{rule}",
            "variant": [] if rule == "val_matched" else [f"selection={rule}"],
            "config": {"method": {"name": method}, "pool": {"size": 0}, "selection": {"name": rule}},
            "used_splits": "forget+val", "selection": {"rule": rule, "oracle": oracle}, "lambda": 1.0,
            "metrics": {"acc_val": 95.0, **metrics}, "retrain": retrain, "original": original,
            "timings": {"total_s": 1.0}, "_file": f"{scenario}/{method}/seed-{trial}/run.json"}


def m(r, f, t, mia):
    return {"acc_retain": r, "acc_forget": f, "acc_test": t, "mia": mia}


# -- task vectors and batch reference merges (written from PROTOCOL §4, not from the reducers) ----------

def stack(columns, name="w"):
    """Toy columns [[v_1j..v_nj], ...] -> n task vectors of one tensor with d = len(columns)."""
    import torch

    n = len(columns[0])
    return [{name: torch.tensor([c[i] for c in columns], dtype=torch.float32)} for i in range(n)]


def batch(taus):
    """(keys, shapes, V) with V of shape (n, d): the stacked form the references work on."""
    import torch

    keys = list(taus[0])
    shapes = [taus[0][k].shape for k in keys]
    V = torch.stack([torch.cat([t[k].reshape(-1) for k in keys]) for t in taus])  # (n, d)
    return keys, shapes, V


def unflatten(keys, shapes, flat):
    out, i = {}, 0
    for k, s in zip(keys, shapes):
        m = math.prod(s)
        out[k] = flat[i:i + m].reshape(s)
        i += m
    return out


def ref_uniform(taus):
    keys, shapes, V = batch(taus)
    return unflatten(keys, shapes, V.sum(0) / len(taus))


def ref_negmerge(taus, value="avg", by="magnitude", mask="consensus", q=0):
    import torch

    ZERO = torch.zeros(())
    keys, shapes, V = batch(taus)
    n = len(taus)
    s = torch.sign(V)
    S, C = V.sum(0), s.sum(0)
    P, N = (s > 0).sum(0), (s < 0).sum(0)
    if mask == "all":
        return unflatten(keys, shapes, S / n)
    if mask == "conflict":
        return unflatten(keys, shapes, torch.where(C.abs() < n, S / n, ZERO))
    q = q or n
    M = torch.maximum(P, N)
    sigma = torch.where(P > N, 1.0, -1.0)  # the majority sign (strict where kept, q > n/2)
    maj = s == sigma  # (n, d): entries of the majority sign
    if value == "avg":
        val = (V * maj).sum(0) / M.clamp(min=1)
    elif by == "magnitude":
        fill = math.inf if value == "min" else -math.inf
        A = torch.where(maj, V.abs(), torch.tensor(fill))
        val = sigma * (A.min(0).values if value == "min" else A.max(0).values)
    else:
        fill = math.inf if value == "min" else -math.inf
        A = torch.where(maj, V, torch.tensor(fill))
        val = A.min(0).values if value == "min" else A.max(0).values
    return unflatten(keys, shapes, torch.where(M >= q, val, ZERO))


def ref_ties(taus, k=0.2):
    import torch

    ZERO = torch.zeros(())
    keys, shapes, V = batch(taus)
    d = V.shape[1]
    t = V.abs().kthvalue(d - math.floor(k * d), dim=1, keepdim=True).values  # (n, 1)
    Vh = torch.where(V.abs() >= t, V, ZERO)  # 1. trim
    gamma = torch.sign(Vh.sum(0))  # 2. elect
    gamma = torch.where(gamma == 0, torch.sign(gamma.sum()), gamma)
    sel = (torch.sign(Vh) == gamma) & (Vh != 0)  # 3. disjoint mean
    return unflatten(keys, shapes, (Vh * sel).sum(0) / sel.sum(0).clamp(min=1))


def ref_magmax(taus):
    keys, shapes, V = batch(taus)
    i = V.abs().argmax(0)  # torch: the first maximal index
    return unflatten(keys, shapes, V.gather(0, i[None]).squeeze(0))
