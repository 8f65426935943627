#!/usr/bin/env bash
# down.sh: stop the local pcm testnet.
set -euo pipefail
# shellcheck source=testnet/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

usage() {
	cat <<EOF
usage: testnet/down.sh [--clean] [--dir DIR]

Stops every agent of the testnet (SIGTERM, then SIGKILL after 10s).
Their data stays, so testnet/up.sh starts the same testnet again.

options:
  --clean     also delete the agents' data, logs and pid files (other
              folders in DIR, such as slurm/, are left alone)
  --dir DIR   testnet folder (default testnet/.data, env PCM_TESTNET_DIR)
  -h, --help  this help
EOF
}

clean=0
while (($#)); do
	case $1 in
	-h | --help)
		usage
		exit 0
		;;
	--clean) clean=1 ;;
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

agents=$(tn_agents)
if [[ -z $agents ]]; then
	tn_say "no testnet in $TN_DIR; nothing to stop"
	exit 0
fi
stopped=0
for name in $agents; do
	if tn_running "$name"; then
		tn_say "stopping $name (pid $(tn_pid "$name"))"
		stopped=$((stopped + 1))
	fi
	tn_stop "$name" 10 &
done
wait
tn_say "stopped $stopped agent(s)"
if ((clean)); then
	for name in $agents; do
		rm -rf "${TN_DIR:?}/$name" "$TN_DIR/$name".{env,args,pid,log}
	done
	rm -f "$TN_DIR/testnet.env"
	tn_say "deleted the agents' data in $TN_DIR"
else
	tn_say "data kept in $TN_DIR: testnet/up.sh starts the same agents again; testnet/down.sh --clean deletes it"
fi
