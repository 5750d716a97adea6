#!/usr/bin/env bash
# The Prometheus Operator's PodMonitor and PrometheusRule CRDs, from its
# pinned Go module (the CRDs ship in the module's example/prometheus-operator-crd/),
# copied into the components cache for the cluster tests (tests/cluster/monitoring.rs).
# Kept apart from build.sh: that script's contents key every component's
# cache entry, and these CRDs need no build.
#
# Usage: tests/components/prometheus-operator-crds.sh [--env]   prints PROMETHEUS_OPERATOR_CRDS=DIR
set -euo pipefail

PROMETHEUS_OPERATOR_VERSION=v0.85.0
cache="${EDGE_HMAC_COMPONENTS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/edge-hmac/components}"
dir="$cache/prometheus-operator-crds-$PROMETHEUS_OPERATOR_VERSION"

command -v go >/dev/null || {
    echo "components: Go is needed to fetch the Prometheus Operator CRDs from the Go module proxy" >&2
    exit 1
}
export GOWORK=off GOFLAGS=-mod=mod GOTOOLCHAIN=local
if [[ ! -f "$dir/.complete" ]]; then
    [[ "${1:-}" == "--env" ]] || echo "components: Prometheus Operator $PROMETHEUS_OPERATOR_VERSION CRDs into $dir" >&2
    src="$(go mod download -json "github.com/prometheus-operator/prometheus-operator@$PROMETHEUS_OPERATOR_VERSION" \
        | sed -n 's/^\t"Dir": "\(.*\)",$/\1/p')"
    [[ -n "$src" ]] || { echo "components: go mod download of prometheus-operator $PROMETHEUS_OPERATOR_VERSION failed" >&2; exit 1; }
    rm -rf "$dir.partial" && mkdir -p "$dir.partial"
    for kind in podmonitors prometheusrules; do
        cp "$src/example/prometheus-operator-crd/monitoring.coreos.com_$kind.yaml" "$dir.partial/"
    done
    chmod -R u+w "$dir.partial"
    rm -rf "$dir" && mv "$dir.partial" "$dir" && touch "$dir/.complete"
fi
echo "PROMETHEUS_OPERATOR_CRDS=$dir"
