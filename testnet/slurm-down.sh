#!/usr/bin/env bash
# slurm-down.sh — stop this checkout's one-machine Slurm cluster started by
# slurm-up.sh (its slurmd, slurmctld and munged, found by the pid files in
# its state dir). With --purge it also removes the state dir. Daemons of
# other checkouts, and the machine's own munged, are never touched: a pid is
# only signalled when its command line names this cluster's files.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
state="${PCM_SLURM_DIR:-$here/.data/slurm}"
[[ -d $state ]] && state="$(cd "$state" && pwd)"

log() { printf 'slurm-down: %s\n' "$*"; }

# stop_pidfile NAME PIDFILE MARK: stop the process in PIDFILE if its command
# line contains MARK (a path of this cluster), SIGKILL after 10 s.
stop_pidfile() {
	local name=$1 file=$2 mark=$3 pid
	pid="$(cat "$file" 2>/dev/null || true)"
	if [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null; then
		if ! tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "$mark"; then
			log "$name: pid $pid is not this cluster's (its command line lacks $mark): left alone"
			rm -f "$file"
			return
		fi
		log "stopping $name (pid $pid)"
		kill "$pid" || true
		for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
		if kill -0 "$pid" 2>/dev/null; then
			log "$name still running after 10s: SIGKILL"
			kill -9 "$pid" || true
		fi
	else
		log "$name not running"
	fi
	rm -f "$file"
}

stop_pidfile slurmd "$state/run/slurmd.pid" "$state/slurm.conf"
stop_pidfile slurmctld "$state/run/slurmctld.pid" "$state/slurm.conf"
stop_pidfile munged "$state/munge/munged.pid" "$state/munge/"

if [[ ${1:-} == --purge ]]; then
	log "removing $state"
	if [[ $(readlink /etc/slurm/slurm.conf 2>/dev/null) == "$state/slurm.conf" ]]; then rm -f /etc/slurm/slurm.conf; fi
	rm -rf "$state"
fi
