"""`unlearnbench merge`: checkpoints a user already has, safetensors or torch state dicts (issue #2.14)."""
from __future__ import annotations

import pickle

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
