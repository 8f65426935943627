# shellcheck shell=bash
# lib.sh: helpers shared by the testnet scripts (up, status, submit, logs,
# down, chaos). Source it; it defines tn_* functions and never runs
# anything by itself.
#
# Layout of a testnet folder (default testnet/.data, --dir or
# PCM_TESTNET_DIR to change it):
#   aN/          agent N's data dir (identity, ledger, tasks, driver state)
#   aN.env       NAME, P2P_PORT, API_PORT, PEER_ID of agent N
#   aN.args      its `join` arguments, one a line (restarts reuse them)
#   aN.pid       its process id while it runs
#   aN.log       its log (appended across restarts)
#   testnet.env  N and the settings up.sh was called with
# Every agent listens on 127.0.0.1 only: P2P on P2P_PORT (TCP and QUIC),
# its HTTP API on API_PORT.

TN_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
TN_DIR=${PCM_TESTNET_DIR:-$TN_ROOT/testnet/.data}
PCM_BIN=${PCM_BIN:-$TN_ROOT/bin/pcm-agent}

tn_say() { printf '%s\n' "$*" >&2; }
tn_die() {
	printf 'error: %s\n' "$*" >&2
	exit 1
}

# tn_need CMD...: fail with an install hint when a tool is missing.
tn_need() {
	local c
	for c in "$@"; do
		command -v "$c" >/dev/null 2>&1 || tn_die "$c is required but not installed (Debian: apt-get install $c)"
	done
}

# tn_build compiles bin/pcm-agent from this checkout.
tn_build() {
	tn_need go
	tn_say "building $PCM_BIN ..."
	(cd "$TN_ROOT" && go build -o "$PCM_BIN" ./cmd/pcm-agent) || tn_die "go build failed"
}

# tn_agents lists the agent names of the testnet, in order (a1 a2 ...).
tn_agents() {
	local f
	for f in "$TN_DIR"/a*.env; do
		[[ -e $f ]] || continue
		basename "$f" .env
	done | sort -V
}

# tn_get NAME KEY prints one value of NAME's .env file.
tn_get() {
	local line
	while IFS= read -r line; do
		if [[ $line == "$2="* ]]; then
			printf '%s\n' "${line#*=}"
			return 0
		fi
	done <"$TN_DIR/$1.env"
	return 1
}

tn_api() { printf 'http://127.0.0.1:%s\n' "$(tn_get "$1" API_PORT)"; }
tn_maddr() { printf '/ip4/127.0.0.1/tcp/%s/p2p/%s\n' "$(tn_get "$1" P2P_PORT)" "$(tn_get "$1" PEER_ID)"; }

# tn_pid NAME prints the pid of a running agent, or fails.
tn_pid() {
	local f="$TN_DIR/$1.pid" pid
	[[ -s $f ]] || return 1
	pid=$(<"$f")
	# The pid must still be our pcm-agent on this data dir, not a reused pid.
	[[ -r /proc/$pid/cmdline ]] || return 1
	tr '\0' ' ' <"/proc/$pid/cmdline" | grep -qF -- "$TN_DIR/$1 " || return 1
	printf '%s\n' "$pid"
}

tn_running() { tn_pid "$1" >/dev/null; }

# tn_port_free PORT: no socket uses PORT (TCP or UDP, listening or not).
tn_port_free() {
	[[ -z $(ss -Htuan "sport = :$1" 2>/dev/null) ]]
}

# tn_port_candidate prints a random port below the kernel's ephemeral
# range: a port from that range, free when picked, could be the local port
# of some outgoing connection by the time a server binds it ("address
# already in use").
tn_port_candidate() {
	local lo=32768 span
	read -r lo _ </proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || true
	span=$((lo - 10000))
	((span >= 1000)) || span=$((65535 - 10000)) # a range starting low: no room below it
	printf '%s\n' $((10000 + (RANDOM * 32768 + RANDOM) % span))
}

