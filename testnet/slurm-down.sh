#!/usr/bin/env bash
# slurm-down.sh — stop the one-machine Slurm cluster started by slurm-up.sh
# (slurmd, slurmctld, munged). With --purge it also removes its state dir.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
state="${PCM_SLURM_DIR:-$here/.data/slurm}"

log() { printf 'slurm-down: %s\n' "$*"; }

stop_pidfile() {
	local name=$1 file=$2 pid
	pid="$(cat "$file" 2>/dev/null || true)"
	if [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null; then
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

stop_pidfile slurmd "$state/run/slurmd.pid"
stop_pidfile slurmctld "$state/run/slurmctld.pid"
stop_pidfile munged /run/munge/munged.pid

if [[ ${1:-} == --purge ]]; then
	log "removing $state"
	rm -rf "$state"
	if [[ -L /etc/slurm/slurm.conf ]]; then rm -f /etc/slurm/slurm.conf; fi
fi
