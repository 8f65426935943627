#!/usr/bin/env bash
# nat.sh: a pcm mesh whose providers sit behind real NAT and a firewall,
# built from network namespaces and iptables.
set -euo pipefail
# shellcheck source=testnet/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

usage() {
	cat <<EOF
usage: testnet/nat.sh [--keep] [--no-build]
       testnet/nat.sh down

Builds, in network namespaces of its own, an "internet" (a bridge on
10.77.0.0/24) with:
  pub   public agent 10.77.0.10: bootstrap peer, ledger bootstrap, relay
  relay second public agent 10.77.0.11 (a provider that also relays)
  n1    provider 10.77.1.2 behind NAT router 10.77.0.2 (iptables MASQUERADE)
  n2    provider 10.77.2.2 behind NAT router 10.77.0.3 (iptables MASQUERADE)
  fw    provider 10.77.3.2 behind a firewall 10.77.0.4 that drops every
        inbound connection and masquerades with random ports
        (MASQUERADE --random-fully), so no hole can be punched to it
Every router lets in only what its side started (iptables conntrack).
Ledger: pub, n1 and n2 are voters, relay and fw non-voters.
All addresses are private and exist only inside these namespaces; agents
run with --nat-private-addrs so AutoNAT, relays and hole punching treat
this private "internet" as the internet. Then:
  1. waits for the mesh, the ledger and each agent's reachability
     (pub and relay public, n1, n2 and fw private, with relay reservations);
  2. places a task from every agent on every other agent, follows the
     logs of an fw -> n1 task (relayed) and an n1 -> n2 task (across both
     NATs) from their brokers, and submits over /pcm/submit from fw's
     network to n2 through the relay agent;
  3. kills pub (bootstrap, relay, first ledger voter) while a second round
     of tasks runs among the others, which must all succeed;
  4. checks that every replica's ledger verifies with the same head as
     a NATed voter's;
  5. prints per pair: how connected (direct/relayed), time from the first
     relayed connection to a direct one, tasks placed, failures.
Exit 0 when every task succeeded, logs crossed NAT, a leader was elected
after the kill, the ledgers agree and n1 and n2 ended up directly
connected.
Needs root, ip and iptables; prints SKIP and exits 0 where namespaces
cannot be created. Namespace names carry a tag of this checkout's path, so
two checkouts on one machine do not collide.

options:
  --keep      leave everything running (remove later with: testnet/nat.sh down)
  --no-build  use the existing bin/pcm-agent
  down        stop the agents and remove the namespaces of a --keep run
EOF
}

keep=0
build=1
down_only=0
while (($#)); do
	case $1 in
	-h | --help)
		usage
		exit 0
		;;
	--keep) keep=1 ;;
	--no-build) build=0 ;;
	down | --cleanup) down_only=1 ;;
	*)
		usage >&2
		exit 2
		;;
	esac
	shift
done

TAG=$(printf '%s' "$TN_ROOT" | sha1sum | cut -c1-6)
PREFIX=pcmnat-$TAG
NAT_DIR=$TN_ROOT/testnet/.data/nat
NS_FILE=$NAT_DIR/namespaces
AGENTS=(pub relay fw n1 n2)
declare -A IP=([pub]=10.77.0.10 [relay]=10.77.0.11 [n1]=10.77.1.2 [n2]=10.77.2.2 [fw]=10.77.3.2)

ns_of() { printf '%s-%s' "$PREFIX" "$1"; }
nsx() {
	local ns=$1
	shift
	ip netns exec "$ns" "$@"
}

down() {
	local ns pid
	[[ -e $NS_FILE ]] || return 0
	# Only namespaces this script created and recorded; every process in
	# them is an agent this script started.
	while read -r ns; do
		[[ $ns == "$PREFIX"-* ]] || continue
		for pid in $(ip netns pids "$ns" 2>/dev/null); do kill -TERM "$pid" 2>/dev/null || true; done
	done <"$NS_FILE"
	while read -r ns; do
		[[ $ns == "$PREFIX"-* ]] || continue
		for _ in {1..50}; do
			[[ -z $(ip netns pids "$ns" 2>/dev/null) ]] && break
			sleep 0.1
		done
		for pid in $(ip netns pids "$ns" 2>/dev/null); do kill -KILL "$pid" 2>/dev/null || true; done
		ip netns del "$ns" 2>/dev/null || true
	done <"$NS_FILE"
	rm -f "$NS_FILE"
}

