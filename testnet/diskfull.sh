#!/usr/bin/env bash
# diskfull.sh: an agent whose disk fills up stops with a clear error, not a
# crash, and keeps every acknowledged ledger entry.
set -euo pipefail
# shellcheck source=testnet/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

usage() {
	cat <<EOF
usage: testnet/diskfull.sh [--size MiB] [--no-build]

As root: mounts a small tmpfs (default 160 MiB) of its own, runs one agent
with its data dir there, submits 10 tasks and waits for them (each one an
agreement and events in the ledger, the final one billed), then fills the file
system with a file until less than the agent's min_free_mb (64 MiB) is
left. Checks that the agent stops by itself within 10 s with an error
naming its data dir (no crash: not a signal), that on a tmpfs of 8 MiB it
refuses to start with the same kind of message, and that after the file
is removed and the agent restarted, every acknowledged entry is there and
ledger verify passes. Unmounts everything at the end.
EOF
}
size=160
while (($#)); do
	case $1 in
	-h | --help) usage; exit 0 ;;
	--size) size=${2:?}; shift ;;
	--no-build) PCM_NO_BUILD=1 ;;
	*) tn_die "unknown option $1 (see --help)" ;;
	esac
	shift
done
[[ $(id -u) == 0 ]] || { echo "SKIP: needs root to mount a tmpfs"; exit 0; }
tn_need jq curl
[[ -n ${PCM_NO_BUILD:-} ]] || tn_build
work=$(mktemp -d /tmp/pcm-diskfull.XXXXXX)
mnt=$work/disk
small=$work/small
mkdir -p "$mnt" "$small"
pid=""
cleanup() {
	[[ -n $pid ]] && kill "$pid" 2>/dev/null || true
	sleep 0.5
	umount "$mnt" 2>/dev/null || true
	umount "$small" 2>/dev/null || true
	rm -rf "$work"
}
trap cleanup EXIT
mount -t tmpfs -o size="${size}m" pcm-diskfull "$mnt"
mount -t tmpfs -o size=8m pcm-diskfull-small "$small"
api=$(tn_free_port)
p2p=$(tn_free_port)
start() {
	"$PCM_BIN" --data-dir "$1" join --listen "127.0.0.1:$p2p" --api-listen "127.0.0.1:$api" >"$work/agent.log" 2>&1 &
	pid=$!
}

echo "[1/4] an 8 MiB tmpfs: the agent must refuse to start"
set +e
"$PCM_BIN" --data-dir "$small/pcm" join --listen "127.0.0.1:$p2p" --api-listen "127.0.0.1:$api" >"$work/small.log" 2>&1
rc=$?
set -e
grep -q "MiB free" "$work/small.log" && ((rc != 0 && rc < 128)) || {
	cat "$work/small.log"
	tn_die "on an 8 MiB tmpfs the agent did not refuse cleanly (exit $rc)"
}
echo "  refused, exit $rc: $(grep -o 'data dir[^(]*' "$work/small.log" | head -1)"

echo "[2/4] an agent on a ${size} MiB tmpfs runs 10 tasks"
start "$mnt/pcm"
for _ in {1..100}; do curl -sf "http://127.0.0.1:$api/v1/status" >/dev/null && break; sleep 0.2; done
printf '%s\n' 'name: small' 'resources: {cpu: 100m, memory: 16Mi}' 'driver: local' "command: [sh, -c, 'echo done']" >"$work/task.yaml"
ids=()
for _ in {1..10}; do
	ids+=("$(curl -sf -X POST --data-binary @"$work/task.yaml" "http://127.0.0.1:$api/v1/tasks" | jq -r .id)")
done
for id in "${ids[@]}"; do
	for _ in {1..150}; do
		[[ $(curl -sf "http://127.0.0.1:$api/v1/tasks/$id" | jq -r .state) == succeeded ]] && break
		sleep 0.2
	done
done
acked=$(curl -sf "http://127.0.0.1:$api/v1/status" | jq -r .ledger.index)
echo "  $acked ledger entries acknowledged"

echo "[3/4] filling the file system to below 64 MiB free"
free=$(($(stat -f -c '%a * %S' "$mnt") / 1048576))
dd if=/dev/zero of="$mnt/fill" bs=1M count=$((free - 40)) status=none || true
stopped=0
for _ in {1..50}; do
	if ! kill -0 "$pid" 2>/dev/null; then
		stopped=1
		break
	fi
	sleep 0.2
done
set +e
wait "$pid"
rc=$?
set -e
pid=""
((stopped)) || tn_die "the agent did not stop within 10 s of the disk filling"
((rc < 128)) || tn_die "the agent died of signal $((rc - 128)) (a crash), not a clean stop"
grep -q "nearly full" "$work/agent.log" || { tail -5 "$work/agent.log"; tn_die "no clear message in the agent's log"; }
echo "  stopped by itself, exit $rc: $(grep -o 'data dir [^ ]*: [0-9]* MiB free' "$work/agent.log" | head -1)"

echo "[4/4] space freed, agent restarted: every acknowledged entry is there"
rm -f "$mnt/fill"
start "$mnt/pcm"
for _ in {1..100}; do curl -sf "http://127.0.0.1:$api/v1/status" >/dev/null && break; sleep 0.2; done
idx=$(curl -sf "http://127.0.0.1:$api/v1/status" | jq -r .ledger.index)
ok=$(curl -sf "http://127.0.0.1:$api/v1/ledger/verify" | jq -r .ok)
kill "$pid"
wait "$pid" || true
pid=""
echo "  ledger index $idx (acknowledged $acked), verify ok=$ok"
lost=$((acked > idx ? acked - idx : 0))
tn_row "disk full (${size} MiB tmpfs)" "${#ids[@]} tasks" "disk filled, agent restarted" "$acked entries" "$lost" "-" "$([[ $ok == true ]] && echo ok || echo FAILED)"
((idx >= acked)) && [[ $ok == true ]] || tn_die "entries lost or verify failed"
echo "PASS: full disk → clean stop, no crash, nothing acknowledged lost"
