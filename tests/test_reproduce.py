"""`unlearnbench reproduce`: the committed numbers are what this code computes."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from unlearnbench.cli import main
from unlearnbench.errors import ConfigError
from unlearnbench.provenance import cpu_capability, cpu_model
from unlearnbench.reproduce import compare, find_records, reproduce

REPO = Path(__file__).resolve().parent.parent
RUNS = REPO / "benchmarks" / "results" / "protocol-v1" / "runs" / "digits-10pct"
# One of each kind: the oracle, a merge with λ selection, an lr-searched baseline on D_r, and the
# forget-only relabelling whose collapse amplifies any difference in the arithmetic.
CELLS = ["retrain", "negmerge", "finetune", "random-label-forget"]
# Cells whose result survives another vector ISA of the same CPU model (measured: on an AVX2
# "AMD EPYC", retrain, negmerge and finetune reproduce the committed AVX-unknown records bit for
# bit, random-label-forget's collapse does not). The ISA is recorded since provenance has
# cpu_capability; a record without it is checked on these cells only.
ISA_ROBUST = ["retrain", "negmerge", "finetune"]


def _records(cells=CELLS, seed=0):
    return [RUNS / c / f"seed-{seed}" / "run.json" for c in cells]


@pytest.mark.slow
def test_committed_digits_cells_reproduce_bit_for_bit(host):
    recs = _records()
    prov = json.loads(recs[0].read_text())["provenance"]
    if prov["cpu"] != cpu_model():  # other CPU kernels may sum in another order
        pytest.skip(f"records were computed on {prov['cpu']!r}, this is {cpu_model()!r}")
    isa = prov.get("cpu_capability")
    if isa is not None and isa != cpu_capability():
        pytest.skip(f"records were computed with {isa} kernels, this machine dispatches to {cpu_capability()}")
    cells = CELLS if isa is not None else ISA_ROBUST
    out = reproduce(host, _records(cells), echo=lambda s: None)
    assert out["details"] and all(d == [] for d in out["details"].values()), out["details"]
    assert out["reproduced"] == len(cells)


@pytest.mark.slow  # 21 s: retrains a record (the fast suite's 10-minute budget); CI runs -m slow
def test_a_changed_number_is_reported_and_fails_the_command(tmp_path):
    rec = json.loads((RUNS / "retrain" / "seed-0" / "run.json").read_text())
    old = json.loads(json.dumps(rec))
    rec["metrics"]["acc_test"] += 0.01
    rec["lambda"] = 0.5
    rec["weights_digest"], old["weights_digest"] = {"original": "a" * 64}, {"original": "b" * 64}
    diffs = compare(old, rec)
    assert any(d.startswith("metrics.acc_test") for d in diffs) and any(d.startswith("lambda") for d in diffs)
    assert any(d.startswith("weights_digest.original") for d in diffs)
    assert compare(old, json.loads(json.dumps(old))) == []  # NaN λ of a baseline equals itself
    # end to end: a record whose number was edited no longer reproduces (exit status 1)
    dst = tmp_path / "runs" / "digits-10pct" / "retrain" / "seed-0"
    dst.mkdir(parents=True)
    edited = json.loads((RUNS / "retrain" / "seed-0" / "run.json").read_text())
    edited["metrics"]["acc_test"] = 12.5
    edited["provenance"]["cpu"] = "Another CPU"  # a record from another machine: the message says what bit for bit needs
    (dst / "run.json").write_text(json.dumps(edited))
    r = CliRunner().invoke(main, ["reproduce", "-q", str(tmp_path / "runs")])
    assert r.exit_code == 1, r.output
    assert "DIFFERS digits-10pct / retrain / seed 0" in r.output and "metrics.acc_test: recorded 12.5" in r.output
    assert "recorded on CPU Another CPU" in r.output and "needs the recorded CPU kind" in r.output


def test_filters_and_bad_input(tmp_path, host):
    assert len(find_records([RUNS / "negmerge"])) == 3
    r = CliRunner().invoke(main, ["reproduce", str(RUNS), "--methods", "no-such-method"])
    assert r.exit_code != 0 and "no run.json" in r.output
    rec = json.loads((RUNS / "retrain" / "seed-0" / "run.json").read_text())
    rec["config_hash"] = "0" * 64  # recorded under a config schema this code no longer has
    bad = tmp_path / "run.json"
    bad.write_text(json.dumps(rec))
    with pytest.raises(ConfigError, match="no longer resolves"):
        reproduce(host, [bad], echo=lambda s: None)


def test_a_gpu_record_is_skipped_without_cuda(tmp_path, host):
    import torch

    from unlearnbench.config import config_hash

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    rec = json.loads((RUNS / "retrain" / "seed-0" / "run.json").read_text())
    rec["config"]["device"] = "cuda"
    rec["config_hash"] = config_hash(rec["config"])
    path = tmp_path / "digits-10pct" / "retrain" / "seed-0" / "run.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(rec))
    out = reproduce(host, [path], echo=lambda s: None)
    assert out["skipped"] == 1 and "no CUDA device" in next(iter(out["details"].values()))[0]
