#!/usr/bin/env bash
# The Fashion-MNIST leaderboard grid on a lent GPU machine (the device tool), one process per
# (scenario, seed), all sharing one store. Needs, beside the repo: .whl/ (omegaconf, platformdirs
# wheels) and .fmnist/ (the four IDX .gz files). Writes $OUT/runs.tgz (records + logs).
#   BUDGET=460 bash benchmarks/device_sweep.sh
# Cells already in leaderboards/runs are skipped (sweep matches config hashes), so only missing ones
# run. A fresh machine retrains the originals: if its weights differ from those the recorded cells
# used, `unlearnbench leaderboard` says "Not like for like" for those trials, and the whole grid of
# that scenario must be rerun on one machine (delete its records first).
set -u
BUDGET=${BUDGET:-460}
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl || exit 1
python3 -m pip install -q --no-index --no-deps --no-build-isolation --no-compile --target /tmp/site . || exit 1
export PYTHONSAFEPATH=1 PYTHONPATH=/tmp/site UNLEARNBENCH_DATA=$PWD/.fmnist HF_HUB_OFFLINE=1 UNLEARNBENCH_QUIET=1 PYTHONUNBUFFERED=1
UB="python3 -m unlearnbench.cli"
mkdir -p runs-gpu/logs
cp -r leaderboards/runs/. runs-gpu/
nvidia-smi --query-gpu=name --format=csv,noheader
# Smoke first: a broken device path fails here in seconds, not after the budget.
$UB run -q -m negmerge -s digits-10pct --seeds 0 -o device=cuda -o pool.size=2 --store /tmp/smoke \
    --runs-dir /tmp/smoke-runs > runs-gpu/logs/smoke.txt 2>&1 || { cat runs-gpu/logs/smoke.txt; exit 1; }
tail -3 runs-gpu/logs/smoke.txt
ALL=retrain,negmerge,task-arithmetic,uniform,ties,magmax,negmerge-min,negmerge-max,conflict,all,greedy
ALL=$ALL,gradient-ascent,boundary-shrink,boundary-expanding,random-label-forget,salun-forget
ALL=$ALL,finetune,l1-sparse,random-label,salun,influence
METHODS=${METHODS:-$ALL}
for scen in fmnist-10pct fmnist-class; do
  for s in 0 1 2; do
    timeout "$BUDGET" $UB sweep -q --methods "$METHODS" --scenarios "$scen" --seeds "$s" -o device=cuda -o threads=2 \
        --store /tmp/store --runs-dir runs-gpu > "runs-gpu/logs/$scen-$s.txt" 2>&1 &
  done
done
wait
grep -h "^done\|FAILED" runs-gpu/logs/*.txt | sort | uniq -c | sort -rn | head -5
grep -c "^done" runs-gpu/logs/*.txt
tar czf "$OUT/runs.tgz" runs-gpu  # copy its new records into leaderboards/runs, then regenerate
