#!/usr/bin/env bash
# reliability.sh: runs pcm's reliability scenarios and prints one table:
# scenario, operations, faults injected, acknowledged, lost, duplicated,
# ledger verify. Lost and duplicated come from run logs kept outside the
# ledger (each task appends its id to a file) or from the driver's own
# events, never from the ledger alone.
# shellcheck source=testnet/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

usage() {
	cat <<'USAGE'
usage: testnet/reliability.sh [--short | --long] [--only NAME,...]

Scenarios (NAME):
  starved    TestTwoHundredTasksOnFiveAgents in a cgroup that gives the
             process 0.25 s of CPU per 1 s period (stalls of ~0.75 s)
  pause      a provider SIGSTOPped for twice its lease while it runs tasks
  partition  the ledger leader's network cut (network namespaces), healed
  diskfull   an agent's file system filled up (tmpfs), agent restarted
  chaos      kill -9 of random agents (the leader every third time) while
             tasks are submitted
  leader     kill -9 of the ledger leader only, while tasks are submitted
  ledger     3 replicas, 12 concurrent writers, the leader stopped and
             restarted repeatedly

--short (default; what CI runs) keeps each scenario to a minute or two;
--long is the closing-note run (20 starved runs, 120 s partition, 5 min
chaos). Needs root for partition, diskfull and starved (skipped without).
Exit status 1 if any scenario failed.
USAGE
}

mode=short
only=""
while (($#)); do
	case $1 in
	-h | --help) usage; exit 0 ;;
	--short) mode=short ;;
	--long) mode=long ;;
	--only) only=",${2:?--only needs names},"; shift ;;
	*) tn_die "unknown option $1 (see --help)" ;;
	esac
	shift
done
tn_need go jq curl

if [[ $mode == long ]]; then
	starved_runs=20 pause_tasks=20 partition=120 chaos_secs=300 leader_kills=10
else
	starved_runs=1 pause_tasks=10 partition=30 chaos_secs=60 leader_kills=3
fi

out=$(realpath -m "$TN_ROOT/testnet/.data/reliability")
rm -rf "$out"
mkdir -p "$out"
export PCM_ROWS="$out/rows.tsv"
: >"$PCM_ROWS"
tn_build
failed=()

# scenario NAME COMMAND...: runs one scenario, its output in $out/NAME.log;
# a scenario that failed without writing its row gets a row saying so.
scenario() {
	local name=$1
	shift
	[[ -z $only || $only == *",$name,"* ]] || return 0
	local before rc=0 t0=$SECONDS
	before=$(wc -l <"$PCM_ROWS")
	tn_say "== $name: $*"
	"$@" >"$out/$name.log" 2>&1 || rc=$?
	tn_say "   $name: exit $rc after $((SECONDS - t0)) s (log $out/$name.log)"
	if ((rc != 0)); then
		failed+=("$name")
		if (($(wc -l <"$PCM_ROWS") == before)); then
			tn_row "$name" "-" "-" "-" "-" "-" "FAILED (exit $rc, see $out/$name.log)"
		fi
	fi
}

# skip NAME WHY: a row saying why a selected scenario cannot run here.
skip() { [[ -n $only && $only != *",$1,"* ]] || tn_row "$1" "-" "-" "-" "-" "-" "skipped: $2"; }

starved() {
	local cg=/sys/fs/cgroup/cpu/pcm-starve-$$ bin=$out/agent.test
	(cd "$TN_ROOT" && go test -c -o "$bin" ./agent) || return 1
	mkdir "$cg"
	echo 1000000 >"$cg/cpu.cfs_period_us"
	echo 250000 >"$cg/cpu.cfs_quota_us"
	local rc=0
	(
		echo "$BASHPID" >"$cg/cgroup.procs"
		cd "$TN_ROOT/agent" &&
			PCM_ROW_FAULTS="CPU 0.25 s per 1 s period" exec "$bin" -test.run '^TestTwoHundredTasksOnFiveAgents$' -test.count "$starved_runs" -test.timeout 2h
	) || rc=$?
	rmdir "$cg" 2>/dev/null || true
	return "$rc"
}

if [[ $(id -u) == 0 && -d /sys/fs/cgroup/cpu ]]; then
	scenario starved starved
else
	skip starved "needs root and cgroup v1 cpu"
fi
scenario pause "$TN_ROOT/testnet/pause.sh" --no-build --tasks "$pause_tasks" --dir "$out/pause"
# netns.sh cuts the leader off with ip link alone (no iptables).
if [[ $(id -u) == 0 ]] && command -v ip >/dev/null; then
	scenario partition "$TN_ROOT/testnet/netns.sh" --no-build --partition "$partition"
else
	skip partition "needs root and ip (apt-get install iproute2)"
fi
if [[ $(id -u) == 0 ]]; then
	scenario diskfull "$TN_ROOT/testnet/diskfull.sh" --no-build
else
	skip diskfull "needs root (tmpfs mounts)"
fi
scenario chaos "$TN_ROOT/testnet/chaos.sh" --no-build --duration "$chaos_secs" --dir "$out/chaos"
scenario leader "$TN_ROOT/testnet/chaos.sh" --no-build --target leader --kill-every 12 --duration "$chaos_secs" --dir "$out/leader"
ledger_test() {
	cd "$TN_ROOT" && PCM_LEADER_KILLS=$leader_kills go test -count=1 -run '^TestThreeNodesLibp2p$' ./consensus
}
scenario ledger ledger_test

echo
{
	printf 'scenario\toperations\tfaults\tacked\tlost\tduplicated\tverify\n'
	cat "$PCM_ROWS"
} | column -t -s $'\t'
if ((${#failed[@]})); then
	echo "FAIL: ${failed[*]} (logs in $out)"
	exit 1
fi
echo "PASS: every scenario lost nothing acknowledged and ran nothing twice"
