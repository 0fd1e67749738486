"""The content-addressed store: reuse, atomicity, corruption, manifest checks (DESIGN: store)."""
from __future__ import annotations

import json
import os

import pytest
import torch

from unlearnbench.errors import ManifestMismatch, StoreError
from unlearnbench.store import Store


def test_roundtrip_and_reuse(tmp_path):
    st = Store(tmp_path)
    calls = []

    def compute():
        calls.append(1)
        return {"w": torch.arange(6.0).view(2, 3)}

    a, key, new = st.get_or_compute("original", {"x": 1}, compute, "M1")
    b, key2, new2 = st.get_or_compute("original", {"x": 1}, compute, "M1")
    assert new and not new2 and key == key2 and len(calls) == 1
    assert torch.equal(a["w"], b["w"])
    assert st.get_or_compute("original", {"x": 2}, compute, "M1")[2]  # another spec, another key
    assert len(calls) == 2


def test_a_stored_state_dict_comes_back_in_name_order(tmp_path):
    """As safetensors' load_file gives it: a method that picks "the last weight" by iterating a state
    dict must see one order whether θ_0 was just trained or read back (the records were made so)."""
    from safetensors.torch import load_file

    st = Store(tmp_path)
    state = {"z.weight": torch.ones(3), "a.bias": torch.zeros(10, dtype=torch.int64), "m.weight": torch.ones(2, 2),
             "b.num": torch.tensor(3)}
    st.get_or_compute("original", {"x": 1}, lambda: state, "M1")
    back, _, computed = st.get_or_compute("original", {"x": 1}, lambda: state, "M1")
    assert not computed and list(back) == sorted(state)
    (path,) = [p for p in tmp_path.rglob("*.safetensors")]
    assert list(back) == list(load_file(str(path)))


def test_corrupt_artifact_reported_and_recomputed(tmp_path, capsys):
    st = Store(tmp_path)
    _, key, _ = st.get_or_compute("pool", {"m": 0}, lambda: {"w": torch.ones(100)}, "M")
    data, _ = st._paths("pool", key)
    raw = bytearray(data.read_bytes())
    raw[-5] ^= 0xFF  # flip bits inside the tensor payload
    data.write_bytes(bytes(raw))
    with pytest.raises(StoreError, match="corrupt"):
        st.get("pool", key, "M")
    out, _, recomputed = st.get_or_compute("pool", {"m": 0}, lambda: {"w": torch.full((100,), 2.0)}, "M")
    assert recomputed and torch.equal(out["w"], torch.full((100,), 2.0))
    assert "corrupt" in capsys.readouterr().err and st.stats["corrupt"] == 1


@pytest.mark.parametrize("fails_in, existing", [("data", False), ("data", True), ("sidecar", False),
                                                ("sidecar", True)])
