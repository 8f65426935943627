#!/usr/bin/env bash
# pause.sh: a provider that is only slow must not get its tasks run twice.
set -euo pipefail
# shellcheck source=testnet/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

usage() {
	cat <<EOF
usage: testnet/pause.sh [options]

Starts a fresh testnet of 3 agents (lease LEASE) in its own folder,
submits TASKS tasks to a1 (each sleeps RUN seconds, then appends its name
to a run log kept outside the ledger), waits until they run, then pauses
the provider running most of them (not a1) with SIGSTOP for twice the
lease and resumes it with SIGCONT. Checks:
  1. every task succeeded, and its name is in the run log exactly once;
  2. each task of the paused provider has a "lost" first attempt and a
     second attempt elsewhere that succeeded (the ledger says which counts);
  3. ledger verify passes on every agent and all share one head.
Prints one table row and exits 1 on any violation.

options:
  --tasks N      tasks (default 20)
  --lease D      lease in seconds (default 10)
  --run SECS     how long each task runs (default 45; must outlast the pause)
  --dir DIR      testnet folder (default testnet/.data/pause)
  --keep         leave the testnet running
  --no-build     use the existing bin/pcm-agent
  -h, --help     this help
EOF
}

tasks=20
lease=10
run=45
keep=0
build=()
TN_DIR=${PCM_TESTNET_DIR:-$TN_ROOT/testnet/.data/pause}
while (($#)); do
	case $1 in
	-h | --help) usage; exit 0 ;;
	--tasks) tasks=${2:?}; shift ;;
	--lease) lease=${2:?}; shift ;;
	--run) run=${2:?}; shift ;;
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
tn_say "== starting 3 agents in $TN_DIR (lease ${lease}s)"
"$here/up.sh" 3 --no-build --dir "$TN_DIR" --lease "${lease}s" >"$TN_DIR/up.out" 2>&1 || {
	cat "$TN_DIR/up.out" >&2
	tn_die "the testnet did not start"
}
victim=""
cleanup() {
	[[ -n $victim ]] && kill -CONT "$(tn_pid "$victim" 2>/dev/null)" 2>/dev/null || true
	((keep)) || "$here/down.sh" --dir "$TN_DIR" >/dev/null 2>&1 || true
}
trap cleanup EXIT

runlog="$TN_DIR/runlog.txt"
: >"$runlog"
declare -a ids
for ((i = 1; i <= tasks; i++)); do
	cat >"$TN_DIR/task$i.yaml" <<EOF
name: pause-$i
resources: {cpu: 100m, memory: 32Mi}
driver: local
command: [sh, -c, 'sleep $run; echo pause-$i >> $runlog']
deadline: 30m
retries: 3
EOF
	ids[i]=$(curl -sf --max-time 10 -X POST --data-binary @"$TN_DIR/task$i.yaml" "$(tn_api a1)/v1/tasks?name=task$i.yaml" | jq -r .id)
done
tn_say "== submitted $tasks tasks to a1; waiting until they run"
declare -A provider
for _ in {1..120}; do
	running=0
	for ((i = 1; i <= tasks; i++)); do
		read -r st pr < <(tn_curl a1 "/v1/tasks/${ids[i]}" | jq -r '"\(.state) \(.provider // "-")"')
		[[ $st == running ]] && running=$((running + 1))
		provider[${ids[i]}]=$pr
	done
	((running == tasks)) && break
	sleep 1
done
((running == tasks)) || tn_die "only $running of $tasks tasks running after 120 s"
# The victim: the agent other than a1 running the most tasks.
best=0
for n in a2 a3; do
	id=$(tn_get "$n" PEER_ID)
	c=0
	for t in "${ids[@]}"; do [[ ${provider[$t]} == "$id" ]] && c=$((c + 1)); done
	if ((c > best)); then best=$c victim=$n; fi
done
((best > 0)) || tn_die "no task runs on a2 or a3"
vid=$(tn_get "$victim" PEER_ID)
pause=$((2 * lease))
tn_say "== SIGSTOP $victim (runs $best tasks) for ${pause}s"
kill -STOP "$(tn_pid "$victim")"
sleep "$pause"
kill -CONT "$(tn_pid "$victim")"
tn_say "== SIGCONT $victim; waiting for every task to end"
for _ in {1..300}; do
	done_n=0
	for t in "${ids[@]}"; do
		st=$(tn_curl a1 "/v1/tasks/$t" | jq -r .state)
		[[ $st == succeeded || $st == failed || $st == cancelled || $st == expired ]] && done_n=$((done_n + 1))
	done
	((done_n == tasks)) && break
	sleep 2
done
fail=0
succeeded=0 lostok=0
for ((i = 1; i <= tasks; i++)); do
	t=${ids[i]}
	st=$(tn_curl a1 "/v1/tasks/$t" | jq -r .state)
	[[ $st == succeeded ]] && succeeded=$((succeeded + 1)) || {
		tn_say "task $t (pause-$i) ended $st"
		fail=1
	}
	if [[ ${provider[$t]} == "$vid" ]]; then
		ev=$(tn_curl a1 "/v1/ledger/entries?task=$t&type=task_event&limit=50" | jq -r '[.[] | .payload | "\(.agreement_id | sub(".*-"; ""))/\(.event)"] | join(",")')
		if [[ $ev == *a1/lost* && $ev == *a2/succeeded* && $ev != *a1/succeeded* ]]; then
			lostok=$((lostok + 1))
		else
			tn_say "task $t of the paused provider: ledger events $ev (want a1 lost, a2 succeeded)"
			fail=1
		fi
	fi
done
dups=$(sort "$runlog" | uniq -d | wc -l)
distinct=$(sort -u "$runlog" | wc -l)
((dups == 0 && distinct == tasks)) || {
	tn_say "run log: $distinct distinct of $tasks, $dups duplicated"
	fail=1
}
verify="ok"
heads=""
for n in $(tn_agents); do
	curl -sf --max-time 30 "$(tn_api "$n")/v1/ledger/verify" | jq -e .ok >/dev/null || verify="FAILED on $n"
	heads+="$(tn_curl "$n" /v1/status | jq -r '.ledger.index') "
done
[[ $verify == ok ]] || fail=1
printf '\n%-34s %6s %-26s %6s %5s %6s %s\n' scenario tasks faults acked lost dup verify
printf '%-34s %6s %-26s %6s %5s %6s %s\n' "provider paused 2x lease" "$tasks" "SIGSTOP $victim ${pause}s ($best tasks)" "$tasks" $((tasks - distinct)) "$dups" "$verify"
tn_row "provider paused 2x lease" "$tasks" "SIGSTOP $victim ${pause}s ($best tasks)" "$tasks" $((tasks - distinct)) "$dups" "$verify"
printf 'paused tasks with a1 lost + a2 succeeded: %d of %d; succeeded %d of %d; ledger indexes: %s\n' "$lostok" "$best" "$succeeded" "$tasks" "$heads"
if ((fail)); then
	tn_say "FAIL"
	exit 1
fi
tn_say "PASS"
