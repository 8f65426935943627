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
  --profile DIR    profile every run: the agents serve Go runtime profiles
                   (join --debug-pprof), and DIR/runR/ gets, per agent aN,
                   aN.cpu.pb.gz, aN.block.pb.gz, aN.mutex.pb.gz (deltas over
                   the run's first SECONDS), aN.goroutine-Ts.txt (stacks at
                   1 s and 3 s into the run), aN.tasks.json (the broker's task
                   records: rounds, history), aN.metrics.txt, plus
                   ledger.json (every ledger entry) and cpu.txt (machine busy
                   vs idle over the run, each agent's and the load client's
                   CPU seconds and run-queue wait, uptime). Summarize with testnet/loadprof.sh DIR.
  --profile-seconds SECONDS
                   length of the CPU/block/mutex profiles (default 10)
  --cpu C          CPUs each task asks for (default 1: 3 agents × 16 CPUs
                   hold 48 at once, so most tasks wait for a slot to free;
                   0.05 lets the mesh hold every task at once, measuring
                   placement alone)
  --log-level L    agent log level (default warn)
  --advert-interval D
                   the agents' advert period (default 1s; the provider
                   re-reads its drivers' free capacity every half of it)
  -h, --help       this help
EOF
}

agents=3 tasks=500 runs=3 cpu=1 scale=0.001 keep=0 build=() profile="" psecs=10 loglevel=warn advert=1s
TN_DIR=${PCM_TESTNET_DIR:-$TN_ROOT/testnet/.data/load}
while (($#)); do
	case $1 in
	-h | --help) usage; exit 0 ;;
	--agents) agents=${2:?}; shift ;;
	--tasks) tasks=${2:?}; shift ;;
	--runs) runs=${2:?}; shift ;;
	--time-scale) scale=${2:?}; shift ;;
	--cpu) cpu=${2:?}; shift ;;
	--dir) TN_DIR=${2:?}; shift ;;
	--keep) keep=1 ;;
	--no-build) build=(--no-build) ;;
	--profile) profile=$(realpath -m "${2:?}"); shift ;;
	--profile-seconds) psecs=${2:?}; shift ;;
	--log-level) loglevel=${2:?}; shift ;;
	--advert-interval) advert=${2:?}; shift ;;
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
upargs=()
[[ -z $profile ]] || upargs=(--pprof)
# up.sh picks free ports by checking, then using them: another testnet
# starting at the same time may take one in between. Retry on a clean
# folder rather than fail.
for try in 1 2 3; do
	"$here/up.sh" "$agents" --no-build --dir "$TN_DIR" --driver sim --config "$TN_DIR/load-config.yaml" --log-level "$loglevel" --advert-interval "$advert" "${upargs[@]}" >"$TN_DIR/up.out" 2>&1 && break
	((try < 3)) || break
	tn_say "   the testnet did not start (try $try of 3; a port taken meanwhile?): retrying on fresh ports"
	"$here/down.sh" --clean --dir "$TN_DIR" >/dev/null 2>&1 || true
	mkdir -p "$TN_DIR"
	printf 'drivers:\n  sim:\n    time_scale: %s\n' "$scale" >"$TN_DIR/load-config.yaml"
done
tn_converged() { tn_state_json | tn_converged_report | grep -q '^ok'; }
tn_converged || {
	cat "$TN_DIR/up.out" >&2
	tn_die "the testnet did not start"
}
cleanup() { ((keep)) || "$here/down.sh" --dir "$TN_DIR" >/dev/null 2>&1 || true; }
trap cleanup EXIT

# cpu_ticks: the aggregate "cpu" line of /proc/stat: busy and idle ticks.
cpu_ticks() { awk '/^cpu /{print $2+$3+$4+$7+$8+$9, $5+$6}' /proc/stat; }
# proc_ticks PID: user+system ticks of a process.
proc_ticks() { awk '{print $14+$15}' "/proc/$1/stat" 2>/dev/null || echo 0; }