if ((down_only)); then
	down
	echo "removed the NAT testnet ($PREFIX-*)"
	exit 0
fi

skip() {
	echo "SKIP: $*"
	exit 0
}
tn_need jq curl
command -v ip >/dev/null 2>&1 || skip "the ip command (iproute2) is not installed"
((EUID == 0)) || skip "network namespaces need root (run as root or under sudo)"
command -v iptables >/dev/null 2>&1 || tn_die "iptables is required (Debian: apt-get install iptables)"
probe=$PREFIX-probe-$$
ip netns add "$probe" 2>/dev/null || skip "this system does not permit creating network namespaces (ip netns add failed)"
if ! nsx "$probe" iptables -t nat -A POSTROUTING -o lo -j MASQUERADE 2>/dev/null; then
	ip netns del "$probe"
	skip "iptables NAT does not work in a network namespace here (kernel without nf_tables/nat?)"
fi
ip netns del "$probe"
[[ -e $NS_FILE ]] && tn_die "a NAT testnet of this checkout is up (see $NS_FILE); remove it with: testnet/nat.sh down"
# Namespaces of this checkout that an earlier run left without a record
# (its cleanup failed or its folder was removed): nothing uses them.
for ns in $(ip netns list | awk '{print $1}' | grep "^$PREFIX-" || true); do
	ip netns del "$ns" 2>/dev/null || true
done
rm -rf "$NAT_DIR"
mkdir -p "$NAT_DIR"
((keep)) || trap down EXIT
trap 'exit 130' INT TERM
((build)) && tn_build

mkns() {
	ip netns add "$1"
	echo "$1" >>"$NS_FILE"
	nsx "$1" ip link set lo up
}
# link NS IFACE ADDR: a veth from namespace NS (named IFACE there) to the
# internet bridge. Both ends are created inside our namespaces.
link_inet() {
	local ns=$1 ifc=$2 addr=$3 peer=v$((++vcount))
	nsx "$ns" ip link add "$ifc" type veth peer name "$peer" netns "$INET"
	nsx "$INET" ip link set "$peer" master br0 up
	nsx "$ns" ip addr add "$addr/24" dev "$ifc"
	nsx "$ns" ip link set "$ifc" up
}
vcount=0

echo "[1/6] namespaces ($PREFIX-*): internet bridge, three routers"
INET=$(ns_of inet)
mkns "$INET"
nsx "$INET" ip link add br0 type bridge
nsx "$INET" ip link set br0 up
for a in "${AGENTS[@]}"; do mkns "$(ns_of "$a")"; done
for a in pub relay; do link_inet "$(ns_of "$a")" eth0 "${IP[$a]}"; done
# router AGENT I [MASQUERADE options]: router rI, WAN 10.77.0.(1+I) on the
# internet, LAN 10.77.I.0/24 to AGENT; it masquerades and lets in only
# what the LAN started (as home and cloud NATs do).
router() {
	local a=$1 i=$2 r
	shift 2
	r=$(ns_of "r$i")
	mkns "$r"
	link_inet "$r" wan "10.77.0.$((1 + i))"
	nsx "$(ns_of "$a")" ip link add eth0 type veth peer name lan netns "$r"
	nsx "$r" ip addr add "10.77.$i.1/24" dev lan
	nsx "$r" ip link set lan up
	nsx "$(ns_of "$a")" ip addr add "${IP[$a]}/24" dev eth0
	nsx "$(ns_of "$a")" ip link set eth0 up
	nsx "$(ns_of "$a")" ip route add default via "10.77.$i.1"
	nsx "$r" sh -c 'echo 1 >/proc/sys/net/ipv4/ip_forward' # this namespace only
	nsx "$r" iptables -t nat -A POSTROUTING -o wan -j MASQUERADE "$@"
	nsx "$r" iptables -A FORWARD -i lan -o wan -j ACCEPT
	nsx "$r" iptables -A FORWARD -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT
	nsx "$r" iptables -P FORWARD DROP
	nsx "$r" iptables -A INPUT -i lo -j ACCEPT
	nsx "$r" iptables -A INPUT -i lan -j ACCEPT
	nsx "$r" iptables -A INPUT -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT
	nsx "$r" iptables -P INPUT DROP
}
router n1 1
router n2 2
# The firewall drops every inbound connection and, like many corporate
# firewalls, NATs outbound with random ports: no hole can be punched, so
# fw reaches the NATed providers only through relays.
router fw 3 --random-fully
echo "  pub ${IP[pub]}, relay ${IP[relay]}: public"
echo "  n1 ${IP[n1]} behind r1 (wan 10.77.0.2), n2 ${IP[n2]} behind r2 (wan 10.77.0.3): masquerade, inbound dropped"
echo "  fw ${IP[fw]} behind firewall r3 (wan 10.77.0.4): inbound dropped, masquerade with random ports"

