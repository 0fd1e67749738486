"""Issue 14, records (acceptance 6, and 3 for `reproduce --out`): `leaderboard`, `reproduce` and
`sweep` name a bad run.json and go on with the others (one warning line per file: its path and
what is wrong), or with `--strict` stop at the first one with one message (exit 2); one cell's
error, whatever its type, does not end a sweep; the reruns' records never replace the originals.

The table: every kind of bad record x the three commands, through the real CLI. No case trains
more than the session store's digits models (original and Retrain of trial 0, once per session).
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from unlearnbench import hookimpl
from unlearnbench.cli import main
from unlearnbench.method import Method, Result

REPO = Path(__file__).resolve().parent.parent
RUNS = REPO / "benchmarks" / "results" / "protocol-v1" / "runs" / "digits-10pct"
GOOD = json.loads((RUNS / "retrain" / "seed-0" / "run.json").read_text())


def _without(*keys):
    return json.dumps({k: v for k, v in GOOD.items() if k not in keys}).encode()


def _edit(fn):
    rec = json.loads(json.dumps(GOOD))
    fn(rec)
    return json.dumps(rec).encode()


# (id, file bytes, what the message must say)
BAD = [
    ("truncated", json.dumps(GOOD).encode()[:200], "not valid JSON (truncated?)"),
    ("empty-file", b"", "empty file"),
    ("empty-object", b"{}", "empty object {}"),
    ("list", b"[1, 2]", "it is a list"),
    ("null", b"null", "it is null"),
    ("non-utf8", b"\xff\xfe" + json.dumps(GOOD).encode(), "not UTF-8"),
    ("no-metrics", _without("metrics"), "required key(s) missing: metrics"),
    ("no-keys", _without("scenario", "config_hash"), "missing: scenario, config_hash"),
    ("string-metric", _edit(lambda r: r["metrics"].__setitem__("acc_forget", "99.2")),
     "metrics.acc_forget is a string"),
    ("string-trial", _edit(lambda r: r.__setitem__("trial", "0")), "'trial' is a string"),
    ("metrics-list", _edit(lambda r: r.__setitem__("metrics", [1, 2])), "'metrics' is a list"),
    ("schema-99", _edit(lambda r: r.__setitem__("schema", 99)), "schema 99"),
    ("no-total-time", _edit(lambda r: r["timings"].pop("total_s")), "timings.total_s is missing"),
    ("bad-board", _edit(lambda r: r.__setitem__("scoring", {"board": {"acc_forget": ["x"]}})), "scoring.board"),
]
IDS = [b[0] for b in BAD]


def _no_traceback(r):
    assert "Traceback" not in r.output, r.output
    assert r.exception is None or isinstance(r.exception, SystemExit), repr(r.exception)


def _copy_good(dst: Path, cells=("retrain", "negmerge"), seeds=(0,)) -> None:
    for c in cells:
        for s in seeds:
            d = dst / "digits-10pct" / c / f"seed-{s}"
            d.mkdir(parents=True)
            shutil.copy(RUNS / c / f"seed-{s}" / "run.json", d / "run.json")


def _put_bad(root: Path, data: bytes, rel="digits-10pct/broken/seed-0") -> Path:
    p = root / rel / "run.json"
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_bytes(data)
    return p


# -- leaderboard ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("kind,data,what", BAD, ids=IDS)
def test_leaderboard_names_a_bad_record_and_goes_on(tmp_path, kind, data, what):
    runs = tmp_path / "runs"
    _copy_good(runs)
    bad = _put_bad(runs, data)
    r = CliRunner().invoke(main, ["leaderboard", str(runs), "--out", str(tmp_path / "L")])
    _no_traceback(r)
    assert r.exit_code == 0, r.output
    warnings = [ln for ln in r.output.splitlines() if ln.startswith("warning: ") and "skipped" in ln]
    assert len(warnings) == 1 and str(bad) in warnings[0] and what in warnings[0], r.output
    assert "2 run records (1 unreadable, skipped)" in r.output
    board = (tmp_path / "L" / "digits-10pct.md").read_text()
    assert "| negmerge |" in board and "broken" not in board


@pytest.mark.parametrize("kind,data,what", BAD, ids=IDS)
def test_leaderboard_strict_stops_at_the_bad_record(tmp_path, kind, data, what):
    runs = tmp_path / "runs"
    _copy_good(runs, cells=("retrain",), seeds=(0,))
    bad = _put_bad(runs, data)
    r = CliRunner().invoke(main, ["leaderboard", str(runs), "--out", str(tmp_path / "L"), "--strict"])
    _no_traceback(r)
    assert r.exit_code == 2, r.output
    assert r.output.count("Error: ") == 1 and str(bad) in r.output and what in r.output, r.output
    assert not (tmp_path / "L").exists()  # nothing written


# -- reproduce ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("kind,data,what", BAD, ids=IDS)
def test_reproduce_names_a_bad_record(tmp_path, kind, data, what):
    bad = _put_bad(tmp_path / "rp", data)
    r = CliRunner().invoke(main, ["reproduce", "-q", str(tmp_path / "rp")])
    _no_traceback(r)
    assert r.exit_code == 1, r.output  # nothing could be checked: not a success
    warnings = [ln for ln in r.output.splitlines() if ln.startswith("warning: ")]
    assert len(warnings) == 1 and str(bad) in warnings[0] and what in warnings[0], r.output
    assert "0 reproduced, 0 differ, 0 skipped, 1 unreadable of 1" in r.output


@pytest.mark.parametrize("kind,data,what", BAD, ids=IDS)
@pytest.mark.parametrize("how", ["folder", "file"])
def test_reproduce_strict_or_a_named_file_is_one_error(tmp_path, kind, data, what, how):
    bad = _put_bad(tmp_path / "rp", data)
    # a file named on the command line must be a record; a folder's bad record is one with --strict
    args = [str(bad)] if how == "file" else [str(tmp_path / "rp"), "--strict"]
    r = CliRunner().invoke(main, ["reproduce", "-q", *args])
    _no_traceback(r)
    assert r.exit_code == 2, r.output
    assert r.output.count("Error: ") == 1 and str(bad) in r.output and what in r.output, r.output


def test_reproduce_a_checkpoint_is_one_message(tmp_path):
    import torch
    from safetensors.torch import save_file

    st = tmp_path / "base.safetensors"
    save_file({"w": torch.zeros(3)}, str(st))
    r = CliRunner().invoke(main, ["reproduce", str(st)])
    _no_traceback(r)
    assert r.exit_code == 2 and r.output.count("Error: ") == 1, r.output
    assert f"{st}: not a run record" in r.output


def test_reproduce_goes_on_past_a_bad_neighbour_and_out_never_replaces_a_record(tmp_path, session_store):
    """A differing record reproduced with --out into its own folder: the rerun is kept beside it as
    run.reproduced-<time>.json, which no reader of run.json picks up, so the next reproduce of the
    folder still compares against (and reports) the original record. One rerun (~15 s on 2 cores)."""
    from unlearnbench.reproduce import find_records

    rp = tmp_path / "rp"
    rec = json.loads(json.dumps(GOOD))
    rec["metrics"]["acc_test"] = 12.5  # as if the code had changed since: it no longer reproduces
    cell = rp / "digits-10pct" / "retrain" / "seed-0"
    cell.mkdir(parents=True)
    (cell / "run.json").write_text(json.dumps(rec))
    original = (cell / "run.json").read_bytes()
    _put_bad(rp, b"[1, 2]")
    r = CliRunner().invoke(main, ["reproduce", "-q", str(rp), "--store", str(session_store.root), "--out", str(rp)])
    _no_traceback(r)
    assert r.exit_code == 1, r.output
    assert "DIFFERS digits-10pct / retrain / seed 0" in r.output and "recorded 12.5" in r.output, r.output
    assert "broken/seed-0/run.json: it is a list" in r.output
    assert (cell / "run.json").read_bytes() == original  # never over the record
    kept = list(cell.glob("run.reproduced-*.json"))
    assert len(kept) == 1 and json.loads(kept[0].read_text())["metrics"]["acc_test"] != 12.5
    assert f"reruns' records: {kept[0]}" in r.output
    assert cell / "run.json" in find_records([rp]) and kept[0] not in find_records([rp])  # the next reproduce
    assert not list(rp.rglob("*.tmp"))


def test_kept_reruns_never_replace_a_file(tmp_path):
    from unlearnbench.reproduce import keep_rerun

    src = tmp_path / "new.json"
    src.write_text('{"new": 1}')
    out = tmp_path / "out" / "digits-10pct" / "retrain" / "seed-0"
    assert keep_rerun(src, out, False) == out / "run.json"  # a fresh --out: the usual layout
    second = keep_rerun(src, out, False)  # a run.json is there now: a new name beside it
    third = keep_rerun(src, out, True)
    assert second.name.startswith("run.reproduced-") and third != second and third.name.endswith(".json")
    assert sorted(p.read_text() for p in out.iterdir()) == ['{"new": 1}'] * 3


# -- sweep ----------------------------------------------------------------------------------------------

class Cheap(Method):
    """The original model, unchanged: costs one evaluation on top of the session store's models."""
    name = "v-cheap"
    uses = frozenset({"forget"})
    selects = False

    def unlearn(self, ctx):
        return Result(state=ctx.original())


