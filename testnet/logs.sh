#!/usr/bin/env bash
# logs.sh: show one testnet agent's log.
set -euo pipefail
# shellcheck source=testnet/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

usage() {
	cat <<EOF
usage: testnet/logs.sh [options] NAME

Prints the last lines of agent NAME's log (a1, a2, ...; the log spans
restarts, each marked "=== <time> start NAME ==="), or follows it.

options:
  -f, --follow   keep printing new lines (Ctrl-C to stop)
  -n LINES       how many lines (default 50; 0 = all)
  --level LEVEL  only lines at this level or above: debug, info, warn, error
  --dir DIR      testnet folder (default testnet/.data, env PCM_TESTNET_DIR)
  -h, --help     this help
EOF
}

follow=0
lines=50
level=""
name=""
while (($#)); do
	case $1 in
	-h | --help)
		usage
		exit 0
		;;
	-f | --follow) follow=1 ;;
	-n)
		lines=${2:?-n needs a number}
		shift
		;;
	--level)
		level=${2:?}
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
	*) name=$1 ;;
	esac
	shift
done
[[ -n $name ]] || {
	usage >&2
	exit 2
}
log="$TN_DIR/$name.log"
[[ -e $log ]] || tn_die "no log for $name in $TN_DIR; agents: $(tn_agents | tr '\n' ' ')"

filter() {
	case $level in
	"" | debug) cat ;;
	info) grep --line-buffered -v 'level=DEBUG' ;;
	warn) grep --line-buffered -v 'level=DEBUG\|level=INFO' ;;
	error) grep --line-buffered -v 'level=DEBUG\|level=INFO\|level=WARN' ;;
	*) tn_die "--level $level: use debug, info, warn or error" ;;
	esac
}

if ((follow)); then
	tail -n "$lines" -F "$log" | filter
elif ((lines == 0)); then
	filter <"$log"
else
	filter <"$log" | tail -n "$lines"
fi
