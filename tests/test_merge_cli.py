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
                             "--out", str(tmp_path / "tau.safetensors")])
    assert r.exit_code == 0, r.output
    tau = load_file(str(tmp_path / "tau.safetensors"))
    keys = [k for k, v in base.items() if v.is_floating_point() and "running" not in k]
    expect = negmerge([{k: ft[k] - base[k] for k in keys} for ft in fts])
    assert set(tau) == set(keys)  # BN statistics and integer buffers are not in τ
    for k in keys:
        assert torch.allclose(tau[k], expect[k], atol=1e-6)
    r = runner.invoke(main, ["merge", str(tmp_path / "base.safetensors"), *paths, "--lam", "0.5",
                             "--out", str(tmp_path / "model.safetensors")])
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
    r = CliRunner().invoke(main, ["merge", str(tmp_path / "base.safetensors"), str(evil), "--out",
                                  str(tmp_path / "x.safetensors")])
    assert r.exit_code != 0 and "weights-only" in r.output and "code ran" not in r.output


def test_merge_rejects_non_merge_method_and_bad_option(tmp_path):
    _, _, paths = _checkpoints(tmp_path)
    r = CliRunner().invoke(main, ["merge", "-m", "retrain", str(tmp_path / "base.safetensors"), *paths, "--out",
                                  str(tmp_path / "x.safetensors")])
    assert r.exit_code != 0 and "not a merge operator" in r.output
    r = CliRunner().invoke(main, ["merge", "-m", "negmrge", str(tmp_path / "base.safetensors"), *paths, "--out",
                                  str(tmp_path / "x.safetensors")])
    assert "did you mean 'negmerge'" in r.output


def needs_cc() -> None:
    """The fused kernel is built with the system C compiler; .ci/run's image has gcc."""
    import shutil

    if not any(shutil.which(c) for c in ("cc", "gcc", "clang")):
        pytest.skip("no C compiler: the fused merge kernel cannot be built here")


CHUNKED_CASES = [("negmerge", []), ("negmerge-min", []), ("negmerge-max", []), ("negmerge-min", ["by=value"]),
                 ("negmerge-max", ["by=value"]), ("conflict", []), ("all", []), ("negmerge", ["consensus_q=4"]),
                 ("uniform", []), ("magmax", [])]


@pytest.mark.parametrize("kernel", ["c", "torch"])
@pytest.mark.parametrize("method,params", CHUNKED_CASES)
def test_chunked_engine_is_bitwise_the_per_file_stream(tmp_path, method, params, kernel, monkeypatch):
    """The chunked engine (merge.engine) swaps the loops, and the fused C kernel (merge/kernel.c)
    replaces the torch passes; neither may change the result by one bit."""
    from unlearnbench.merge import engine

    if kernel == "c":
        needs_cc()
    monkeypatch.setattr(engine, "CHUNK", 1000)  # many chunks, and tensors split across them
    monkeypatch.setenv("UNLEARNBENCH_KERNEL", kernel)  # "c": a failed build fails the test
    base = build_model("cnn-bn", 10).state_dict()
    g = torch.Generator().manual_seed(2)
    paths = []
    for i in range(5):
        ft = {k: (v + torch.randn(v.shape, generator=g) * (torch.rand(v.shape, generator=g) > 0.3)
                  if v.is_floating_point() else v) for k, v in base.items()}
        paths.append(str(tmp_path / f"ft{i}.safetensors"))
        save_file(ft, paths[-1])
    save_file(base, str(tmp_path / "base.safetensors"))
    outs = {}
    for engine in ("chunked", "per-file"):
        args = ["merge", "-m", method, str(tmp_path / "base.safetensors"), *paths, "--engine", engine,
                "--out", str(tmp_path / f"{engine}.safetensors")]
        for p in params:
            args += ["-o", p]
        r = CliRunner().invoke(main, args)
        assert r.exit_code == 0, r.output
        assert f'"engine": "{engine}"' in r.output
        outs[engine] = load_file(str(tmp_path / f"{engine}.safetensors"))
        if engine == "chunked":
            fusable = params != ["consensus_q=4"]
            assert f'"kernel": "{kernel}' in r.output if fusable else "no fused form" in r.output, r.output
    assert set(outs["chunked"]) == set(outs["per-file"])
    for k in outs["chunked"]:
        assert torch.equal(outs["chunked"][k], outs["per-file"][k]), k