TN_TAKEN=" "
# tn_free_port prints a free loopback port not handed out before.
tn_free_port() {
	local p i
	for ((i = 0; i < 200; i++)); do
		p=$(tn_port_candidate)
		if [[ $TN_TAKEN != *" $p "* ]] && tn_port_free "$p"; then
			TN_TAKEN+="$p "
			printf '%s\n' "$p"
			return 0
		fi
	done
	tn_die "no free port found"
}

# tn_curl NAME PATH: GET the agent's API, JSON on stdout.
tn_curl() {
	curl -sf --max-time "${TN_CURL_TIMEOUT:-3}" "$(tn_api "$1")$2"
}

# tn_start NAME [BOOTSTRAP...]: start agent NAME in the background with
# its saved arguments, joining through the given multiaddrs.
tn_start() {
	local name=$1
	shift
	local -a args boot=()
	mapfile -t args <"$TN_DIR/$name.args"
	local b
	for b in "$@"; do
		boot+=(--bootstrap "$b")
	done
	printf '\n=== %s start %s ===\n' "$(date -u +%FT%TZ)" "$name" >>"$TN_DIR/$name.log"
	setsid "$PCM_BIN" --data-dir "$TN_DIR/$name" join "${args[@]}" "${boot[@]}" \
		</dev/null >>"$TN_DIR/$name.log" 2>&1 &
	printf '%s\n' "$!" >"$TN_DIR/$name.pid"
	# Not a job of this shell: no "Killed" notice when chaos.sh kills it.
	disown "$!" 2>/dev/null || true
}

# tn_wait_api NAME [SECONDS]: wait until NAME answers on its API; on
# failure show the end of its log.
tn_wait_api() {
	local name=$1 secs=${2:-30} end
	end=$((SECONDS + secs))
	local pid
	pid=$(<"$TN_DIR/$name.pid")
	while ((SECONDS < end)); do
		# kill -0, not tn_running: right after the fork the process does
		# not show the agent's command line yet.
		if ! kill -0 "$pid" 2>/dev/null; then
			tn_say "agent $name exited; last lines of $TN_DIR/$name.log:"
			tail -n 15 "$TN_DIR/$name.log" >&2
			return 1
		fi
		tn_curl "$name" /v1/status >/dev/null 2>&1 && return 0
		sleep 0.2
	done
	tn_say "agent $name did not answer on $(tn_api "$name") within ${secs}s; see $TN_DIR/$name.log"
	return 1
}

# tn_others NAME: multiaddrs of every agent but NAME.
tn_others() {
	local n
	for n in $(tn_agents); do
		[[ $n == "$1" ]] || tn_maddr "$n"
	done
}

# tn_kill NAME SIGNAL: signal a running agent; true if it was running.
tn_kill() {
	local pid
	pid=$(tn_pid "$1") || return 1
	kill -s "$2" "$pid" 2>/dev/null
}

# tn_stop NAME [SECONDS]: SIGTERM, wait, then SIGKILL.
tn_stop() {
	local name=$1 secs=${2:-10} pid end
	pid=$(tn_pid "$name") || {
		rm -f "$TN_DIR/$name.pid"
		return 0
	}
	kill -TERM "$pid" 2>/dev/null || true
	end=$((SECONDS + secs))
	while kill -0 "$pid" 2>/dev/null && ((SECONDS < end)); do
		sleep 0.2
	done
	if kill -0 "$pid" 2>/dev/null; then
		tn_say "$name did not stop in ${secs}s; sending SIGKILL"
		kill -KILL "$pid" 2>/dev/null || true
	fi
	rm -f "$TN_DIR/$name.pid"
}

# tn_state_json: one JSON object per running agent on stdout:
# {name, status, members} (missing parts are null).
tn_state_json() {
	local n st mb
	for n in $(tn_agents); do
		st=null
		mb=null
		if tn_running "$n"; then
			st=$(tn_curl "$n" /v1/status 2>/dev/null) || st=null
			mb=$(tn_curl "$n" /v1/ledger/members 2>/dev/null) || mb=null
		fi
		jq -cn --arg name "$n" --arg id "$(tn_get "$n" PEER_ID)" --argjson st "${st:-null}" --argjson mb "${mb:-null}" \
			'{name: $name, id: $id, status: $st, members: $mb}'
	done
}

