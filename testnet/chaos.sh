#!/usr/bin/env bash
# chaos.sh: kill and restart agents while tasks are submitted, then check
# that nothing acknowledged was lost and the ledger is intact everywhere.
set -euo pipefail
# shellcheck source=testnet/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

usage() {
	cat <<EOF
usage: testnet/chaos.sh [options]

Starts a fresh testnet of N agents in its own folder, then for DURATION
submits a short task to a random running agent every SUBMIT seconds and,
every KILL seconds, SIGKILLs an agent (every third kill the ledger
leader) and restarts it DOWN seconds later on the same data dir. At the
end it restarts every agent and checks:
  1. every acknowledged task is still known to its broker (none lost);
  2. every acknowledged task reached a final state within SETTLE seconds;
  3. every succeeded task has its agreement and final event in the ledger;
  4. ledger verify passes on every agent;
  5. every agent's ledger has the same head.
Prints a summary (also in DIR/chaos-summary.txt) and exits 1 on any
violation, 0 otherwise. The testnet is stopped at the end (--keep leaves
it running).

options:
  --agents N         agents (default 5)
  --duration SECS    chaos phase length (default 180)
  --kill-every SECS  seconds between kills (default 15)
  --down SECS        how long a killed agent stays down (default 5)
  --submit-every S   seconds between submissions (default 1)
  --settle SECS      how long tasks may take to end after the chaos (default 240)
  --target leader    kill only the ledger leader (leader kills under load)
  --fault            start agents with PCM_FAULT_DROP_FINAL_EVENTS=1 (a
                     deliberate bug: the checker must then fail)
  --dir DIR          testnet folder (default testnet/.data/chaos)
  --keep             leave the testnet running at the end
  --no-build         use the existing bin/pcm-agent
  -h, --help         this help
EOF
}

agents=5
duration=180
target=any
kill_every=15
down=5
submit_every=1
settle=240
keep=0
build=(--no-build)
do_build=1
TN_DIR=$TN_ROOT/testnet/.data/chaos
while (($#)); do
	case $1 in
	-h | --help)
		usage
		exit 0
		;;
	--agents)
		agents=${2:?}
		shift
		;;
	--duration)
		duration=${2:?}
		shift
		;;
	--kill-every)
		kill_every=${2:?}
		shift
		;;
	--down)
		down=${2:?}
		shift
		;;
	--submit-every)
		submit_every=${2:?}
		shift
		;;
	--settle)
		settle=${2:?}
		shift
		;;
	--fault) export PCM_FAULT_DROP_FINAL_EVENTS=1 ;;
	--target)
		target=$2
		[[ $target == leader || $target == any ]] || tn_die "--target $target: want leader or any"
		shift
		;;
	--dir)
		TN_DIR=$(realpath -m "${2:?--dir needs a folder}")
		shift
		;;
	--keep) keep=1 ;;
	--no-build) do_build=0 ;;
	*)
		usage >&2
		exit 2
		;;
	esac
	shift
done
tn_need jq curl
export PCM_TESTNET_DIR=$TN_DIR
here=$(dirname "${BASH_SOURCE[0]}")

"$here/down.sh" --clean --dir "$TN_DIR" >/dev/null 2>&1 || true
mkdir -p "$TN_DIR"
if ((do_build)); then
	tn_build
fi
if [[ ${PCM_FAULT_DROP_FINAL_EVENTS:-} == 1 ]]; then
	tn_say "FAULT INJECTED: agents drop their final task events (the checker must fail)"
fi
tn_say "== starting $agents agents in $TN_DIR"
"$here/up.sh" "$agents" "${build[@]}" --dir "$TN_DIR" >"$TN_DIR/up.out" 2>&1 || {
	cat "$TN_DIR/up.out" >&2
	tn_die "the testnet did not start"
}
cleanup() {
	if ((keep == 0)); then
		"$here/down.sh" --dir "$TN_DIR" >/dev/null 2>&1 || true
	fi
}
trap cleanup EXIT

task="$TN_DIR/chaos-task.yaml"
# Each run appends its task id to a run log kept outside the ledger: a
# task there twice ran twice, an acknowledged task missing from it never
# ran to its end.
runlog="$TN_DIR/runlog.txt"
: >"$runlog"
cat >"$task" <<EOF
name: chaos
resources:
  cpu: 100m
  memory: 64Mi
driver: local
command: [sh, -c, 'sleep 2; id=\$PCM_TASK_ID; echo \${id%-a*} >> $runlog; echo done']
deadline: 10m
retries: 3
EOF

