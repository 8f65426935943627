#!/usr/bin/env bash
# k8s-down.sh — stop the control plane started by k8s-up.sh (kwok, scheduler,
# controller manager, API server, etcd, in that order) and leave nothing
# running. With --purge it also removes its state dir (certificates, etcd
# data, logs); the built binaries stay in the cache (see k8s-build.sh).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
state="${PCM_K8S_DIR:-$here/.data/k8s}"

log() { printf 'k8s-down: %s\n' "$*"; }

stop_pidfile() {
	local name=$1 file="$state/run/$1.pid" pid
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

for name in kwok kube-scheduler kube-controller-manager kube-apiserver etcd; do
	stop_pidfile "$name"
done

if [[ ${1:-} == --purge ]]; then
	log "removing $state"
	rm -rf "$state"
fi
