#!/usr/bin/env bash
# netns.sh: a pcm mesh with each agent in its own Linux network namespace.
set -euo pipefail
# shellcheck source=testnet/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

usage() {
	cat <<EOF
usage: testnet/netns.sh [N] [options]

Runs N agents (default 3), each in its own network namespace, so their
traffic really crosses interfaces: a "switch" namespace holds a bridge,
and each agent namespace is joined to it by a veth pair, with addresses
10.231.0.11, .12, ... on 10.231.0.0/24. Only namespaces, links and
addresses this script creates are touched; the host's own interfaces
and routes are not, and nothing is routed out. With --delay/--loss,
tc netem shapes each agent's interface (inside its namespace).

It waits for the mesh and the ledger, submits a task at a1 constrained to
the last agent (so it must cross namespaces), waits for it, fetches its
output through a1, prints the ledger entries and the interface counters,
then removes everything (unless --keep). Needs root (ip netns); where
namespaces are not permitted it prints SKIP and exits 0.

options:
  --delay D     netem delay per interface, e.g. 20ms (default none)
  --loss P      netem loss per interface, e.g. 1% (default none)
  --partition S after the task, cut the ledger leader's interface for S
                seconds (past voter_timeout, 30 s, the majority removes
                it) while 5 tasks are submitted to it, then heal; checks
                that the majority has a leader and its API answers (an
                agent that does not answer leaves a goroutine dump in
                its log), that nothing of the cut-off broker committed
                meanwhile, that within 30 s of the heal every agent is
                back on one head (the old leader rejoins by itself), and
                that the cut-off broker's tasks finish
  --keep        leave the namespaces and agents running; clean up later
                with: testnet/netns.sh --cleanup
  --cleanup     remove what a --keep run left and exit
  --no-build    use the existing bin/pcm-agent
  -h, --help    this help
EOF
}

n=3
partition=0
delay=""
loss=""
keep=0
build=1
cleanup_only=0
while (($#)); do
	case $1 in
	-h | --help)
		usage
		exit 0
		;;
	--delay)
		delay=${2:?}
		shift
		;;
	--loss)
		loss=${2:?}
		shift
		;;
	--partition)
		partition=${2:?}
		shift
		;;
	--keep) keep=1 ;;
	--cleanup) cleanup_only=1 ;;
	--no-build) build=0 ;;
	[0-9]*) n=$1 ;;
	*)
		usage >&2
		exit 2
		;;
	esac
	shift
done
((n >= 2 && n <= 50)) || tn_die "N must be between 2 and 50"

PREFIX=pcmtn
SW=$PREFIX-sw
TN_DIR=$TN_ROOT/testnet/.data/netns
NS_FILE=$TN_DIR/namespaces

skip() {
	echo "SKIP: $*"
	exit 0
}

cleanup() {
	local ns pid
	if [[ -e $NS_FILE ]]; then
		while read -r ns; do
			# Only namespaces this script created and recorded; every
			# process in them is an agent this script started.
			if [[ $ns == "$PREFIX"-* ]]; then
				for pid in $(ip netns pids "$ns" 2>/dev/null); do
					kill -TERM "$pid" 2>/dev/null || true
				done
				for _ in {1..50}; do
					[[ -z $(ip netns pids "$ns" 2>/dev/null) ]] && break
					sleep 0.1
				done
				for pid in $(ip netns pids "$ns" 2>/dev/null); do
					kill -KILL "$pid" 2>/dev/null || true
				done
				ip netns del "$ns" 2>/dev/null || true
			fi
		done <"$NS_FILE"
		rm -f "$NS_FILE"
	fi
}

if ((cleanup_only)); then
	cleanup
	echo "removed the netns testnet"
	exit 0
fi

tn_need jq curl
command -v ip >/dev/null 2>&1 || skip "the ip command (iproute2) is not installed"
((EUID == 0)) || skip "network namespaces need root (run as root or under sudo)"
probe=$PREFIX-probe-$$
ip netns add "$probe" 2>/dev/null || skip "this system does not permit creating network namespaces (ip netns add failed)"
ip netns del "$probe"
if [[ -n $delay || -n $loss ]]; then
	command -v tc >/dev/null 2>&1 || skip "tc (iproute2) is needed for --delay/--loss"
