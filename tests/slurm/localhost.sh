#!/usr/bin/env bash
# A real single-node SLURM on localhost, for tests: `localhost.sh start` installs Debian's
# slurm-wlm and munge if missing (root, apt), writes /etc/slurm/slurm.conf, starts munged,
# slurmctld and slurmd by hand (no systemd) and waits for the node; `localhost.sh stop` stops them.
# Pitfalls this handles: the job step plugin drops SLURM_CONF, so the config lives at
# /etc/slurm/slurm.conf; apt must not start services (policy-rc.d); munged needs /run/munge
# owned by munge; no slurmdbd, so Snakemake polls with squeue (profiles/slurm). MessageTimeout:
# Snakemake's SLURM plugin runs `scontrol show config` whenever it loads, local runs too, and with
# no controller running that waits MessageTimeout - 1 seconds (9 s with the default 10): 3 while
# the daemons run, 1 (no wait) once `stop` has stopped them.
set -euo pipefail

start() {
  if ! command -v slurmctld >/dev/null || ! command -v munged >/dev/null; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq slurmctld slurmd slurm-client munge >/dev/null
  fi
  stop >/dev/null 2>&1 || true
  local node cpus memory
  node=$(hostname -s)
  cpus=$(nproc)
  memory=$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 - 1024 ))
  mkdir -p /etc/slurm /var/spool/slurmctld /var/spool/slurmd /var/log/slurm /run/munge /etc/munge
  cat > /etc/slurm/slurm.conf <<CONF
ClusterName=sensweep-test
SlurmctldHost=${node}(127.0.0.1)
AuthType=auth/munge
SlurmUser=root
SlurmdUser=root
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
MpiDefault=none
ReturnToService=2
MinJobAge=300
MessageTimeout=3
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
NodeName=${node} NodeAddr=127.0.0.1 CPUs=${cpus} RealMemory=${memory} State=UNKNOWN
PartitionName=test Nodes=ALL Default=YES MaxTime=INFINITE State=UP
CONF
  if [ ! -s /etc/munge/munge.key ]; then
    dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none
  fi
  chown -R munge:munge /etc/munge /run/munge /var/lib/munge /var/log/munge 2>/dev/null || true
  chmod 0400 /etc/munge/munge.key
  chmod 0755 /run/munge
  runuser -u munge -- /usr/sbin/munged
  slurmctld
  slurmd
  for _ in $(seq 1 100); do
    if sinfo -h -o '%t' 2>/dev/null | grep -qE '^(idle|mix|alloc)'; then
      echo "slurm ready on ${node}"
      return 0
    fi
    sleep 0.2
  done
  echo "slurm did not come up" >&2
  tail -n 20 /var/log/slurm/slurmctld.log /var/log/slurm/slurmd.log >&2 || true
  return 1
}

stop() {
  scancel --state=PENDING,RUNNING --full 2>/dev/null || true
  for daemon in slurmd slurmctld munged; do
    pkill -x "$daemon" 2>/dev/null || true
  done
  sleep 0.5
  if [ -f /etc/slurm/slurm.conf ]; then
    sed -i 's/^MessageTimeout=.*/MessageTimeout=1/' /etc/slurm/slurm.conf
  fi
}

"${1:?usage: localhost.sh start|stop}"
