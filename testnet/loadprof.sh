#!/usr/bin/env bash
# loadprof.sh: summarize what testnet/load.sh --profile DIR collected:
# where each run's submit→placed time went, why rounds failed, how long
# the ledger took, and CPU use. See testnet/LOADPROFILE.md.
set -euo pipefail
# shellcheck source=testnet/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

usage() {
	cat <<EOF
usage: testnet/loadprof.sh DIR

DIR is a load.sh --profile folder (DIR/run1, DIR/run2, ...). For each run
it prints, from the brokers' task records and the ledger (brokers' and
providers' own clocks, all on this machine):

  budget    mean and p50 of each task's submit→placed time split into:
            submit → its first round began (submission, queueing for a
            round slot), first round → winning round (failed rounds and
            the waits between them), winning round → award (CFPs, bids),
            award → the broker saw the agreement committed (confirm,
            ledger commit, apply here)
  ledger    agreement → started event, started → succeeded event (a
            provider's proposal round trip: sim tasks end at once),
            succeeded → settlement
  rounds    outcomes and decline/rule-out reasons, counted
  cpu       machine busy vs idle, each agent's CPU seconds and run-queue
            wait (cpu.txt)

and the pprof commands to look further.
EOF
}
[[ ${1:-} == -h || ${1:-} == --help ]] && { usage; exit 0; }
dir=${1:?$(usage)}
tn_need jq

for run in "$dir"/run*/; do
	run=${run%/}
	printf '== %s\n' "$run"
	jq -rn --slurpfile led "$run/ledger.json" '
	def ts: (.[0:19] + "Z" | fromdateiso8601) + ((.[19:] | capture("^\\.(?<f>[0-9]+)") // {f: "0"}).f | "0." + . | tonumber);
	def pct(q): sort | .[((length * q) | floor) | [., length - 1] | min];
	def ms: . * 1000 | round;
	def stat: if length == 0 then "-" else "mean \(add / length | ms) ms, p50 \(pct(0.5) | ms) ms, p90 \(pct(0.9) | ms) ms, max \(max | ms) ms" end;
	[inputs[]] as $all
	# the run is the last burst of submissions in the records
	| ($all | map(.submitted_at | ts) | max) as $last
	| [$all[] | select((.submitted_at | ts) > $last - 3)] as $tasks
	| ($led[0] | map(select(.type == "agreement")) | map({key: .payload.task_id, value: (.payload.time | ts)}) | from_entries) as $ag
	| ($led[0] | map(select(.type == "task_event")) | map({key: "\(.payload.task_id)/\(.payload.event)", value: (.payload.time | ts)}) | from_entries) as $ev
	| ($led[0] | map(select(.type == "settlement")) | map({key: .payload.task_id, value: (.payload.time | ts)}) | from_entries) as $st
	| [$tasks[]
	   | (.submitted_at | ts) as $s
	   | ([.history[] | select(.state == "placed")][0].time | if . then ts else null end) as $p
	   | select($p != null and (.rounds | length) > 0 and $ag[.id] != null)
	   | {s: $s, p: $p, r1: (.rounds[0].time | ts), win: (.rounds[-1] | (.last_time // .time) | ts), aw: $ag[.id],
	      started: $ev["\(.id)/started"], done: $ev["\(.id)/succeeded"], settled: $st[.id],
	      rounds: (.rounds[-1] | .through // .n)}] as $rows
	| "tasks \($tasks | length), placed \($rows | length), rounds/task \($rows | map(.rounds) | add / length * 100 | round / 100)",
	  "budget  submit → first round          \($rows | map(.r1 - .s) | stat)",
	  "        first → winning round         \($rows | map(.win - .r1) | stat)",
	  "        winning round → award         \($rows | map(.aw - .win) | stat)",
	  "        award → commit seen (placed)  \($rows | map(.p - .aw) | stat)",
	  "        submit → placed               \($rows | map(.p - .s) | stat)",
	  "ledger  placed → started event        \($rows | map(select(.started) | .started - .p) | stat)",
	  "        started → succeeded event     \($rows | map(select(.started and .done) | .done - .started) | stat)",
	  "        succeeded → settlement        \($rows | map(select(.done and .settled) | .settled - .done) | stat) (entries; \($led[0] | map(select(.billed)) | length) attempts billed by the ledger instead)",
	  "rounds (outcome: count)",
	  ([$tasks[].rounds[] | {k: (.outcome // "" | sub(" on .*"; "")), n: ((.through // .n) - .n + 1)}] | group_by(.k) | map({k: .[0].k, n: (map(.n) | add)}) | sort_by(-.n) | .[] | "  \(.n)\t\(.k)"),
	  "reasons (declines and rule-outs: count)",
	  ([$tasks[].rounds[] | ((.through // .n) - .n + 1) as $n | ((.declines // [])[] | .reasons[] | {k: ("decline: " + .[0:60]), n: $n}), ((.ruled_out // [])[] | .reasons[] | {k: ("ruled out: " + .[0:60]), n: $n})] | group_by(.k) | map({k: .[0].k, n: (map(.n) | add)}) | sort_by(-.n) | .[0:8][] | "  \(.n)\t\(.k)")
	' "$run"/a*.tasks.json
	[[ -f $run/cpu.txt ]] && sed 's/^/cpu     /' "$run/cpu.txt"
	echo
done
cat <<EOF
profiles (per agent aN, per run):
  go tool pprof -top bin/pcm-agent $dir/run1/a1.cpu.pb.gz            # CPU
  go tool pprof -top -cum -focus pcm-mesh bin/pcm-agent $dir/run1/a1.block.pb.gz   # where goroutines waited
  go tool pprof -traces -lines bin/pcm-agent $dir/run1/a1.block.pb.gz | less
  less $dir/run1/a1.goroutine-1s.txt                                  # stacks 1 s into the run
EOF
