"""`unlearnbench merge` with bad inputs (issue 14, acceptance 3 and 4; reliability review 2, §2 and §5).

Every malformed file is refused by BOTH engines with the SAME message: exit 2, no traceback,
the file named. The header checks match safetensors' own (each malformed header is also
refused by safetensors itself). No output is ever written over an input, and the output is
written atomically. Tiny tensors only: the whole file runs in a few seconds.
"""
from __future__ import annotations

import json
import math
import os
import struct
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from safetensors.torch import load_file, save_file

from unlearnbench.cli import main

ENGINES = ("chunked", "per-file")


def _base() -> dict:
    g = torch.Generator().manual_seed(0)
    return {"a": torch.randn(4, 3, generator=g), "b": torch.randn(4, generator=g),
            "bn.running_var": torch.ones(4), "bn.num_batches_tracked": torch.tensor(5)}


def _ft(i: int) -> dict:
    return {k: (v + 0.1 * (i + 1) if v.is_floating_point() and "running" not in k else v.clone())
            for k, v in _base().items()}


def _raw(header, data: bytes, raw_header: bytes | None = None) -> bytes:
    h = raw_header if raw_header is not None else json.dumps(header).encode()
    return struct.pack("<Q", len(h)) + h + data


def _entries() -> dict:
    """The header entries of a well-formed FT: a (4,3) F32 at [0,48), b (4,) at [48,64), ..."""
    return {"a": {"dtype": "F32", "shape": [4, 3], "data_offsets": [0, 48]},
            "b": {"dtype": "F32", "shape": [4], "data_offsets": [48, 64]},
            "bn.running_var": {"dtype": "F32", "shape": [4], "data_offsets": [64, 80]},
            "bn.num_batches_tracked": {"dtype": "I64", "shape": [], "data_offsets": [80, 88]}}


DATA = b"\0" * 88


def _with(**changes) -> bytes:
    e = _entries()
    for k, v in changes.items():
        e[k.replace("__", ".")] = v
    return _raw(e, DATA)


def _saved(tmp: Path, state: dict) -> bytes:
    p = tmp / "scratch.safetensors"
    save_file(state, str(p))
    return p.read_bytes()


def _nan(state: dict, key: str, value: float = float("nan")) -> dict:
    state = {k: v.clone() for k, v in state.items()}
    state[key].view(-1)[1] = value
    return state


