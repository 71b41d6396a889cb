#!/usr/bin/env bash
# A real one-node Slurm cluster on this (Debian, root) machine, for `hydra/launcher=slurm` and its tests:
#   munged -> MariaDB -> slurmdbd (job accounting: submitit reads job states with `sacct`) -> slurmctld -> slurmd.
# Idempotent: installs only what is missing, rewrites a config only when it changes, starts only daemons that are
# not running, and returns once `sinfo` shows this host's node up. Logs: /var/log/slurm/.
# Usage: sudo scripts/slurm_local.sh      (CI: .ci/run calls it before `make test`)
set -euo pipefail

HOST=$(hostname -s)
ETC=/etc/slurm
LOGS=/var/log/slurm
DB_PASS=rlpost-local-slurm  # a local database only reachable over this machine's socket

say() { echo "slurm_local: $*"; }
running() { pgrep -x "$1" >/dev/null; }

if [ "$(id -u)" != 0 ]; then
    echo "slurm_local: must run as root (installs Debian packages, starts daemons)" >&2
    exit 2
fi

# 1. Packages (Debian): Slurm daemons and client, munge, MariaDB for slurmdbd.
PACKAGES=(slurmctld slurmd slurm-client slurmdbd munge mariadb-server)
missing=()
for package in "${PACKAGES[@]}"; do
    dpkg -s "$package" >/dev/null 2>&1 || missing+=("$package")
done
if [ ${#missing[@]} -gt 0 ]; then
    say "installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null ||
        { apt-get update -q >/dev/null && apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null; }
fi
mkdir -p "$ETC" "$LOGS" /var/spool/slurmctld /var/spool/slurmd

# Write $1 from stdin only if its content changes; print "changed" when it did.
write_if_changed() {
    local target=$1 tmp
    tmp=$(mktemp)
    cat >"$tmp"
    if [ -f "$target" ] && cmp -s "$tmp" "$target"; then
        rm -f "$tmp"
    else
        mv "$tmp" "$target"
        echo changed
    fi
}

# 2. munge: a key owned by munge, mode 400; munged running as the munge user.
if [ ! -s /etc/munge/munge.key ]; then
    mkdir -p /etc/munge
    dd if=/dev/urandom of=/etc/munge/munge.key bs=1 count=1024 status=none
fi
chown munge:munge /etc/munge/munge.key
chmod 400 /etc/munge/munge.key
mkdir -p /run/munge /var/log/munge /var/lib/munge
chown munge:munge /run/munge /var/log/munge /var/lib/munge
if ! running munged; then
    say "starting munged"
    runuser -u munge -- /usr/sbin/munged
fi
for _ in $(seq 50); do munge -n 2>/dev/null | unmunge >/dev/null 2>&1 && break || sleep 0.2; done

# 3. MariaDB with the accounting database and its user.
if ! mysqladmin ping >/dev/null 2>&1; then
    say "starting MariaDB"
    mkdir -p /run/mysqld
    chown mysql:mysql /run/mysqld
    (setsid mysqld_safe >/dev/null 2>&1 &)
    for _ in $(seq 150); do mysqladmin ping >/dev/null 2>&1 && break || sleep 0.2; done
fi
mysql -e "CREATE DATABASE IF NOT EXISTS slurm_acct_db;
CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY '$DB_PASS';
GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost';"

# 4. Configs for this host: all CPUs, ~85% of the memory, one partition `debug`.
read -r CPUS SOCKETS CORES THREADS MEMORY < <(slurmd -C | head -1 | sed -E \
    's/.*CPUs=([0-9]+).*SocketsPerBoard=([0-9]+).*CoresPerSocket=([0-9]+).*ThreadsPerCore=([0-9]+).*RealMemory=([0-9]+).*/\1 \2 \3 \4 \5/')
MEMORY=$((MEMORY * 85 / 100))
conf_changed=$(write_if_changed "$ETC/slurm.conf" <<EOF
# Written by rlpost scripts/slurm_local.sh: a one-node cluster on $HOST.
ClusterName=local
SlurmctldHost=$HOST
AuthType=auth/munge
# A requeued job may start again after cred_expire + 1 s (default 120 s); with the scheduler passes every 3 s
# below, a requeued job restarts within ~15 s on this one-machine cluster.
AuthInfo=cred_expire=10
SlurmUser=root
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=2048
MpiDefault=none
ReturnToService=2
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmctldLogFile=$LOGS/slurmctld.log
SlurmdLogFile=$LOGS/slurmd.log
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
JobRequeue=1
SchedulerType=sched/backfill
SchedulerParameters=sched_interval=3,bf_interval=3
KillWait=30
MinJobAge=300
NodeName=$HOST CPUs=$CPUS Sockets=$SOCKETS CoresPerSocket=$CORES ThreadsPerCore=$THREADS RealMemory=$MEMORY State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF
)
write_if_changed "$ETC/slurmdbd.conf" >/dev/null <<EOF
# Written by rlpost scripts/slurm_local.sh
AuthType=auth/munge
DbdHost=localhost
SlurmUser=root
StorageType=accounting_storage/mysql
StorageHost=localhost
StorageUser=slurm
StoragePass=$DB_PASS
StorageLoc=slurm_acct_db
PidFile=/run/slurmdbd.pid
LogFile=$LOGS/slurmdbd.log
EOF
chmod 600 "$ETC/slurmdbd.conf"

# 5. Daemons: slurmdbd (and the cluster in its database), slurmctld, slurmd.
if ! running slurmdbd; then
    say "starting slurmdbd"
    slurmdbd
fi
for _ in $(seq 100); do sacctmgr -n list cluster format=cluster >/dev/null 2>&1 && break || sleep 0.2; done
sacctmgr -n list cluster format=cluster | grep -qw local || sacctmgr -i add cluster local >/dev/null
if [ -n "$conf_changed" ]; then  # some settings (AuthInfo) are read only at start: restart what this script started
    for daemon in slurmctld slurmd; do
        if [ -s "/run/$daemon.pid" ] && running "$daemon"; then
            say "restarting $daemon for the new slurm.conf"
            kill "$(cat "/run/$daemon.pid")"
            for _ in $(seq 50); do running "$daemon" || break; sleep 0.2; done
        fi
    done
fi
if ! running slurmctld; then
    say "starting slurmctld"
    slurmctld
fi
if ! running slurmd; then
    say "starting slurmd"
    slurmd
fi

# 6. Wait until the node takes jobs; a node left down or drained by an earlier run is resumed.
for attempt in $(seq 120); do
    state=$(sinfo -h -n "$HOST" -o %T 2>/dev/null | head -1 | tr -d '*~#')
    case "$state" in
        idle | mixed | allocated | completing) say "node $HOST $state"; exit 0 ;;
        down | drained | draining) [ $((attempt % 10)) = 1 ] && scontrol update nodename="$HOST" state=resume || true ;;
    esac
    sleep 0.5
done
echo "slurm_local: node $HOST did not come up (state: ${state:-none}); see $LOGS/" >&2
exit 1
