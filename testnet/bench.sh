#!/usr/bin/env bash
# bench.sh: pcm's benchmarks in one run, printed as one table.
set -euo pipefail
# shellcheck source=testnet/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

usage() {
	cat <<EOF
usage: testnet/bench.sh [--benchtime T] [--count N] [--ledger-only] [--raw FILE]

Runs, with go test -run '^\$' -bench:
  testnet   BenchmarkAdvertPropagation (5 and 20 agents on loopback),
            BenchmarkPlacement (submit -> agreement committed, p50/p99,
            5 agents, sim drivers), BenchmarkPlacementThroughput
  consensus BenchmarkCommit (ledger entries/s, 3 voters over libp2p,
            1 / 16 / 128 concurrent proposers)
  rules     BenchmarkEvaluate1000 (one task against 1,000 adverts)
and, beside the ledger figures, the same workload against a 3-member etcd
cluster started here on 127.0.0.1 (Debian's etcd-server; free ports, data
under this run's temporary folder, stopped afterwards): 2,000 puts of a
733-byte value (the size of a signed agreement entry) from 1 / 16 / 128
writers, each put awaited, sent to the leader as pcm proposes on its
leader (testnet/etcdbench). pcm and etcd runs
alternate (pcm, etcd, pcm, etcd, ...) --count times, and the table shows
medians, with pcm/etcd ratios. Without etcd installed, pcm's figures are
still printed. Prints the machine (CPUs, memory, CPU model, load).
Takes a few minutes; run it on an otherwise idle machine.

options:
  --benchtime T  go test -benchtime for the mesh benchmarks (default 50x)
  --count N      runs of each benchmark; the table shows medians (default 1)
  --ledger-only  only the ledger comparison (BenchmarkCommit and etcd)
  --raw FILE     keep the raw benchmark output in FILE
  -h, --help     this help

etcd: apt-get install etcd-server (Debian; etcd 3.4 and later work), or put
another etcd binary first in PATH, or set ETCD=/path/to/etcd.
EOF
}

benchtime=50x
count=1
raw=""
ledger_only=0
while (($#)); do
	case $1 in
	-h | --help)
		usage
		exit 0
		;;
	--benchtime)
		benchtime=${2:?}
		shift
		;;
	--count)
		count=${2:?}
		shift
		;;
	--ledger-only)
		ledger_only=1
		;;
	--raw)
		raw=${2:?}
		shift
		;;
	*)
		usage >&2
		exit 2
		;;
	esac
	shift
done
tn_need go awk column curl
work=$(mktemp -d "${TMPDIR:-/tmp}/pcm-bench.XXXXXX")
out=${raw:-$work/raw.txt}
: >"$out"

ETCD_PIDS=()
cleanup() {
	etcd_down
	rm -rf "$work"
}
trap cleanup EXIT

run() {
	tn_say "running $*"
	(cd "$TN_ROOT" && go test -run '^$' "$@" -count 1 -timeout 30m) | tee -a "$out" | grep -E '^Benchmark' >&2 || {
		tn_say "benchmark failed: $*"
		return 1
	}
}