API=http://127.0.0.1:8999
pcm() {
	local a=$1
	shift
	nsx "$(ns_of "$a")" "$PCM_BIN" --api "$API" "$@"
}
acurl() { nsx "$(ns_of "$1")" curl -sf --max-time 5 "$API$2"; }
declare -A ID UP
start_agent() {
	local a=$1
	shift
	nsx "$(ns_of "$a")" setsid "$PCM_BIN" --data-dir "$NAT_DIR/$a" join --listen "${IP[$a]}:4001" \
		--api-listen 127.0.0.1:8999 --advert-interval 1s --region "nat-$a" --nat-private-addrs "${ADMIT[@]}" "$@" \
		</dev/null >>"$NAT_DIR/$a.log" 2>&1 &
	disown "$!" 2>/dev/null || true
	for _ in {1..150}; do
		acurl "$a" /v1/status >/dev/null 2>&1 && UP[$a]=$(date +%s.%N) && return 0
		[[ -n $(ip netns pids "$(ns_of "$a")") ]] || {
			tail -n 15 "$NAT_DIR/$a.log"
			tn_die "agent $a exited"
		}
		sleep 0.2
	done
	tn_die "agent $a did not answer in 30s; see $NAT_DIR/$a.log"
}

echo "[2/6] agents: pub first (ledger bootstrap), then n1 and n2 (voters), fw and relay (non-voters)"
for a in "${AGENTS[@]}"; do
	ID[$a]=$(pcm "$a" --data-dir "$NAT_DIR/$a" -o json id --init 2>/dev/null | jq -r .peer_id)
done
BOOT=/ip4/${IP[pub]}/tcp/4001/p2p/${ID[pub]}
# The ledger admits pub and the two NATed providers as voters, the others
# as non-voters (every agent gets the list: it applies while one leads).
ADMIT=(--ledger-voter "${ID[pub]}" --ledger-voter "${ID[n1]}" --ledger-voter "${ID[n2]}"
	--ledger-non-voter "${ID[fw]}" --ledger-non-voter "${ID[relay]}")
T0=$(date +%s.%N)
start_agent pub
for a in n1 n2 fw relay; do start_agent "$a" --bootstrap "$BOOT"; done
for a in "${AGENTS[@]}"; do echo "  $a ${ID[$a]} (log $NAT_DIR/$a.log)"; done

# wait_for SECONDS WHAT CMD...: poll CMD every 0.5s until it succeeds.
wait_for() {
	local secs=$1 what=$2
	shift 2
	local end=$((SECONDS + secs))
	until "$@" >/dev/null 2>&1; do
		((SECONDS < end)) || {
			echo "FAIL: $what within ${secs}s"
			return 1
		}
		sleep 0.5
	done
}
reach_is() { [[ $(acurl "$1" /v1/status | jq -r .nat.reachability) == "$2" ]]; }
has_rsvp() { (($(acurl "$1" /v1/status | jq '.nat.relays | length') > 0)); }
converged() {
	local a
	for a in "${AGENTS[@]}"; do
		[[ $(acurl "$a" /v1/status | jq -r .providers) == 5 ]] || return 1
		[[ -n $(acurl "$a" /v1/ledger/members | jq -r '.leader // ""') ]] || return 1
	done
}