# (id, which input is bad: "ft" (the 2nd fine-tune) or "base", how to make it, what the message says)
MALFORMED = [
    ("lying-offsets", "ft", lambda t: _raw({**_entries(), "a": {"dtype": "F32", "shape": [4, 3],
                                                               "data_offsets": [0, 8]},
                                            "b": {"dtype": "F32", "shape": [4], "data_offsets": [8, 24]}},
                                           b"\0" * 24), "tensor 'a' (F32, shape (4, 3)) needs 48 bytes"),
    ("overlapping", "ft", lambda t: _with(b={"dtype": "F32", "shape": [4], "data_offsets": [40, 56]}),
     "overlaps tensor 'a'"),
    ("gap", "ft", lambda t: _raw({"a": {"dtype": "F32", "shape": [4, 3], "data_offsets": [0, 48]},
                                  "b": {"dtype": "F32", "shape": [4], "data_offsets": [52, 68]}}, b"\0" * 68),
     "belong to no tensor (before tensor 'b')"),
    ("trailing-bytes", "ft", lambda t: _raw(_entries(), DATA + b"\0" * 4), "last 4 bytes belong to no tensor"),
    ("json-list-header", "ft", lambda t: _raw([1, 2], b""), "its header is a JSON list, not an object"),
    ("entry-not-object", "ft", lambda t: _with(a=[0, 48]), "tensor 'a' has a JSON list for its entry"),
    ("no-data-offsets", "ft", lambda t: _with(a={"dtype": "F32", "shape": [4, 3]}),
     "tensor 'a' has no 'data_offsets'"),
    ("no-dtype", "ft", lambda t: _with(a={"shape": [4, 3], "data_offsets": [0, 48]}), "tensor 'a' has no 'dtype'"),
    ("unknown-dtype", "ft", lambda t: _with(a={"dtype": "F33", "shape": [4, 3], "data_offsets": [0, 48]}),
     "tensor 'a' has an unknown dtype 'F33'"),
    ("negative-shape", "ft", lambda t: _with(a={"dtype": "F32", "shape": [-4, 3], "data_offsets": [0, 48]}),
     "tensor 'a' has shape [-4, 3], not a list of non-negative integers"),
    ("float-shape", "ft", lambda t: _with(a={"dtype": "F32", "shape": [4.0, 3], "data_offsets": [0, 48]}),
     "tensor 'a' has shape [4.0, 3]"),
    ("offsets-reversed", "ft", lambda t: _with(a={"dtype": "F32", "shape": [4, 3], "data_offsets": [48, 0]}),
     "tensor 'a' has data_offsets [48, 0]"),
    ("metadata-not-strings", "ft", lambda t: _raw({"__metadata__": {"n": 3}, **_entries()}, DATA),
     "__metadata__ is not an object of strings"),
    ("header-past-eof", "ft", lambda t: struct.pack("<Q", 5000) + b'{"a": 1}', "header length 5000 runs past"),
    ("header-length-absurd", "ft", lambda t: struct.pack("<Q", 2 ** 62) + b"{}", "header length 4611686018427387904"),
    ("header-not-json", "ft", lambda t: _raw(None, DATA, raw_header=b'{"a": {'), "corrupt safetensors header"),
    ("header-not-utf8", "ft", lambda t: _raw(None, b"", raw_header=b'{"\xff": 1}'), "corrupt safetensors header"),
    ("truncated-data", "ft", lambda t: _saved(t, _ft(1))[:-10], "is truncated"),
    ("empty-file", "ft", lambda t: b"", "too short: 0 bytes"),
    ("garbage", "ft", lambda t: bytes(range(256)) * 4, "is not a safetensors file (header length"),
    ("garbage-base", "base", lambda t: bytes(range(256)) * 4, "is not a safetensors file (header length"),
    ("lying-base", "base", lambda t: _raw({**_entries(), "b": {"dtype": "F32", "shape": [5],
                                                               "data_offsets": [48, 64]}}, DATA),
     "tensor 'b' (F32, shape (5,)) needs 20 bytes"),
    ("int32-ft", "ft", lambda t: _saved(t, {**_ft(1), "a": torch.ones(4, 3, dtype=torch.int32)}),
     "tensor 'a' has dtype I32, but a fine-tune's merged tensors are floating point"),
    ("float-where-base-int", "ft", lambda t: _saved(t, {**_ft(1), "bn.num_batches_tracked": torch.tensor(5.0)}),
     "tensor 'bn.num_batches_tracked' is F32, but BASE"),
    ("fp8-base", "base", lambda t: _saved(t, {**_base(), "a": _base()["a"].to(torch.float8_e4m3fn)}),
     "tensor 'a' has dtype F8_E4M3, which merge does not read"),
    ("shape-mismatch", "ft", lambda t: _saved(t, {**_ft(1), "a": torch.ones(4, 4)}),
     "tensor 'a' has shape (4, 4), BASE"),
    ("extra-key", "ft", lambda t: _saved(t, {**_ft(1), "c": torch.ones(2)}),
     "has 1 tensor(s) that BASE"),
    ("missing-key", "ft", lambda t: _saved(t, {k: v for k, v in _ft(1).items() if k != "b"}),
     "lacks 1 tensor(s) that BASE"),
    ("missing-buffer", "ft", lambda t: _saved(t, {k: v for k, v in _ft(1).items() if k != "bn.running_var"}),
     "lacks 1 tensor(s) that BASE"),
    ("base-lacks-key", "base", lambda t: _saved(t, {k: v for k, v in _base().items() if k != "b"}),
     "ft0.safetensors: has 1 tensor(s) that BASE"),
    ("base-no-floats", "base", lambda t: _saved(t, {"n": torch.tensor(1)}), "has no floating-point tensors"),
    ("nan-in-base", "base", lambda t: _saved(t, _nan(_base(), "b")),
     "BASE has non-finite values (NaN or inf) in tensor 'b'"),
    ("nan-in-base-buffer", "base", lambda t: _saved(t, _nan(_base(), "bn.running_var")),
     "BASE has non-finite values (NaN or inf) in tensor 'bn.running_var'"),
    ("nan-in-ft", "ft", lambda t: _saved(t, _nan(_ft(1), "a")), "has non-finite values (NaN or inf) in tensor 'a'"),
    ("inf-in-ft", "ft", lambda t: _saved(t, _nan(_ft(1), "b", float("-inf"))),
     "has non-finite values (NaN or inf) in tensor 'b'"),
    ("tau-overflows", "ft", lambda t: _saved(t, {**_ft(1), "a": torch.full((4, 3), 3.0e38)}),
     "the task vector (this file − BASE) has non-finite values (NaN or inf) in tensor 'a'"),
]


