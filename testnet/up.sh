#!/usr/bin/env bash
# up.sh: start a local pcm testnet of N agents on 127.0.0.1.
set -euo pipefail
# shellcheck source=testnet/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

usage() {
	cat <<EOF
usage: testnet/up.sh [N] [options]

Builds bin/pcm-agent once and starts N agents (default 3) as separate
processes on 127.0.0.1, each with its own data dir and free ports under
one folder. Agent a1 bootstraps the ledger; the others join through the
agents started before them (the first 3 become ledger voters, the next
non-voters). Every agent adheres to testnet/examples/framework-general.yaml
(and framework-hpc.yaml with --driver slurm). Waits until every agent sees
every other as a provider and the ledger has one leader and one head, then
prints the agents and what to try next.

A folder that already holds a stopped testnet is started again as it was
(same identities, ports and ledger); use testnet/down.sh --clean to start
afresh.

options:
  --driver KIND         enable a driver on every agent: local, sim, slurm
                        (repeatable; default local)
  --framework FILE      adhere to this framework file too (repeatable)
  --config FILE         pass this YAML config file to every agent (join --config)
  --dir DIR             testnet folder (default testnet/.data, env PCM_TESTNET_DIR)
  --advert-interval D   advert period (default 1s; a provider is gone after 3)
  --timeout SECONDS     how long to wait for convergence (default 90)
  --lease D             the lease brokers grant on attempts (default 30s)
  --log-level LEVEL     agent log level (default info)
  --pprof               serve each agent's Go runtime profiles on a free
                        loopback port (join --debug-pprof; PPROF_PORT in aN.env)
  --no-build            use the existing bin/pcm-agent
  -h, --help            this help

environment: PCM_FAULT_DROP_FINAL_EVENTS=1 is passed to the agents (a
deliberate bug for testnet/chaos.sh to catch).
EOF
}

n=""
drivers=()
config=""
frameworks=()
advert=1s
timeout=90
loglevel=info
lease=""
build=1
pprof=0
while (($#)); do
	case $1 in
	-h | --help)
		usage
		exit 0
		;;
	--driver)
		drivers+=("${2:?--driver needs a value}")
		shift
		;;
	--framework)
		frameworks+=("${2:?--framework needs a file}")
		shift
		;;
	--config)
		config=$(realpath "${2:?--config needs a file}")
		shift
		;;
	--lease)
		lease=${2:?--lease needs a duration}
		shift
		;;
	--dir)
		TN_DIR=$(realpath -m "${2:?--dir needs a folder}")
		shift
		;;
	--advert-interval)
		advert=${2:?}
		shift
		;;
	--timeout)
		timeout=${2:?}
		shift
		;;
	--log-level)
		loglevel=${2:?}
		shift
		;;
	--no-build) build=0 ;;
	--pprof) pprof=1 ;;
	[0-9]*) n=$1 ;;
	*)
		usage >&2
		exit 2
		;;
	esac
	shift
done
tn_need jq curl ss column setsid

mkdir -p "$TN_DIR"
for a in $(tn_agents); do
	if tn_running "$a"; then
		tn_die "a testnet is already running in $TN_DIR ($a is up); see testnet/status.sh, or stop it with testnet/down.sh"
	fi
done

existing=$(tn_agents | wc -l)
if ((existing > 0)); then
	if [[ -n $n && $n != "$existing" ]]; then
		tn_die "$TN_DIR holds a stopped testnet of $existing agents, not $n; run testnet/down.sh --clean first to start a new one"
	fi
	n=$existing
