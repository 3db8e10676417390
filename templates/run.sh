#!/bin/sh
# Replays gitexp run {{run_id}} by hand, with git (and DVC if the run used tracked data):
# no gitexp needed. Run it inside a clone of the repository (a fresh clone is best: it checks
# out the run's snapshot there), or in any other directory, where it first clones REMOTE.
#
#   the run:    {{command}}
#   REMOTE=URL sh run.sh    fetches the run from URL instead of the default below
set -eu

RUN_ID={{run_id}}
SNAPSHOT={{snapshot}}
SUBDIR={{cwd}}
DEFAULT_REMOTE={{remote}}
REMOTE=${REMOTE:-$DEFAULT_REMOTE}

if ! git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
    git clone --quiet --no-checkout "$REMOTE" "run-$RUN_ID"
    cd "run-$RUN_ID"
fi
cd "$(git rev-parse --show-toplevel)"

# The code: exactly the snapshot commit the run launched from (its ref keeps it reachable).
if ! git cat-file -e "$SNAPSHOT^{commit}" 2>/dev/null; then
    git fetch --quiet "$REMOTE" "+refs/experiments/$RUN_ID:refs/experiments/$RUN_ID"
fi
git -c advice.detachedHead=false checkout --quiet --detach "$SNAPSHOT"
if [ "$(git rev-parse HEAD)" != "$SNAPSHOT" ]; then
    echo "run.sh: HEAD is not the snapshot $SNAPSHOT" >&2
    exit 1
fi

# The data: the version the run recorded (the snapshot's .dvc/dvc.lock files pin it).
{{data_step}}

# The environment variables the run recorded.
{{env_exports}}

# The command, exactly as it ran (each word quoted: nothing is re-split or expanded).
cd "./$SUBDIR"
exec {{argv}}
