"""Issue 14, acceptance 2 (and the config / run / sweep part of 1): every bad config value, seed list and
--config file is refused when the config is resolved, before anything trains, with exit 2, one message
naming the bad value and the fix, and no traceback (reliability review 2, section 5 "Names, options,
seeds" and "--config files"). Every case fails before a data set is loaded, so the table is fast."""
from __future__ import annotations

import pytest
from click.testing import CliRunner

from unlearnbench.cli import main

# (id, argv after the command, text the message must hold: the bad value, then the fix)
CONFIG_CASES = [
    # selection.kappa: finite, in (0, 1]; both rules that have one
    ("kappa-2", ["-o", "selection.kappa=2"], ["selection.kappa=2.0", "(0, 1]", "-o selection.kappa=0.95"]),
    ("kappa-nan", ["-o", "selection.kappa=nan"], ["selection.kappa=nan", "(0, 1]"]),
    ("kappa-inf", ["-o", "selection.kappa=inf"], ["selection.kappa=inf", "(0, 1]"]),
    ("kappa-neg", ["-o", "selection.kappa=-1"], ["selection.kappa=-1.0", "(0, 1]"]),
    ("kappa-0", ["-o", "selection.kappa=0"], ["selection.kappa=0.0", "(0, 1]"]),
    ("kappa-ct-1.5", ["-o", "selection=control_threshold", "-o", "selection.kappa=1.5"],
     ["selection.kappa=1.5", "(0, 1]"]),
    ("kappa-abc", ["-o", "selection.kappa=abc"], ["selection.kappa", "abc"]),
    # pool
    ("pool-size-neg", ["-o", "pool.size=-3"], ["pool.size=-3", "-o pool.size=0"]),
    ("pool-size-neg-all", ["-o", "pool.size=-27"], ["pool.size=-27", "-o pool.size=0"]),
    ("pool-size-big", ["-o", "pool.size=100000"], ["pool.size=100000", "27 members", "-o pool.size=27"]),
    ("pool-size-abc", ["-o", "pool.size=abc"], ["pool.size", "abc"]),
    ("pool-name", ["-o", "pool.name=foo"], ["'foo'", "valid: default"]),
    # threads
    ("threads-neg", ["-o", "threads=-1"], ["threads=-1", "-o threads=0"]),
    ("threads-abc", ["-o", "threads=abc"], ["threads", "abc"]),
    # device
    ("device-tpu", ["-o", "device=tpu"], ["'tpu'", "cuda:N", "-o device=cpu"]),
    ("device-cuda0x", ["-o", "device=cuda:x"], ["'cuda:x'", "-o device=cpu"]),
    ("device-empty", ["-o", "device=''"], ["''", "-o device=cpu"]),
    # seeds through -o
    ("seeds-o-empty", ["-o", "seeds=[]"], ["seeds", "empty", "--seeds 0,1,2"]),
    ("seeds-o-scalar", ["-o", "seeds=abc"], ["'abc'", "--seeds 0,1,2"]),
    ("seeds-o-int", ["-o", "seeds=0"], ["not 0", "seeds: [0, 1, 2]"]),
    ("seeds-o-dup", ["-o", "seeds=[0,0]"], ["trial 0 more than once", "--seeds 0"]),
    ("seeds-o-neg", ["-o", "seeds=[-1]"], ["trial -1", ">= 0"]),
    ("seeds-o-str", ["-o", "seeds=[a]"], ["seeds", "'a'"]),
    # λ grids: start:stop:step must be numbers, step > 0, stop >= start
    ("grid-step0", ["-o", "selection.grid=0:1:0"], ["'0:1:0'", "step must be > 0", "-o selection.grid=0:2:0.05"]),
    ("grid-negstep", ["-o", "selection.grid=0.5:1.5:-0.25"], ["'0.5:1.5:-0.25'", "step must be > 0"]),
    ("grid-reversed", ["-o", "selection.grid=1:0:0.1"], ["'1:0:0.1'", "below start"]),  # was '3600.1'
    ("grid-nonnum", ["-o", "selection.grid=a:b:c"], ["'a:b:c'", "must be numbers"]),
    ("grid-nan", ["-o", "selection.grid=0:nan:0.1"], ["'0:nan:0.1'", "finite"]),
    ("grid-two-parts", ["-o", "selection.grid=0:1"], ["'0:1'", "start:stop:step"]),
    ("grid-empty", ["-o", "selection.grid="], ["selection.grid"]),
    ("grid-quoted-empty", ["-o", "selection.grid=''"], ["unknown lambda grid ''", "start:stop:step"]),
    ("grid-huge", ["-o", "selection.grid=0:1:1e-9"], ["'0:1:1e-9'", "coarser step"]),
    # other enumerated and typed suite / rule options
    ("diagnostic", ["-o", "selection.diagnostic=maybe"], ["selection.diagnostic", "maybe"]),
    ("floor-split", ["-o", "selection.floor_split=test"], ["selection.floor_split", "'test'", "val, retain"]),
    ("early-stop", ["-o", "selection=control_threshold", "-o", "selection.early_stop=x"],
     ["selection.early_stop", "'x'"]),
    ("rule", ["-o", "selection=val_match"], ["'val_match'", "val_matched"]),
    ("method", ["--method", "negmerg"], ["'negmerg'", "negmerge"]),
    ("scenario", ["--scenario", "digits-10"], ["'digits-10'", "digits-10pct"]),
    ("key", ["-o", "pool.sise=3"], ["'pool.sise'", "pool.size"]),
    ("no-equals", ["-o", "pool.size"], ["'pool.size'", "key=value", "-o pool.size=VALUE"]),
    # method options (each numeric / enumerated option of `unlearnbench list methods --options` that has a range)
    ("nm-value", ["-o", "method.value=median"], ["method.value", "median"]),
    ("nm-by", ["-o", "method.by=size"], ["method.by", "size"]),
    ("nm-mask", ["-o", "method.mask=xx"], ["method.mask", "xx"]),
    ("nm-consensus-q", ["-o", "method.consensus_q=-5"], ["method.consensus_q", "-5"]),
    ("ft-lr", ["-m", "finetune", "-o", "method.lr=-1"], ["method.lr", "-1.0"]),
    ("ft-lr-nan", ["-m", "finetune", "-o", "method.lr=nan"], ["method.lr", "nan"]),
    ("ft-epochs", ["-m", "finetune", "-o", "method.epochs=0"], ["method.epochs", "not 0"]),
    ("ft-lr-search", ["-m", "finetune", "-o", "method.lr_search=maybe"], ["method.lr_search", "maybe"]),
    ("ga-lr", ["-m", "gradient-ascent", "-o", "method.lr=-1"], ["method.lr", "-1.0"]),
    ("ga-epochs", ["-m", "gradient-ascent", "-o", "method.epochs=-1"], ["method.epochs", "-1"]),
    ("bs-eps", ["-m", "boundary-shrink", "-o", "method.eps=-1"], ["method.eps", "-1.0"]),
    ("be-variant", ["-m", "boundary-expanding", "-o", "method.variant=x"], ["method.variant", "'x'"]),
    ("iu-alpha", ["-m", "influence", "-o", "method.alpha=nan"], ["method.alpha", "nan"]),
    ("iu-delta", ["-m", "influence", "-o", "method.delta=-1"], ["method.delta", "-1.0"]),
    ("iu-variant", ["-m", "influence", "-o", "method.variant=x"], ["method.variant", "'x'"]),
    ("l1-alpha", ["-m", "l1-sparse", "-o", "method.alpha=-1"], ["method.alpha", "-1.0"]),
    ("salun-ratio-2", ["-m", "salun", "-o", "method.mask_ratio=2"], ["method.mask_ratio", "2.0"]),
    ("salun-ratio-0", ["-m", "salun", "-o", "method.mask_ratio=0"], ["method.mask_ratio", "0.0"]),
    ("salun-mode", ["-m", "salun", "-o", "method.mask_mode=soft"], ["method.mask_mode", "soft"]),
    ("rl-sampling", ["-m", "random-label", "-o", "method.label_sampling=x"], ["method.label_sampling", "'x'"]),
    ("rl-schedule", ["-m", "random-label", "-o", "method.schedule=x"], ["method.schedule", "'x'"]),
    ("ties-density-5", ["-m", "ties", "-o", "method.density=5"], ["method.density", "5.0"]),
    ("ties-density-nan", ["-m", "ties", "-o", "method.density=nan"], ["method.density", "nan"]),
    ("ties-scope", ["-m", "ties", "-o", "method.trim_scope=x"], ["method.trim_scope", "'x'"]),
    ("greedy-order", ["-m", "greedy", "-o", "method.order=x"], ["method.order", "'x'"]),
]