@pytest.mark.parametrize("threads", [1, 2, 3])
@pytest.mark.parametrize("method", ["negmerge", "negmerge-max", "uniform", "magmax"])
def test_fused_kernel_threads_and_ragged_chunks(tmp_path, method, threads, monkeypatch):
    """The kernel's thread split and block edges (2048) must not show in the result: sizes
    that are not multiples of either, exact zeros, and τ files given directly (no base)."""
    from unlearnbench.merge import engine
    from unlearnbench.plugins import get_host

    needs_cc()
    monkeypatch.setattr(engine, "CHUNK", 5003)
    monkeypatch.setenv("UNLEARNBENCH_KERNEL", "c")
    g = torch.Generator().manual_seed(7)
    shapes = {"a": (4099,), "b": (3, 2051), "c": (1,), "d": (17, 600)}
    common = {k: torch.randn(s, generator=g) for k, s in shapes.items()}
    taus, paths = [], []
    for i in range(6):
        t = {k: (0.7 * common[k] + torch.randn(s, generator=g)) * (torch.rand(s, generator=g) > 0.2)
             for k, s in shapes.items()}
        taus.append(t)
        paths.append(str(tmp_path / f"t{i}.safetensors"))
        save_file(t, paths[-1])
    meth = get_host().methods.get(method)
    got = engine.merge_safetensors(lambda: meth.chunk_reducer(None), paths, threads=threads)
    red = meth.reducer(None)
    for t in taus:
        red.update(t)
    want = red.result()
    for k in shapes:
        assert torch.equal(got[k], want[k]), k


def test_fused_kernel_rejects_non_finite_and_names_the_file(tmp_path, monkeypatch):
    from unlearnbench.merge import engine
    from unlearnbench.errors import StoreError
    from unlearnbench.methods.negmerge import SignBoundsReducer

    needs_cc()
    monkeypatch.setenv("UNLEARNBENCH_KERNEL", "c")
    paths = []
    for i in range(4):
        t = {"w": torch.ones(10_000)}
        if i == 2:
            t["w"][9_999] = float("inf")
        paths.append(str(tmp_path / f"t{i}.safetensors"))
        save_file(t, paths[-1])
    with pytest.raises(StoreError, match=r"t2\.safetensors.*non-finite"):
        engine.merge_safetensors(SignBoundsReducer, paths, threads=2)


def test_chunked_engine_refuses_non_elementwise(tmp_path):
    _, _, paths = _checkpoints(tmp_path)
    st = [p for p in paths if p.endswith(".safetensors")]
    r = CliRunner().invoke(main, ["merge", "-m", "ties", str(tmp_path / "base.safetensors"), *st, "--engine",
                                  "chunked", "--out", str(tmp_path / "x.safetensors")])
    assert r.exit_code != 0 and "elementwise" in r.output


def test_truncated_safetensors_detected(tmp_path):
    from unlearnbench.errors import StoreError
    from unlearnbench.merge import read_index

    save_file({"w": torch.ones(1000)}, str(tmp_path / "a.safetensors"))
    raw = (tmp_path / "a.safetensors").read_bytes()
    (tmp_path / "a.safetensors").write_bytes(raw[:-10])
    with pytest.raises(StoreError, match="truncated"):
        read_index(tmp_path / "a.safetensors")