echo "[3/6] waiting for the mesh, the ledger and reachability"
rc=0
wait_for 120 "every agent sees 5 providers and a ledger leader" converged || rc=1
for a in pub relay; do wait_for 90 "$a finds it is public" reach_is "$a" public || rc=1; done
for a in fw n1 n2; do
	wait_for 90 "$a finds it is private" reach_is "$a" private || rc=1
	wait_for 60 "$a holds a relay reservation" has_rsvp "$a" || rc=1
done
for a in "${AGENTS[@]}"; do
	acurl "$a" /v1/status | jq -r --arg a "$a" \
		'"  \($a): reachability \(.nat.reachability), relay service \(.nat.relay_service), reservations \(.nat.relays | length), observed \(.nat.observed_addrs | join(" "))"'
done
echo "  converged $(awk -v a="$T0" -v b="$(date +%s.%N)" 'BEGIN{printf "%.1f", b-a}')s after the first agent started"
((rc == 0)) || tn_die "the NAT mesh did not come up; logs in $NAT_DIR"

# submit FROM TO SECONDS: a task submitted at FROM that only TO may run;
# prints its id.
submit() {
	local from=$1 to=$2 secs=$3 f=$NAT_DIR/task-$1-$2-$3.yaml
	cat >"$f" <<EOF
name: $from-to-$to
resources: {cpu: 100m, memory: 32Mi}
driver: local
command: [sh, -c, 'for i in \$(seq 1 $secs); do echo "$to line \$i"; sleep 1; done; echo "done on $to"']
constraints: ['provider.attrs.region == "nat-$to"']
deadline: 5m
retries: 2
EOF
	pcm "$from" -o json submit "$f" | jq -r .id
}
declare -A TASKS PLACED FAILED
# await FROM ID: wait for the task's end at its broker, until the round's
# deadline ROUND_END; 0 when it succeeded.
await() {
	local from=$1 id=$2 state=""
	while ((SECONDS < ROUND_END)); do
		state=$(acurl "$from" "/v1/tasks/$id" | jq -r .state) || state=""
		case $state in succeeded | failed | cancelled | expired | lost) break ;; esac
		sleep 0.5
	done
	[[ $state == succeeded ]]
}
pairkey() { [[ $1 < $2 ]] && echo "$1 $2" || echo "$2 $1"; }
# round SECONDS BROKERS...: a task from each broker to each other agent
# of BROKERS; waits for all and counts them per pair.
round_submit() {
	local secs=$1 f t
	shift
	for f in "$@"; do
		for t in "$@"; do
			[[ $f == "$t" ]] && continue
			TASKS["$f $t"]=$(submit "$f" "$t" "$secs")
		done
	done
}
round_wait() {
	local f t k bad=0
	ROUND_END=$((SECONDS + 180))
	for f in "$@"; do
		for t in "$@"; do
			[[ $f == "$t" ]] && continue
			k=$(pairkey "$f" "$t")
			if await "$f" "${TASKS["$f $t"]}"; then
				PLACED[$k]=$((${PLACED[$k]:-0} + 1))
			else
				FAILED[$k]=$((${FAILED[$k]:-0} + 1))
				echo "  FAIL: task ${TASKS["$f $t"]} from $f to $t: $(acurl "$f" "/v1/tasks/${TASKS["$f $t"]}" | jq -c '{state, provider, error}')"
				bad=1
			fi
		done
	done
	return $bad
}