def _check(r, expect, code=2):
    out = r.output  # stdout and stderr together
    assert r.exit_code == code, out
    assert "Traceback" not in out, out
    errors = [ln for ln in out.splitlines() if ln.startswith("Error")]
    assert len(errors) == 1, out  # one message
    for text in expect:
        assert text in out, (text, out)


@pytest.mark.parametrize("argv,expect", [c[1:] for c in CONFIG_CASES], ids=[c[0] for c in CONFIG_CASES])
def test_config_refuses(argv, expect):
    _check(CliRunner().invoke(main, ["config", *argv]), expect)


# `run` refuses the same before it trains (no data loaded, nothing stored); `sweep` too, for every cell
RUN_CASES = [
    ("kappa-2", ["-o", "selection.kappa=2"], ["selection.kappa=2.0"]),
    ("pool-size-neg", ["-o", "pool.size=-3"], ["pool.size=-3"]),
    ("threads-neg", ["-o", "threads=-1"], ["threads=-1"]),
    ("device-tpu", ["-o", "device=tpu"], ["'tpu'", "-o device=cpu"]),
    ("grid-base60", ["-o", "selection.grid=1:0:0.1"], ["'1:0:0.1'"]),
    ("seeds-empty", ["--seeds", ""], ["--seeds ''", "--seeds 0,1,2"]),
    ("seeds-comma", ["--seeds", ","], ["--seeds ','", "--seeds 0,1,2"]),
    ("seeds-dup", ["--seeds", "0,0"], ["trial 0 more than once", "--seeds 0"]),
    ("seeds-dup-spaced", ["--seeds", "1, 1,2"], ["trial 1 more than once", "--seeds 1,2"]),
    ("seeds-neg", ["--seeds=-1"], ["trial -1", ">= 0"]),
    ("seeds-letters", ["--seeds", "a,b"], ["'a,b'", "0,1,2"]),
    ("seeds-o-empty", ["-o", "seeds=[]"], ["seeds", "empty"]),
]


