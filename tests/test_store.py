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
    may take it for a finished artifact, no temporary file stays behind, an earlier artifact's
    file is never overwritten in place, and the next get_or_compute recomputes."""
    from pathlib import Path

    import safetensors.torch

    st = Store(tmp_path)
    spec = {"m": 1}
    key = st.key(spec)
    data, side = st._paths("pool", key)
    if existing:
        st.put("pool", key, {"w": torch.ones(3)}, spec, "M")
        old = data.read_bytes()
    real_save, real_write_text = safetensors.torch.save_file, Path.write_text

    def torn_save(tensors, filename, metadata=None):
        real_save(tensors, filename, metadata=metadata)
        with open(filename, "r+b") as f:
            f.truncate(os.path.getsize(filename) // 2)
        raise KeyboardInterrupt

    def torn_write_text(self, text, *a, **kw):
        if self.name.startswith(f".{side.name}."):  # the sidecar's temporary file
            real_write_text(self, text[:len(text) // 2], *a, **kw)
            raise KeyboardInterrupt
        return real_write_text(self, text, *a, **kw)

    if fails_in == "data":
        monkeypatch.setattr(safetensors.torch, "save_file", torn_save)
    else:
        monkeypatch.setattr(Path, "write_text", torn_write_text)
    with pytest.raises(KeyboardInterrupt):
        st.put("pool", key, {"w": torch.full((3,), 2.0)}, spec, "M")
    monkeypatch.undo()

    assert not st.has("pool", key)  # the sidecar, written last, is the commit marker
    assert sorted(p.name for p in data.parent.iterdir()) == ([data.name] if existing or fails_in == "sidecar"
                                                             else [])  # no temporary file, no sidecar
    if existing and fails_in == "data":
        assert data.read_bytes() == old  # the earlier file was never written in place
    elif data.exists():
        assert safetensors.torch.load_file(str(data))["w"].tolist() == [2.0] * 3  # complete, not committed
    out, _, computed = st.get_or_compute("pool", spec, lambda: {"w": torch.full((3,), 3.0)}, "M")
    assert computed and out["w"].tolist() == [3.0] * 3
    assert st.get("pool", key, "M")[0]["w"].tolist() == [3.0] * 3


def test_manifest_mismatch_fails(tmp_path):
    st = Store(tmp_path)
    _, key, _ = st.get_or_compute("original", {"x": 1}, lambda: {"w": torch.ones(2)}, "MANIFEST-A")
    with pytest.raises(ManifestMismatch, match="PROTOCOL"):
        st.get("original", key, "MANIFEST-B")
    with pytest.raises(ManifestMismatch):
        st.get_or_compute("original", {"x": 1}, lambda: {"w": torch.ones(2)}, "MANIFEST-B")


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
