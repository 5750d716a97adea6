#!/usr/bin/env bash
# The shared nonce store's cost, side by side with the per-process replay
# table: GET with a fresh nonce per request (`edge-hmac load --nonce`), in an
# open loop at a fixed rate far below capacity (RATE, default 1000/s: five
# processes share two cores, so latency is measured without queueing), for
# both builds of the filter:
#
#   local  1w  the per-process table only (1 Envoy worker)
#   store  1w  every nonce claimed in Redis through `edge-hmac nonce-store`
#   local  2w / store 2w   the same with 2 Envoy workers
#   pair       two Envoy processes (1 worker each) sharing the store, each
#              loaded at RATE/2 (the replicas case)
#
# Reported per case (median of ROUNDS interleaved rounds): p50 and p99
# latency (from each request's scheduled start), Envoy CPU per request, the
# nonce store's CPU per request, store claims per second; then the same
# Envoys saturated (closed loop, SATURATE connections per Envoy, for
# SAT_DURATION): throughput and CPU per request. Redis's own CPU is
# left out (another process on the same two cores; see docs/benchmarks.md).
#
# Usage: benches/nonce-store.sh     # RATE=1000 DURATION=5s ROUNDS=3
# Needs: make, cargo, python3, redis-server (apt-get install redis-server).
# Output: a Markdown table on stdout and OUT/nonce-store.tsv (every round).
set -euo pipefail

RATE=${RATE:-1000}
DURATION=${DURATION:-5s}
WARMUP=${WARMUP:-1s}
ROUNDS=${ROUNDS:-3}
SATURATE=${SATURATE:-8}
SAT_DURATION=${SAT_DURATION:-3s}
BASE_PORT=${BASE_PORT:-18300}

# shellcheck source=benches/common.sh
source "$(dirname "$0")/common.sh"

command -v redis-server >/dev/null || { echo "redis-server is needed: make redis" >&2; exit 1; }
make -s wasm module venv >/dev/null
cargo build -q --release -p edge-hmac
EDGE=$ROOT/target/release/edge-hmac
ENVOY=${ENVOY_BIN:-$ROOT/.venv/bin/envoy}
# Private copies: a rebuild during the run must not change what is loaded.
cp target/wasm32-wasip1/release/edge_hmac_filter.wasm target/module/libedge-hmac.so "$WORK/"
WASM=$WORK/edge_hmac_filter.wasm
MODULE=$WORK/libedge-hmac.so

export HMAC_SECRET="bench-$(python3 -c 'import secrets; print(secrets.token_hex(24))')"
export HMAC_ENVIRONMENT=dev
FILTER_ARGS=(--clock-skew 30 --nonce-ttl 60 --nonce-cache-max-entries 1830000 --require-nonce)

UPSTREAM=$((BASE_PORT + 90))
REDIS=$((BASE_PORT + 91))
STORE=$((BASE_PORT + 92))
"$EDGE" echo-upstream --listen "127.0.0.1:$UPSTREAM" 2>/dev/null &
PIDS+=($!)
redis-server --port "$REDIS" --bind 127.0.0.1 --save "" --appendonly no \
  --maxmemory-policy noeviction --dir "$WORK" >"$WORK/redis.log" &
PIDS+=($!)
"$EDGE" nonce-store --listen "127.0.0.1:$STORE" --redis-url "redis://127.0.0.1:$REDIS" 2>"$WORK/store.log" &
STORE_PID=$!
PIDS+=($STORE_PID)
for _ in $(seq 100); do
  python3 -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:$STORE/readyz', timeout=1)" 2>/dev/null && break
  sleep 0.1
done