def _files(tmp: Path, case) -> tuple[list[str], Path]:
    _, which, make, _ = case
    base, ft0, ft1 = tmp / "base.safetensors", tmp / "ft0.safetensors", tmp / "ft1.safetensors"
    save_file(_base(), str(base))
    save_file(_ft(0), str(ft0))
    save_file(_ft(1), str(ft1))
    bad = base if which == "base" else ft1
    bad.write_bytes(make(tmp))
    return [str(base), str(ft0), str(ft1)], bad


def _error_line(output: str) -> str:
    lines = [ln for ln in output.splitlines() if ln.startswith("Error: ")]
    assert len(lines) == 1, output
    return lines[0]


@pytest.mark.parametrize("case", MALFORMED, ids=[c[0] for c in MALFORMED])
def test_malformed_file_refused_by_both_engines_alike(tmp_path, case, monkeypatch):
    monkeypatch.setenv("UNLEARNBENCH_KERNEL", "torch")  # the kernel's refusals: tests/test_merge_cli.py
    name, which, _, says = case
    files, bad = _files(tmp_path, case)
    if name == "tau-overflows":  # 3e38 − (−3e38) overflows float32 though both files are finite
        save_file({**_base(), "a": torch.full((4, 3), -3.0e38)}, files[0])
    before = {p: Path(p).read_bytes() for p in files}
    msgs = {}
    for engine in ENGINES:
        out = tmp_path / f"out-{engine}.safetensors"
        r = CliRunner().invoke(main, ["merge", "-m", "negmerge", *files, "--engine", engine, "--out", str(out)])
        assert r.exit_code == 2, (engine, r.output, r.exception)
        assert "Traceback" not in r.output
        msg = _error_line(r.output)
        assert str(bad) in msg and says in msg, (engine, msg)
        assert not out.exists() and not list(tmp_path.glob(".out-*"))  # nothing written, no temporary left
        msgs[engine] = msg
    assert msgs["chunked"] == msgs["per-file"]
    assert {p: Path(p).read_bytes() for p in files} == before


SAFETENSORS_WOULD_REFUSE = [c for c in MALFORMED if c[0] in {
    "lying-offsets", "overlapping", "gap", "trailing-bytes", "json-list-header", "entry-not-object",
    "no-data-offsets", "no-dtype", "unknown-dtype", "negative-shape", "float-shape", "offsets-reversed",
    "metadata-not-strings", "header-past-eof", "header-length-absurd", "header-not-json", "header-not-utf8",
    "truncated-data", "empty-file", "garbage"}]


