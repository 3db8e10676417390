#!/bin/bash
{{sbatch_options}}
# gitexp: one recorded run (or, as a job array, one run per array task) under Slurm.
# The agent checks out the run's snapshot by hash, runs its command, and reports status,
# heartbeat, log, metrics and result to the store; sbatch only has to start it.
# Rendered from gitexp's templates/sbatch.sh; every value below was shell-quoted.
set -eu

runs=({{runs}})
snapshots=({{snapshots}})
task=${SLURM_ARRAY_TASK_ID:-0}
run=${runs[$task]}
snapshot=${snapshots[$task]}

# The target's `setup` (e.g. `module load python/3.11`), as written in its configuration.
{{setup}}

# Anything the agent itself prints (e.g. a Python that lacks gitexp) goes to the run's log
# when the store is a shared directory, so `git exp logs` shows it.
logdir={{log_dir}}
if [ -n "$logdir" ]; then
    mkdir -p "$logdir/$run"
    exec >>"$logdir/$run/log" 2>&1
fi

workdir={{workdir}}
exec {{agent}}