# start NAME PORT WORKERS [render args...]: listeners edge_hmac (wasm) on
# PORT and edge_hmac_native on PORT+4; sets REAL_PID_<NAME>.
start() {
  local name=$1 port=$2 workers=$3 admin=$(($2 + 9))
  shift 3
  "$EDGE" render envoy --listen "127.0.0.1:$port" --admin "127.0.0.1:$admin" \
    --upstream "127.0.0.1:$UPSTREAM" --wasm "$WASM" --with-native "$MODULE" "${FILTER_ARGS[@]}" "$@" \
    -o "$WORK/$name.yaml"
  run_envoy "$name" "$admin" "$workers"
}
S=(--nonce-store-address "127.0.0.1:$STORE")
start local1 "$BASE_PORT" 1
start store1 $((BASE_PORT + 10)) 1 "${S[@]}"
start local2 $((BASE_PORT + 20)) 2
start store2 $((BASE_PORT + 30)) 2 "${S[@]}"
start pairA $((BASE_PORT + 40)) 1 "${S[@]}"
start pairB $((BASE_PORT + 50)) 1 "${S[@]}"
declare -A PORT=([local1]=$BASE_PORT [store1]=$((BASE_PORT + 10)) [local2]=$((BASE_PORT + 20))
  [store2]=$((BASE_PORT + 30)) [pairA]=$((BASE_PORT + 40)) [pairB]=$((BASE_PORT + 50)))

ticks() { awk '{s += $14 + $15} END {print s}' "$@"; }
stat_of() { local v="REAL_PID_$1"; echo "/proc/${!v}/stat"; }
load() { # envoy build rate|closed duration -> JSON
  local port=${PORT[$1]} mode=(--rate "$3" -c 64)
  [ "$2" = native ] && port=$((port + 4))
  [ "$3" = closed ] && mode=(-c "$SATURATE")
  "$EDGE" load --url "http://127.0.0.1:$port/v1/orders?limit=10" --secret-env HMAC_SECRET --env dev \
    --nonce "${mode[@]}" --duration "$4" --output json
}

RESULTS=$OUT/nonce-store.tsv
: >"$RESULTS"
for round in $(seq "$ROUNDS"); do
  for build in wasm native; do
    for case in local1 store1 local2 store2 pair; do
      echo "  round $round: $build $case" >&2
      envoys=("$case")
      [ "$case" = pair ] && envoys=(pairA pairB)
      stats=()
      for e in "${envoys[@]}"; do stats+=("$(stat_of "$e")"); done
      for e in "${envoys[@]}"; do load "$e" "$build" "$RATE" "$WARMUP" >/dev/null; done
      e0=$(ticks "${stats[@]}")
      s0=$(ticks "/proc/$STORE_PID/stat")
      rate=$RATE
      [ "$case" = pair ] && rate=$((RATE / 2))
      for e in "${envoys[@]}"; do load "$e" "$build" "$rate" "$DURATION" >"$WORK/$e.json" & done
      wait "${!}" 2>/dev/null || true
      sleep 0.2
      e1=$(ticks "${stats[@]}")
      s1=$(ticks "/proc/$STORE_PID/stat")
      # Saturated (closed loop, SATURATE connections per Envoy): CPU per
      # request without the idle wake-ups a low open-loop rate pays.
      c0=$(ticks "${stats[@]}")
      t0=$(ticks "/proc/$STORE_PID/stat")
      for e in "${envoys[@]}"; do load "$e" "$build" closed "$SAT_DURATION" >"$WORK/$e.sat.json" & done
      wait "${!}" 2>/dev/null || true
      sleep 0.2
      c1=$(ticks "${stats[@]}")
      t1=$(ticks "/proc/$STORE_PID/stat")
      python3 - "$round" "$build" "$case" "$e0" "$e1" "$s0" "$s1" "$(getconf CLK_TCK)" \
        "$c0" "$c1" "$t0" "$t1" "${envoys[@]/#/$WORK/}" >>"$RESULTS" <<'EOF'
