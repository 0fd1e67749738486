#!/usr/bin/env bash
# Does a trial reproduce bit for bit on the GPU? Two processes, two empty stores, the same
# fmnist-10pct trial 0 at the same time: the original, Retrain and a few methods each, then their
# weight hashes and metrics compared. Writes $OUT/determinism.txt.
#   run(command="bash benchmarks/device_determinism.sh", carry=[".whl", ".fmnist"], timeout_s=200)
# Locally (1 thread each: two 2-thread jobs on 2 cores crawl): THREADS=1 SCENARIO=digits-10pct DEVICE=cpu INSTALL=0 OUT=/tmp/o bash benchmarks/device_determinism.sh
set -u
LIMIT=${LIMIT:-165}
SCENARIO=${SCENARIO:-fmnist-10pct}
DEVICE=${DEVICE:-cuda}
PY=${PY:-python3}
METHODS=${METHODS:-retrain,gradient-ascent,salun-forget,boundary-shrink,influence}
if [ "${INSTALL:-1}" = 1 ]; then
  $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl || exit 1
  $PY -m pip install -q --no-index --no-deps --no-build-isolation --no-compile --target /tmp/site . || exit 1
  export PYTHONSAFEPATH=1 PYTHONPATH=/tmp/site UNLEARNBENCH_DATA=$PWD/.fmnist
fi
export HF_HUB_OFFLINE=1 UNLEARNBENCH_QUIET=1 PYTHONUNBUFFERED=1
rm -rf /tmp/det && mkdir -p /tmp/det
for side in a b; do
  timeout "$LIMIT" $PY -m unlearnbench.cli sweep -q --methods "$METHODS" --scenarios "$SCENARIO" --seeds 0 \
      -o device=$DEVICE -o threads=${THREADS:-2} --store /tmp/det/store-$side --runs-dir /tmp/det/runs-$side \
      > /tmp/det/log-$side.txt 2>&1 &
done
wait
$PY - "$SCENARIO" <<'EOF' | tee "$OUT/determinism.txt"
import json, sys
from pathlib import Path
scen = sys.argv[1]
for side in "ab":
    print(f"--- log {side}:", Path(f"/tmp/det/log-{side}.txt").read_text()[-1500:])
same = True
for rec_a in sorted(Path("/tmp/det/runs-a", scen).glob("*/seed-0/run.json")):
    rec_b = Path("/tmp/det/runs-b") / rec_a.relative_to("/tmp/det/runs-a")
    if not rec_b.exists():
        print(f"{rec_a.parent.parent.name}: only side a finished"); continue
    a, b = json.loads(rec_a.read_text()), json.loads(rec_b.read_text())
    drop = lambda d: {k: v for k, v in d.items() if k != "seconds"} if isinstance(d, dict) else d
    for key in ("weights_digest", "metrics", "lambda", "selection"):
        eq = drop(a.get(key)) == drop(b.get(key))
        same &= eq
        print(f"{a['method']:>16} {key:>15}: {'identical' if eq else 'DIFFERENT'}")
        if not eq:
            print("   a:", json.dumps(a.get(key))[:300]); print("   b:", json.dumps(b.get(key))[:300])
    print(f"{a['method']:>16} timings a: {json.dumps({k: round(v, 1) for k, v in a['timings'].items()})}")
    print(f"{'':>16} provenance: {a['provenance'].get('gpu')} deterministic_kernels={a['provenance'].get('deterministic_kernels')}")
print("VERDICT:", "reproduces bit for bit" if same else "does NOT reproduce")
EOF