@pytest.mark.parametrize("cmd", ["run", "sweep"])
@pytest.mark.parametrize("argv,expect", [c[1:] for c in RUN_CASES], ids=[c[0] for c in RUN_CASES])
def test_run_and_sweep_refuse_before_training(cmd, argv, expect, tmp_path):
    if cmd == "sweep" and argv[0] == "-o" and argv[1].startswith("seeds="):
        argv = ["--seeds", ""]  # sweep's trials are its --seeds; it has no -o seeds of its own to test
        expect = ["--seeds ''"]
    store, runs = tmp_path / "store", tmp_path / "runs"
    args = [cmd, *(["--methods", "negmerge"] if cmd == "sweep" else []), *argv, "--store", str(store),
            "--runs-dir", str(runs), "-q"]
    _check(CliRunner().invoke(main, args), expect)
    assert not runs.exists() and not (store.exists() and any(store.rglob("*.safetensors")))  # nothing ran


# scenario options are checked when the trial's split is drawn: after the (small) data set loads, before training
SCENARIO_CASES = [
    ("forget-pct-neg", ["-s", "digits-10pct", "-o", "scenario.forget_pct=-5"], ["forget_pct", "-5"]),
    ("forget-pct-0", ["-s", "digits-10pct", "-o", "scenario.forget_pct=0"], ["forget_pct", "0.0"]),
    ("forget-pct-150", ["-s", "digits-10pct", "-o", "scenario.forget_pct=150"], ["forget_pct", "150"]),
    ("forget-pct-nan", ["-s", "digits-10pct", "-o", "scenario.forget_pct=nan"], ["forget_pct", "nan"]),
    ("forget-pct-abc", ["-s", "digits-10pct", "-o", "scenario.forget_pct=abc"], ["forget_pct", "abc"]),
    ("forget-class-99", ["-s", "digits-class", "-o", "scenario.forget_class=99"], ["forget_class=99", "0..9"]),
    ("forget-class-abc", ["-s", "digits-class", "-o", "scenario.forget_class=abc"], ["forget_class", "'abc'"]),
    ("forget-class-neg", ["-s", "digits-class", "-o", "scenario.forget_class=-1"], ["forget_class", "'-1'"]),
    ("influence-cg-iters-0", ["-m", "influence", "-o", "method.cg_iters=0"], ["cg_iters", "0"]),
    ("influence-cg-tol-neg", ["-m", "influence", "-o", "method.cg_tol=-1"], ["cg_tol", "-1"]),
]