# tn_converged_report: reads tn_state_json lines; prints one progress line
# and exits 0 when every running agent sees every running agent as a
# provider, all agree on one leader, and the ledger replicas share a head.
tn_converged_report() {
	jq -rs '
	  (map(select(.status != null))) as $up
	  | ($up | length) as $n
	  | ($up | map(.members.leader // "") | unique) as $leaders
	  | ($up | map(.members.replicas // [] | map(.hash) | unique) | add // [] | unique) as $heads
	  | ($up | map(.members.replicas // [] | length) | max // 0) as $repl
	  | ([$n, 9] | min) as $want_repl
	  | ($up | map(select(.status.providers == $n)) | length) as $full
	  | (if $n > 0 and $full == $n and ($leaders | length) == 1 and $leaders[0] != "" and $repl >= $want_repl and ($heads | length) == 1
	     then "ok" else "wait" end) as $verdict
	  | "\($verdict) agents up \($n)/\(length); seeing all providers \($full)/\($n); leader \(if ($leaders|length)==1 and $leaders[0] != "" then "…" + ($leaders[0][-8:]) else "electing" end); replicas \($repl)/\($want_repl); heads \($heads | length)"'
}

# tn_wait_converged [SECONDS]: poll until converged, printing progress.
tn_wait_converged() {
	local secs=${1:-60} end line last=""
	end=$((SECONDS + secs))
	while :; do
		line=$(tn_state_json | tn_converged_report)
		if [[ $line != "$last" ]]; then
			tn_say "  ${line#* }"
			last=$line
		fi
		[[ $line == ok* ]] && return 0
		if ((SECONDS >= end)); then
			tn_say "the mesh did not converge within ${secs}s (last: ${line#* })"
			return 1
		fi
		sleep 0.5
	done
}

# tn_role_of ID MEMBERS_JSON: leader, voter, non-voter or client.
tn_role_of() {
	jq -r --arg id "$1" '
	  if . == null then "?"
	  elif .leader == $id then "leader"
	  elif ((.voters // []) | index($id)) != null then "voter"
	  elif ((.non_voters // []) | index($id)) != null then "non-voter"
	  else "client" end' <<<"$2"
}

# tn_row SCENARIO OPS FAULTS ACKED LOST DUP VERIFY: a row of the
# reliability table (testnet/reliability.sh), appended to $PCM_ROWS when
# it is set.
tn_row() {
	local IFS=$'\t'
	[[ -z ${PCM_ROWS:-} ]] || printf '%s\n' "$*" >>"$PCM_ROWS"
}

# tn_table: NAME STATE ROLE PEER-ID API MULTIADDR, one line per agent.
tn_table() {
	local n members="null" st role state peers provs
	for n in $(tn_agents); do
		if tn_running "$n"; then
			members=$(tn_curl "$n" /v1/ledger/members 2>/dev/null) && break
		fi
	done
	{
		printf 'NAME\tSTATE\tROLE\tPEERS\tPROVIDERS\tPEER-ID\tAPI\tMULTIADDR\n'
		for n in $(tn_agents); do
			state=stopped
			peers=-
			provs=-
			if tn_running "$n"; then
				state="running(pid $(tn_pid "$n"))"
				if st=$(tn_curl "$n" /v1/status 2>/dev/null); then
					peers=$(jq -r .peers <<<"$st")
					provs=$(jq -r .providers <<<"$st")
				else
					state="unreachable(pid $(tn_pid "$n"))"
				fi
			fi
			role=$(tn_role_of "$(tn_get "$n" PEER_ID)" "$members")
			printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$n" "$state" "$role" "$peers" "$provs" \
				"$(tn_get "$n" PEER_ID)" "$(tn_api "$n")" "$(tn_maddr "$n")"
		done
	} | column -t -s $'\t'
}

# tn_name_of PEER_ID prints the agent name of a peer id (or the id).
tn_name_of() {
	local n
	for n in $(tn_agents); do
		if [[ $(tn_get "$n" PEER_ID) == "$1" ]]; then
			printf '%s\n' "$n"
			return 0
		fi
	done
	printf '%s\n' "${1:-?}"
}
