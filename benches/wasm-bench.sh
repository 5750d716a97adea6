#!/usr/bin/env bash
# The hot path natively and as wasm32-wasip1 in V8 (node), with +simd128
# (what .cargo/config.toml sets for the filter) and without: the
# wasm-vs-native ratio, and the data behind the filter's wasm build flags.
# Usage: benches/wasm-bench.sh [ms-per-case, default 400]
set -euo pipefail
cd "$(dirname "$0")/.."
MS=${1:-400}
command -v node >/dev/null || { echo "node (>= 20) is needed to run wasm in V8" >&2; exit 1; }
rustup target add wasm32-wasip1 >/dev/null 2>&1 || true

# The filter's core (edge-hmac-core, no proxy-wasm entry point: a WASI
# command cannot export _initialize), in separate target dirs.
cargo build -q --release -p edge-hmac-wasm-bench
RUSTFLAGS="-C target-feature=+simd128" cargo build -q --release \
  -p edge-hmac-wasm-bench --target wasm32-wasip1 --target-dir target/wasm-bench-simd128
RUSTFLAGS="-C target-feature=-simd128" cargo build -q --release \
  -p edge-hmac-wasm-bench --target wasm32-wasip1 --target-dir target/wasm-bench-nosimd

OUT=$(mktemp -d)
trap 'rm -rf "$OUT"' EXIT
target/release/edge-hmac-wasm-bench "$MS" >"$OUT/native.jsonl"
node --no-warnings benches/wasm/run.mjs target/wasm-bench-nosimd/wasm32-wasip1/release/edge-hmac-wasm-bench.wasm "$MS" >"$OUT/wasm.jsonl"
node --no-warnings benches/wasm/run.mjs target/wasm-bench-simd128/wasm32-wasip1/release/edge-hmac-wasm-bench.wasm "$MS" >"$OUT/simd.jsonl"

python3 - "$OUT" "$(node --version)" <<'PY'
import json, sys, os
d = sys.argv[1]
load = lambda n: {r["case"]: r for r in map(json.loads, open(os.path.join(d, n)))}
native, wasm, simd = load("native.jsonl"), load("wasm.jsonl"), load("simd.jsonl")
print(f"native vs wasm32-wasip1 in node {sys.argv[2]} (V8); time per operation, throughput for bodies\n")
print("| case | native | wasm | wasm +simd128 | wasm / native | simd128 gain |")
print("|---|---:|---:|---:|---:|---:|")
def fmt(r):
    ns = r["ns_per_op"]
    t = f"{ns / 1000:.2f} µs" if ns < 1e6 else f"{ns / 1e6:.2f} ms"
    return t + (f" ({r['gb_per_s']:.2f} GB/s)" if r["bytes"] >= 1024 else "")
for case in native:
    n, w, s = native[case], wasm[case], simd[case]
    print(f"| {case} | {fmt(n)} | {fmt(w)} | {fmt(s)} | {w['ns_per_op'] / n['ns_per_op']:.2f}x | {w['ns_per_op'] / s['ns_per_op']:.2f}x |")
PY
