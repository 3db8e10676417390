#!/bin/bash
# gitexp: the startup script of a GCE run VM (the gce target puts it in the instance's
# `startup-script` metadata; it runs as root at boot).
#
# 1. reads its settings from the metadata server (instance attributes `gitexp-*`);
# 2. downloads gitexp's own wheel from the GCS store (no gitexp on the image), and mounts
#    the target's NFS export (`gitexp-nfs`) when it has one;
# 3. runs the agent, which fetches the snapshot from the store, checks it out, runs the job
#    and streams log, heartbeat, metrics and result back to the store;
# 4. uploads its own log, and writes a `failed` result if the agent never wrote one (unless
#    the instance was preempted: the run's next attempt goes on a new VM);
# 5. deletes (or stops) its own instance - also when the job or anything above fails.
#    `gitexp-on-exit: keep` (`git exp run --keep`) leaves the VM running for debugging.
#
# Needs only bash, curl, python3 and git on the image (git is installed when missing).
# Credentials: the VM's service account (its token from the metadata server) for GCS,
# Secret Manager and the Compute API. Secrets never travel in metadata: `gitexp-secrets`
# holds references `ENV=projects/P/secrets/NAME/versions/V`, resolved here into the
# agent's environment only - never into a file, a log or argv.
#
# Endpoints can be redirected (tests): GITEXP_METADATA_URL, STORAGE_EMULATOR_HOST,
# GITEXP_COMPUTE_URL, GITEXP_SECRETS_URL; GITEXP_ROOT is the work directory and
# GITEXP_POWEROFF the last-resort command when the Compute API cannot be reached, and
# GITEXP_MOUNT the command that mounts `gitexp-nfs`.
# shellcheck disable=SC2317  # (functions called from the EXIT trap are reachable)
set -uo pipefail

MD="${GITEXP_METADATA_URL:-http://metadata.google.internal}/computeMetadata/v1"
GCS="${STORAGE_EMULATOR_HOST:-https://storage.googleapis.com}"
COMPUTE="${GITEXP_COMPUTE_URL:-https://compute.googleapis.com/compute/v1}"
SECRETS="${GITEXP_SECRETS_URL:-https://secretmanager.googleapis.com/v1}"
ROOT="${GITEXP_ROOT:-/var/lib/gitexp}"
export HOME="${HOME:-/root}"  # startup scripts may run without one; git and pip want it
LOG="$ROOT/startup.log"
STAGE="reading the settings"

mkdir -p "$ROOT" && exec > >(tee -a "$LOG") 2>&1
say() { printf 'gitexp-startup: %s\n' "$*"; }

md() { curl -fsS --retry 5 --retry-connrefused -H 'Metadata-Flavor: Google' "$MD/$1"; }
attr() { md "instance/attributes/$1" 2>/dev/null || printf '%s' "${2-}"; }
json_field() { python3 -c 'import json,sys; print(json.load(sys.stdin)[sys.argv[1]])' "$1"; }
urlencode() { python3 -c 'import sys,urllib.parse as u; print(u.quote(sys.argv[1], safe=""))' "$1"; }
token() { md instance/service-accounts/default/token | json_field access_token; }
auth() { printf 'Authorization: Bearer %s' "$(token)"; }

STORE=$(attr gitexp-store)
RUN=$(attr gitexp-run)
SNAPSHOT=$(attr gitexp-snapshot)
SLOT=$(attr gitexp-slot)  # a sweep's slot runs several runs: none is this VM's alone
LOG_KEY=$(attr gitexp-log "runs/$RUN/agent.log")
WHEEL=$(attr gitexp-wheel)
ON_EXIT=$(attr gitexp-on-exit delete)
BUCKET=${STORE#gs://}; PREFIX=${BUCKET#*/}; BUCKET=${BUCKET%%/*}
[ "$PREFIX" = "$BUCKET" ] && PREFIX=""
PREFIX=${PREFIX%/}${PREFIX:+/}

# Store keys, the same ones the agent uses (runs/<id>/...).
object_url() { printf '%s/storage/v1/b/%s/o/%s' "$GCS" "$BUCKET" "$(urlencode "$PREFIX$1")"; }
download() { curl -fsS --retry 5 -H "$(auth)" -o "$2" "$(object_url "$1")?alt=media"; }
exists() { curl -fsS --retry 5 -H "$(auth)" -o /dev/null "$(object_url "$1")"; }
upload() {
    curl -fsS --retry 5 -H "$(auth)" -H 'Content-Type: application/octet-stream' \
        --data-binary "@$2" -o /dev/null \
        "$GCS/upload/storage/v1/b/$BUCKET/o?uploadType=media&name=$(urlencode "$PREFIX$1")"
}

release_instance() {
    local verb action
    case "$ON_EXIT" in
        keep) say "keeping this instance (gitexp-on-exit=keep)"; return ;;
        stop) verb=POST; action=/stop ;;
        *) verb=DELETE; action= ;;
    esac
    local project zone name
    project=$(md project/project-id) && zone=$(md instance/zone) && name=$(md instance/name) &&
        say "$ON_EXIT: $name" &&
        curl -fsS --retry 5 -X "$verb" -H "$(auth)" -o /dev/null \
            "$COMPUTE/projects/$project/zones/${zone##*/}/instances/$name$action" && return
    say "the Compute API refused; powering off"
    ${GITEXP_POWEROFF:-poweroff}
}

