#!/usr/bin/env bash
# k8s-build.sh — build (once) the Kubernetes control-plane binaries and kwok
# that testnet/k8s-up.sh runs, into a cache folder that survives checkouts:
#
#   $PCM_K8S_CACHE/kubernetes-$K8S_VERSION/{kube-apiserver,kube-controller-manager,kube-scheduler}
#   $PCM_K8S_CACHE/kwok-$KWOK_VERSION/kwok
#   $PCM_K8S_CACHE/kwok-$KWOK_VERSION/stage/   (kwok's own stage files)
#
# PCM_K8S_CACHE defaults to /var/cache/pcm-k8s (root) or ~/.cache/pcm-k8s.
# A folder is complete only once its .ok marker exists, so an interrupted
# build starts over and a warm run costs a few stat calls.
#
# No prebuilt Kubernetes can be downloaded here, so the binaries come from the
# k8s.io/kubernetes module on the Go module proxy. Its go.mod replaces every
# k8s.io/* staging module with ./staging/src/k8s.io/..., which the module
# archive does not hold: those replaces are pointed at the published modules
# of the same release (v0.X.Y for v1.X.Y), then `go mod tidy` resolves the
# rest. The version is stamped with -ldflags, or the binaries say
# v0.0.0-master. Cold: about 8-15 minutes on 2 loaded cores.
set -euo pipefail

K8S_VERSION="${PCM_K8S_VERSION:-v1.34.2}"
KWOK_VERSION="${PCM_KWOK_VERSION:-v0.8.0}"

log() { printf 'k8s-build: %s\n' "$*" >&2; }
die() { printf 'k8s-build: error: %s\n' "$*" >&2; exit 1; }

default_cache=/var/cache/pcm-k8s
[[ $(id -u) -eq 0 ]] || default_cache="${XDG_CACHE_HOME:-$HOME/.cache}/pcm-k8s"
cache="${PCM_K8S_CACHE:-$default_cache}"
# k8s.io/kubernetes ships a go.work over its staging folders: off.
export GOTOOLCHAIN="${GOTOOLCHAIN:-local}" GOFLAGS=-mod=mod GOWORK=off
command -v go >/dev/null || die "go is required (PATH=$PATH)"

mkdir -p "$cache"
k8s_dir="$cache/kubernetes-$K8S_VERSION"
kwok_dir="$cache/kwok-$KWOK_VERSION"

build_kubernetes() {
	if [[ -f $k8s_dir/.ok ]]; then
		log "kubernetes $K8S_VERSION cached in $k8s_dir"
		return
	fi
	local t0=$SECONDS work src minor staging_ver
	log "building kube-apiserver, kube-controller-manager, kube-scheduler $K8S_VERSION into $k8s_dir (cold: several minutes)"
	mkdir -p "$cache"
	work="$(mktemp -d "$cache/.build-kubernetes.XXXXXX")"
	# The module cache is read-only: copy the source to edit its go.mod.
	src="$(cd "$work" && go mod download -json "k8s.io/kubernetes@$K8S_VERSION" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",*$/\1/p')"
	[[ -d $src ]] || die "go mod download k8s.io/kubernetes@$K8S_VERSION gave no source folder"
	cp -r "$src" "$work/src"
	chmod -R u+w "$work/src"
	minor="$(cut -d. -f2 <<<"$K8S_VERSION")"
	staging_ver="v0.${K8S_VERSION#v1.}"
	(
		cd "$work/src"
		local mod args=()
		# Every `replace k8s.io/X => ./staging/src/k8s.io/X` becomes X@v0.minor.patch.
		while read -r mod; do
			args+=(-replace "$mod=$mod@$staging_ver")
		done < <(sed -n 's|^[[:space:]]*\(k8s\.io/[^ ]*\) => \./staging/.*|\1|p' go.mod)
		((${#args[@]} > 0)) || die "no ./staging replaces found in k8s.io/kubernetes@$K8S_VERSION go.mod"
		go mod edit "${args[@]}"
		go mod tidy >/dev/null
		local pkg=k8s.io/component-base/version cgo=k8s.io/client-go/pkg/version flags="-s -w"
		local date
		date="$(date -u +%Y-%m-%dT%H:%M:%SZ)"
		for p in $pkg $cgo; do
			flags+=" -X $p.gitVersion=$K8S_VERSION -X $p.gitMajor=1 -X $p.gitMinor=$minor"
			flags+=" -X $p.gitTreeState=clean -X $p.buildDate=$date"
		done
		mkdir -p "$work/bin"
		CGO_ENABLED=0 go build -trimpath -ldflags "$flags" -o "$work/bin/" \
			./cmd/kube-apiserver ./cmd/kube-controller-manager ./cmd/kube-scheduler
	)
	"$work/bin/kube-apiserver" --version | grep -qF "$K8S_VERSION" ||
		die "built kube-apiserver does not report $K8S_VERSION"
	rm -rf "$k8s_dir"
	mv "$work/bin" "$k8s_dir"
	rm -rf "$work"
	touch "$k8s_dir/.ok"
	log "kubernetes $K8S_VERSION built in $((SECONDS - t0)) s"
}

build_kwok() {
	if [[ -f $kwok_dir/.ok ]]; then
		log "kwok $KWOK_VERSION cached in $kwok_dir"
		return
	fi
	local t0=$SECONDS src tmp
	log "building kwok $KWOK_VERSION into $kwok_dir"
	tmp="$(mktemp -d "${cache}/.build-kwok.XXXXXX")"
	GOBIN="$tmp" go install "sigs.k8s.io/kwok/cmd/kwok@$KWOK_VERSION"
	# kwok without stages exits "no stages found": keep the module's stage
	# files (testnet/k8s-up.sh picks the node and pod stages it needs).
	src="$(cd "$tmp" && go mod download -json "sigs.k8s.io/kwok@$KWOK_VERSION" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",*$/\1/p')"
	[[ -d $src/kustomize/stage ]] || die "sigs.k8s.io/kwok@$KWOK_VERSION has no kustomize/stage folder"
	cp -r "$src/kustomize/stage" "$tmp/stage"
	chmod -R u+w "$tmp/stage"
	rm -rf "$kwok_dir"
	mv "$tmp" "$kwok_dir"
	touch "$kwok_dir/.ok"
	log "kwok $KWOK_VERSION built in $((SECONDS - t0)) s"
}

build_kwok
build_kubernetes
printf '%s\n%s\n' "$k8s_dir" "$kwok_dir"