@pytest.mark.parametrize("case", SAFETENSORS_WOULD_REFUSE, ids=[c[0] for c in SAFETENSORS_WOULD_REFUSE])
def test_header_checks_are_safetensors_own(tmp_path, case):
    """Every header the chunked engine refuses, safetensors refuses too (and read_index accepts
    what safetensors writes: every other case here starts from save_file's output)."""
    from safetensors import safe_open

    from unlearnbench.errors import StoreError
    from unlearnbench.merge import read_index

    _, bad = _files(tmp_path, case)
    with pytest.raises(Exception):
        with safe_open(str(bad), "pt") as f:
            for k in f.keys():
                f.get_tensor(k)
    with pytest.raises(StoreError):
        read_index(bad)


def test_edge_headers_safetensors_accepts_are_accepted(tmp_path):
    """Padding spaces, a null __metadata__, unknown extra fields, zero-size tensors at one offset."""
    from safetensors import safe_open

    from unlearnbench.merge import read_index

    cases = [_raw(None, b"\0" * 16, raw_header=b'{"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}}   '),
             _raw({"__metadata__": None, "a": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}}, b"\0" * 16),
             _raw({"a": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16], "x": 1}}, b"\0" * 16),
             _raw({"z": {"dtype": "F32", "shape": [0], "data_offsets": [0, 0]},
                   "y": {"dtype": "F16", "shape": [2, 0], "data_offsets": [0, 0]},
                   "a": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}}, b"\0" * 16)]
    for i, raw in enumerate(cases):
        p = tmp_path / f"e{i}.safetensors"
        p.write_bytes(raw)
        with safe_open(str(p), "pt") as f:
            want = {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}
        assert {k: e.shape for k, e in read_index(p).items()} == want


LAM = [("lam-nan", "nan"), ("lam-inf", "inf"), ("lam-minus-inf", "-inf")]


@pytest.mark.parametrize("lam", [c[1] for c in LAM], ids=[c[0] for c in LAM])
@pytest.mark.parametrize("engine", ENGINES)
def test_lam_must_be_finite(tmp_path, lam, engine):
    files, _ = _files(tmp_path, MALFORMED[0])
    save_file(_ft(1), files[2])
    r = CliRunner().invoke(main, ["merge", *files, "--engine", engine, "--lam", lam,
                                  "--out", str(tmp_path / "m.safetensors")])
    assert r.exit_code == 2 and "Traceback" not in r.output
    assert f"--lam must be a finite number, not {float(lam)}; e.g. --lam 1.0" in r.output, r.output
    assert not (tmp_path / "m.safetensors").exists()


def test_lam_that_overflows_the_base_dtype_is_refused(tmp_path):
    """fp16 base: BASE − lam·τ past 65504 is inf; refused, naming --lam and the dtype."""
    base, ft = tmp_path / "base.safetensors", tmp_path / "ft.safetensors"
    save_file({k: v.half() if v.is_floating_point() else v for k, v in _base().items()}, str(base))
    save_file(_ft(0), str(ft))
    for engine in ENGINES:
        r = CliRunner().invoke(main, ["merge", str(base), str(ft), "--engine", engine, "--lam", "1e7",
                                      "--out", str(tmp_path / "m.safetensors")])
        assert r.exit_code == 2 and "Traceback" not in r.output
        assert "--lam 10000000.0: BASE − lam·τ is not finite in tensor 'a' (it overflows float16)" in r.output


def _three(tmp: Path) -> list[str]:
    files = [tmp / "base.safetensors", tmp / "ft0.safetensors", tmp / "ft1.safetensors"]
    for p, s in zip(files, [_base(), _ft(0), _ft(1)]):
        save_file(s, str(p))
    return [str(p) for p in files]