# etcd_up DIR: start a 3-member etcd cluster on 127.0.0.1 with free ports
# and its data in DIR; sets ETCD_ENDPOINTS. Waits until every member
# answers /health.
etcd_up() {
	local dir=$1 i cluster="" name
	local -a client peer
	mkdir -p "$dir"
	# Not $(tn_free_port): a subshell forgets the ports it handed out.
	local -a ports=()
	local p
	while ((${#ports[@]} < 6)); do
		p=$(tn_port_candidate)
		[[ " ${ports[*]} " != *" $p "* ]] && tn_port_free "$p" && ports+=("$p")
	done
	for i in 1 2 3; do
		client[i]=${ports[2 * i - 2]}
		peer[i]=${ports[2 * i - 1]}
		cluster+="${cluster:+,}e$i=http://127.0.0.1:${peer[i]}"
	done
	local token="pcm-bench-$$-$RANDOM" # one per cluster: members with different tokens never agree
	ETCD_PIDS=()
	ETCD_ENDPOINTS=""
	for i in 1 2 3; do
		name=e$i
		"$ETCD" --name "$name" --data-dir "$dir/$name" \
			--listen-client-urls "http://127.0.0.1:${client[i]}" \
			--advertise-client-urls "http://127.0.0.1:${client[i]}" \
			--listen-peer-urls "http://127.0.0.1:${peer[i]}" \
			--initial-advertise-peer-urls "http://127.0.0.1:${peer[i]}" \
			--initial-cluster "$cluster" --initial-cluster-state new \
			--initial-cluster-token "$token" \
			</dev/null >"$dir/$name.log" 2>&1 &
		ETCD_PIDS+=("$!")
		ETCD_ENDPOINTS+="${ETCD_ENDPOINTS:+,}127.0.0.1:${client[i]}"
	done
	local end=$((SECONDS + 60)) healthy
	while ((SECONDS < end)); do
		healthy=0
		for i in 1 2 3; do
			if ! kill -0 "${ETCD_PIDS[i - 1]}" 2>/dev/null; then
				tn_say "etcd member e$i exited; last lines of its log:"
				tail -n 15 "$dir/e$i.log" >&2
				return 1
			fi
			curl -sf --max-time 2 "http://127.0.0.1:${client[i]}/health" 2>/dev/null | grep -q '"health":"true"' && healthy=$((healthy + 1))
		done
		((healthy == 3)) && return 0
		sleep 0.2
	done
	tn_say "etcd cluster not healthy within 60s; logs in $dir"
	return 1
}

# etcd_down: stop the members etcd_up started (SIGTERM, then SIGKILL).
etcd_down() {
	local pid end
	for pid in "${ETCD_PIDS[@]}"; do
		kill -TERM "$pid" 2>/dev/null || true
	done
	end=$((SECONDS + 10))
	for pid in "${ETCD_PIDS[@]}"; do
		while kill -0 "$pid" 2>/dev/null && ((SECONDS < end)); do
			sleep 0.1
		done
		kill -KILL "$pid" 2>/dev/null || true
		wait "$pid" 2>/dev/null || true
	done
	ETCD_PIDS=()
}

# etcd_run N: one round against a fresh cluster, appended to $out.
etcd_run() {
	local dir="$work/etcd-$1" rc=0
	tn_say "running etcd round $1 (3 members, 1/16/128 writers)"
	etcd_up "$dir" || {
		etcd_down
		return 1
	}
	"$work/etcdbench" -endpoints "$ETCD_ENDPOINTS" -writers 1,16,128 -n 2000 | tee -a "$out" | grep -E '^Benchmark' >&2 || rc=1
	etcd_down
	rm -rf "$dir"
	return "$rc"
}

ETCD=${ETCD:-$(command -v etcd || true)}
etcd_ok=0
if [[ -z $ETCD || ! -x $ETCD ]]; then
	tn_say "etcd not found${ETCD:+ at $ETCD}: printing pcm's ledger figures alone. For the side-by-side"
	tn_say "comparison: apt-get install etcd-server (Debian), or set ETCD=/path/to/etcd."
elif ! (cd "$TN_ROOT/testnet/etcdbench" && go build -o "$work/etcdbench" .); then
	tn_say "could not build testnet/etcdbench (its module needs go.etcd.io/etcd/client/v3): printing pcm's ledger figures alone"
else
	etcd_ok=1
	tn_say "etcd: $("$ETCD" --version 2>/dev/null | head -n 1)"
fi

fail=0
load_before=$(cut -d' ' -f1-3 /proc/loadavg)
for ((r = 1; r <= count; r++)); do
	if ((!ledger_only)); then
		run ./testnet/ -bench 'BenchmarkAdvertPropagation|BenchmarkPlacement$' -benchtime "$benchtime" || fail=1
		run ./testnet/ -bench 'BenchmarkPlacementThroughput' -benchtime 200x || fail=1
		run ./rules/ -bench 'BenchmarkEvaluate1000' || fail=1
	fi
	run ./consensus/ -bench 'BenchmarkCommit' -benchtime 2000x || fail=1
	if ((etcd_ok)); then
		etcd_run "$r" || fail=1
	fi
done
load_after=$(cut -d' ' -f1-3 /proc/loadavg)

cpu=$(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo 2>/dev/null || echo unknown)
mem=$(awk '/^MemTotal/ {printf "%.1f GiB", $2 / 1048576}' /proc/meminfo 2>/dev/null || echo unknown)
echo
echo "machine: $(nproc) CPUs, $mem memory, $cpu; $(go version | cut -d' ' -f3-)"
echo "load average (1, 5, 15 min): $load_before before, $load_after after; medians of $count run(s)"
echo
# Each benchmark line: name, iterations, then value/unit pairs. Rows keep
# their first-seen order; a row's value is the median of its runs.
# table PART prints one of the two tables: main or ledger.
table() {
	awk -v part="$1" '
function median(key,    n, i, j, t, a) {
	n = split(vals[key], a, " ")
	for (i = 2; i <= n; i++) for (j = i; j > 1 && a[j - 1] + 0 > a[j] + 0; j--) { t = a[j]; a[j] = a[j - 1]; a[j - 1] = t }
	return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
}
function add(key, v) {
	if (!(key in vals)) order[++rows] = key
	vals[key] = vals[key] " " v
}
function addl(sys, sub_, stat, v,    key) {
	key = sub_ SUBSEP stat
	if (!(key in lrow)) lorder[++lrows] = key
	lrow[key] = 1
	lv[sys, key] = lv[sys, key] " " v
}
function lmedian(sys, key,    n, i, j, t, a) {
	n = split(lv[sys, key], a, " ")
	if (!n) return ""
	for (i = 2; i <= n; i++) for (j = i; j > 1 && a[j - 1] + 0 > a[j] + 0; j--) { t = a[j]; a[j] = a[j - 1]; a[j - 1] = t }
	return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
}
/^Benchmark/ {
	name = $1; sub(/-[0-9]+$/, "", name)
	sub_ = substr(name, index(name, "/") + 1)
	for (i = 3; i < NF; i += 2) {
		v = $i; u = $(i + 1)
		if (name ~ /AdvertPropagation/ && u == "ms-p50") add("advert propagation " sub_ "\tp50\tms", v)
		if (name ~ /AdvertPropagation/ && u == "ms-p99") add("advert propagation " sub_ "\tp99\tms", v)
		if (name ~ /Placement$/ && u == "ms-p50") add("placement latency (submit -> agreement committed, 5 agents)\tp50\tms", v)
		if (name ~ /Placement$/ && u == "ms-p99") add("placement latency (submit -> agreement committed, 5 agents)\tp99\tms", v)
		if (name ~ /PlacementThroughput/ && u == "placements/s") add("sustained placements (5 agents, sim)\trate\tplacements/s", v)
		if (name ~ /Evaluate1000/ && u == "ns/op") add("rules: 1 task vs 1,000 adverts\ttime\tms", sprintf("%.2f", v / 1e6))
		sys = name ~ /^BenchmarkCommit\// ? "pcm" : name ~ /^BenchmarkEtcdPut\// ? "etcd" : ""
		if (sys != "" && u == "entries/s") addl(sys, sub_, "rate", v)
		if (sys != "" && u == "p50-ms") addl(sys, sub_, "p50", v)
		if (sys != "" && u == "p99-ms") addl(sys, sub_, "p99", v)
	}
}
END {
	if (part == "main" && rows) {
		print "WHAT\tSTAT\tVALUE"
		for (r = 1; r <= rows; r++) {
			split(order[r], f, "\t")
			printf "%s\t%s\t%s %s\n", f[1], f[2], median(order[r]), f[3]
		}
	}
	if (part == "ledger" && lrows) {
		print "LEDGER (3 voters, loopback)\tSTAT\tPCM\tETCD\tPCM/ETCD\tGOAL"
		for (r = 1; r <= lrows; r++) {
			split(lorder[r], f, SUBSEP)
			p = lmedian("pcm", lorder[r]); e = lmedian("etcd", lorder[r])
			unit = f[2] == "rate" ? "entries/s" : "ms"
			ratio = (p != "" && e != "" && e + 0 > 0) ? sprintf("%.2fx", p / e) : "-"
			goal = "-"
			if (f[2] == "rate" && f[1] == "proposers=1") goal = "pcm/etcd >= 1x"
			if (f[2] == "rate" && f[1] == "proposers=16") goal = "pcm/etcd >= 1.5x"
			if (f[2] == "rate" && f[1] == "proposers=128") goal = "pcm/etcd >= 2x"
			if (f[2] == "p50" && f[1] == "proposers=1") goal = "pcm <= 1.0 ms"
			printf "%s\t%s\t%s\t%s\t%s\t%s\n", f[1], f[2], (p == "" ? "-" : p " " unit), (e == "" ? "-" : e " " unit), ratio, goal
		}
	}
}' "$out" | column -t -s $'\t'
}
((ledger_only)) || {
	table main
	echo
}
table ledger
exit "$fail"