fi
if [[ -e $NS_FILE ]]; then
	tn_die "a netns testnet seems to be running (see $NS_FILE); remove it with testnet/netns.sh --cleanup"
fi
rm -rf "$TN_DIR"
mkdir -p "$TN_DIR"
((keep)) || trap cleanup EXIT

if ((build)); then
	tn_build
fi

addr() { printf '10.231.0.%d' $((10 + $1)); }

# dump_goroutines I: an agent that stopped answering its API writes every
# goroutine's stack to its log (Go's SIGQUIT dump; the agent exits), once.
dumped=""
dump_goroutines() {
	[[ $dumped == *" $1 "* ]] && return 0
	dumped+=" $1 "
	local pid
	echo "  a$1: $(ncurl "$1" /v1/status | jq -c .ledger || echo "no answer to /v1/status")"
	for pid in $(ip netns pids "$PREFIX-a$1" 2>/dev/null); do
		kill -QUIT "$pid" 2>/dev/null || true
	done
	echo "  a$1: goroutine dump (SIGQUIT) in $TN_DIR/a$1.log"
}
nsx() {
	local ns=$1
	shift
	ip netns exec "$ns" "$@"
}

echo "[1/5] creating namespaces: switch $SW with bridge br0, and $n agent namespaces"
ip netns add "$SW"
echo "$SW" >>"$NS_FILE"
nsx "$SW" ip link add br0 type bridge
nsx "$SW" ip link set br0 up
nsx "$SW" ip link set lo up
for ((i = 1; i <= n; i++)); do
	ns=$PREFIX-a$i
	ip netns add "$ns"
	echo "$ns" >>"$NS_FILE"
	# Both ends are created inside the new namespaces, never in the host's.
	nsx "$ns" ip link add eth0 type veth peer name "v$i" netns "$SW"
	nsx "$SW" ip link set "v$i" master br0 up
	nsx "$ns" ip addr add "$(addr "$i")/24" dev eth0
	nsx "$ns" ip link set eth0 up
	nsx "$ns" ip link set lo up
	if [[ -n $delay || -n $loss ]]; then
		netem=()
		[[ -n $delay ]] && netem+=(delay "$delay")
		[[ -n $loss ]] && netem+=(loss "$loss")
		if ! nsx "$ns" tc qdisc add dev eth0 root netem "${netem[@]}" 2>/dev/null; then
			echo "  note: tc netem is not available in this kernel (module sch_netem); running without ${netem[*]}"
			delay=""
			loss=""
		fi
	fi
	echo "  $ns: eth0 $(addr "$i")/24${delay:+ delay $delay}${loss:+ loss $loss}"
done

api() { printf 'http://127.0.0.1:8999'; }
pcm() {
	local i=$1
	shift
	nsx "$PREFIX-a$i" "$PCM_BIN" --api "$(api)" "$@"
}
ncurl() {
	local i=$1
	shift
	nsx "$PREFIX-a$i" curl -sf --max-time 3 "$(api)$1"
}

echo "[2/5] starting agents (each listens on its namespace's address; API on 127.0.0.1:8999 inside it)"
declare -a ids
for ((i = 1; i <= n; i++)); do
	ids[i]=$(nsx "$PREFIX-a$i" "$PCM_BIN" --api "$(api)" --data-dir "$TN_DIR/a$i" -o json id --init | jq -r .peer_id)
done
voters=()
for ((i = 1; i <= n; i++)); do
	voters+=(--ledger-voter "${ids[i]}")
done
for ((i = 1; i <= n; i++)); do
	boot=()
	((i > 1)) && boot=(--bootstrap "/ip4/$(addr 1)/tcp/4001/p2p/${ids[1]}")
	nsx "$PREFIX-a$i" setsid "$PCM_BIN" --data-dir "$TN_DIR/a$i" join --listen "$(addr "$i"):4001" \
		--api-listen 127.0.0.1:8999 --advert-interval 1s --region "ns-a$i" "${voters[@]}" "${boot[@]}" \
		</dev/null >"$TN_DIR/a$i.log" 2>&1 &
	disown "$!" 2>/dev/null || true
	for _ in {1..150}; do
		ncurl "$i" /v1/status >/dev/null 2>&1 && break
		[[ -n $(ip netns pids "$PREFIX-a$i") ]] || {
			tail -n 15 "$TN_DIR/a$i.log"
			tn_die "agent a$i exited"
		}
		sleep 0.2
	done
	echo "  a$i ${ids[i]} at /ip4/$(addr "$i")/tcp/4001 (log $TN_DIR/a$i.log)"
