"""unlearnbench.data, the loader toolkit: data roots and find-or-download, image decoders, the safe
state-dict loader and its one error text, file hashing."""
from __future__ import annotations

import hashlib
import io
import pickle
import re
import subprocess
import sys
import warnings

import numpy as np
import pytest
import torch

from unlearnbench import DataNotFound
from unlearnbench.data import (IMG_EXT, data_roots, download_cache, eval_view, file_sha256, find_or_download,
                               fingerprint, list_class_folders, load_state_dict, native_view, read_images)

Image = pytest.importorskip("PIL.Image")

HOW = "The set was not found; get it so. Looked in: {looked}"


def test_public_and_light():
    import unlearnbench

    assert "data" in unlearnbench.__all__ and unlearnbench.data.load_state_dict is load_state_dict
    code = ("import sys, unlearnbench.data; "
            "assert not {'torch', 'numpy', 'PIL'} & set(sys.modules), 'imported at import time'")
    subprocess.run([sys.executable, "-W", "error", "-c", code], check=True)


# -- data roots and find-or-download -------------------------------------------------------------

@pytest.fixture
def places(tmp_path, monkeypatch):
    """An empty user cache (platformdirs follows XDG_CACHE_HOME), no UNLEARNBENCH_DATA, offline."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.delenv("UNLEARNBENCH_DATA", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    for d in ("root", "env", "system"):
        (tmp_path / d).mkdir()
    return tmp_path


def _find(folder):
    return folder / "set.bin" if (folder / "set.bin").is_file() else None


class _Download:
    def __init__(self, fail=False):
        self.calls, self.fail = [], fail

    def __call__(self, cache):
        self.calls.append(cache)
        if self.fail:
            raise RuntimeError("no network")
        cache.mkdir(parents=True, exist_ok=True)
        (cache / "set.bin").write_bytes(b"x")


def test_data_roots_order(monkeypatch, tmp_path):
    monkeypatch.setenv("UNLEARNBENCH_DATA", str(tmp_path / "env"))
    assert list(data_roots(str(tmp_path / "root"))) == [(tmp_path / "root", True), (tmp_path / "env", False)]
    assert list(data_roots(None)) == [(tmp_path / "env", False)]
    monkeypatch.delenv("UNLEARNBENCH_DATA")
    assert list(data_roots(None)) == []


def test_explicit_root_must_hold_the_files(places, monkeypatch):
    monkeypatch.setenv("UNLEARNBENCH_DATA", str(places / "env"))
    (places / "env" / "set.bin").write_bytes(b"x")
    dl = _Download()
    with pytest.raises(DataNotFound, match=re.escape(f"Looked in: {places / 'root'}") + "$"):
        find_or_download(str(places / "root"), _find, HOW, system=[places / "system"], download=dl)
    assert not dl.calls  # nothing looked at after the explicit root, nothing downloaded
    (places / "root" / "set.bin").write_bytes(b"x")
    assert find_or_download(str(places / "root"), _find, HOW) == (places / "root" / "set.bin", "--data-root")
    assert find_or_download(None, _find, HOW) == (places / "env" / "set.bin", "UNLEARNBENCH_DATA")


def test_env_root_falls_through_to_installed_copy(places, monkeypatch):
    monkeypatch.setenv("UNLEARNBENCH_DATA", str(places / "env"))
    (places / "system" / "set.bin").write_bytes(b"x")
    assert find_or_download(None, _find, HOW, system=[places / "system"]) == (places / "system" / "set.bin",
                                                                              "installed copy")


def test_nothing_given_says_so(places):
    with pytest.raises(DataNotFound, match="Looked in: no --data-root or UNLEARNBENCH_DATA given"):
        find_or_download(None, _find, HOW)


def test_earlier_download_is_used_offline(places):
    cache = download_cache()
    assert cache == places / "xdg" / "unlearnbench" / "data"
    cache.mkdir(parents=True)
    (cache / "set.bin").write_bytes(b"x")
    dl = _Download()
    hit, how = find_or_download(None, _find, HOW, system=[places / "system"], download=dl)
    assert hit == cache / "set.bin" and not dl.calls
    assert "earlier download" in how and "nothing downloaded" in how


def test_offline_without_earlier_download(places):
    dl = _Download()
    with pytest.raises(DataNotFound, match=re.escape(f"{download_cache()} (no download: HF_HUB_OFFLINE=1)")):
        find_or_download(None, _find, HOW, system=[places / "system"], download=dl)
    assert not dl.calls


def test_online_downloads_once_and_reports_failure(places, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    dl = _Download(fail=True)
    with pytest.raises(DataNotFound, match=r"\(download\), download failed: RuntimeError: no network"):
        find_or_download(None, _find, HOW, download=dl)
    dl = _Download()
    assert find_or_download(None, _find, HOW, download=dl) == (download_cache() / "set.bin", "downloaded now")
    assert dl.calls == [download_cache()]
    hit, how = find_or_download(None, _find, HOW, download=dl)  # the next run finds it: no second download
    assert len(dl.calls) == 1 and how == "an earlier download, reused"


# -- images --------------------------------------------------------------------------------------

def _image_bytes(w, h, mode="RGB", fmt="PNG", seed=0):
    rng = np.random.default_rng(seed)
    arr = rng.integers(0, 256, (h, w, 3) if mode == "RGB" else (h, w), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr, mode).save(buf, format=fmt)
    return buf.getvalue(), arr


def test_native_view_keeps_pixels_and_refuses_other_sizes():
    decode = native_view(16, "Some Set images")
    raw, arr = _image_bytes(16, 16)
    out = decode(raw, "a.png")
    assert out.dtype == np.uint8 and out.shape == (3, 16, 16) and np.array_equal(out, arr.transpose(2, 0, 1))
    raw, arr = _image_bytes(16, 16, mode="L")
    assert np.array_equal(decode(raw, "g.png"), np.stack([arr] * 3))  # grayscale becomes RGB
    with pytest.raises(DataNotFound, match=r"^b\.png is 20x16, Some Set images are 16x16$"):
        decode(_image_bytes(20, 16)[0], "b.png")
    with pytest.raises(DataNotFound, match=r"^c\.png is 20x16, the data set's images are 16x16$"):
        native_view(16)(_image_bytes(20, 16)[0], "c.png")
    with pytest.raises(DataNotFound, match=r"^t\.png is not a readable image"):
        decode(raw[:40], "t.png")


@pytest.mark.parametrize("w,h,resize,side,bicubic", [(50, 37, 32, 28, False), (37, 50, 32, 28, True),
                                                      (40, 40, 40, 40, True), (301, 200, 256, 224, False)])
def test_eval_view_is_torchvisions_resize_and_center_crop(w, h, resize, side, bicubic):
    from torchvision.transforms import CenterCrop, Compose, InterpolationMode, Resize

    raw, _ = _image_bytes(w, h, fmt="JPEG")
    ip = InterpolationMode.BICUBIC if bicubic else InterpolationMode.BILINEAR
    want = np.asarray(Compose([Resize(resize, ip), CenterCrop(side)])(Image.open(io.BytesIO(raw)).convert("RGB")))
    got = eval_view(raw, "x.jpg", resize, side, bicubic=bicubic)
    assert got.shape == (3, side, side) and np.array_equal(got, want.transpose(2, 0, 1))
    if (resize, side, bicubic) == (256, 224, False):
        assert np.array_equal(eval_view(raw, "x.jpg"), got)  # the defaults: ImageNet's eval view
    with pytest.raises(DataNotFound, match="not a readable image"):
        eval_view(raw[:100], "x.jpg")


def _class_tree(root):
    for c, files in {"b_cls": ["2.png", "10.PNG", "notes.txt"], "a_cls": ["z.jpg", "a.JPEG"], "c_empty": []}.items():
        (root / c).mkdir(parents=True)
        for k, f in enumerate(files):
            (root / c / f).write_bytes(_image_bytes(12, 10, seed=k)[0] if not f.endswith(".txt") else b"hi")
    (root / "stray.png").write_bytes(b"not a class")


def test_list_class_folders_is_imagefolder_order(tmp_path):
    from torchvision.datasets import ImageFolder

    _class_tree(tmp_path)
    got = list_class_folders(tmp_path)
    assert [(p.split("/")[-2:], c) for p, c in got] == [
        (["a_cls", "a.JPEG"], 0), (["a_cls", "z.jpg"], 0), (["b_cls", "10.PNG"], 1), (["b_cls", "2.png"], 1)]
    ref = ImageFolder(str(tmp_path), is_valid_file=lambda p: p.lower().endswith(IMG_EXT), allow_empty=True)
    assert got == [(str(p), c) for p, c in ref.samples]


def test_read_images_decodes_in_order_with_a_digest_of_the_bytes(tmp_path):
    _class_tree(tmp_path)
    paths = [p for p, _ in list_class_folders(tmp_path)]
    decode = native_view(8, "the test's images")

    def crop(raw, where):  # any decoder: here the top-left 8 x 8 of the native image
        with Image.open(io.BytesIO(raw)) as im:
            return np.asarray(im.convert("RGB"))[:8, :8].transpose(2, 0, 1)

    x, digest = read_images(paths, crop, 8, threads=3)
    raws = [open(p, "rb").read() for p in paths]
    assert x.shape == (4, 3, 8, 8) and all(np.array_equal(x[i], crop(r, "")) for i, r in enumerate(raws))
    assert digest == hashlib.sha256(b"".join(hashlib.sha256(r).digest() for r in raws)).digest()
    assert np.array_equal(read_images(paths, crop, 8, threads=1)[0], x)
    x, _ = read_images(paths, side=6)  # the default: Resize(side, bicubic) + CenterCrop(side)
    assert np.array_equal(x[2], eval_view(raws[2], "", 6, 6, bicubic=True))
    with pytest.raises(DataNotFound, match="images are 8x8"):
        read_images(paths, decode, 8)


# -- the safe state-dict loader ------------------------------------------------------------------

def _sd():
    return {"w": torch.arange(6.0).reshape(2, 3), "n": torch.tensor(3)}


def test_load_state_dict_reads_safetensors_and_torch_files(tmp_path):
    from safetensors.torch import save_file

    sd = _sd()
    save_file(sd, str(tmp_path / "a.safetensors"))
    torch.save(sd, tmp_path / "a.pth")
    torch.save({"state_dict": sd, "epoch": 3}, tmp_path / "ckpt.pt")  # a training checkpoint: unwrapped
    for name in ("a.safetensors", "a.pth", "ckpt.pt"):
        got = load_state_dict(tmp_path / name)
        assert set(got) == set(sd) and all(torch.equal(got[k], sd[k]) for k in sd), name


class _Payload:
    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


@pytest.fixture(scope="module")
def bad_files(tmp_path_factory):
    """(folder, marker): files that are not loadable state dicts; marker appears if code from one ran."""
    tmp_path = tmp_path_factory.mktemp("bad")
    marker = tmp_path / "pwned"
    with open(tmp_path / "evil.pt", "wb") as f:
        pickle.dump({"w": _Payload(marker)}, f, protocol=2)
    torch.save({"w": _Payload(marker)}, tmp_path / "evil_torch.pt")
    torch.save({"w": torch.zeros(2), "lr": 0.1, "note": "x"}, tmp_path / "values.pt")
    torch.save(torch.zeros(2), tmp_path / "bare.pt")
    with warnings.catch_warnings():  # torch.jit is deprecated; OpenAI's CLIP .pt files are such archives
        warnings.simplefilter("ignore", FutureWarning)
        torch.jit.save(torch.jit.trace(torch.nn.Linear(2, 2), torch.zeros(1, 2)), str(tmp_path / "model.pt"))
    (tmp_path / "junk.safetensors").write_bytes(b"not a safetensors file")
    return tmp_path, marker


@pytest.mark.parametrize("name,reason", [
    ("missing.pt", "there is no such file"),
    ("evil.pt", "the weights-only loader refused what it holds"),
    ("evil_torch.pt", r"the weights-only loader refused what it holds \(Unsupported global"),
    ("values.pt", r"2 of its 3 entries are not tensors \('lr' is a float\)"),
    ("bare.pt", "it holds a Tensor, not a dict of tensors"),
    ("junk.safetensors", "it is not a readable safetensors file"),
    ("model.pt", r"it is a TorchScript archive, which the suite does not load \(loading one can run code\)"),
])
def test_load_state_dict_one_error_text(bad_files, name, reason):
    folder, marker = bad_files
    path = folder / name
    with pytest.raises(DataNotFound) as e:
        load_state_dict(path)
    msg = str(e.value)
    assert re.match(re.escape(f"{path} is not a loadable state dict: ") + reason, msg), msg
    if name == "model.pt":  # how to fix it: convert once, where the file is trusted
        assert "Convert it once" in msg and "torch.jit.load('model.pt'" in msg and "model.safetensors" in msg
    else:  # how to fix it: the two formats that load, and why
        assert msg.endswith("torch files are read weights-only (torch.load(weights_only=True)), so no code in a "
                            "file can run")
    assert not marker.exists()  # no code from a file ran


def test_load_state_dict_caller_names_what_and_how_to_convert(bad_files):
    folder, _ = bad_files
    with pytest.raises(DataNotFound, match=r"values\.pt is not a loadable CLIP state dict: 2 of its"):
        load_state_dict(folder / "values.pt", what="CLIP state dict")
    with pytest.raises(DataNotFound, match=r"TorchScript archive.*\)\. Use open_clip to convert it\.$"):
        load_state_dict(folder / "model.pt", what="CLIP state dict", convert="Use open_clip to convert it.")


# -- hashing -------------------------------------------------------------------------------------

def test_file_sha256_and_fingerprint(tmp_path):
    p = tmp_path / "f.bin"
    data = np.random.default_rng(0).integers(0, 256, 3_000_001, dtype=np.uint8).tobytes()
    p.write_bytes(data)
    assert file_sha256(p) == file_sha256(str(p)) == hashlib.sha256(data).hexdigest()
    # every recorded manifest carries a fingerprint: its formula must never change
    assert fingerprint(b"images", b"labels") == "415eec58888c2286ad6745374b1c75190a0f84f4b1a4d305336f3e74f96a1114"
    assert fingerprint(b"labels", b"images") != fingerprint(b"images", b"labels")


def test_definition_checks_and_small():
    from unlearnbench.data import Definition

    d = Definition("Set", n_train=5, n_test=2, side=8, classes=3, train_per_class=2)
    d.check_count("train", 5, "f")
    d.check_labels(np.array([0, 2]), "f")
    with pytest.raises(DataNotFound, match=r"^f: expected 5 train images for Set, found 4"):
        d.check_count("train", 4, "f")
    with pytest.raises(DataNotFound, match=r"^f: Set labels must run 0..2, found largest label 3"):
        d.check_labels(np.array([0, 3]), "f")
    with pytest.raises(DataNotFound, match=r"^f: Set labels must run 0..2, found label -1"):
        d.check_labels(np.array([-1, 0]), "f")
    with pytest.raises(DataNotFound, match=r"^f: expected 8x8 images for Set, found 10x9"):
        d.check_side(9, 10, "f")
    with pytest.raises(DataNotFound, match=r"^f: expected 3 classes for Set, found 4"):
        d.check_classes(4, "f")
    with pytest.raises(DataNotFound, match=r"^f: expected 2 train images per class for Set, found 1"):
        d.check_per_class(1, "f")
    s = d.small()
    assert (s.n_train, s.n_test, s.n_val, s.train_per_class, s.side, s.classes) == (None, None, None, None, 8, 3)
    s.check_count("train", 4, "f")
    assert d.small(classes=None).classes is None


def test_write_atomic_never_leaves_half_a_file(tmp_path, monkeypatch):
    """Outputs (leaderboard files, plots) go through write_atomic: a failed write keeps the old file
    and leaves no temp file behind."""
    import os

    import pytest

    from unlearnbench.data import write_atomic

    target = tmp_path / "board.md"
    write_atomic(target, "old ✓")
    assert target.read_text(encoding="utf-8") == "old ✓" and oct(target.stat().st_mode & 0o777) == "0o644"

    def boom(fd):
        raise OSError("disk full")

    monkeypatch.setattr(os, "fsync", boom)
    with pytest.raises(OSError, match="disk full"):
        write_atomic(target, b"new")
    assert target.read_text(encoding="utf-8") == "old ✓" and sorted(p.name for p in tmp_path.iterdir()) == ["board.md"]
