#!/usr/bin/env bash
# PROTOCOL §2.1's recipe character check on trial 0 of both CPU data sets. Fashion-MNIST trains
# two cnn-bn models (~5 min each on 2 threads), so this is a benchmark, not a test.
set -euo pipefail
unlearnbench check-recipe -q -s digits-10pct "$@"
unlearnbench check-recipe -q -s fmnist-10pct "$@"