def test_a_write_interrupted_midway_leaves_nothing_half_written(tmp_path, monkeypatch, fails_in, existing):
    """Ctrl-C (or a full disk) inside the write: half a file on disk, then the exception. No reader
    may take it for a finished artifact, no temporary file (and no lock file) stays behind, an
    earlier artifact's file is never overwritten in place, its sidecar never removed before the new
    one is in place, and the next get_or_compute recomputes (or reads the earlier artifact)."""
    from pathlib import Path

    import safetensors.torch

    st = Store(tmp_path)
    spec = {"m": 1}
    key = st.key(spec)
    data, side = st._paths("pool", key)
    if existing:
        st.put("pool", key, {"w": torch.ones(3)}, spec, "M")
        old = data.read_bytes()
    real_write_bytes, real_write_text = Path.write_bytes, Path.write_text

    def torn_write_bytes(self, payload, *a, **kw):
        if self.name.startswith(f".{data.name}."):  # the data's temporary file
            real_write_bytes(self, payload[:len(payload) // 2], *a, **kw)
            raise KeyboardInterrupt
        return real_write_bytes(self, payload, *a, **kw)

    def torn_write_text(self, text, *a, **kw):
        if self.name.startswith(f".{side.name}."):  # the sidecar's temporary file
            real_write_text(self, text[:len(text) // 2], *a, **kw)
            raise KeyboardInterrupt
        return real_write_text(self, text, *a, **kw)

    if fails_in == "data":
        monkeypatch.setattr(Path, "write_bytes", torn_write_bytes)
    else:
        monkeypatch.setattr(Path, "write_text", torn_write_text)
    with pytest.raises(KeyboardInterrupt):
        st.put("pool", key, {"w": torch.full((3,), 2.0)}, spec, "M")
    monkeypatch.undo()

    names = sorted(p.name for p in data.parent.iterdir())  # no temporary file, no lock file
    if existing:
        assert names == sorted([data.name, side.name])  # the old sidecar was never removed
    else:
        assert not st.has("pool", key)  # the sidecar, written last, is the commit marker
        assert names == ([data.name] if fails_in == "sidecar" else [])
    if existing and fails_in == "data":
        assert data.read_bytes() == old  # the earlier file was never written in place: still whole
        assert st.get("pool", key, "M")[0]["w"].tolist() == [1.0] * 3
    elif data.exists():
        assert safetensors.torch.load_file(str(data))["w"].tolist() == [2.0] * 3  # complete, not committed
    out, _, computed = st.get_or_compute("pool", spec, lambda: {"w": torch.full((3,), 3.0)}, "M")
    if existing and fails_in == "data":
        assert not computed and out["w"].tolist() == [1.0] * 3
    else:
        assert computed and out["w"].tolist() == [3.0] * 3
        assert st.get("pool", key, "M")[0]["w"].tolist() == [3.0] * 3


def test_manifest_mismatch_is_reported_with_the_file_and_recomputed(tmp_path, capsys):
    """The manifest hash is part of every key, so a sidecar naming another manifest can only be
    damage: it is reported with the sidecar's path and both full hashes, then recomputed (it used
    to block every later run with two equal-looking 12-character prefixes)."""
    st = Store(tmp_path)
    a, b = "7414409057130" + "a" * 51, "7414409057130" + "b" * 51
    _, key, _ = st.get_or_compute("original", {"x": 1}, lambda: {"w": torch.ones(2)}, a)
    side = st._paths("original", key)[1]
    with pytest.raises(ManifestMismatch, match="PROTOCOL") as e:
        st.get("original", key, b)
    assert str(side) in str(e.value) and a in str(e.value) and b in str(e.value)
    out, _, computed = st.get_or_compute("original", {"x": 1}, lambda: {"w": torch.full((2,), 5.0)}, b)
    err = capsys.readouterr().err
    assert computed and out["w"].tolist() == [5.0, 5.0]
    assert str(side) in err and a in err and b in err and "recomputing" in err
    assert st.get_or_compute("original", {"x": 1}, lambda: 1 / 0, b)[2] is False  # recovered for good


def test_a_store_path_safetensors_cannot_open_still_works(tmp_path):
    """A path with a non-UTF-8 byte: the file system holds it, safetensors' own file functions
    cannot open it. The store reads and writes the bytes itself, so it is a store like any other
    (it used to report every artifact as corrupt and retrain it on every run)."""
    root = os.path.join(os.fsencode(tmp_path), b"bad\xffname")
    st = Store(os.fsdecode(root))
    calls = []
    for _ in range(2):
        out, _, _ = st.get_or_compute("pool", {"m": 0}, lambda: calls.append(1) or {"w": torch.ones(4)}, "M")
        assert out["w"].tolist() == [1.0] * 4
    assert len(calls) == 1 and st.stats == {"hits": 1, "computed": 1, "corrupt": 0}


def test_non_finite_refused(tmp_path):
    with pytest.raises(StoreError, match="non-finite"):
        Store(tmp_path).put("pool", "k" * 64, {"w": torch.tensor([float("inf")])}, {}, "M")


def test_json_documents_checked(tmp_path, capsys):
    st = Store(tmp_path)
    st.put_json("metrics", "ab" * 32, {"acc": 1.0})
    assert st.get_json("metrics", "ab" * 32) == {"acc": 1.0}
    p = st._json_path("metrics", "ab" * 32)
    doc = json.loads(p.read_text())
    doc["doc"]["acc"] = 99.0  # tampered
    p.write_text(json.dumps(doc))
    assert st.get_json("metrics", "ab" * 32) is None
    assert "corrupt" in capsys.readouterr().err


def test_weights_digest_is_of_content_not_file(tmp_path):
    """Equal weights give one digest however they were written; any changed bit, name, dtype or
    shape gives another. The file's own bytes are stable too (one metadata key): safetensors
    writes a metadata map in random order, which once gave equal weights two file hashes."""
    import hashlib

    import torch

    from unlearnbench.store import Store, tensor_digest

    w = {"b": torch.arange(6, dtype=torch.float32).reshape(2, 3), "a": torch.ones(3, dtype=torch.bfloat16)}
    d = tensor_digest(w)
    assert d == tensor_digest({"a": w["a"].clone(), "b": w["b"].t().contiguous().t()})  # order, strides
    bumped = w["b"].clone()
    bumped.view(torch.int32)[0, 0] ^= 1  # one bit
    for other in ({**w, "b": bumped}, {**w, "b": w["b"].reshape(3, 2)}, {**w, "a": w["a"].float()},
                  {"c": w["b"], "a": w["a"]}):
        assert tensor_digest(other) != d
    files = []
    for root in [f"s{i}" for i in range(8)]:  # two metadata keys would differ in ~7 of 8 writes
        s = Store(tmp_path / root)
        s.put("original", "k" * 64, w, {"x": 1}, None)
        files.append((tmp_path / root / "original" / "kk" / ("k" * 64 + ".safetensors")).read_bytes())
        assert s.digest("original", "k" * 64) == hashlib.sha256(files[-1]).hexdigest()
        assert tensor_digest(s.get("original", "k" * 64, None)[0]) == d
    assert len(set(files)) == 1
    assert Store(tmp_path / "s1").digest("original", "z" * 64) is None


# -- writability, checked before anything computes (issue 14, defect 6) ----------------------------------
# The suite runs as root, for whom a chmod'ed folder is still writable, and a read-only bind mount
# needs privileges a test does not have. So a "read-only" folder here is one for which os.access
# says "not writable" (what it says on a read-only file system), and the tests also check that
# nothing was written there; the other cases are real: a file where a folder should be, or a
# folder that would have to be created under a file.

def _cli_case(tmp_path, monkeypatch, case):
    ro = tmp_path / "ro"
    ro.mkdir()
    a_file = tmp_path / "a-file"
    a_file.write_text("not a folder")
    real_access = os.access

    def access(path, mode, *a, **kw):
        p = os.path.abspath(os.fspath(path))
        if mode & os.W_OK and (p == str(ro) or p.startswith(str(ro) + os.sep)):
            return False
        return real_access(path, mode, *a, **kw)

    monkeypatch.setattr(os, "access", access)
    monkeypatch.delenv("UNLEARNBENCH_STORE", raising=False)
    store, runs = str(tmp_path / "store"), str(tmp_path / "runs")
    args = {"store": ["--store", str(ro), "--runs-dir", runs],
            "runs-dir": ["--store", store, "--runs-dir", str(ro / "runs")],
            "cwd": ["--store", store],  # the default --runs-dir runs, in a read-only cwd
            "env-store-file": ["--runs-dir", runs],
            "store-under-file": ["--store", str(a_file / "store"), "--runs-dir", runs],
            "runs-under-file": ["--store", store, "--runs-dir", str(a_file / "runs")],
            "runs-is-file": ["--store", store, "--runs-dir", str(a_file)]}[case]
    if case == "cwd":
        monkeypatch.chdir(ro)
    if case == "env-store-file":
        monkeypatch.setenv("UNLEARNBENCH_STORE", str(a_file))
    return ro, a_file, args


WRITABILITY = [  # id, what the message must name
    ("store", ["ro", "not writable", "--store"]),
    ("runs-dir", ["ro/runs", "not writable", "--runs-dir"]),
    ("cwd", ["runs", "not writable", "--runs-dir"]),
    ("env-store-file", ["UNLEARNBENCH_STORE", "a-file", "is a file"]),
    ("store-under-file", ["a-file", "is a file", "--store"]),
    ("runs-under-file", ["a-file", "is a file", "--runs-dir"]),
    ("runs-is-file", ["a-file", "is a file"]),
]


@pytest.mark.parametrize("case, names", WRITABILITY, ids=[c for c, _ in WRITABILITY])
def test_an_unwritable_place_is_one_message_before_anything_computes(tmp_path, monkeypatch, case, names):
    from click.testing import CliRunner

    from unlearnbench.cli import main

    ro, a_file, args = _cli_case(tmp_path, monkeypatch, case)
    r = CliRunner().invoke(main, ["run", "--seeds", "0", "-o", "pool.size=3", "-q", *args])
    assert r.exit_code == 2, r.output
    assert "Traceback" not in r.output and (r.exception is None or isinstance(r.exception, SystemExit))
    for word in names:
        assert word in r.output, r.output
    assert [ln for ln in r.output.splitlines() if ln.startswith("Error")] == [r.output.splitlines()[-1]]
    assert list(ro.rglob("*")) == [] and a_file.read_text() == "not a folder"  # nothing written
    assert not (tmp_path / "store").exists() or not list((tmp_path / "store").rglob("*.safetensors"))