def _links(tmp: Path, files: list[str]) -> dict:
    (tmp / "sub").mkdir()
    os.symlink(files[0], tmp / "base-link.safetensors")
    os.link(files[2], tmp / "ft1-hard.safetensors")
    return {"out-is-base": (files[0], "BASE"), "out-is-ft-lam": (files[2], "FINETUNED 2 of 2"),
            "out-dotdot-base": (str(tmp / "sub" / ".." / "base.safetensors"), "BASE"),
            "out-symlink-to-base": (str(tmp / "base-link.safetensors"), "BASE"),
            "out-hardlink-to-ft": (str(tmp / "ft1-hard.safetensors"), "FINETUNED 2 of 2")}


OUT_INPUT = ["out-is-base", "out-is-ft-lam", "out-dotdot-base", "out-symlink-to-base", "out-hardlink-to-ft"]


@pytest.mark.parametrize("case", OUT_INPUT)
@pytest.mark.parametrize("engine", ENGINES)
def test_out_never_overwrites_an_input(tmp_path, case, engine, monkeypatch):
    files = _three(tmp_path)
    out, what = _links(tmp_path, files)[case]
    before = {p: Path(p).read_bytes() for p in files}
    import unlearnbench.merge.files as mf

    def no_read(*a, **k):
        raise AssertionError("an input was read before --out was checked")

    monkeypatch.setattr(mf, "load_state_dict", no_read)
    r = CliRunner().invoke(main, ["merge", *files, "--engine", engine, "--out", out,
                                  *(["--lam", "1"] if case == "out-is-ft-lam" else [])])
    assert r.exit_code == 2 and "Traceback" not in r.output, r.output
    assert f"--out {out} is an input ({what}: " in r.output and "never writes over its inputs" in r.output
    assert {p: Path(p).read_bytes() for p in files} == before


BAD_OUT = [("out-below-a-file", lambda t: str(t / "base.safetensors" / "x.safetensors"), "is a file, not a folder"),
           ("out-deep-below-a-file", lambda t: str(t / "base.safetensors" / "a" / "b" / "x.safetensors"),
            "is a file, not a folder"),
           ("out-not-safetensors", lambda t: str(t / "x.pt"), "name it *.safetensors (e.g. --out "),
           ("out-no-suffix", lambda t: str(t / "x"), "name it *.safetensors"),
           ("out-unwritable-folder", lambda t: str(t / "ro" / "x.safetensors"), "is not writable")]


@pytest.mark.parametrize("case", BAD_OUT, ids=[c[0] for c in BAD_OUT])
def test_bad_out_path_one_message(tmp_path, case, monkeypatch):
    name, make, says = case
    files = _three(tmp_path)
    if name == "out-unwritable-folder":
        (tmp_path / "ro").mkdir(mode=0o500)
        if os.geteuid() == 0:  # root may write anywhere: make access() say what it says to a user
            import unlearnbench.merge.files as mf

            real = os.access
            monkeypatch.setattr(mf.os, "access", lambda p, m: False if Path(p).name == "ro" else real(p, m))
    out = make(tmp_path)
    for engine in ENGINES:
        r = CliRunner().invoke(main, ["merge", *files, "--engine", engine, "--out", out])
        assert r.exit_code == 2 and "Traceback" not in r.output, r.output
        assert _error_line(r.output).startswith(f"Error: --out {out}") and says in r.output, r.output