fi
n=${n:-3}
((n >= 1)) || tn_die "N must be at least 1"
((${#drivers[@]})) || drivers=(local)

step() { tn_say "[$1/4] $2"; }

if ((build)); then
	step 1 "building pcm-agent"
	tn_build
else
	step 1 "using $PCM_BIN as built"
	[[ -x $PCM_BIN ]] || tn_die "$PCM_BIN does not exist; run without --no-build"
fi

fwargs=(--framework "$TN_ROOT/testnet/examples/framework-general.yaml")
for d in "${drivers[@]}"; do
	[[ $d == slurm ]] && fwargs+=(--framework "$TN_ROOT/testnet/examples/framework-hpc.yaml")
done
for f in "${frameworks[@]}"; do
	fwargs+=(--framework "$(realpath "$f")")
done
regions=(eu-west cn-north us-east)

if ((existing == 0)); then
	step 2 "creating $n agents in $TN_DIR (identity, free loopback ports)"
	for ((i = 1; i <= n; i++)); do
		name=a$i
		p2p=$(tn_free_port)
		api=$(tn_free_port)
		id=$("$PCM_BIN" --api "http://127.0.0.1:$api" --data-dir "$TN_DIR/$name" -o json id --init | jq -r .peer_id)
		printf 'NAME=%s\nP2P_PORT=%s\nAPI_PORT=%s\nPEER_ID=%s\n' "$name" "$p2p" "$api" "$id" >"$TN_DIR/$name.env"
		pp=()
		if ((pprof)); then
			pport=$(tn_free_port)
			printf 'PPROF_PORT=%s\n' "$pport" >>"$TN_DIR/$name.env"
			pp=(--debug-pprof "127.0.0.1:$pport")
		fi
		args=(--listen "127.0.0.1:$p2p" --api-listen "127.0.0.1:$api" --advert-interval "$advert"
			--log-level "$loglevel" --region "${regions[$(((i - 1) % 3))]}" --label "testnet=$name"
			--price "cpu=0.0$((i % 9 + 1))" --price memory=0.0001 "${fwargs[@]}" "${pp[@]}")
		for d in "${drivers[@]}"; do
			args+=(--driver "$d")
		done
		[[ -n $lease ]] && args+=(--lease "$lease")
		[[ -n $config ]] && args+=(--config "$config")
		printf '%s\n' "${args[@]}" >"$TN_DIR/$name.args"
		tn_say "  $name  peer $id  p2p 127.0.0.1:$p2p  api 127.0.0.1:$api"
	done
	# The testnet's agents trust each other: each is on the ledger's voter
	# allow-list (the first max_voters to join become voters, the next
	# non-voters; strangers stay clients).
	for ((i = 1; i <= n; i++)); do
		for ((j = 1; j <= n; j++)); do
			printf -- '--ledger-voter\n%s\n' "$(sed -n 's/^PEER_ID=//p' "$TN_DIR/a$j.env")" >>"$TN_DIR/a$i.args"
		done
	done
	printf 'N=%s\nDRIVERS=%s\nADVERT=%s\n' "$n" "${drivers[*]}" "$advert" >"$TN_DIR/testnet.env"
else
	step 2 "restarting the $n agents already in $TN_DIR (same identities, ports and ledger)"
fi

step 3 "starting agents: a1 bootstraps the ledger, the others join through the agents before them"
started=()
for name in $(tn_agents); do
	if ((existing == 0)); then
		boot=()
		for s in "${started[@]}"; do
			boot+=("$(tn_maddr "$s")")
		done
	else
		mapfile -t boot < <(tn_others "$name")
	fi
	tn_start "$name" "${boot[@]}"
	tn_wait_api "$name" 30 || tn_die "$name did not start; stop the others with testnet/down.sh"
	tn_say "  $name up (pid $(tn_pid "$name"), log $TN_DIR/$name.log)"
	started+=("$name")
done

step 4 "waiting for the mesh and the ledger to converge (timeout ${timeout}s)"
if ! tn_wait_converged "$timeout"; then
	tn_table
	tn_die "not converged; inspect with testnet/status.sh and testnet/logs.sh NAME"
fi

echo
echo "testnet of $n agents is up in $TN_DIR:"
tn_table
a1=$(tn_api a1)
cat <<EOF

try next:
  testnet/submit.sh                          # submit the example tasks to random agents and wait
  testnet/status.sh                          # this table, live
  testnet/logs.sh a2                         # an agent's log (-f to follow)
  $PCM_BIN --api $a1 submit --wait testnet/examples/task-shell.yaml
  $PCM_BIN --api $a1 ledger members          # voters, non-voters, leader
  $PCM_BIN --api $a1 ledger list             # agreements, task events, settlements
  $PCM_BIN --api $a1 resources               # every provider's capacity
  testnet/down.sh [--clean]                  # stop everything (--clean deletes the data)
EOF
