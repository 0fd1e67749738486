#!/usr/bin/env bash
# The GPU training path on one lent GPU, in at most 5 minutes (issue 20, acceptance 6): images/s of the
# CIFAR-10 ResNet-18 original recipe (fp32, bf16, fp32 channels-last) and of one pool member, one CLIP
# ViT-B/32 pool-member step on random weights, each device augmentation, and the projected wall time of
# one cifar10-10pct trial, each beside the same figure at the device's peak from its FLOP count
# (benchmarks/device_check.py says how). Never part of CI; run it whenever a GPU is lent:
#   run(command="bash benchmarks/device_check.sh", carry=[".whl"], timeout_s=330)
# .whl/ holds what the device image lacks (device README, KINDS.md): omegaconf, antlr4-python3-runtime,
# platformdirs, and for the CLIP stages open_clip_torch and ftfy (+ wcwidth); without open_clip those
# stages say so and the rest run. Results: $OUT/device_check.{txt,json} (else benchmarks/results/device_check/).
# Every stage has its own cap inside the script; LIMIT is the backstop for the whole check.
# Locally, tiny sizes on CPU (< 60 s; tests/test_device_check.py runs it): INSTALL=0 bash benchmarks/device_check.sh --smoke
set -u
LIMIT=${LIMIT:-295}
PY=${PY:-python3}
if [ "${INSTALL:-1}" = 1 ]; then
  $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl || exit 1
  $PY -m pip install -q --no-index --no-deps --no-build-isolation --no-compile --target /tmp/site . || exit 1
  export PYTHONSAFEPATH=1 PYTHONPATH=/tmp/site
  nvidia-smi --query-gpu=name,clocks.max.sm,power.limit --format=csv,noheader
fi
export HF_HUB_OFFLINE=1 UNLEARNBENCH_QUIET=1 PYTHONUNBUFFERED=1
timeout "$LIMIT" $PY benchmarks/device_check.py "$@"