done

echo "[3/5] waiting for every agent to see $n providers and a ledger leader"
ok=0
for _ in {1..240}; do
	ok=1
	for ((i = 1; i <= n; i++)); do
		p=$(ncurl "$i" /v1/status | jq -r .providers) || p=0
		l=$(ncurl "$i" /v1/ledger/members | jq -r '.leader // ""') || l=""
		[[ $p == "$n" && -n $l ]] || ok=0
	done
	((ok)) && break
	sleep 0.5
done
((ok)) || tn_die "the mesh did not converge in 120s; see $TN_DIR/a*.log"
pcm 1 peers

echo "[4/5] submitting a task at a1 that only a$n (region ns-a$n) may run"
task=$TN_DIR/task-netns.yaml
cat >"$task" <<EOF
name: cross-namespace
resources:
  cpu: 100m
  memory: 64Mi
driver: local
command: [sh, -c, 'echo hello from the namespace of \$(ip -4 -o addr show eth0 2>/dev/null | tr -s " " | cut -d" " -f4 || echo unknown)']
constraints:
  - 'provider.attrs.region == "ns-a$n"'
deadline: 5m
retries: 1
EOF
id=$(pcm 1 -o json submit "$task" | jq -r .id)
echo "  task $id"
rc=0
state=""
for _ in {1..240}; do
	state=$(ncurl 1 "/v1/tasks/$id" | jq -r .state) || state=""
	case $state in succeeded | failed | cancelled | expired) break ;; esac
	sleep 0.5
done
provider=$(ncurl 1 "/v1/tasks/$id" | jq -r '.provider // ""')
echo "  state: $state; broker a1 ${ids[1]}; provider $provider"
[[ $state == succeeded && $provider == "${ids[n]}" ]] || rc=1
echo "  output, fetched by a1 from a$n over the veths:"
pcm 1 tasks logs "$id" | sed 's/^/    /'
echo "  ledger entries of the task (read at a$n):"
pcm "$n" ledger list --task "$id" | sed 's/^/    /'

echo "[5/5] interface counters (bytes that crossed each agent's eth0):"
for ((i = 1; i <= n; i++)); do
	nsx "$PREFIX-a$i" ip -s -j link show eth0 | jq -r --arg n "a$i" '.[0].stats64 | "  \($n): rx \(.rx.bytes) B / \(.rx.packets) pkts, tx \(.tx.bytes) B / \(.tx.packets) pkts"'
done
if ((rc)); then
	echo "FAIL: the task did not succeed on a$n"
	exit 1
