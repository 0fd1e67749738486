#!/usr/bin/env bash
# The Fashion-MNIST leaderboard grid on a lent GPU machine (the device tool), in one call.
# Needs, beside the repo: .whl/ (omegaconf, platformdirs wheels) and .fmnist/ (the IDX .gz files).
#   run(command="DEADLINE=540 bash benchmarks/device_sweep.sh", carry=[".whl", ".fmnist"], timeout_s=590)
# Phase 1, one process per (scenario, seed): train this machine's original, Retrain and pool
#   (methods retrain and negmerge) into runs-gpu/.
# Phase 2: benchmarks/device_plan.py compares each trial's original and Retrain metrics with the
#   records in OLD (default benchmarks/results/fmnist-h200-runs, the deterministic-kernel grid
#   built up over GPU sessions). Equal: only the cells OLD lacks run. Different, or none there:
#   the whole trial runs here (the leaderboard refuses to mix originals). Each trial's methods are split
#   into GROUPS parallel sweeps that only read the store phase 1 filled, so no two processes
#   train the same weights.
# Everything stops by DEADLINE seconds after start and leaves $OUT/runs.tgz (records + logs): copy
# its records into OLD (all of a trial that "differs", replacing what OLD had of it). Once OLD
# holds every cell of a scenario not yet complete on the board, it replaces that scenario's records in
# leaderboards/runs; then regenerate with `unlearnbench leaderboard leaderboards/runs --out leaderboards`.
# Since session 4 only fmnist-class is needed: fmnist-10pct's board is the complete CPU grid.
# Measured (session 3, 6 trials, 3 groups each): phase 1 takes ~245 s; under that load one
# retain-set baseline (5 lrs x 10 epochs) takes ~240 s, Task Arithmetic 120-180 s, a merge ~25 s.
# The whole grid is ~1,300 device-seconds: two or three sessions.
# Locally, for a dry run: SCENARIOS=digits-10pct DEVICE=cpu INSTALL=0 OUT=/tmp/o bash benchmarks/device_sweep.sh
set -u
T0=$(date +%s)
DEADLINE=${DEADLINE:-540}
SCENARIOS=${SCENARIOS:-fmnist-class}  # fmnist-10pct: complete on CPU (session 4)
SEEDS=${SEEDS:-0 1 2}
DEVICE=${DEVICE:-cuda}
GROUPS_PER_TRIAL=${NGROUPS:-3}  # not GROUPS: bash owns that name
PY=${PY:-python3}
OLD=${OLD:-benchmarks/results/fmnist-h200-runs}
left() { local l=$((DEADLINE - ($(date +%s) - T0))); [ "$l" -gt 0 ] && echo "$l" || echo 1; }
if [ "${INSTALL:-1}" = 1 ]; then
  $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl || exit 1
  $PY -m pip install -q --no-index --no-deps --no-build-isolation --no-compile --target /tmp/site . || exit 1
  export PYTHONSAFEPATH=1 PYTHONPATH=/tmp/site UNLEARNBENCH_DATA=$PWD/.fmnist
  nvidia-smi --query-gpu=name --format=csv,noheader
fi
export HF_HUB_OFFLINE=1 UNLEARNBENCH_QUIET=1 PYTHONUNBUFFERED=1
UB="$PY -m unlearnbench.cli"
R=runs-gpu
rm -rf $R; mkdir -p $R/logs
pack() { tar czf "$OUT/runs.tgz" $R; echo "packed after $(( $(date +%s) - T0 )) s"; }

echo "phase 1 at $(( $(date +%s) - T0 )) s"
for scen in $SCENARIOS; do for s in $SEEDS; do
  timeout "$(left)" $UB sweep -q --methods retrain,negmerge --scenarios "$scen" --seeds "$s" \
      -o device=$DEVICE -o threads=2 --store /tmp/store --runs-dir $R > "$R/logs/$scen-$s-p1.txt" 2>&1 &
done; done
wait

echo "phase 2 at $(( $(date +%s) - T0 )) s"
for scen in $SCENARIOS; do for s in $SEEDS; do
  $PY benchmarks/device_plan.py --new $R --old "$OLD" -s "$scen" --seed "$s" \
      --groups "$GROUPS_PER_TRIAL" > "$R/logs/$scen-$s-plan.txt" 2>> $R/logs/plan.txt \
      || { cat "$R/logs/$scen-$s-p1.txt" | tail -5; continue; }
  g=0
  while read -r methods; do
    g=$((g + 1))
    timeout "$(left)" $UB sweep -q --methods "$methods" --scenarios "$scen" --seeds "$s" \
        -o device=$DEVICE -o threads=1 --store /tmp/store --runs-dir $R > "$R/logs/$scen-$s-g$g.txt" 2>&1 &
  done < "$R/logs/$scen-$s-plan.txt"
done; done
cat $R/logs/plan.txt
wait
echo "phase 2 ended at $(( $(date +%s) - T0 )) s"
grep -h "FAILED\|Error" $R/logs/*.txt | sort | uniq -c | head -5
for scen in $SCENARIOS; do for s in $SEEDS; do
  echo "$scen seed $s: $(ls $R/$scen/*/seed-$s/run.json 2>/dev/null | wc -l) records"
done; done
pack
