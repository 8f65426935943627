#!/usr/bin/env bash
# load.sh: the placement load run: N agents (separate processes, sim
# drivers), many tasks submitted at once, placements/s and latency.
set -euo pipefail
# shellcheck source=testnet/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

usage() {
	cat <<EOF
usage: testnet/load.sh [options]

Starts a fresh testnet of AGENTS pcm-agent processes with the sim driver
(16 CPUs each; tasks of 1 CPU that run 1 simulated second, which takes
SCALE real seconds) in its own folder, then runs 'pcm-agent load': TASKS submissions at once, spread over
every agent's API, and prints placements/s, submit→placed p50/p99/max and
rounds per task (brokers' own clocks; see 'pcm-agent load --help').
Repeats RUNS times on the same testnet and prints each run and the median.

options:
  --agents N       agents (default 3)
  --tasks N        tasks per run (default 500)
  --runs N         runs (default 3)
  --time-scale S   real seconds per simulated second (default 0.001: tasks
                   end at once, so placement is measured, not capacity;
                   with 1, 3 agents × 16 CPUs bound it to 48 placements/s)
  --dir DIR        testnet folder (default testnet/.data/load)
  --keep           leave the testnet running
  --no-build       use the existing bin/pcm-agent
  -h, --help       this help
EOF
}

agents=3 tasks=500 runs=3 scale=0.001 keep=0 build=()
TN_DIR=${PCM_TESTNET_DIR:-$TN_ROOT/testnet/.data/load}
while (($#)); do
	case $1 in
	-h | --help) usage; exit 0 ;;
	--agents) agents=${2:?}; shift ;;
	--tasks) tasks=${2:?}; shift ;;
	--runs) runs=${2:?}; shift ;;
	--time-scale) scale=${2:?}; shift ;;
	--dir) TN_DIR=${2:?}; shift ;;
	--keep) keep=1 ;;
	--no-build) build=(--no-build) ;;
	*) tn_die "unknown option $1 (see --help)" ;;
	esac
	shift
done
export PCM_TESTNET_DIR=$TN_DIR
tn_need jq curl
here=$(dirname "${BASH_SOURCE[0]}")
"$here/down.sh" --clean --dir "$TN_DIR" >/dev/null 2>&1 || true
mkdir -p "$TN_DIR"
((${#build[@]})) || tn_build
tn_say "== starting $agents agents with the sim driver in $TN_DIR"
printf 'drivers:\n  sim:\n    time_scale: %s\n' "$scale" >"$TN_DIR/load-config.yaml"
"$here/up.sh" "$agents" --no-build --dir "$TN_DIR" --driver sim --config "$TN_DIR/load-config.yaml" --log-level warn >"$TN_DIR/up.out" 2>&1 || {
	cat "$TN_DIR/up.out" >&2
	tn_die "the testnet did not start"
}
cleanup() { ((keep)) || "$here/down.sh" --dir "$TN_DIR" >/dev/null 2>&1 || true; }
trap cleanup EXIT

targets=()
for ((i = 1; i <= agents; i++)); do
	targets+=(--target "$(tn_api "a$i")")
done
results="$TN_DIR/load.jsonl"
: >"$results"
for ((r = 1; r <= runs; r++)); do
	tn_say "== run $r of $runs: $tasks tasks at once"
	"$TN_ROOT/bin/pcm-agent" load "${targets[@]}" --tasks "$tasks" --concurrency "$tasks" -o json | jq -c . >>"$results"
	# let the sim tasks of this run end before the next
	sleep 2
done
printf '\nrun\tplacements/s\tp50 ms\tp99 ms\tmax ms\trounds/task\tunplaced\n'
jq -r '[input_line_number, (.placements_per_second|floor), .p50_ms, .p99_ms, .max_ms, (.rounds_per_task*100|floor/100), .unplaced] | @tsv' "$results"
jq -rs 'def med: sort | .[length/2|floor];
	["median", (map(.placements_per_second)|med|floor), (map(.p50_ms)|med), (map(.p99_ms)|med), (map(.max_ms)|med), (map(.rounds_per_task)|med*100|floor/100), (map(.unplaced)|add)] | @tsv' "$results"