echo "[4/6] round 1: a task from every agent to every other agent (20 tasks); logs followed across NAT"
round_submit 2 "${AGENTS[@]}"
# follow BROKER PROVIDER: the broker submits a 4-line task to the provider
# and follows its log as it is written (task logs are for the submitter,
# broker and provider only).
follow() {
	local b=$1 p=$2 id out
	id=$(submit "$b" "$p" 4)
	out=$NAT_DIR/follow-$b-$p.out
	wait_for 60 "task $id to start" bash -c "[[ \$(ip netns exec $(ns_of "$b") curl -sf $API/v1/tasks/$id | jq -r .state) =~ running|succeeded ]]" || return 1
	pcm "$b" tasks logs -f "$id" >"$out" 2>&1 || true
	sed "s/^/  $b> /" "$out"
	if grep -q "done on $p" "$out" && (($(grep -c "$p line" "$out") == 4)); then
		echo "  log of task $id followed by $b from $p: 4 lines + done"
	else
		echo "  FAIL: the log of task $id did not stream from $p to $b"
		return 1
	fi
}
follow fw n1 || rc=1 # through the relay: no hole reaches fw
follow n1 n2 || rc=1 # across both NATs
# /pcm/submit/1.0.0 from a short-lived client host in fw's network to n2,
# dialled through the relay agent: n2 brokers it onto fw.
circuit=/ip4/${IP[relay]}/tcp/4001/p2p/${ID[relay]}/p2p-circuit/p2p/${ID[n2]}
wait_for 60 "n2 to hold a reservation on relay" bash -c \
	"ip netns exec $(ns_of n2) curl -sf $API/v1/status | jq -e '.nat.relays | index(\"${ID[relay]}\")'" || rc=1
if out=$(pcm fw --data-dir "$NAT_DIR/fw-client" submit --wait --peer "$circuit" "$NAT_DIR/task-n2-fw-2.yaml" 2>&1); then
	echo "  submit --peer $circuit (from fw's network): succeeded"
	PLACED["fw n2"]=$((${PLACED["fw n2"]:-0} + 1))
else
	echo "  FAIL: submit over the mesh through the relay: $(tail -n 3 <<<"$out")"
	rc=1
fi
round_wait "${AGENTS[@]}" || rc=1
snap1() { local tag=$1 a; shift; for a in "$@"; do acurl "$a" /v1/peers >"$NAT_DIR/peers-$tag-$a.json" 2>/dev/null || echo '[]' >"$NAT_DIR/peers-$tag-$a.json"; done; }
snap1 before "${AGENTS[@]}"

echo "[5/6] round 2: tasks among relay, fw, n1, n2 (12 tasks, 4s each); pub (bootstrap, relay, voter) is killed while they run"
leader_before=$(acurl n1 /v1/ledger/members | jq -r .leader)
relays() { acurl "$1" /v1/status | jq -r --argjson names "$(for a in "${AGENTS[@]}"; do printf '{"%s":"%s"}' "${ID[$a]}" "$a"; done | jq -s add)" '[.nat.relays[]? | $names[.] // .] | join(",")'; }
rbefore=$(for a in fw n1 n2; do printf '%s=%s ' "$a" "$(relays "$a")"; done)
round_submit 4 relay fw n1 n2
sleep 1
for pid in $(ip netns pids "$(ns_of pub)"); do kill -KILL "$pid" 2>/dev/null || true; done
echo "  killed pub at $(date -u +%T)"
round_wait relay fw n1 n2 || rc=1
leader_after=$(acurl n1 /v1/ledger/members | jq -r '.leader // ""')
name_of() { local a; for a in "${AGENTS[@]}"; do [[ ${ID[$a]} == "$1" ]] && echo "$a" && return; done; echo "${1:-none}"; }
echo "  ledger leader: $(name_of "$leader_before") before, $(name_of "$leader_after") after"
echo "  relay reservations before: $rbefore"
echo "  relay reservations after:  $(for a in fw n1 n2; do printf '%s=%s ' "$a" "$(relays "$a")"; done)"
[[ -n $leader_after && $leader_after != "${ID[pub]}" ]] || {
	echo "FAIL: no ledger leader after pub was killed"
	rc=1
}

echo "[6/6] ledgers: every live replica verifies with the same head as n1 (a NATed voter)"
same_head() {
	local a h ref
	ref=$(acurl n1 /v1/ledger/verify | jq -r 'select(.ok) | "\(.entries) \(.head)"')
	[[ -n $ref ]] || return 1
	for a in relay fw n2; do
		h=$(acurl "$a" /v1/ledger/verify | jq -r 'select(.ok) | "\(.entries) \(.head)"')
		[[ $h == "$ref" ]] || return 1
	done
}
if wait_for 60 "replicas agree on the ledger head" same_head; then
	acurl n1 /v1/ledger/verify | jq -r '"  \(.entries) entries, head \(.head), ok on relay, fw, n1, n2"'
	pcm n1 ledger members | sed 's/^/  /'
