"""benchmarks/device_check.py (issue 20, acceptance 6) in its --smoke mode: every stage of the GPU check
runs on CPU at toy sizes, under its cap, and writes its table; the peak-based columns fill in when the
device's peak is known."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "device_check.py"


def _load():
    spec = importlib.util.spec_from_file_location("device_check", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_the_peak_table_matches_device_names_by_their_longest_entry():
    dc = _load()
    assert dc.peak_for("NVIDIA H200")[0] == "H200"
    assert dc.peak_for("NVIDIA H100 PCIe")[0] == "H100 PCIe" and dc.peak_for("NVIDIA H100 80GB HBM3")[0] == "H100"
    assert dc.peak_for("NVIDIA L40S")[0] == "L40S" and dc.peak_for("NVIDIA L4")[0] == "L4"
    assert dc.peak_for("NVIDIA A100-SXM4-80GB")[1][2] == 312.0 and dc.peak_for("cpu") == (None, None)
    assert sum(dc.CAPS.values()) + 20 < 300  # the stage caps and start-up fit a 5-minute loan


@pytest.mark.slow
def test_smoke_mode_runs_every_stage_and_writes_the_table(tmp_path):
    dc = _load()
    assert dc.main(["--smoke", "--device", "cpu", "--out", str(tmp_path), "--peak", "0.05,,0.1"]) == 0
    res = json.loads((tmp_path / "device_check.json").read_text())
    assert set(res["stages"]) == set(dc.CAPS)
    assert not [k for k, v in res["stages"].items() if "error" in v], res["stages"]
    for k in ("cifar_fp32", "cifar_bf16", "pool_member", "clip_fp32"):
        r = res["stages"][k]
        assert r["images_per_s"] > 0 and 0 < r["fraction_of_peak"] and r["images_per_s_at_peak"] > 0
    assert res["stages"]["cifar_bf16"]["limit"] == "bf16" and res["stages"]["cifar_fp32"]["limit"] == "fp32"
    assert res["projection"]["images"] == {"original_and_retrain": 182 * (45_000 + 40_500), "pool": 1350 * 4_500}
    assert res["projection"]["fp32"]["hours"] > 0 and res["total_s"] < 60
    text = (tmp_path / "device_check.txt").read_text()
    assert "one cifar10-10pct trial" in text and "at peak" in text and "SMOKE" in text
