#!/usr/bin/env bash
# Prints the scenario runner's speed against a hand-written baseline (same
# system calls, fork and pipes, no parsing or checking), the 64 MiB
# cross-process throughput, and the wall time of the whole suite.
# BENCH_RUNS sets the number of runs of the seed scenario (default 300).
set -euo pipefail
cd "$(dirname "$0")/.."
exec cargo bench -p shm-harness --bench scenario "$@"
