"""`unlearnbench merge`: checkpoints a user already has, safetensors or torch state dicts (issue #2.14)."""
from __future__ import annotations

import pickle

import pytest

import torch
from click.testing import CliRunner
from safetensors.torch import load_file, save_file

from unlearnbench.cli import main
from unlearnbench.methods.negmerge import negmerge
from unlearnbench.models import build_model


def _checkpoints(tmp_path):
    base = build_model("cnn-bn", 10).state_dict()
    g = torch.Generator().manual_seed(1)
    paths, fts = [], []
    for i in range(3):
        ft = {k: (v + 0.1 * torch.randn(v.shape, generator=g) + 0.05 if v.is_floating_point() else v + 3)
              for k, v in base.items()}
        fts.append(ft)
        p = tmp_path / (f"ft{i}.safetensors" if i % 2 == 0 else f"ft{i}.pt")
        save_file(ft, str(p)) if p.suffix == ".safetensors" else torch.save(ft, p)
        paths.append(str(p))
    save_file(base, str(tmp_path / "base.safetensors"))
    return base, fts, paths


def test_merge_writes_task_vector_and_edited_model(tmp_path):
    base, fts, paths = _checkpoints(tmp_path)
    runner = CliRunner()
    r = runner.invoke(main, ["merge", "--method", "negmerge", str(tmp_path / "base.safetensors"), *paths,
                             "-o", str(tmp_path / "tau.safetensors")])
    assert r.exit_code == 0, r.output
    tau = load_file(str(tmp_path / "tau.safetensors"))
    keys = [k for k, v in base.items() if v.is_floating_point() and "running" not in k]
    expect = negmerge([{k: ft[k] - base[k] for k in keys} for ft in fts])
    assert set(tau) == set(keys)  # BN statistics and integer buffers are not in τ
    for k in keys:
        assert torch.allclose(tau[k], expect[k], atol=1e-6)
    r = runner.invoke(main, ["merge", str(tmp_path / "base.safetensors"), *paths, "--lam", "0.5",
                             "-o", str(tmp_path / "model.safetensors")])
    assert r.exit_code == 0, r.output
    model = load_file(str(tmp_path / "model.safetensors"))
    assert set(model) == set(base)
    assert torch.equal(model["1.running_var"], base["1.running_var"])  # buffers from BASE (§3)
    assert torch.equal(model["1.num_batches_tracked"], base["1.num_batches_tracked"])
    assert torch.allclose(model["0.weight"], base["0.weight"] - 0.5 * expect["0.weight"], atol=1e-6)


class _Evil:
    def __reduce__(self):
        return (print, ("code ran",))


def test_pickled_code_is_refused(tmp_path):
    base, _, paths = _checkpoints(tmp_path)
    evil = tmp_path / "evil.pt"
    with open(evil, "wb") as f:
        pickle.dump({"0.weight": _Evil()}, f)
    r = CliRunner().invoke(main, ["merge", str(tmp_path / "base.safetensors"), str(evil), "-o",
                                  str(tmp_path / "x.safetensors")])
    assert r.exit_code != 0 and "weights-only" in r.output and "code ran" not in r.output


def test_merge_rejects_non_merge_method_and_bad_option(tmp_path):
    _, _, paths = _checkpoints(tmp_path)
    r = CliRunner().invoke(main, ["merge", "-m", "retrain", str(tmp_path / "base.safetensors"), *paths, "-o",
                                  str(tmp_path / "x.safetensors")])
    assert r.exit_code != 0 and "not a merge operator" in r.output
    r = CliRunner().invoke(main, ["merge", "-m", "negmrge", str(tmp_path / "base.safetensors"), *paths, "-o",
                                  str(tmp_path / "x.safetensors")])
    assert "did you mean 'negmerge'" in r.output


@pytest.mark.parametrize("method,params", [("negmerge", []), ("negmerge-min", []), ("conflict", []),
                                           ("negmerge", ["consensus_q=2"]), ("uniform", []), ("magmax", [])])
def test_chunked_engine_is_bitwise_the_per_file_stream(tmp_path, method, params, monkeypatch):
    """The chunked engine (fastmerge) swaps the loops; the result must not change by one bit."""
    from unlearnbench import fastmerge

    monkeypatch.setattr(fastmerge, "CHUNK", 1000)  # many chunks, and tensors split across them
    base = build_model("cnn-bn", 10).state_dict()
    g = torch.Generator().manual_seed(2)
    paths = []
    for i in range(3):
        ft = {k: (v + torch.randn(v.shape, generator=g) * (torch.rand(v.shape, generator=g) > 0.3)
                  if v.is_floating_point() else v) for k, v in base.items()}
        paths.append(str(tmp_path / f"ft{i}.safetensors"))
        save_file(ft, paths[-1])
    save_file(base, str(tmp_path / "base.safetensors"))
    outs = {}
    for engine in ("chunked", "per-file"):
        args = ["merge", "-m", method, str(tmp_path / "base.safetensors"), *paths, "--engine", engine,
                "-o", str(tmp_path / f"{engine}.safetensors")]
        for p in params:
            args += ["-p", p]
        r = CliRunner().invoke(main, args)
        assert r.exit_code == 0, r.output
        assert f'"engine": "{engine}"' in r.output
        outs[engine] = load_file(str(tmp_path / f"{engine}.safetensors"))
    assert set(outs["chunked"]) == set(outs["per-file"])
    for k in outs["chunked"]:
        assert torch.equal(outs["chunked"][k], outs["per-file"][k]), k


def test_chunked_engine_refuses_non_elementwise(tmp_path):
    _, _, paths = _checkpoints(tmp_path)
    st = [p for p in paths if p.endswith(".safetensors")]
    r = CliRunner().invoke(main, ["merge", "-m", "ties", str(tmp_path / "base.safetensors"), *st, "--engine",
                                  "chunked", "-o", str(tmp_path / "x.safetensors")])
    assert r.exit_code != 0 and "elementwise" in r.output


def test_truncated_safetensors_detected(tmp_path):
    from unlearnbench.errors import StoreError
    from unlearnbench.fastmerge import read_index

    save_file({"w": torch.ones(1000)}, str(tmp_path / "a.safetensors"))
    raw = (tmp_path / "a.safetensors").read_bytes()
    (tmp_path / "a.safetensors").write_bytes(raw[:-10])
    with pytest.raises(StoreError, match="truncated"):
        read_index(tmp_path / "a.safetensors")
