#!/usr/bin/env bash
# bench.sh: pcm's benchmarks in one run, printed as one table.
set -euo pipefail
# shellcheck source=testnet/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

usage() {
	cat <<EOF
usage: testnet/bench.sh [--benchtime T] [--count N] [--raw FILE]

Runs, with go test -run '^\$' -bench:
  testnet   BenchmarkAdvertPropagation (5 and 20 agents on loopback),
            BenchmarkPlacement (submit -> agreement committed, p50/p99,
            5 agents, sim drivers), BenchmarkPlacementThroughput
  consensus BenchmarkCommit (ledger entries/s, 3 voters over libp2p)
  rules     BenchmarkEvaluate1000 (one task against 1,000 adverts)
and prints one table with the machine described (CPUs, memory, CPU model).
Takes a few minutes; run it on an otherwise idle machine.

options:
  --benchtime T  go test -benchtime for the mesh benchmarks (default 50x)
  --count N      go test -count (default 1)
  --raw FILE     keep the raw go test output in FILE
  -h, --help     this help
EOF
}

benchtime=50x
count=1
raw=""
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
tn_need go awk column
out=${raw:-$(mktemp)}
[[ -n $raw ]] || trap 'rm -f "$out"' EXIT
: >"$out"

run() {
	tn_say "running $*"
	(cd "$TN_ROOT" && go test -run '^$' "$@" -count "$count" -timeout 30m) | tee -a "$out" | grep -E '^Benchmark' >&2 || {
		tn_say "benchmark failed: $*"
		return 1
	}
}

fail=0
run ./testnet/ -bench 'BenchmarkAdvertPropagation|BenchmarkPlacement$' -benchtime "$benchtime" || fail=1
run ./testnet/ -bench 'BenchmarkPlacementThroughput' -benchtime 200x || fail=1
run ./consensus/ -bench 'BenchmarkCommit' -benchtime 2000x || fail=1
run ./rules/ -bench 'BenchmarkEvaluate1000' || fail=1

cpu=$(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo 2>/dev/null || echo unknown)
mem=$(awk '/^MemTotal/ {printf "%.1f GiB", $2 / 1048576}' /proc/meminfo 2>/dev/null || echo unknown)
echo
echo "machine: $(nproc) CPUs, $mem memory, $cpu; $(go version | cut -d' ' -f3-)"
echo
# Each benchmark line: name, iterations, then value/unit pairs.
awk '
/^Benchmark/ {
	name = $1; sub(/-[0-9]+$/, "", name)
	for (i = 3; i < NF; i += 2) {
		v = $i; u = $(i + 1)
		if (name ~ /AdvertPropagation/ && u == "ms-p50") printf "advert propagation %s\tp50\t%s ms\n", substr(name, index(name, "/") + 1), v
		if (name ~ /AdvertPropagation/ && u == "ms-p99") printf "advert propagation %s\tp99\t%s ms\n", substr(name, index(name, "/") + 1), v
		if (name ~ /Placement$/ && u == "ms-p50") printf "placement latency (submit -> agreement committed, 5 agents)\tp50\t%s ms\n", v
		if (name ~ /Placement$/ && u == "ms-p99") printf "placement latency (submit -> agreement committed, 5 agents)\tp99\t%s ms\n", v
		if (name ~ /PlacementThroughput/ && u == "placements/s") printf "sustained placements (5 agents, sim)\trate\t%s placements/s\n", v
		if (name ~ /Commit/ && u == "entries/s") printf "ledger commits %s\trate\t%s entries/s\n", substr(name, index(name, "/") + 1), v
		if (name ~ /Evaluate1000/ && u == "ns/op") printf "rules: 1 task vs 1,000 adverts\ttime\t%.2f ms\n", v / 1e6
	}
}' "$out" | { printf 'WHAT\tSTAT\tVALUE\n'; cat; } | column -t -s $'\t'
exit "$fail"
