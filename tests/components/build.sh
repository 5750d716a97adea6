#!/usr/bin/env bash
# Builds the real cluster components the end-to-end tests run, at pinned
# versions, from the Go module proxy, into a per-user cache (never into this
# checkout, never committed):
#
#   envoy-gateway, egctl   Envoy Gateway v1.9.0 (go install; its go.mod has no replaces)
#   external-secrets       External Secrets Operator v0.20.4 (wrapper module eso/)
#   kube-apiserver, kubectl, etcd   Kubernetes v1.34.4 + etcd v3.6.4 (wrapper module kube/)
#   kubelet, kube-proxy, kube-scheduler, kube-controller-manager
#                          Kubernetes v1.34.4 (wrapper module node/), for the node tests
#   coredns                CoreDNS v1.12.1 with its bind, errors and kubernetes
#                          plugins only (wrapper module coredns/), the node's cluster DNS
#
# plus the CRDs the tests apply, copied from the same module versions.
#
# Each component lives in <cache>/<name>-<key>/, where <key> hashes the pin,
# the wrapper module's files and the Go version: a changed pin builds anew,
# an unchanged one is reused (by later runs and by CI on the same machine).
# Old entries are left for `rm -rf` (the script says where).
#
# Usage: tests/components/build.sh            build what is missing, print paths
#        tests/components/build.sh --env      only print NAME=PATH lines (builds if needed)
# Cache: $EDGE_HMAC_COMPONENTS_CACHE, else ${XDG_CACHE_HOME:-~/.cache}/edge-hmac/components
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
cache="${EDGE_HMAC_COMPONENTS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/edge-hmac/components}"
quiet=0
[[ "${1:-}" == "--env" ]] && quiet=1

EG_VERSION=v1.9.0
ESO_VERSION=v0.20.4
KUBE_VERSION=v1.34.4
COREDNS_VERSION=v1.12.1

say() { ((quiet)) || echo "components: $*" >&2; }

command -v go >/dev/null || {
    echo "components: Go is needed to build Envoy Gateway, ESO and kube-apiserver for the tests (go 1.24 or newer on PATH)" >&2
    exit 1
}
# Never pick up a go.work or GOFLAGS of the user's; one toolchain: the machine's.
export GOWORK=off GOFLAGS=-buildvcs=false GOTOOLCHAIN=local
gover="$(go env GOVERSION)"

key_of() { # name, pin, files... (their contents, not their paths: any checkout shares the cache)
    { echo "$1 $2 $gover"; shift 2; for f in "$@"; do sha256sum < "$f"; done; } | sha256sum | cut -c1-12
}

# build NAME PIN KEYFILES... -- COMMAND: runs COMMAND with $out set, once per key.
build() {
    local name="$1" pin="$2"; shift 2
    local files=()
    while [[ "$1" != "--" ]]; do files+=("$1"); shift; done
    shift
    local key; key="$(key_of "$name" "$pin" "${files[@]}")"
    local dir="$cache/$name-$pin-$key"
    if [[ -f "$dir/.complete" ]]; then
        say "$name $pin: cached in $dir"
    else
        say "$name $pin: building into $dir (first time only; see tests/components/build.sh)"
        rm -rf "$dir.partial"
        mkdir -p "$dir.partial/bin"
        local start=$SECONDS
        out="$dir.partial" "$@" >&2
        rm -rf "$dir"
        mv "$dir.partial" "$dir"
        touch "$dir/.complete"
        say "$name $pin: built in $((SECONDS - start)) s, $(du -sh "$dir" | cut -f1)"
        local stale
        stale="$(find "$cache" -maxdepth 1 -name "$name-*" ! -name "$name-$pin-$key" ! -name '*.partial' 2>/dev/null || true)"
        [[ -z "$stale" ]] || say "older $name builds you may delete: $stale"
    fi
    printf -v "DIR_${name//-/_}" '%s' "$dir"
}

build_eg() {
    GOBIN="$out/bin" go install \
        "github.com/envoyproxy/gateway/cmd/envoy-gateway@$EG_VERSION" \
        "github.com/envoyproxy/gateway/cmd/egctl@$EG_VERSION"
    local src
    src="$(go mod download -json "github.com/envoyproxy/gateway@$EG_VERSION" | sed -n 's/^\t"Dir": "\(.*\)",$/\1/p')"
    mkdir -p "$out/crds"
    cp "$src/charts/gateway-helm/charts/crds/crds/gatewayapi-crds.yaml" "$out/crds/00-gatewayapi-crds.yaml"
    cp "$src"/charts/gateway-helm/charts/crds/crds/generated/*.yaml "$out/crds/"
    chmod -R u+w "$out/crds"
}

build_wrapper() { # module dir, packages...
    local mod="$1"; shift
    local work="$out/src"
    mkdir -p "$work"
    cp -r "$here/$mod/." "$work/"
    chmod -R u+w "$work"
    (cd "$work" && go build -trimpath -o "$out/bin/" "$@")
}

build_eso() {
    build_wrapper eso .
    mv "$out/bin/eso" "$out/bin/external-secrets"
    local src
    src="$(cd "$out/src" && go list -m -f '{{.Dir}}' github.com/external-secrets/external-secrets)"
    mkdir -p "$out/crds"
    cp "$src/deploy/crds/bundle.yaml" "$out/crds/bundle.yaml"
    chmod -R u+w "$out/crds"
}

build_kube() {
    build_wrapper kube go.etcd.io/etcd/server/v3 k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kubectl
    mv "$out/bin/server" "$out/bin/etcd"
}

build_node() {
    build_wrapper node k8s.io/kubernetes/cmd/kubelet k8s.io/kubernetes/cmd/kube-proxy \
        k8s.io/kubernetes/cmd/kube-scheduler k8s.io/kubernetes/cmd/kube-controller-manager
}

build_coredns() {
    build_wrapper coredns .
}

mkdir -p "$cache"
build envoy-gateway "$EG_VERSION" "$0" -- build_eg
build external-secrets "$ESO_VERSION" "$0" "$here/eso/go.mod" "$here/eso/go.sum" "$here/eso/main.go" -- build_eso
build kube "$KUBE_VERSION" "$0" "$here/kube/go.mod" "$here/kube/go.sum" -- build_kube
build kube-node "$KUBE_VERSION" "$0" "$here/node/go.mod" "$here/node/go.sum" -- build_node
build coredns "$COREDNS_VERSION" "$0" "$here/coredns/go.mod" "$here/coredns/go.sum" "$here/coredns/main.go" -- build_coredns

# What the tests read (tests/src/cluster.rs).
echo "EG_BIN_DIR=$DIR_envoy_gateway/bin"
echo "EG_CRDS=$DIR_envoy_gateway/crds"
echo "ESO_BIN_DIR=$DIR_external_secrets/bin"
echo "ESO_CRDS=$DIR_external_secrets/crds"
echo "KUBE_BIN_DIR=$DIR_kube/bin"
echo "NODE_BIN_DIR=$DIR_kube_node/bin"
echo "COREDNS_BIN_DIR=$DIR_coredns/bin"
