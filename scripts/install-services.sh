#!/usr/bin/env bash
# Installs the system packages the test suite's real services need (idempotent, quick when
# everything is already there). The services themselves are started by the tests' fixtures
# (tests/services/); package installs never start daemons (no systemd on these machines).
# Runs as root (`make test` on a fresh Debian 12 machine and in CI).
set -euo pipefail

# Package -> a file it provides; a package is installed only when its file is missing.
declare -A PROBES=(
    [openssh-server]=/usr/sbin/sshd
    [openssh-client]=/usr/bin/ssh
    [git]=/usr/bin/git
    [python3]=/usr/bin/python3
    [munge]=/usr/sbin/munged
    [slurm-wlm]=/usr/sbin/slurmctld
    [slurm-client]=/usr/bin/sbatch
    [podman]=/usr/bin/podman
    [runc]=/usr/sbin/runc
    [debootstrap]=/usr/sbin/debootstrap
    [uidmap]=/usr/bin/newuidmap
    [curl]=/usr/bin/curl  # tests/test_gce_target.py runs the GCE startup script
    [shellcheck]=/usr/bin/shellcheck  # tests/test_security.py lints every rendered script
    [mblaze]=/usr/bin/mthread  # tests/test_notify_sweep.py threads a sweep's mails
    [zsh]=/usr/bin/zsh  # tests/test_completion.py types `git exp <TAB>` into zsh
    [git-lfs]=/usr/bin/git-lfs  # tests/test_lfs.py: LFS files reach the job with contents
    [chromium]=/usr/bin/chromium  # tests/test_ui.py, benchmarks/bench_ui.py: the web view in a real browser
)

missing=()
for pkg in "${!PROBES[@]}"; do
    [[ -e ${PROBES[$pkg]} ]] || missing+=("$pkg")
done

if ((${#missing[@]})); then
    if [[ $(id -u) != 0 ]]; then
        echo "install-services: missing ${missing[*]}; run this script as root" >&2
        exit 1
    fi
    echo "install-services: installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    # Other installers may hold the dpkg lock (parallel set-up scripts): wait for it.
    apt=(apt-get -qq -o DPkg::Lock::Timeout=600)
    "${apt[@]}" update
    # --no-install-recommends keeps the install small; nothing below needs the recommends.
    "${apt[@]}" install -y --no-install-recommends "${missing[@]}" >/dev/null
fi

if [[ $(id -u) == 0 ]]; then
    # munged needs its runtime dir (normally made by systemd-tmpfiles) and a key.
    install -d -o munge -g munge -m 0755 /run/munge
    if [[ ! -s /etc/munge/munge.key ]]; then
        runuser -u munge -- /usr/sbin/mungekey --create --keyfile=/etc/munge/munge.key
    fi
    install -d -m 0755 /run/sshd
fi

echo "install-services: ok"
