#!/usr/bin/env bash
# `make demo`: a scratch project under ./demo (recreated every time) with DVC-tracked data,
# two runs with different settings on the local target, a third interrupted and resumed from
# its checkpoint, then `git exp ls` and `git exp show`.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
demo="$here/demo"
export DVC_NO_ANALYTICS=1
say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

rm -rf "$demo"
mkdir -p "$demo"
cp "$here/examples/train.py" "$here/examples/make_data.py" "$demo/"
cd "$demo"
git init -q
git config user.name "gitexp demo"
git config user.email "demo@example.com"
printf '/model.json\n' > .gitignore

say "data: generated deterministically, versioned with DVC"
python make_data.py data
dvc init -q
dvc config core.analytics false
dvc add -q data
cat data.dvc
want="$(grep -m1 'md5:' "$here/examples/data.dvc" | awk '{print $3}')"
got="$(grep -m1 'md5:' data.dvc | awk '{print $3}')"
if [ "$want" != "$got" ]; then
    echo "data hash $got differs from the committed examples/data.dvc ($want)" >&2
    exit 1
fi
echo "same hash as the committed examples/data.dvc: the data reproduces"
git add -A
git commit -qm "demo project: code + DVC-tracked data"

say "run 1: git exp run -- python train.py --lr 0.05 --epochs 15"
git exp run -n slow -- python train.py --lr 0.05 --epochs 15

say "run 2: git exp run --out model.json -- python train.py --lr 0.3 --epochs 15"
git exp run -n fast --out model.json -- python train.py --lr 0.3 --epochs 15

say "run 3: interrupted as a platform would (its job SIGTERM'd), resumed from its checkpoint"
comeback="$(git exp run -d -n comeback -- python train.py --lr 0.3 --epochs 15 --pause 0.2 \
    --checkpoint-every 1)"
store=".git/gitexp/store/runs/$comeback"
for _ in $(seq 150); do  # until a checkpoint is in the store
    [ -e "$store/checkpoint.json" ] && break; sleep 0.1
done
kill -TERM "$(python -c 'import json, sys; print(json.load(open(sys.argv[1]))["pid"])' \
    "$store/status.json")"
git exp logs -f "$comeback" | grep -E "gitexp: attempt|resumed after" || true
git exp show "$comeback" | sed -n '/^attempts/,/^metrics/p' | sed '$d'  # ended as run 2

say "git exp ls"
git exp ls

run="$(git exp ls --json | python -c 'import json, sys
print(next(r["id"] for r in json.load(sys.stdin) if r["record"]["name"] == "fast"))')"
say "git exp show $run   (note the data version)"
git exp show "$run"

say "git exp outputs $run   (the model the run recorded, via DVC)"
git exp outputs "$run"
cat model.json

say "git exp plot / git exp report: loss curves of the three runs, one offline HTML page"
git exp plot --where 'status==succeeded' -m loss -o loss.png
git exp report -o runs.html
say "mail: one thread per run in the outbox Maildir (mutt -f .git/gitexp/outbox opens it)"
for _ in $(seq 50); do
    [ "$(find .git/gitexp/outbox/new -type f 2>/dev/null | wc -l)" -ge 2 ] && break; sleep 0.2
done
python - .git/gitexp/outbox/new/* <<'PY'  # the subjects, decoded (the ✓ is RFC 2047 in the file)
import email, email.policy, sys
for path in sorted(sys.argv[1:]):
    with open(path, "rb") as f:
        print("  Subject:", email.message_from_binary_file(f, policy=email.policy.default)["Subject"])
PY

bin="$(dirname "$(command -v git-exp)")"
say "done: the demo project is $demo"
cat <<EOF
  plot      $demo/loss.png
  report    $demo/runs.html   (the web view, frozen into one offline page: open it in a browser)
  mail      $demo/.git/gitexp/outbox   (a Maildir: mutt -f it; README "Mail" for real delivery)

Try next:
  export PATH="$bin:\$PATH"; cd $demo
  git exp ls                      # the three runs, their metrics and data version
  git exp diff slow fast          # what differs: params, code, data, metrics
  git exp logs fast               # the log, kept in git
  git exp rerun slow              # the same snapshot and command again
  git exp run -- python train.py --lr 0.1 --epochs 15   # a run of your own

Look at the runs in the browser (table, curves, diffs, live logs):
  cd $demo && $bin/git-exp ui
EOF