class Raises(Cheap):
    name = "v-raises"

    def unlearn(self, ctx):
        raise ValueError("this plugin has a bug")


class Interrupted(Cheap):
    name = "v-interrupted"

    def unlearn(self, ctx):
        raise KeyboardInterrupt


@pytest.fixture
def sweep_host(host, monkeypatch):
    class P:
        @hookimpl
        def register_methods(self, register):
            for m in (Cheap(), Raises(), Interrupted()):
                register(m)

    host.register(P(), "v-records-test")
    monkeypatch.setattr("unlearnbench.plugins._host", host)
    return host


def _sweep(runs, store, *methods, extra=()):
    return CliRunner().invoke(main, ["sweep", "--methods", ",".join(methods), "--seeds", "0", "--store",
                                     str(store.root), "--runs-dir", str(runs), "-q", *extra])


def _cell(host, runs, method="v-cheap") -> Path:
    from unlearnbench.config import resolve
    from unlearnbench.runner import run_dir

    res = resolve(host, method=method)
    return run_dir(runs, res.scenario.name, res.run_name, 0) / "run.json"


@pytest.mark.parametrize("kind,data,what", BAD, ids=IDS)
def test_sweep_names_a_bad_record_and_runs_its_cell_again(tmp_path, sweep_host, session_store, kind, data, what):
    runs = tmp_path / "runs"
    cell = _cell(sweep_host, runs)
    cell.parent.mkdir(parents=True)
    cell.write_bytes(data)
    r = _sweep(runs, session_store, "v-cheap")
    _no_traceback(r)
    assert r.exit_code == 0, r.output
    warnings = [ln for ln in r.output.splitlines() if ln.startswith("warning: ")]
    assert len(warnings) == 1 and str(cell) in warnings[0] and what in warnings[0], r.output
    assert "sweep: 1 run(s) now, 0 already recorded, 0 failed" in r.output
    json.loads(cell.read_text())["metrics"]  # the cell is recorded now