fi
if ((partition > 0)); then
	leader=$(ncurl 1 /v1/ledger/members | jq -r .leader)
	L=0
	for ((i = 1; i <= n; i++)); do [[ ${ids[i]} == "$leader" ]] && L=$i; done
	((L > 0)) || tn_die "no ledger leader to cut off"
	M=$((L % n + 1)) # an agent of the majority
	for ((i = 1; i <= n; i++)); do
		echo "  a$i before the cut: $(ncurl "$i" /v1/status | jq -c .ledger || echo "no answer to /v1/status")"
	done
	echo "[partition] cutting the ledger leader a$L off for ${partition}s (eth0 down in its namespace)"
	nsx "$PREFIX-a$L" ip link set eth0 down
	runlog="$TN_DIR/runlog.txt"
	: >"$runlog"
	# Each run appends its task id (the attempt's id less "-aN") to a run
	# log kept outside the ledger: duplicates there are tasks run twice.
	printf '%s\n' 'name: cut-off' 'resources: {cpu: 100m, memory: 32Mi}' 'driver: local' \
		"command: [sh, -c, 'sleep 1; id=\$PCM_TASK_ID; echo \${id%-a*} >> $runlog; echo done']" 'deadline: 10m' 'retries: 2' >"$TN_DIR/task-cut.yaml"
	cut_ids=()
	for _ in 1 2 3 4 5; do
		cut_ids+=("$(pcm "$L" -o json submit "$TN_DIR/task-cut.yaml" | jq -r .id)")
	done
	sleep "$partition"
	for id in "${cut_ids[@]}"; do
		got=""
		for _ in 1 2 3 4 5; do
			got=$(ncurl "$M" "/v1/ledger/entries?task=$id&type=agreement" | jq length) && [[ -n $got ]] && break
			sleep 1
		done
		if [[ -z $got ]]; then
			# Unknown, not a violation: the safety check could not ask. It
			# still fails the run, as an API that stopped answering.
			echo "UNKNOWN: a$M (majority side) did not answer /v1/ledger/entries in 5 tries; cannot tell whether task $id got an agreement there (FAIL: the API must answer)"
			rc=1
			dump_goroutines "$M"
		elif [[ $got != 0 ]]; then
			echo "FAIL: task $id of the cut-off broker got an agreement on the majority side"
			rc=1
		fi
	done
	majority=$(ncurl "$M" /v1/ledger/members | jq -c '{leader, voters}') || majority="no answer"
	echo "[partition] majority: $majority; cut-off a$L: $(ncurl "$L" /v1/status | jq -c .ledger)"
	if [[ $majority == "no answer" ]]; then
		echo "FAIL: a$M did not answer /v1/ledger/members within 3 s (whether the majority has a leader is unknown)"
		rc=1
		dump_goroutines "$M"
	elif [[ $(jq -r '.leader // ""' <<<"$majority") == "" ]]; then
		echo "FAIL: the majority side has no ledger leader ${partition}s into the partition"
		rc=1
		for ((i = 1; i <= n; i++)); do
			((i == L)) && continue
			dump_goroutines "$i"
		done
	fi
	nsx "$PREFIX-a$L" ip link set eth0 up
	healed=$SECONDS
	back=0
	for _ in {1..120}; do
		heads=()
		healthy=1
		for ((i = 1; i <= n; i++)); do
			st=$(ncurl "$i" /v1/status) || st='{}'
			heads+=("$(jq -r '.ledger.index' <<<"$st")")
			[[ $(jq -r '.ledger.healthy' <<<"$st") == true ]] || healthy=0
		done
		if ((healthy)) && [[ $(printf '%s\n' "${heads[@]}" | sort -u | wc -l) == 1 ]]; then
			back=1
			break
		fi
		sleep 0.5
	done
	took=$((SECONDS - healed))
	echo "[partition] every agent on one head (${heads[*]}) ${took}s after the heal: $( ((back)) && echo yes || echo NO)"
	((back && took <= 30)) || rc=1
	for id in "${cut_ids[@]}"; do
		for _ in {1..240}; do
			st=$(ncurl "$L" "/v1/tasks/$id" | jq -r .state) || st=""
			case $st in succeeded | failed | cancelled | expired) break ;; esac
			sleep 0.5
		done
		echo "[partition] cut-off broker's task $id: $st"
		[[ $st == succeeded ]] || rc=1
	done
	ran=$(sort -u "$runlog" | wc -l)
	dups=$(sort "$runlog" | uniq -d | wc -l)
	((dups == 0)) || rc=1
	verify=ok
	for ((i = 1; i <= n; i++)); do
		ncurl "$i" /v1/ledger/verify | jq -e .ok >/dev/null || verify="FAILED on a$i"
	done
	[[ $verify == ok ]] || rc=1
	tn_row "leader cut off ${partition}s (netns)" "${#cut_ids[@]} tasks" "eth0 down on a$L, healed in ${took}s" "${#cut_ids[@]}" $((${#cut_ids[@]} - ran)) "$dups" "$verify"
	if ((rc)); then
		echo "FAIL: the mesh did not heal as it should"
		exit 1
	fi
	echo "PASS: the cut-off leader rejoined within ${took}s and its tasks finished"
fi

echo "PASS: task placed by a1 on a$n across network namespaces"
if ((keep)); then
	echo "kept running; talk to an agent with: ip netns exec $PREFIX-a1 $PCM_BIN --api $(api) status"
	echo "remove with: testnet/netns.sh --cleanup"
fi