@pytest.mark.parametrize("argv,expect", [c[1:] for c in SCENARIO_CASES], ids=[c[0] for c in SCENARIO_CASES])
def test_run_refuses_scenario_options_before_training(argv, expect, tmp_path):
    store, runs = tmp_path / "store", tmp_path / "runs"
    _check(CliRunner().invoke(main, ["run", "--seeds", "0", *argv, "--store", str(store), "--runs-dir", str(runs),
                                     "-q"]), expect)
    assert not runs.exists() and not (store.exists() and any(store.rglob("*.safetensors")))


# `config` refuses what `run` would: all but the class id's upper bound (which needs the data set)
@pytest.mark.parametrize("argv,expect", [c[1:] for c in SCENARIO_CASES if c[0] != "forget-class-99"],
                         ids=[c[0] for c in SCENARIO_CASES if c[0] != "forget-class-99"])
def test_config_refuses_scenario_options_too(argv, expect):
    _check(CliRunner().invoke(main, ["config", *argv]), expect)


def _write(tmp_path, name, data: bytes | str):
    p = tmp_path / name
    p.write_bytes(data if isinstance(data, bytes) else data.encode())
    return str(p)


FILE_CASES = [
    ("list", "- 1\n- 2\n", ["list.yaml", "mapping", "list"]),
    ("scalar", "3\n", ["scalar.yaml", "mapping", "int"]),
    ("not-yaml", "pool: [1, 2\n", ["not-yaml.yaml", "could not be read"]),
    ("binary", b"\xff\xfe\x00", ["binary.yaml", "could not be read"]),
    ("duplicate", "pool: {size: 1}\npool: {size: 2}\n", ["duplicate.yaml", "duplicate key"]),
    ("interp", "pool:\n  size: ${oops}\n", ["interp.yaml", "oops"]),
    ("section-scalar", "pool: 3\n", ["'pool'", "not 3", "from --config file", "pool: {name: 'default'"]),
    ("seeds-int", "seeds: 0\n", ["seeds", "not 0", "seeds: [0, 1, 2]"]),
    ("seeds-empty", "seeds: []\n", ["seeds", "empty", "--config file"]),
    ("seeds-dup", "seeds: [2, 2]\n", ["trial 2 more than once"]),
    ("seeds-str", "seeds: [a]\n", ["seeds", "'a'"]),
    ("kappa", "selection: {kappa: 2}\n", ["selection.kappa=2"]),
    ("grid-base60", "selection: {grid: 1:0:0.1}\n", ["'1:0:0.1'", "below start"]),  # YAML 1.1 read 3600.1
    ("grid-step0", "selection:\n  grid: 0:1:0\n", ["'0:1:0'", "step must be > 0"]),
    ("pool-size", "pool: {size: -3}\n", ["pool.size=-3"]),
    ("threads", "threads: -2\n", ["threads=-2"]),
    ("device", "device: tpu\n", ["'tpu'"]),
    ("key", "pool: {sise: 3}\n", ["'pool.sise'", "--config file", "pool.size"]),
]