mapfile -t all < <(tn_agents)
acked="$TN_DIR/acked.txt"
: >"$acked"
submitted=0
refused=0
kills=0
leader_kills=0
restarts=0
declare -A down_until=()
events="$TN_DIR/chaos-events.txt"
: >"$events"
log_event() {
	printf '%s %s\n' "$(date +%T)" "$*" | tee -a "$events" >&2
}

leader_name() {
	local n l
	for n in "${all[@]}"; do
		tn_running "$n" || continue
		l=$(tn_curl "$n" /v1/ledger/members 2>/dev/null | jq -r '.leader // ""') || continue
		[[ -n $l ]] && {
			tn_name_of "$l"
			return 0
		}
	done
	return 1
}

tn_say "== chaos for ${duration}s: a task every ${submit_every}s, a SIGKILL every ${kill_every}s (down ${down}s)"
start=$SECONDS
next_kill=$((SECONDS + kill_every))
next_submit=$SECONDS
while ((SECONDS - start < duration)); do
	now=$SECONDS
	for n in "${!down_until[@]}"; do
		if ((now >= down_until[$n])); then
			mapfile -t boot < <(tn_others "$n")
			tn_start "$n" "${boot[@]}"
			unset "down_until[$n]"
			restarts=$((restarts + 1))
			log_event "restart $n"
		fi
	done
	if ((now >= next_kill)) && ((${#down_until[@]} == 0)); then
		kills=$((kills + 1))
		ldr=$(leader_name) || ldr=""
		victim=${all[$((RANDOM % ${#all[@]}))]}
		if [[ -n $ldr ]] && { [[ $target == leader ]] || ((kills % 3 == 1)); }; then
			victim=$ldr
		fi
		role=""
		if [[ $victim == "$ldr" ]]; then
			role=" (ledger leader)"
			leader_kills=$((leader_kills + 1))
		fi
		if tn_kill "$victim" KILL; then
			down_until[$victim]=$((now + down))
			log_event "SIGKILL $victim$role"
		fi
		next_kill=$((now + kill_every))
	fi
	if ((now >= next_submit)); then
		next_submit=$((now + submit_every))
		up=()
		for n in "${all[@]}"; do
			[[ -n ${down_until[$n]:-} ]] || up+=("$n")
		done
		b=${up[$((RANDOM % ${#up[@]}))]}
		submitted=$((submitted + 1))
		if out=$(curl -sf --max-time 10 -X POST --data-binary @"$task" "$(tn_api "$b")/v1/tasks?name=chaos-task.yaml" 2>/dev/null); then
			printf '%s %s\n' "$(jq -r .id <<<"$out")" "$b" >>"$acked"
		else
			refused=$((refused + 1))
		fi
	fi
	sleep 0.2
done
tn_say "== chaos over: restarting every stopped agent"
for n in "${all[@]}"; do
	if ! tn_running "$n"; then
		mapfile -t boot < <(tn_others "$n")
		tn_start "$n" "${boot[@]}"
		restarts=$((restarts + 1))
		log_event "restart $n"
	fi
done
for n in "${all[@]}"; do
	tn_wait_api "$n" 30 || true
done
converged=yes
tn_wait_converged 90 || converged=no

n_acked=$(wc -l <"$acked")
tn_say "== waiting up to ${settle}s for $n_acked acknowledged task(s) to end"
declare -A final=()
lost=()
end=$((SECONDS + settle))
while :; do
	open=0
	while read -r id b; do
		[[ -n ${final[$id]:-} ]] && continue
		code=$(curl -s -o "$TN_DIR/t.json" -w '%{http_code}' --max-time 5 "$(tn_api "$b")/v1/tasks/$id" || true)
		if [[ $code == 404 ]]; then
			final[$id]=LOST
			lost+=("$id@$b")
			continue
		fi
		s=$(jq -r '.state // ""' "$TN_DIR/t.json" 2>/dev/null || true)
		case $s in
		succeeded | failed | cancelled | expired) final[$id]=$s ;;
		*) open=$((open + 1)) ;;
		esac
	done <"$acked"
	((open == 0)) && break
	if ((SECONDS >= end)); then
		break
	fi
	tn_say "  $open task(s) still open"
	sleep 3
done

violations=()
for id in "${lost[@]}"; do
	violations+=("acknowledged task $id is unknown to its broker (lost)")
done

tn_say "== checking the ledger on every agent"
heads_ok=no
for ((try = 0; try < 60; try++)); do
	heads=$(for n in "${all[@]}"; do tn_curl "$n" /v1/ledger/verify 2>/dev/null | jq -r '"\(.entries) \(.head)"' || echo "unreachable"; done | sort -u)
	if [[ $(wc -l <<<"$heads") == 1 && $heads != unreachable ]]; then
		heads_ok=yes
		break
	fi
	sleep 0.5
done
verify_lines=()
for n in "${all[@]}"; do
	if v=$(tn_curl "$n" /v1/ledger/verify 2>/dev/null); then
		verify_lines+=("$n $(jq -r 'if .ok then "ok \(.entries) entries head \(.head[0:12])" else "BROKEN at \(.first_bad): \(.reason)" end' <<<"$v")")
		[[ $(jq -r .ok <<<"$v") == true ]] || violations+=("ledger verify failed on $n: $(jq -r '"index \(.first_bad): \(.reason)"' <<<"$v")")
	else
		verify_lines+=("$n unreachable")
		violations+=("ledger verify: $n unreachable")
	fi
done
[[ $heads_ok == yes ]] || violations+=("ledger heads differ across agents: $(tr '\n' ';' <<<"$heads")")

# Tasks whose agreement and succeeded event are in the ledger (one export).
ledger_done="$TN_DIR/ledger-succeeded.txt"
TN_CURL_TIMEOUT=60 tn_curl a1 /v1/ledger/export 2>/dev/null | jq -r '
  select(.type == "agreement" or (.type == "task_event" and .payload.event == "succeeded"))
  | "\(.payload.task_id) \(.type)"' | sort -u | awk '{n[$1]++} n[$1] == 2 {print $1}' >"$ledger_done" || true

declare -A counts=()
not_final=0
while read -r id b; do
	s=${final[$id]:-}
	if [[ -z $s ]]; then
		not_final=$((not_final + 1))
		st=$(curl -s --max-time 5 "$(tn_api "$b")/v1/tasks/$id" | jq -r '"\(.state): \(.message // "")"' 2>/dev/null || echo "unreachable")
		((not_final <= 5)) && violations+=("task $id (broker $b) did not reach a final state in ${settle}s: $st")
		s=open
	fi
	counts[$s]=$((${counts[$s]:-0} + 1))
	if [[ $s == succeeded ]] && ! grep -qx "$id" "$ledger_done"; then
		violations+=("task $id succeeded at its broker but the ledger lacks its agreement or succeeded event")
	fi
done <"$acked"
if ((not_final > 5)); then
	violations+=("... and $((not_final - 5)) more task(s) not final")
fi

ran=0
lost=0
while read -r id _; do
	grep -qx "$id" "$runlog" || lost=$((lost + 1))
done <"$acked"
dups=$(sort "$runlog" | uniq -d | wc -l)
((dups == 0)) || violations+=("$dups task(s) ran twice (run log $runlog)")
ran=$(sort -u "$runlog" | wc -l)
verify=ok
((${#verify_lines[@]})) && printf '%s\n' "${verify_lines[@]}" | grep -qv ' ok ' && verify=FAILED
if [[ $target == leader ]]; then
	tn_row "leader kills under load" "$submitted tasks" "$leader_kills SIGKILL of the leader" "$n_acked" "$lost" "$dups" "$verify"
else
	tn_row "kill -9 chaos" "$submitted tasks" "$kills SIGKILL ($leader_kills leader)" "$n_acked" "$lost" "$dups" "$verify"
fi
{
	echo
	echo "chaos summary ($agents agents, ${duration}s, fault injected: ${PCM_FAULT_DROP_FINAL_EVENTS:-no})"
	echo "  kills:        $kills SIGKILL ($leader_kills of the ledger leader), $restarts restarts"
	echo "  submissions:  $submitted, acknowledged $n_acked, refused $refused (agent down or busy)"
	echo "  run log:      $ran distinct tasks ran, $dups ran twice, $lost acknowledged never ran"
	printf '  final states:'
	for s in "${!counts[@]}"; do printf ' %s=%s' "$s" "${counts[$s]}"; done
	echo
	echo "  mesh reconverged after the chaos: $converged"
	echo "  ledger:"
	printf '    %s\n' "${verify_lines[@]}"
	echo "  heads agree: $heads_ok"
	if ((${#violations[@]})); then
		echo "  VIOLATIONS (${#violations[@]}):"
		printf '    - %s\n' "${violations[@]}"
		echo "FAIL"
	else
		echo "PASS: no acknowledged task lost, all final, ledger verified and identical everywhere"
	fi
	echo "  events: $events; agent logs: $TN_DIR/aN.log"
} | tee "$TN_DIR/chaos-summary.txt"
((${#violations[@]} == 0))
