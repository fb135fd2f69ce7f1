#!/usr/bin/env bash
# A one-node Slurm cluster on this machine, for the sweep engine's tests (run as root by .ci/run).
# Installs Debian's munge and Slurm 22.05 when absent, creates a munge key, writes
# /etc/slurm/slurm.conf for this host (one node at 127.0.0.1, partition `debug`, no accounting),
# starts munged, slurmctld and slurmd in the background (no systemd needed), waits for the node to
# be idle, runs a 4-task job array as a check and prints one line `slurm: one-node cluster up (...)`.
# Idempotent: daemons already answering are left alone; slurm.conf is only rewritten when it would
# change (then the running daemons are restarted).
#
# Without accounting storage, `sacct` has nothing to read: follow jobs with
# `squeue -h -r -t all -j ID -o '%i %T'` while the controller keeps them (MinJobAge below) and
# `scontrol show job ID` for the exit code; /var/log/slurm_jobcomp.log (jobcomp/filetxt) keeps a
# line per finished job or array task after that.
set -euo pipefail

start=$SECONDS
say() { echo "slurm: $*"; }
fail() {
  echo "slurm: ERROR: $*" >&2
  for f in /var/log/slurmctld.log /var/log/slurmd.log /var/log/munge/munged.log; do
    if [ -s "$f" ]; then
      echo "---- tail $f" >&2
      tail -n 40 "$f" >&2
    fi
  done
  exit 1
}

if [ "$(id -u)" -ne 0 ]; then fail "must run as root"; fi

conf_dir=/etc/slurm
conf=$conf_dir/slurm.conf
state_dir=/var/spool/slurmctld
spool_dir=/var/spool/slurmd
# Finished jobs stay visible to squeue / scontrol for this many seconds (Slurm's default is 300):
# there is no accounting database here, so this is the only record of how a job ended.
min_job_age=3600

# 1. Packages.
if ! command -v sbatch >/dev/null 2>&1 || ! command -v slurmctld >/dev/null 2>&1 ||
  ! command -v slurmd >/dev/null 2>&1 || ! command -v munged >/dev/null 2>&1; then
  say "installing munge slurmctld slurmd slurm-client"
  # The packages' maintainer scripts must not try to start daemons (no init system here): a
  # temporary policy-rc.d refuses, unless the machine already has its own.
  policy=/usr/sbin/policy-rc.d
  made_policy=
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' >"$policy"
    chmod 755 "$policy"
    made_policy=1
  fi
  rc=0
  {
    apt-get update -qq &&
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        munge slurmctld slurmd slurm-client >/dev/null
  } || rc=$?
  if [ -n "$made_policy" ]; then rm -f "$policy"; fi
  if [ "$rc" -ne 0 ]; then fail "apt-get install failed (exit $rc)"; fi
fi
command -v sbatch >/dev/null 2>&1 || fail "sbatch still absent after install"

# 2. Munge: a key, then munged (as the munge user, as its packaging does).
key=/etc/munge/munge.key
if ! getent passwd munge >/dev/null; then fail "no munge user (the munge package creates it)"; fi
install -d -o munge -g munge -m 0700 /etc/munge /var/lib/munge /var/log/munge
install -d -o munge -g munge -m 0755 /run/munge
if [ ! -s "$key" ]; then
  say "creating $key"
  dd if=/dev/urandom of="$key" bs=1024 count=1 status=none
fi
chown munge:munge "$key"
chmod 0400 "$key"
if munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
  : # munged already answers
else
  # A stale pid or socket from an earlier munged that is gone would stop a new one.
  pidfile=/run/munge/munged.pid
  if [ -s "$pidfile" ] && ! kill -0 "$(cat "$pidfile")" 2>/dev/null; then
    rm -f "$pidfile" /run/munge/munge.socket.2 /run/munge/munge.socket.2.lock
  fi
  runuser -u munge -- /usr/sbin/munged || runuser -u munge -- /usr/sbin/munged --force ||
    fail "munged did not start"
  for _ in $(seq 1 50); do
    if munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then break; fi
    sleep 0.2
  done
  munge -n | unmunge >/dev/null || fail "munge -n | unmunge fails"
fi