@pytest.mark.parametrize("cmd", ["config", "run"])
@pytest.mark.parametrize("name,text,expect", FILE_CASES, ids=[c[0] for c in FILE_CASES])
def test_config_file_refused(cmd, name, text, expect, tmp_path):
    f = _write(tmp_path, f"{name}.yaml", text)
    extra = ["--store", str(tmp_path / "s"), "--runs-dir", str(tmp_path / "r"), "-q"] if cmd == "run" else []
    _check(CliRunner().invoke(main, [cmd, "--config", f, *extra]), expect)


def test_config_file_missing_and_directory(tmp_path):
    _check(CliRunner().invoke(main, ["config", "--config", str(tmp_path / "nope.yaml")]), ["nope.yaml"])
    r = CliRunner().invoke(main, ["config", "--config", str(tmp_path)])  # click's own check: a usage error
    assert r.exit_code == 2 and "Traceback" not in r.output and "is a directory" in r.output


# -- accepted: the documented forms ---------------------------------------------------------------

def test_start_stop_step_keeps_its_text_from_o_and_from_a_file(tmp_path):
    for args in (["-o", "selection.grid=0:2:0.05"],
                 ["--config", _write(tmp_path, "g.yaml", "selection:\n  grid: 0:2:0.05\n")]):
        r = CliRunner().invoke(main, ["config", *args])
        assert r.exit_code == 0, r.output
        assert "grid: '0:2:0.05'" in r.output and "120.05" not in r.output  # not YAML 1.1's base 60
    r = CliRunner().invoke(main, ["config", "-s", "digits-10pct", "-o", "scenario.forget_pct=10", "-o", "pool.size=0", "-o", "threads=0",
                                  "-o", "selection.kappa=1", "-o", "seeds=[4294967296]"])
    assert r.exit_code == 0, r.output  # the edges of each range are allowed


def test_an_unexpected_error_is_one_line_and_debug_shows_the_traceback(monkeypatch):
    import unlearnbench.config as config

    def boom(*a, **k):
        raise RuntimeError("boom\nsecond line")

    monkeypatch.setattr(config, "resolve", boom)
    r = CliRunner().invoke(main, ["config"])
    assert r.exit_code == 1 and "Traceback" not in r.output
    (line,) = r.output.strip().splitlines()
    assert line.startswith("Error: internal error: RuntimeError: boom (run with --debug for the traceback")
    log = line.rsplit("see ", 1)[1].rstrip(")")
    with open(log) as f:
        text = f.read()
    assert "Traceback" in text and "RuntimeError: boom" in text
    import os

    os.remove(log)
    r = CliRunner().invoke(main, ["--debug", "config"])
    assert isinstance(r.exception, RuntimeError)  # re-raised: the full traceback
    r = CliRunner().invoke(main, ["config", "--no-such-option"])  # click's usage errors stay as they are
    assert r.exit_code == 2 and "No such option" in r.output and "internal error" not in r.output


def test_plugins_hook_filter_refuses_an_unknown_hook():
    r = CliRunner().invoke(main, ["plugins", "--hook", "register_method"])
    assert r.exit_code == 2 and "unknown hook 'register_method'" in r.output and "register_methods" in r.output
    assert "Traceback" not in r.output


def test_a_closed_pipe_ends_quietly():
    """`unlearnbench list methods | head` : the reader closing the pipe is no internal error; the command
    ends as a SIGPIPE'd one would (141), without a message or a traceback."""
    import subprocess
    import sys
    from pathlib import Path

    exe = Path(sys.executable).with_name("unlearnbench")
    p = subprocess.Popen([str(exe), "list", "methods", "--options"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    p.stdout.close()  # before the first write: every write then fails with EPIPE
    err = p.stderr.read()
    assert p.wait() == 141 and err == b"", err