def test_output_is_replaced_atomically_and_a_failed_merge_keeps_it(tmp_path, monkeypatch):
    """An existing output that is not an input is replaced (with the usual file mode); a merge that
    fails, even while writing, leaves it as it was and no temporary file behind."""
    import safetensors.torch

    files = _three(tmp_path)
    out = tmp_path / "out" / "tau.safetensors"
    out.parent.mkdir()
    out.write_bytes(b"previous")
    r = CliRunner().invoke(main, ["merge", *files, "--out", str(out)])
    assert r.exit_code == 0, r.output
    assert set(load_file(str(out))) == {"a", "b"}
    mask = os.umask(0)
    os.umask(mask)
    assert out.stat().st_mode & 0o777 == 0o666 & ~mask
    good = out.read_bytes()
    nan = tmp_path / "nan.safetensors"
    save_file(_nan(_ft(1), "a"), str(nan))
    r = CliRunner().invoke(main, ["merge", files[0], files[1], str(nan), "--out", str(out)])
    assert r.exit_code == 2 and out.read_bytes() == good

    real = safetensors.torch.save_file

    def dies_half_way(tensors, path, metadata=None):
        real(tensors, path, metadata=metadata)
        with open(path, "r+b") as f:
            f.truncate(20)
        raise KeyboardInterrupt  # a kill while writing

    monkeypatch.setattr(safetensors.torch, "save_file", dies_half_way)
    r = CliRunner().invoke(main, ["merge", *files, "--lam", "1", "--out", str(out)])
    assert r.exit_code != 0 and out.read_bytes() == good
    assert sorted(p.name for p in out.parent.iterdir()) == ["tau.safetensors"]


@pytest.mark.parametrize("engine", ENGINES)
def test_legitimate_inputs_are_accepted(tmp_path, engine):
    """Accepted on purpose: fp16/bf16/fp64 fine-tunes (upcast to fp32), the same fine-tune twice,
    the base given as a fine-tune (τ = 0), a missing output folder (created)."""
    files = _three(tmp_path)
    half = tmp_path / "half.safetensors"
    save_file({k: v.bfloat16() if v.is_floating_point() else v for k, v in _ft(2).items()}, str(half))
    out = tmp_path / "new" / "deep" / "m.safetensors"
    r = CliRunner().invoke(main, ["merge", *files, files[1], files[0], str(half), "--engine", engine,
                                  "--out", str(out)])
    assert r.exit_code == 0, r.output
    tau = load_file(str(out))
    assert all(math.isfinite(float(v.abs().max())) for v in tau.values())


PT_CASES = ["int32-ft", "float-where-base-int", "shape-mismatch", "extra-key", "missing-key", "nan-in-ft",
            "nan-in-base"]


@pytest.mark.parametrize("name", PT_CASES)
def test_torch_files_get_the_same_checks(tmp_path, name):
    """A torch state dict (per-file engine) is checked by the same function once loaded: the
    message is the safetensors file's, with the .pt file named."""
    case = next(c for c in MALFORMED if c[0] == name)
    files, bad = _files(tmp_path, case)
    r = CliRunner().invoke(main, ["merge", *files, "--engine", "per-file", "--out", str(tmp_path / "o.safetensors")])
    want = _error_line(r.output)
    pt = bad.with_suffix(".pt")
    torch.save(load_file(str(bad)), pt)
    files = [str(pt) if p == str(bad) else p for p in files]
    r = CliRunner().invoke(main, ["merge", *files, "--out", str(tmp_path / "o.safetensors")])
    assert r.exit_code == 2 and "Traceback" not in r.output, r.output
    assert _error_line(r.output) == want.replace(str(bad), str(pt))


def test_chunked_engine_blames_a_non_finite_base_not_ft0(tmp_path, monkeypatch):
    """merge_safetensors called directly (no files.py preflight), fused kernel and torch alike."""
    import shutil

    from unlearnbench.errors import StoreError
    from unlearnbench.merge import engine
    from unlearnbench.methods.negmerge import SignBoundsReducer

    files = _three(tmp_path)
    save_file(_nan(_base(), "a"), files[0])
    for kernel in ("c", "torch"):
        if kernel == "c" and not any(shutil.which(c) for c in ("cc", "gcc", "clang")):
            continue
        monkeypatch.setenv("UNLEARNBENCH_KERNEL", kernel)
        with pytest.raises(StoreError, match=r"base\.safetensors: BASE has non-finite values .* tensor 'a'"):
            engine.merge_safetensors(SignBoundsReducer, files[1:], base=files[0], keys=["a", "b"])
