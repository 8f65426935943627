#!/usr/bin/env bash
# k8s-up.sh — start a real Kubernetes control plane on loopback for pcm's
# kubernetes driver: etcd (Debian's etcd-server), kube-apiserver,
# kube-controller-manager and kube-scheduler (built once from k8s.io/kubernetes
# by testnet/k8s-build.sh) and kwok, which plays the kubelets of a few
# simulated nodes (pods are scheduled, run and complete; no container runs).
#
# Secure serving as in a real cluster: a CA and serving certificate made with
# openssl, an RSA service-account key pair, RBAC authorization, a static token
# for the admin user. The driver gets its own ServiceAccount "pcm-driver"
# bound to a Role limited to what it needs (see testnet/k8s/rbac.json and
# drivers/README.md) and a kubeconfig with a TokenRequest token of it.
#
# Every listener binds 127.0.0.1 on a free port chosen at first start and
# kept in $PCM_K8S_DIR/k8s.env, so several checkouts on one machine do not
# collide. Idempotent: when the cluster of this state dir already answers and
# its nodes are Ready it only prints the environment and exits.
#
# Output (also in $PCM_K8S_DIR/env, to be sourced):
#   KUBECONFIG=$PCM_K8S_DIR/driver.kubeconfig   (the pcm-driver account)
#   PCM_K8S_NAMESPACE=pcm
#   PCM_K8S_ADMIN_KUBECONFIG=$PCM_K8S_DIR/admin.kubeconfig
#
# Settings (environment): PCM_K8S_DIR (default <repo>/testnet/.data/k8s),
# PCM_K8S_NODES (3), PCM_K8S_NODE_CPU (4), PCM_K8S_NODE_MEMORY (8Gi),
# PCM_K8S_CACHE, PCM_K8S_VERSION, PCM_KWOK_VERSION (see k8s-build.sh).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
state="${PCM_K8S_DIR:-$here/.data/k8s}"
nodes="${PCM_K8S_NODES:-3}"
node_cpu="${PCM_K8S_NODE_CPU:-4}"
node_mem="${PCM_K8S_NODE_MEMORY:-8Gi}"
ns=pcm

log() { printf 'k8s-up: %s\n' "$*" >&2; }
die() {
	printf 'k8s-up: error: %s\n' "$*" >&2
	[[ -d $state/logs ]] && printf 'k8s-up: logs are in %s\n' "$state/logs" >&2
	exit 1
}
t0=$SECONDS