import json, sys
round_, build, case, e0, e1, s0, s1, hz, c0, c1, t0, t1 = sys.argv[1:13]
runs = [json.load(open(p + ".json")) for p in sys.argv[13:]]
sat = [json.load(open(p + ".sat.json")) for p in sys.argv[13:]]
sat_n = sum(r["requests"] for r in sat)
sat_ok = sum(c for r in sat for s, c in r["status"].items() if s == "200")
sat_rps = sum(r["rps"] for r in sat)
n = sum(r["requests"] for r in runs)
ok = sum(c for r in runs for s, c in r["status"].items() if s == "200")
dur = max(r["duration_s"] for r in runs)
p50 = max(r["latency_us"]["p50"] for r in runs)
p99 = max(r["latency_us"]["p99"] for r in runs)
us = lambda a, b, n: (int(b) - int(a)) / int(hz) * 1e6 / max(n, 1)
print("\t".join(map(str, [round_, build, case, n, n - ok + sat_n - sat_ok, p50, p99,
      f"{us(e0, e1, n):.1f}", f"{us(s0, s1, n):.1f}", f"{n / dur:.0f}",
      f"{sat_rps:.0f}", f"{us(c0, c1, sat_n):.1f}", f"{us(t0, t1, sat_n):.1f}"])))
EOF
    done
  done
done

python3 - "$RESULTS" "$RATE" "$DURATION" "$ROUNDS" "$("$ENVOY" --version 2>/dev/null | grep -o '[0-9]*\.[0-9]*\.[0-9]*' | head -1)" <<'EOF'
import statistics, sys
path, rate, duration, rounds, envoy = sys.argv[1:]
rows = [l.rstrip("\n").split("\t") for l in open(path) if l.strip()]
med = {}
for build in ("wasm", "native"):
    for case in ("local1", "store1", "local2", "store2", "pair"):
        rs = [r for r in rows if r[1] == build and r[2] == case]
        if not rs:
            continue
        col = lambda i: statistics.median(float(r[i]) for r in rs)
        med[build, case] = dict(bad=sum(int(r[4]) for r in rs), p50=col(5), p99=col(6),
                                cpu=col(7), store=col(8), cps=col(9), srps=col(10),
                                scpu=col(11), sstore=col(12))
print(f"Envoy {envoy}, GET with a fresh nonce per request, open loop at {rate}/s "
      f"for {duration}, median of {rounds} rounds (edge-hmac load --nonce --rate)\n")
print("| build | case | p50 µs | p99 µs | Envoy CPU µs/req | store CPU µs/req | claims/s | saturated req/s | saturated Envoy CPU µs/req | saturated store CPU µs/req | non-200 |")
print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
names = {"local1": "local table, 1 worker", "store1": "store, 1 worker",
         "local2": "local table, 2 workers", "store2": "store, 2 workers",
         "pair": "store, 2 Envoys (1 worker each)"}
for (build, case), m in med.items():
    claims = m["cps"] if case != "local1" and case != "local2" else 0
    store = f'{m["store"]:.1f}' if claims else "–"
    sstore = f'{m["sstore"]:.1f}' if claims else "–"
    print(f'| {build} | {names[case]} | {m["p50"]:.0f} | {m["p99"]:.0f} | {m["cpu"]:.1f} | {store} | {claims:.0f} | {m["srps"]:.0f} | {m["scpu"]:.1f} | {sstore} | {m["bad"]} |')
print()
for build in ("wasm", "native"):
    for workers in ("1", "2"):
        l, s = med.get((build, "local" + workers)), med.get((build, "store" + workers))
        if l and s:
            print(f'- {build}, {workers} worker(s): added p50 {s["p50"] - l["p50"]:+.0f} µs '
                  f'(goal ≤ 1000), p99 {s["p99"] - l["p99"]:+.0f} µs; Envoy CPU '
                  f'{s["cpu"] / l["cpu"]:.2f}× the local-only nonce path at {rate}/s, '
                  f'{s["scpu"] / l["scpu"]:.2f}× saturated (goal ≤ 1.3×)')
EOF