def test_no_compiler_means_torch_said_aloud_and_c_mode_fails(tmp_path, monkeypatch, capsys):
    """Without a C compiler the engine reduces in torch (bitwise the same) and reports it;
    UNLEARNBENCH_KERNEL=c turns that into an error instead."""
    from unlearnbench.merge import engine, kernel
    from unlearnbench.errors import ConfigError
    from unlearnbench.methods.negmerge import SignBoundsReducer

    monkeypatch.setattr(kernel, "_lib", None)
    monkeypatch.setattr(kernel, "_why", "")
    monkeypatch.setenv("UNLEARNBENCH_KERNEL_DIR", str(tmp_path / "kernels"))  # no cached build to fall back on
    monkeypatch.setenv("CC", str(tmp_path / "no-such-cc"))
    monkeypatch.setenv("UNLEARNBENCH_KERNEL", "auto")
    paths = []
    for i in range(3):
        paths.append(str(tmp_path / f"t{i}.safetensors"))
        save_file({"w": torch.full((100,), float(i + 1))}, paths[-1])
    out = engine.merge_safetensors(SignBoundsReducer, paths)
    assert torch.equal(out["w"], torch.full((100,), 2.0))
    assert kernel.kernel_status().startswith("torch (") and "no-such-cc" in kernel.kernel_status()
    assert "merging in torch" in capsys.readouterr().err
    monkeypatch.setenv("UNLEARNBENCH_KERNEL", "c")
    with pytest.raises(ConfigError, match="cannot be built"):
        engine.merge_safetensors(SignBoundsReducer, paths)


def test_merge_options_are_dash_o_and_a_bad_choice_lists_the_choices(tmp_path):
    """`merge` takes its method's options with -o (as `run` does); an enumerated option refuses a
    value that is not one of its choices, with exit status 2 and the choices in the message."""
    _, _, paths = _checkpoints(tmp_path)
    args = ["merge", str(tmp_path / "base.safetensors"), *paths, "--out", str(tmp_path / "x.safetensors")]
    r = CliRunner().invoke(main, args + ["-o", "value=median"])
    assert r.exit_code == 2 and "value" in r.output and "expected one of [avg, min, max]" in r.output, r.output
    r = CliRunner().invoke(main, args + ["-o", "valeu=min"])
    assert r.exit_code == 2 and "did you mean 'value'" in r.output, r.output
    r = CliRunner().invoke(main, args + ["-p", "value=min"])  # the old spelling is gone
    assert r.exit_code == 2 and "No such option" in r.output
    r = CliRunner().invoke(main, args + ["-m", "ties", "-o", "trim_scope=layer"])
    assert r.exit_code == 2 and "expected one of [global, per_tensor]" in r.output, r.output


def test_chunk_reducer_protocol():
    """What the engine asks of a merge method is written down (engine.ChunkReducer/FusedReducer):
    the fused built-ins name an op of kernel.c and give its torch form as finish(n, acc)."""
    from unlearnbench.merge import OPS, FusedReducer, fused_op
    from unlearnbench.plugins import get_host

    host = get_host()
    fused = {}
    for name in host.methods.names():
        meth = host.methods.get(name)
        if getattr(meth, "elementwise", False):
            red = meth.chunk_reducer(None)
            assert callable(red.update) and callable(red.result)
            fused[name] = fused_op(red)
    assert fused == {"all": "sum_mean", "conflict": "conflict_mean", "magmax": "absmax",
                     "linear-negmerge": "consensus_mean",  # NegMerge itself; only its pool and evaluation differ
                     "negmerge": "consensus_mean", "negmerge-max": "consensus_max_mag",
                     "negmerge-min": "consensus_min_mag", "uniform": "sum_mean"}
    partial = host.methods.get("negmerge").chunk_reducer(
        host.methods.get("negmerge").Config(consensus_q=3))  # needs counts: the torch reducer
    assert fused_op(partial) is None and not isinstance(partial, FusedReducer)

    class Odd:
        fused_op = "median"

        def update(self, tau): ...

        def result(self): ...

        def finish(self, n, acc): ...

    assert set(OPS) >= set(fused.values())
    with pytest.raises(ValueError, match="median.*not an op of kernel.c"):
        fused_op(Odd())
