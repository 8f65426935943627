#!/usr/bin/env bash
# submit.sh: submit the example tasks to random agents of the testnet and
# wait for them to end.
set -euo pipefail
# shellcheck source=testnet/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

usage() {
	cat <<EOF
usage: testnet/submit.sh [options] [FILE...]

Submits each task document COUNT times, each time to a random running
agent (that agent becomes the task's broker and negotiates a provider),
then follows every task at its broker until it ends, printing each state
change. Without FILEs it submits the examples the testnet's drivers can
run: testnet/examples/task-shell.yaml (local), task-slurm.yaml (when an
agent has the slurm driver) and a generated sim task (sim driver).
Prints where each task ran and its ledger entries; exits 1 unless every
task succeeded.

options:
  -n COUNT           submissions per file (default 3)
  --timeout SECONDS  how long to wait for all tasks (default 180)
  --dir DIR          testnet folder (default testnet/.data, env PCM_TESTNET_DIR)
  -h, --help         this help
EOF
}

count=3
timeout=180
files=()
while (($#)); do
	case $1 in
	-h | --help)
		usage
		exit 0
		;;
	-n)
		count=${2:?-n needs a number}
		shift
		;;
	--timeout)
		timeout=${2:?}
		shift
		;;
	--dir)
		TN_DIR=$(realpath -m "${2:?--dir needs a folder}")
		shift
		;;
	-*)
		usage >&2
		exit 2
		;;
	*) files+=("$1") ;;
	esac
	shift
done
tn_need jq curl column

running=()
for n in $(tn_agents); do
	tn_running "$n" && running+=("$n")
done
((${#running[@]})) || tn_die "no running agent in $TN_DIR; start the testnet with testnet/up.sh"

if ((${#files[@]} == 0)); then
	drivers=$(for n in "${running[@]}"; do tn_curl "$n" /v1/status | jq -r '.drivers[]'; done | sort -u)
	if grep -qx local <<<"$drivers"; then
		files+=("$TN_ROOT/testnet/examples/task-shell.yaml")
	fi
	if grep -qx slurm <<<"$drivers"; then
		files+=("$TN_ROOT/testnet/examples/task-slurm.yaml")
	fi
	if grep -qx sim <<<"$drivers"; then
		cat >"$TN_DIR/task-sim.yaml" <<EOF
# A simulated task for agents with the sim driver (made by submit.sh).
name: hello-sim
resources:
  cpu: "1"
  memory: 512Mi
driver: sim
command: [simulated]
deadline: 10m
retries: 1
EOF
		files+=("$TN_DIR/task-sim.yaml")
	fi
	((${#files[@]})) || tn_die "no example fits the drivers of this testnet ($drivers)"
	tn_say "task-gpu.yaml is skipped: it needs a kubernetes provider with A100s under the ai framework"
fi

declare -A broker_of=() state_of=() name_of=()
ids=()
tn_say "submitting ${#files[@]} file(s) x $count to random agents:"
for f in "${files[@]}"; do
	[[ -r $f ]] || tn_die "cannot read $f"
	for ((i = 0; i < count; i++)); do
		b=${running[$((RANDOM % ${#running[@]}))]}
		if ! out=$("$PCM_BIN" --api "$(tn_api "$b")" -o json submit "$f" 2>&1); then
			tn_say "  $(basename "$f") -> $b: REFUSED: $out"
			continue
		fi
		id=$(jq -r .id <<<"$out")
		ids+=("$id")
		broker_of[$id]=$b
		name_of[$id]=$(jq -r .name <<<"$out")
		state_of[$id]=""
		tn_say "  $id ${name_of[$id]} -> broker $b"
	done
done
((${#ids[@]})) || tn_die "every submission was refused"

tn_say "waiting for ${#ids[@]} task(s) to end (timeout ${timeout}s):"
declare -A json_of=()
end=$((SECONDS + timeout))
while :; do
	open=0
	for id in "${ids[@]}"; do
		case ${state_of[$id]} in succeeded | failed | cancelled | expired) continue ;; esac
		open=$((open + 1))
		j=$(tn_curl "${broker_of[$id]}" "/v1/tasks/$id" 2>/dev/null) || continue
		json_of[$id]=$j
		s=$(jq -r .state <<<"$j")
		if [[ $s != "${state_of[$id]}" ]]; then
			state_of[$id]=$s
			p=$(jq -r '.provider // ""' <<<"$j")
			tn_say "  $(date +%T) $id  $s${p:+ on $(tn_name_of "$p")}"
		fi
	done
	((open == 0)) && break
	if ((SECONDS >= end)); then
		tn_say "timed out with $open task(s) not ended"
		break
	fi
	sleep 0.5
done

echo
bad=0
for id in "${ids[@]}"; do
	[[ ${state_of[$id]} == succeeded ]] || bad=$((bad + 1))
done
{
	printf 'TASK\tNAME\tBROKER\tPROVIDER\tSTATE\tSECONDS\tPRICE\tSETTLED(micros)\tLEDGER\n'
	for id in "${ids[@]}"; do
		j=${json_of[$id]:-"{}"}
		entries=$(tn_curl "${broker_of[$id]}" "/v1/ledger/entries?task=$id&limit=50" 2>/dev/null | jq -r 'map(.type) | group_by(.) | map("\(.[0])=\(length)") | join(",")') || entries="?"
		jq -r --arg id "$id" --arg b "${broker_of[$id]}" --arg p "$(tn_name_of "$(jq -r '.provider // ""' <<<"$j")")" --arg e "$entries" '
		  ((.history // []) | if length > 1 then ((.[-1].time | sub("\\.[0-9]+"; "") | fromdate) - (.[0].time | sub("\\.[0-9]+"; "") | fromdate)) else "-" end) as $secs
		  | "\($id)\t\(.name // "?")\t\($b)\t\($p)\t\(.state // "?")\t\($secs)\t\(.price // 0)\t\(.settled // 0)\t\($e)"' <<<"$j"
	done
} | column -t -s $'\t'
first=${ids[0]}
api=$(tn_api "${broker_of[$first]}")
cat <<EOF

each task was negotiated by its broker, committed to the ledger as an
agreement, run by its provider and settled. Look closer:
  $PCM_BIN --api $api tasks status $first
  $PCM_BIN --api $api tasks logs $first        # output, fetched from the provider
  $PCM_BIN --api $api tasks explain $first     # every negotiation round
  $PCM_BIN --api $api ledger list --task $first
  $PCM_BIN --api $api ledger balances
EOF
if ((bad)); then
	echo "$bad of ${#ids[@]} task(s) did not succeed"
	exit 1
fi
echo "all ${#ids[@]} task(s) succeeded"
