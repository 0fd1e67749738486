"""Which weights does this machine train for a scenario's trial-0 original? Prints the CPU, torch's kernel
dispatch and the sha256 of the original's tensors (``store.tensor_digest``, as run.json's
``weights_digest.original``), once per environment given, each in a fresh process (the kernel choices are
read at import). Records of one trial are like for like only when this digest matches theirs.

    python benchmarks/original_digest.py digits-10pct "" "ATEN_CPU_CAPABILITY=avx2" "ATEN_CPU_CAPABILITY=avx2 MKL_CBWR=AVX2"
"""
from __future__ import annotations

import os
import subprocess
import sys
import tempfile

CHILD = """
import sys, tempfile, torch
from unlearnbench.config import resolve
from unlearnbench.plugins import get_host
from unlearnbench.provenance import cpu_model
from unlearnbench.runner import build_task
from unlearnbench.stages import Stages
from unlearnbench.store import Store, tensor_digest
torch.set_num_threads(1)
task = build_task(resolve(get_host(), scenario=sys.argv[1], method="retrain", overrides=[]), 0, None)
st = Stages(task, Store(tempfile.mkdtemp()))
print(cpu_model(), torch.backends.cpu.get_cpu_capability(), tensor_digest(st.init_weights())[:12],
      tensor_digest(st.original())[:12])
"""


def main() -> None:
    scenario, envs = sys.argv[1], sys.argv[2:] or [""]
    print(f"{scenario}, trial 0, 1 thread: cpu | dispatch | init digest | original digest")
    for env in envs:
        extra = dict(kv.split("=", 1) for kv in env.split())
        out = subprocess.run([sys.executable, "-c", CHILD, scenario], capture_output=True, text=True,
                             env={**os.environ, "HF_HUB_OFFLINE": "1", **extra}, cwd=tempfile.gettempdir())
        line = out.stdout.strip().splitlines()[-1] if out.returncode == 0 else f"failed: {out.stderr[-300:]}"
        print(f"{env or '(default)':<62} {line}")


if __name__ == "__main__":
    main()