else
	rc=1
	for a in relay fw n1 n2; do echo "  $a: $(acurl "$a" /v1/ledger/verify | jq -c .)"; done
fi

# n1 and n2 must end up direct; a hole punch that failed is retried
# (after 3 s, then 10 s, 20 s, ...), so give it a minute.
n1_n2_direct() {
	acurl n1 /v1/peers | jq -e --arg p "${ID[n2]}" 'any(.[]; .id == $p and any(.conns[]; .relayed | not))'
}
wait_for 60 "n1 and n2 to connect directly" n1_n2_direct || {
	for a in n1 n2; do echo "  $a: $(acurl "$a" /v1/status | jq -c .nat)"; done
}
snap1 after relay fw n1 n2

# how TAG SRC DST: how SRC was connected to DST in snapshot TAG:
# "direct", "relayed" or "gone"; the time from the first relayed
# connection to the first direct one; and the time from when both agents
# were up to their first direct connection.
how() {
	local up=${UP[$2]}
	awk -v a="$up" -v b="${UP[$3]}" 'BEGIN{exit !(b > a)}' && up=${UP[$3]}
	jq -r --arg p "${ID[$3]}" --argjson up "$up" '
		def epoch: (sub("\\.[0-9]+Z$"; "Z") | fromdate) + ((capture("(?<f>\\.[0-9]+)Z$").f // "0") | tonumber);
		map(select(.id == $p)) | if length == 0 then "gone - -" else .[0] |
		(if any(.conns[]; .relayed | not) then "direct" else "relayed" end) + " " +
		(if .direct_at then "\(.time_to_direct_ms / 1000 * 100 | round / 100)s"
		 elif .relayed_at then "never" else "dialled" end) + " " +
		([.conns[] | select(.relayed | not) | .since | epoch] | if length == 0 then "-"
		 else "\((min - $up) * 10 | round / 10 | if . < 0 then 0 else . end)s" end) end' "$NAT_DIR/peers-$1-$2.json"
}
echo
printf '%-12s %-12s %-9s %-15s %-13s %-7s %-8s\n' PAIR BEFORE_KILL AFTER 'RELAYED->DIRECT' DIRECT_AFTER PLACED FAILURES
for ((i = 0; i < ${#AGENTS[@]}; i++)); do
	for ((j = i + 1; j < ${#AGENTS[@]}; j++)); do
		a=${AGENTS[i]} b=${AGENTS[j]}
		k=$(pairkey "$a" "$b")
		read -r before ttd up < <(how before "$a" "$b")
		after="-"
		[[ $a != pub ]] && read -r after _ _ < <(how after "$a" "$b")
		printf '%-12s %-12s %-9s %-15s %-13s %-7s %-8s\n' "$a-$b" "$before" "$after" "$ttd" "$up" "${PLACED[$k]:-0}" "${FAILED[$k]:-0}"
	done
done
echo "(BEFORE_KILL: how the pair was connected just before pub was killed; AFTER: at the end;"
echo " RELAYED->DIRECT: from the first relayed connection to the first direct one (DCUtR hole punch),"
echo " \"dialled\": direct from the start, no relayed connection first (between n1 and n2 that"
echo " means both dialled each other's observed address at once, itself a hole punch), \"never\": relayed only;"
echo " DIRECT_AFTER: from when both agents were up to their first direct connection, before the kill)"
# Must show: the two NATed providers end up direct; fw needed the relay.
[[ $(how after n1 n2 | cut -d' ' -f1) == direct ]] || {
	echo "FAIL: n1 and n2 did not end up directly connected (hole punching)"
	rc=1
}

if ((keep)); then
	echo "kept running; e.g.: ip netns exec $(ns_of n1) $PCM_BIN --api $API peers"
	echo "remove with: testnet/nat.sh down"
fi
if ((rc)); then
	echo "FAIL: see above and the logs in $NAT_DIR"
	exit 1
fi
echo "PASS: tasks placed across NAT and firewall, logs followed, ledger agrees after the relay was killed"