@pytest.mark.parametrize("kind,data,what", BAD, ids=IDS)
def test_sweep_strict_stops_before_running(tmp_path, sweep_host, session_store, kind, data, what):
    runs = tmp_path / "runs"
    cell = _cell(sweep_host, runs)
    cell.parent.mkdir(parents=True)
    cell.write_bytes(data)
    r = _sweep(runs, session_store, "v-raises", "v-cheap", extra=["--strict"])
    _no_traceback(r)
    assert r.exit_code == 2, r.output
    assert r.output.count("Error: ") == 1 and str(cell) in r.output and what in r.output, r.output
    assert cell.read_bytes() == data and "FAILED" not in r.output  # nothing ran, nothing replaced


def test_sweep_one_plugin_error_does_not_end_the_grid(tmp_path, sweep_host, session_store):
    runs = tmp_path / "runs"
    r = _sweep(runs, session_store, "v-raises", "v-cheap")
    _no_traceback(r)
    assert r.exit_code == 1, r.output  # a cell failed
    assert "FAILED digits-class / v-raises / seed 0: ValueError: this plugin has a bug" in r.output  # the default
    assert "done digits-class / v-cheap / seed 0" in r.output
    assert "sweep: 1 run(s) now, 0 already recorded, 1 failed" in r.output
    assert _cell(sweep_host, runs).exists()


def test_sweep_keyboard_interrupt_still_stops_it(tmp_path, sweep_host, session_store):
    from unlearnbench.config import resolve
    from unlearnbench.runner import sweep_grid

    runs = tmp_path / "runs"
    res = [resolve(sweep_host, method=m) for m in ("v-interrupted", "v-cheap")]
    with pytest.raises(KeyboardInterrupt):
        sweep_grid(res, [0], store=session_store, runs_dir=runs, data_root=None, echo=lambda s: None)
    assert not _cell(sweep_host, runs).exists()  # the cell after it never ran