# 1. etcd from Debian, and the tools this script uses.
need=()
command -v etcd >/dev/null || need+=(etcd-server)
for c in openssl curl jq; do command -v "$c" >/dev/null || need+=("$c"); done
if ((${#need[@]} > 0)); then
	[[ $(id -u) -eq 0 ]] || die "missing ${need[*]}; run as root or apt-get install ${need[*]}"
	log "installing ${need[*]} (apt-get)"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	apt-get install -y -qq "${need[@]}" >/dev/null
fi

# 2. Binaries (cached).
built="$(bash "$here/k8s-build.sh")" || die "building the binaries failed (testnet/k8s-build.sh)"
bin="$(sed -n 1p <<<"$built")"
kwok_dir="$(sed -n 2p <<<"$built")"
[[ -x $bin/kube-apiserver && -x $kwok_dir/kwok ]] || die "testnet/k8s-build.sh gave no binaries ($built)"

mkdir -p "$state"/{logs,run,pki}
state="$(cd "$state" && pwd)"
pki="$state/pki"
api() { # api METHOD PATH [JSON]: a call as the admin user; prints the body
	local args=(-sS --fail-with-body --cacert "$pki/ca.crt" -H "Authorization: Bearer $(cat "$pki/admin.token")"
		-H 'Content-Type: application/json' -X "$1" "https://127.0.0.1:$API_PORT$2")
	[[ $# -ge 3 ]] && args+=(--data-binary "$3")
	curl "${args[@]}"
}
running() { local pid; pid="$(cat "$state/run/$1.pid" 2>/dev/null)" && kill -0 "$pid" 2>/dev/null; }
print_env() {
	cat >"$state/env" <<EOF
export KUBECONFIG=$state/driver.kubeconfig
export PCM_K8S_NAMESPACE=$ns
export PCM_K8S_ADMIN_KUBECONFIG=$state/admin.kubeconfig
EOF
	cat "$state/env"
}
nodes_ready() {
	api GET /api/v1/nodes 2>/dev/null | jq -e --argjson n "$nodes" \
		'[.items[] | select(.status.conditions[]? | select(.type == "Ready" and .status == "True"))] | length >= $n' >/dev/null
}

# 3. Already up?
if [[ -f $state/k8s.env ]]; then
	# shellcheck disable=SC1091
	source "$state/k8s.env"
	if running etcd && running kube-apiserver && running kube-controller-manager && running kube-scheduler &&
		running kwok && nodes_ready && [[ -s $state/driver.kubeconfig ]]; then
		log "already running (API server https://127.0.0.1:$API_PORT)"
		print_env
		exit 0
	fi
	log "a previous cluster in $state is incomplete: stopping it and starting afresh"
	bash "$here/k8s-down.sh" >&2
fi

# 4. Ports: free now on 127.0.0.1, distinct.
taken=" "
free_port() {
	local p
	for _ in $(seq 200); do
		p=$((20000 + RANDOM % 40000))
		[[ $taken == *" $p "* ]] && continue
		if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
			taken+="$p "
			echo "$p"
			return
		fi
	done
	die "no free port found on 127.0.0.1"
}
ETCD_PORT=$(free_port)
ETCD_PEER_PORT=$(free_port)
API_PORT=$(free_port)
KWOK_PORT=$(free_port)
cat >"$state/k8s.env" <<EOF
ETCD_PORT=$ETCD_PORT
ETCD_PEER_PORT=$ETCD_PEER_PORT
API_PORT=$API_PORT
KWOK_PORT=$KWOK_PORT
EOF

# 5. Certificates and keys (kept across restarts).
if [[ ! -s $pki/ca.crt || ! -s $pki/serving.crt || ! -s $pki/sa.pub || ! -s $pki/admin.token ]]; then
	log "generating a CA, a serving certificate for 127.0.0.1, a service-account key pair, tokens"
	(
		cd "$pki"
		openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=pcm-test-ca" \
			-keyout ca.key -out ca.crt 2>/dev/null
		openssl req -newkey rsa:2048 -nodes -subj "/CN=kube-apiserver" -keyout serving.key -out serving.csr 2>/dev/null
		printf 'subjectAltName=IP:127.0.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc\nextendedKeyUsage=serverAuth\n' >serving.ext
		openssl x509 -req -in serving.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 3650 \
			-extfile serving.ext -out serving.crt 2>/dev/null
		openssl genrsa -out sa.key 2048 2>/dev/null
		openssl rsa -in sa.key -pubout -out sa.pub 2>/dev/null
		for u in admin controller-manager scheduler kwok; do openssl rand -hex 32 >"$u.token"; done
		# token,user,uid,"groups"
		{
			echo "$(cat admin.token),admin,admin,\"system:masters\""
			echo "$(cat controller-manager.token),system:kube-controller-manager,kcm,\"system:masters\""
			echo "$(cat scheduler.token),system:kube-scheduler,sched,\"system:masters\""
			echo "$(cat kwok.token),kwok,kwok,\"system:masters\""
		} >tokens.csv
		chmod 600 ./*.key ./*.token tokens.csv
	)
fi

kubeconfig() { # kubeconfig FILE TOKEN [NAMESPACE]
	cat >"$1" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: pcm
  cluster:
    server: https://127.0.0.1:$API_PORT
    certificate-authority: $pki/ca.crt
users:
- name: user
  user:
    token: $2
contexts:
- name: pcm
  context:
    cluster: pcm
    user: user
    namespace: ${3:-default}
current-context: pcm
EOF
	chmod 600 "$1"
}
for u in admin controller-manager scheduler kwok; do kubeconfig "$state/$u.kubeconfig" "$(cat "$pki/$u.token")"; done

# Debian's etcd 3.4.23 lacks RequestWatchProgress, which the API server's
# streaming lists need (WatchList): with it on, every watch from
# resourceVersion 0 (kwok's) ends at once with an InternalError and kwok saw
# pods 20-40 s late. Off on the server (and in the clients): plain
# LIST+WATCH.
export KUBE_FEATURE_WatchListClient=false

start() { # start NAME CMD...: a daemon in its own session, logs and pid in the state dir
	local name=$1
	shift
	setsid "$@" >"$state/logs/$name.log" 2>&1 </dev/null &
	echo $! >"$state/run/$name.pid"
}
wait_for() { # wait_for WHAT SECONDS CMD...
	local what=$1 secs=$2
	shift 2
	local deadline=$((SECONDS + secs))
	until "$@" >/dev/null 2>&1; do
		((SECONDS < deadline)) || die "$what not ready after ${secs}s"
		sleep 0.5
	done
}
alive() { running "$1" || die "$1 exited; see $state/logs/$1.log: $(tail -n 5 "$state/logs/$1.log" 2>/dev/null)"; }

# 6. etcd (a fresh data dir each start: the cluster holds only test objects).
rm -rf "$state/etcd"
log "starting etcd on 127.0.0.1:$ETCD_PORT"
start etcd etcd --name pcm --data-dir "$state/etcd" \
	--listen-client-urls "http://127.0.0.1:$ETCD_PORT" --advertise-client-urls "http://127.0.0.1:$ETCD_PORT" \
	--listen-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" --initial-advertise-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
	--initial-cluster "pcm=http://127.0.0.1:$ETCD_PEER_PORT" --initial-cluster-state new
wait_for etcd 60 sh -c "curl -sf http://127.0.0.1:$ETCD_PORT/health | grep -q true"
alive etcd

# 7. kube-apiserver.
log "starting kube-apiserver on https://127.0.0.1:$API_PORT"
start kube-apiserver "$bin/kube-apiserver" \
	--etcd-servers "http://127.0.0.1:$ETCD_PORT" \
	--bind-address 127.0.0.1 --secure-port "$API_PORT" --advertise-address 127.0.0.1 \
	--endpoint-reconciler-type none \
	--tls-cert-file "$pki/serving.crt" --tls-private-key-file "$pki/serving.key" \
	--client-ca-file "$pki/ca.crt" --token-auth-file "$pki/tokens.csv" \
	--service-account-key-file "$pki/sa.pub" --service-account-signing-key-file "$pki/sa.key" \
	--service-account-issuer https://kubernetes.default.svc \
	--authorization-mode RBAC --service-cluster-ip-range 10.96.0.0/24 \
	--kubelet-preferred-address-types InternalIP --kubelet-certificate-authority "$pki/ca.crt" \
	--feature-gates WatchList=false \
	--profiling=false --v 1
api_ready() { alive kube-apiserver && api GET /readyz; }
wait_for kube-apiserver 180 api_ready
alive kube-apiserver

# 8. Controller manager (Job controller, garbage collector, node lifecycle,
# service-account tokens), scheduler, kwok.
log "starting kube-controller-manager, kube-scheduler and kwok"
start kube-controller-manager "$bin/kube-controller-manager" \
	--kubeconfig "$state/controller-manager.kubeconfig" --leader-elect=false --secure-port 0 \
	--service-account-private-key-file "$pki/sa.key" --root-ca-file "$pki/ca.crt" \
	--profiling=false --v 1
start kube-scheduler "$bin/kube-scheduler" \
	--kubeconfig "$state/scheduler.kubeconfig" --leader-elect=false --secure-port 0 --profiling=false --v 1
stages="$state/kwok-stages.yaml"
{
	for f in node/fast/node-initialize.yaml node/heartbeat/node-heartbeat.yaml pod/fast/pod-ready.yaml pod/fast/pod-delete.yaml; do
		[[ -f $kwok_dir/stage/$f ]] || die "kwok stage $kwok_dir/stage/$f is missing; remove $kwok_dir and rerun"
		cat "$kwok_dir/stage/$f"
		echo "---"
	done
	cat "$here/k8s/kwok-pod-complete.yaml"
} >"$stages"
start kwok "$kwok_dir/kwok" --kubeconfig "$state/kwok.kubeconfig" --config "$stages" \
	--manage-all-nodes=false --manage-nodes-with-annotation-selector kwok.x-k8s.io/node=fake \
	--node-ip 127.0.0.1 --node-port "$KWOK_PORT" --server-address "127.0.0.1:$KWOK_PORT" \
	--tls-cert-file "$pki/serving.crt" --tls-private-key-file "$pki/serving.key"

# 9. Namespace, the driver's account and role, nodes.
log "creating namespace $ns, the pcm-driver account and $nodes kwok nodes ($node_cpu CPUs, $node_mem each)"
sed "s/__NAMESPACE__/$ns/g" "$here/k8s/rbac.json" | jq -c '.[]' | while read -r obj; do
	path="$(jq -r '.path' <<<"$obj")"
	api POST "$path" "$(jq -c '.object' <<<"$obj")" >/dev/null ||
		die "create $(jq -r '.object.kind + " " + .object.metadata.name' <<<"$obj") failed"
done
for i in $(seq "$nodes"); do
	api POST /api/v1/nodes "$(jq -nc --arg name "kwok-node-$i" --arg cpu "$node_cpu" --arg mem "$node_mem" '{
		apiVersion: "v1", kind: "Node",
		metadata: {name: $name, annotations: {"kwok.x-k8s.io/node": "fake"},
			labels: {"kubernetes.io/hostname": $name, "kubernetes.io/os": "linux", "type": "kwok"}},
		status: {allocatable: {cpu: $cpu, memory: $mem, pods: "110"}, capacity: {cpu: $cpu, memory: $mem, pods: "110"}}
	}')" >/dev/null || die "create node kwok-node-$i failed"
done
wait_for "kwok nodes" 120 nodes_ready
alive kube-controller-manager
alive kube-scheduler
alive kwok

# 10. The driver's kubeconfig: a bound token of the pcm-driver account.
token="$(api POST "/api/v1/namespaces/$ns/serviceaccounts/pcm-driver/token" \
	'{"apiVersion":"authentication.k8s.io/v1","kind":"TokenRequest","spec":{"expirationSeconds":604800}}' |
	jq -r '.status.token')"
[[ -n $token && $token != null ]] || die "TokenRequest for pcm-driver gave no token"
kubeconfig "$state/driver.kubeconfig" "$token" "$ns"

log "control plane up in $((SECONDS - t0)) s: https://127.0.0.1:$API_PORT, $nodes kwok nodes"
print_env
