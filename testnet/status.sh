#!/usr/bin/env bash
# status.sh: the testnet's agents and ledger, live.
set -euo pipefail
# shellcheck source=testnet/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

usage() {
	cat <<EOF
usage: testnet/status.sh [--dir DIR] [--json]

Shows every agent of the testnet: whether it runs, its ledger role, how
many peers it is connected to and providers it sees, its peer id, API and
multiaddr; then the ledger as each replica sees it and the tasks each
agent brokers. Exits 1 when an agent is stopped or unreachable.

options:
  --dir DIR   testnet folder (default testnet/.data, env PCM_TESTNET_DIR)
  --json      one JSON object per agent (name, id, status, members)
  -h, --help  this help
EOF
}

json=0
while (($#)); do
	case $1 in
	-h | --help)
		usage
		exit 0
		;;
	--json) json=1 ;;
	--dir)
		TN_DIR=$(realpath -m "${2:?--dir needs a folder}")
		shift
		;;
	*)
		usage >&2
		exit 2
		;;
	esac
	shift
done
tn_need jq curl column

agents=$(tn_agents)
[[ -n $agents ]] || tn_die "no testnet in $TN_DIR; start one with testnet/up.sh"
if ((json)); then
	tn_state_json
	exit 0
fi

echo "agents ($TN_DIR):"
tn_table
echo
echo "ledger (each replica's view; all heads should match):"
{
	printf 'NAME\tROLE\tINDEX\tHEAD\tVERIFY\tBALANCE(micros)\n'
	for name in $agents; do
		tn_running "$name" || continue
		members=$(tn_curl "$name" /v1/ledger/members 2>/dev/null) || continue
		id=$(tn_get "$name" PEER_ID)
		v=$(tn_curl "$name" /v1/ledger/verify 2>/dev/null | jq -r 'if .ok then "ok (\(.entries))" else "BROKEN at \(.first_bad)" end') || v="?"
		bal=$(tn_curl "$name" /v1/ledger/balances 2>/dev/null | jq -r --arg id "$id" '(if type == "object" then (.[$id] // 0) else 0 end)') || bal="?"
		jq -r --arg id "$id" --arg name "$name" --arg v "$v" --arg bal "$bal" '
		  (.replicas // [] | map(select(.id == $id)) | first) as $r
		  | "\($name)\t\($r.role // "client")\(if $r.leader then " (leader)" else "" end)\t\($r.index // "-")\t\(($r.hash // "-")[0:12])\t\($v)\t\($bal)"' <<<"$members"
	done
} | column -t -s $'\t'
echo
echo "tasks (by broker):"
{
	printf 'BROKER\tTASKS\tQUEUED\tRUNNING\tSUCCEEDED\tFAILED\tOTHER\n'
	for name in $agents; do
		tn_running "$name" || continue
		tn_curl "$name" /v1/tasks 2>/dev/null | jq -r --arg name "$name" '
		  (map(.state) | group_by(.) | map({(.[0]): length}) | add // {}) as $c
		  | "\($name)\t\(length)\t\(($c.queued // 0) + ($c.negotiating // 0))\t\(($c.placed // 0) + ($c.running // 0))\t\($c.succeeded // 0)\t\($c.failed // 0)\t\(($c.cancelled // 0) + ($c.expired // 0) + ($c.lost // 0))"' || true
	done
} | column -t -s $'\t'

down=0
for name in $agents; do
	tn_running "$name" && tn_curl "$name" /v1/status >/dev/null 2>&1 || down=$((down + 1))
done
if ((down)); then
	echo
	echo "$down agent(s) stopped or unreachable: see testnet/logs.sh NAME; testnet/up.sh restarts a stopped testnet"
	exit 1
fi
