"""Acceptance #11 of issue 2: `unlearnbench run --method negmerge` with no other argument, cold
(empty store) and warm. Run it alone on the machine: other jobs on the same cores skew it.

    python benchmarks/default_run.py            # prints a table and exits 1 if a budget is missed
"""
from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

COLD_BUDGET_S, WARM_BUDGET_S = 180.0, 30.0


def timed(cmd: list[str], env: dict) -> float:
    t0 = time.perf_counter()
    subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t0


def main() -> int:
    exe = str(Path(sys.executable).with_name("unlearnbench"))
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "UNLEARNBENCH_STORE": str(Path(tmp) / "store"), "UNLEARNBENCH_QUIET": "1"}
        cmd = [exe, "run", "--method", "negmerge", "--runs-dir", str(Path(tmp) / "runs")]
        cold = timed(cmd, env)
        warm = timed(cmd, env)
    rows = [("cold (empty store)", cold, COLD_BUDGET_S), ("warm (store filled)", warm, WARM_BUDGET_S)]
    print(f"{'unlearnbench run --method negmerge':<36} {'wall s':>8} {'budget s':>9}")
    for name, t, budget in rows:
        print(f"{name:<36} {t:8.1f} {budget:9.0f}  {'ok' if t < budget else 'OVER'}")
    print(f"cold/warm ratio: {cold / warm:.1f}x; cores: {os.cpu_count()}")
    return 0 if all(t < b for _, t, b in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