# 3. slurm.conf for this machine.
host=$(hostname -s 2>/dev/null || uname -n | cut -d. -f1)
cpus=$(nproc)
# As `free -m` (procps may be absent on a minimal Debian): MemTotal in MB.
mem_total=$(awk '/^MemTotal:/ { print int($2 / 1024) }' /proc/meminfo)
# Leave a tenth of the memory (at least 512 MB) to the system and the daemons.
leave=$((mem_total / 10))
if [ "$leave" -lt 512 ]; then leave=512; fi
mem=$((mem_total - leave))
if [ "$mem" -lt 256 ]; then mem=256; fi
def_mem=$((mem / cpus))
install -d -m 0755 "$conf_dir"
install -d -m 0755 "$state_dir" "$spool_dir"
new_conf=$(
  cat <<EOF
# Written by .ci/slurm.sh: one-node cluster for CI (no accounting, no cgroups).
ClusterName=ci
SlurmctldHost=$host(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
StateSaveLocation=$state_dir
SlurmdSpoolDir=$spool_dir
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmctldLogFile=/var/log/slurmctld.log
SlurmdLogFile=/var/log/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
MailProg=/bin/true
MpiDefault=none
SwitchType=switch/none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/filetxt
JobCompLoc=/var/log/slurm_jobcomp.log
SchedulerType=sched/backfill
# Pending array tasks start within about a second of a CPU coming free (the defaults: ~3 s).
SchedulerParameters=batch_sched_delay=0,sched_min_interval=0
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU_Memory
DefMemPerCPU=$def_mem
ReturnToService=2
# Refuse at submission what this node can never run (more CPUs than it has, say), rather than
# leave it pending for ever (Reason=PartitionConfig).
EnforcePartLimits=ALL
MinJobAge=$min_job_age
SlurmdParameters=config_overrides
NodeName=$host NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=debug Nodes=$host Default=YES MaxTime=INFINITE State=UP
EOF
)
conf_changed=
if [ ! -f "$conf" ] || [ "$(cat "$conf")" != "$new_conf" ]; then
  printf '%s\n' "$new_conf" >"$conf.tmp"
  mv "$conf.tmp" "$conf"
  chmod 0644 "$conf"
  conf_changed=1
  say "wrote $conf"
fi

# 4. Daemons. A changed slurm.conf (plugins included) is only read whole at start: stop the
# running daemons first (`scontrol shutdown` stops slurmctld and slurmd).
running() { # pidfile
  [ -s "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null
}
if [ -n "$conf_changed" ] && { running /run/slurmctld.pid || running /run/slurmd.pid; }; then
  say "slurm.conf changed: restarting slurmctld and slurmd"
  scontrol shutdown >/dev/null 2>&1 || true
  for _ in $(seq 1 100); do
    if ! running /run/slurmctld.pid && ! running /run/slurmd.pid; then break; fi
    sleep 0.2
  done
  for pidfile in /run/slurmctld.pid /run/slurmd.pid; do
    if running "$pidfile"; then kill "$(cat "$pidfile")" 2>/dev/null || true; fi
  done
  sleep 1
fi
if ! { running /run/slurmctld.pid && scontrol ping >/dev/null 2>&1; }; then
  if ! running /run/slurmctld.pid; then
    slurmctld || fail "slurmctld did not start"
  fi
  for _ in $(seq 1 100); do
    if scontrol ping >/dev/null 2>&1; then break; fi
    sleep 0.2
  done
  scontrol ping >/dev/null 2>&1 || fail "slurmctld does not answer scontrol ping"
fi
if ! running /run/slurmd.pid; then
  slurmd || fail "slurmd did not start"
fi

# The node registers within seconds; one that comes up down or drained (a state saved by an
# earlier controller, say) is resumed, again every 5 s while it stays so.
node_state() { sinfo -h -n "$host" -o %T 2>/dev/null | head -n 1; }
state=
for i in $(seq 0 119); do
  state=$(node_state)
  case "$state" in
  idle | mixed | allocated | completing) break ;;
  down | drained | draining | drain | fail | inval)
    if [ $((i % 10)) -eq 0 ]; then
      say "node $host is $state: scontrol update nodename=$host state=resume"
      scontrol update nodename="$host" state=resume || true
    fi
    ;;
  esac
  sleep 0.5
done
case "$state" in
idle | mixed | allocated | completing) ;;
*)
  sinfo -N -l >&2 || true
  scontrol show node "$host" >&2 || true
  fail "node $host not idle after 60 s (state '${state}')"
  ;;
esac

# 5. A real job array: 4 one-CPU tasks, each writing its task id into a file of a temp dir. It is
# followed with squeue rather than `sbatch --wait`, whose polls grow from 2 s to 8 s and more.
check=$(mktemp -d /tmp/slurm-check.XXXXXX)
chmod 0755 "$check"
# shellcheck disable=SC2016 # the task's shell expands $SLURM_ARRAY_TASK_ID
job=$(sbatch --parsable --job-name=ci-slurm-check --array=0-3 --cpus-per-task=1 --mem=64M \
  --time=5 --chdir="$check" --output="$check/%A_%a.out" \
  --wrap 'echo "$SLURM_ARRAY_TASK_ID" > "task-$SLURM_ARRAY_TASK_ID"') ||
  fail "sbatch of the check array failed"
job=${job%%;*}
states=
for _ in $(seq 1 240); do
  # -r: one line per array task (pending ones too); -t all: finished tasks as well, which
  # squeue leaves out by default.
  states=$(squeue -h -r -t all -j "$job" -o '%T' 2>/dev/null | sort | uniq -c |
    awk '{ printf "%s%s %s", sep, $1, $2; sep = ", " }')
  case "$states" in
  *PENDING* | *RUNNING* | *CONFIGURING* | *COMPLETING* | "") sleep 0.5 ;;
  *) break ;;
  esac
done
case "$states" in
"4 COMPLETED") ;;
*)
  scontrol show job "$job" >&2 || true
  fail "check array $job: squeue says '${states}', not 4 COMPLETED (after 120 s at most)"
  ;;
esac
for i in 0 1 2 3; do
  [ "$(cat "$check/task-$i" 2>/dev/null)" = "$i" ] || fail "array task $i wrote no task-$i in $check"
  [ -e "$check/${job}_$i.out" ] || fail "array task $i: no output file ${job}_$i.out in $check"
done
rm -rf "$check"

# 6. One line.
say "one-node cluster up (node $host, $cpus CPUs, ${mem} MB, partition debug; check array $job: $states; $((SECONDS - start)) s)"