finish() {
    local code=$?
    if [ -n "$RUN" ]; then
        if [ "$code" -eq 143 ] || [ "$(md instance/preempted 2>/dev/null)" = TRUE ]; then
            # Preempted (the agent's 143: it left the run without a result): the developer's
            # side starts the next attempt on a new VM, which resumes from the checkpoint.
            say "this instance was preempted: the run goes on in its next attempt"
        elif [ "$code" -ne 0 ] && [ -z "$SLOT" ] && ! exists "runs/$RUN/result.json"; then
            # The agent never got far enough to say how the run ended: say it for it.
            python3 -c 'import json,sys,time; print(json.dumps({"status": "failed",
                "ended_at": time.time(), "error": "gce startup: " + sys.argv[1] + " failed"}))' \
                "$STAGE" > "$ROOT/result.json" &&
                upload "runs/$RUN/result.json" "$ROOT/result.json"
        fi
        upload "$LOG_KEY" "$LOG" || say "could not upload the startup log"
    fi
    touch "$ROOT/done"
    release_instance
}

# A stopped instance that is started again must not run the job a second time.
if [ -e "$ROOT/done" ]; then
    say "this instance already ran its job; nothing to do"
    exit 0
fi
trap finish EXIT

if [ -z "$STORE" ] || [ -z "$RUN" ] || [ -z "$SNAPSHOT" ] || [ -z "$WHEEL" ]; then
    say "missing gitexp-* settings in the instance metadata"
    exit 2
fi
say "run $RUN, snapshot $SNAPSHOT, store $STORE"

STAGE="installing git"
if ! command -v git >/dev/null 2>&1; then
    (apt-get update -q && apt-get install -y -q git) || exit 3
fi

STAGE="downloading gitexp"
download "$WHEEL" "$ROOT/gitexp.whl" || exit 4

STAGE="reading the secrets"
names=()
while IFS='=' read -r name ref; do
    [ -n "$name" ] || continue
    value=$(curl -fsS --retry 5 -H "$(auth)" "$SECRETS/$ref:access" |
        python3 -c 'import base64,json,sys
print(base64.b64decode(json.load(sys.stdin)["payload"]["data"]).decode(), end="")') || exit 5
    export "$name=$value"
    names+=("$name")
done <<< "$(attr gitexp-secrets)"

NFS=$(attr gitexp-nfs)  # SERVER:/export:/mount/point (checked by the launch: plain words)
if [ -n "$NFS" ]; then
    STAGE="mounting $NFS"
    nfs_mount=${NFS##*:}; nfs_share=${NFS%:*}
    if [ -z "${GITEXP_MOUNT-}" ] && ! command -v mount.nfs >/dev/null 2>&1; then
        (apt-get update -q && apt-get install -y -q nfs-common) || exit 3
    fi
    mkdir -p "$nfs_mount" &&
        ${GITEXP_MOUNT:-mount} -t nfs -o hard,timeo=600,retrans=3 "$nfs_share" "$nfs_mount" ||
        exit 7
    say "mounted $nfs_share at $nfs_mount"
fi

STAGE="reading the agent's command line"
# The agent's command line, built by the launch (a JSON list in `gitexp-agent`); its paths
# are relative to $ROOT.
mapfile -d '' -t agent < <(attr gitexp-agent |
    python3 -c 'import json,sys; sys.stdout.write("\0".join(json.load(sys.stdin)))')
[ "${#agent[@]}" -gt 0 ] || exit 3
cd "$ROOT" || exit 3
CONTAINER=$(attr gitexp-container)
if [ -n "$CONTAINER" ]; then
    # The agent runs in the project image; this VM only needs docker.
    STAGE="installing docker"
    command -v docker >/dev/null 2>&1 ||
        (apt-get update -q && apt-get install -y -q docker.io) || exit 3
    registry=${CONTAINER%%/*}
    case "$registry" in
        *gcr.io|*-docker.pkg.dev)  # the service account's token, on stdin: never in argv
            STAGE="logging in to $registry"
            token | docker login -u oauth2accesstoken --password-stdin "https://$registry" ||
                exit 6 ;;
    esac
    STAGE="running the agent"
    opts=(--rm --network host -v "$ROOT:$ROOT" -w "$ROOT" -e "PYTHONPATH=$ROOT/gitexp.whl")
    command -v nvidia-smi >/dev/null 2>&1 && opts+=(--gpus all)
    for name in "${names[@]}" STORAGE_EMULATOR_HOST; do
        [ -n "${!name-}" ] && opts+=(-e "$name")  # the name only: docker copies the value
    done
    docker run "${opts[@]}" "$CONTAINER" "${agent[@]}"
else
    # The agent talks to the store with google-cloud-storage: install it beside the wheel
    # when the image lacks it.
    STAGE="installing google-cloud-storage"
    deps="$ROOT/deps"
    if ! python3 -c 'import google.cloud.storage' 2>/dev/null; then
        python3 -m pip --version >/dev/null 2>&1 ||
            (apt-get update -q && apt-get install -y -q python3-pip) || exit 3
        python3 -m pip install -q --break-system-packages --target "$deps" \
            'google-cloud-storage>=2.14' || exit 3
    fi
    STAGE="running the agent"
    PYTHONPATH="$ROOT/gitexp.whl:$deps${PYTHONPATH:+:$PYTHONPATH}" "${agent[@]}"
fi
code=$?
say "agent exited with $code"
exit "$code"
