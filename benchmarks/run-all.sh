#!/usr/bin/env bash
# Every benchmark, one after another; each prints its figures and the ratio to its reference.
# `make bench` runs this with the project's venv first on PATH. bench_slurm.py needs root
# (it starts the single-node test cluster, as `make test` does); bench_start.py starts its own
# sshd for the ssh part, as the tests do.
set -euo pipefail
cd "$(dirname "$0")/.."
for bench in core transport dvc_overhead ls scale show_big hooks agent slurm start ui checkpoint; do
    echo "== benchmarks/bench_${bench}.py"
    python "benchmarks/bench_${bench}.py"
    echo
done
