#!/usr/bin/env bash
# k8s-down.sh — stop the control plane started by k8s-up.sh (kwok, scheduler,
# controller manager, API server, etcd, in that order) and leave nothing
# running. With --purge it also removes its state dir (certificates, etcd
# data, logs); the built binaries stay in the cache (see k8s-build.sh).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
state="${PCM_K8S_DIR:-$here/.data/k8s}"

log() { printf 'k8s-down: %s\n' "$*"; }

# SIGTERM to all at once (each shuts down gracefully on its own, the API
# server takes seconds), then wait; SIGKILL what is left after 10 s.
names=(kwok kube-scheduler kube-controller-manager kube-apiserver etcd)
pids=()
for name in "${names[@]}"; do
	file="$state/run/$name.pid"
	pid="$(cat "$file" 2>/dev/null || true)"
	if [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null; then
		log "stopping $name (pid $pid)"
		kill "$pid" || true
		pids+=("$pid")
	else
		log "$name not running"
	fi
	rm -f "$file"
done
for _ in $(seq 100); do
	alive=()
	for pid in "${pids[@]}"; do kill -0 "$pid" 2>/dev/null && alive+=("$pid"); done
	((${#alive[@]} == 0)) && break
	sleep 0.1
done
for pid in "${pids[@]}"; do
	if kill -0 "$pid" 2>/dev/null; then
		log "pid $pid still running after 10s: SIGKILL"
		kill -9 "$pid" || true
	fi
done

if [[ ${1:-} == --purge ]]; then
	log "removing $state"
	rm -rf "$state"
fi