# proc_waitms PID: milliseconds the process's threads spent runnable but
# waiting for a CPU (run queue), summed over its live threads
# (/proc/PID/task/*/schedstat, second field, ns).
proc_waitms() { cat /proc/"$1"/task/*/schedstat 2>/dev/null | awk '{w+=$2} END{printf "%d\n", w/1e6}'; }

# prof_start DIR: start the profile captures of one run in the background.
prof_start() {
	local d=$1 a pp
	prof_pids=()
	read -r prof_busy0 prof_idle0 < <(cpu_ticks)
	prof_t0=$(date +%s.%N)
	declare -gA prof_ticks0=() prof_wait0=()
	for a in $(tn_agents); do
		prof_ticks0[$a]=$(proc_ticks "$(tn_pid "$a")")
		prof_wait0[$a]=$(proc_waitms "$(tn_pid "$a")")
		pp="http://127.0.0.1:$(tn_get "$a" PPROF_PORT)/debug/pprof"
		curl -sf -o "$d/$a.cpu.pb.gz" "$pp/profile?seconds=$psecs" &
		prof_pids+=($!)
		curl -sf -o "$d/$a.block.pb.gz" "$pp/block?seconds=$psecs" &
		prof_pids+=($!)
		curl -sf -o "$d/$a.mutex.pb.gz" "$pp/mutex?seconds=$psecs" &
		prof_pids+=($!)
		(sleep 1 && curl -sf -o "$d/$a.goroutine-1s.txt" "$pp/goroutine?debug=1" &&
			sleep 2 && curl -sf -o "$d/$a.goroutine-3s.txt" "$pp/goroutine?debug=1") &
		prof_pids+=($!)
	done
}

# prof_end DIR: CPU use over the run, wait for the profiles, then save
# the brokers' task records, the ledger and the metrics.
prof_end() {
	local d=$1 a busy1 idle1 t1 wall real user sys
	read -r busy1 idle1 < <(cpu_ticks)
	t1=$(date +%s.%N)
	read -r real user sys <"$TN_DIR/load.time"
	{
		printf 'uptime\t%s\n' "$(uptime)"
		awk -v b="$((busy1 - prof_busy0))" -v i="$((idle1 - prof_idle0))" -v w="$(awk -v a="$prof_t0" -v b="$t1" 'BEGIN{print b-a}')" -v hz="$(getconf CLK_TCK)" -v n="$(nproc)" \
			'BEGIN{printf "wall_s\t%.2f\nmachine_busy_pct\t%.1f\t(all processes, %d CPUs; idle %.1f%%)\n", w, 100*b/(b+i), n, 100*i/(b+i)}'
		for a in $(tn_agents); do
			awk -v t="$(($(proc_ticks "$(tn_pid "$a")") - prof_ticks0[$a]))" -v hz="$(getconf CLK_TCK)" -v w="$(awk -v a="$prof_t0" -v b="$t1" 'BEGIN{print b-a}')" -v n="$a" \
				-v q="$(($(proc_waitms "$(tn_pid "$a")") - prof_wait0[$a]))" \
				'BEGIN{printf "%s_cpu_s\t%.2f\t(%.0f%% of one CPU; its threads waited %.2f s runnable for a CPU)\n", n, t/hz, 100*t/hz/w, q/1000}'
		done
		printf 'load_client_cpu_s\t%.2f\t(user %s, sys %s, real %s)\n' "$(awk -v u="$user" -v s="$sys" 'BEGIN{print u+s}')" "$user" "$sys" "$real"
	} >"$d/cpu.txt"
	wait "${prof_pids[@]}" 2>/dev/null || true
	for a in $(tn_agents); do
		tn_curl "$a" /v1/tasks >"$d/$a.tasks.json" || true
		tn_curl "$a" /metrics >"$d/$a.metrics.txt" || true
	done
	TN_CURL_TIMEOUT=30 tn_curl a1 "/v1/ledger/entries?limit=1000000" >"$d/ledger.json" || true
	cat "$d/cpu.txt" >&2
}

targets=()
for ((i = 1; i <= agents; i++)); do
	targets+=(--target "$(tn_api "a$i")")
done
printf 'name: load\nresources:\n  cpu: "%s"\n  memory: 16Mi\ndriver: sim\ncommand: [simulated]\ndeadline: 30m\n' "$cpu" >"$TN_DIR/load-task.yaml"
results="$TN_DIR/load.jsonl"
: >"$results"
for ((r = 1; r <= runs; r++)); do
	tn_say "== run $r of $runs: $tasks tasks at once ($(uptime))"
	if [[ -n $profile ]]; then
		mkdir -p "$profile/run$r"
		prof_start "$profile/run$r"
	fi
	TIMEFORMAT='%R %U %S'
	{ time "$PCM_BIN" load "${targets[@]}" --file "$TN_DIR/load-task.yaml" --tasks "$tasks" --concurrency "$tasks" -o json 2>"$TN_DIR/load.err" | jq -c --arg up "$(uptime)" '. + {uptime: $up}' >>"$results"; } 2>"$TN_DIR/load.time"
	[[ -z $profile ]] || prof_end "$profile/run$r"
	# let the sim tasks of this run end before the next
	sleep 2
done
printf '\nrun\tplacements/s\tp50 ms\tp99 ms\tmax ms\trounds/task\tunplaced\n'
jq -r '[input_line_number, (.placements_per_second|floor), .p50_ms, .p99_ms, .max_ms, (.rounds_per_task*100|floor/100), .unplaced] | @tsv' "$results"
jq -rs 'def med: sort | .[length/2|floor];
	["median", (map(.placements_per_second)|med|floor), (map(.p50_ms)|med), (map(.p99_ms)|med), (map(.max_ms)|med), (map(.rounds_per_task)|med*100|floor/100), (map(.unplaced)|add)] | @tsv' "$results"
