#!/usr/bin/env bash
# Envoy with and without the filter — both builds of it — and its ext_authz
# peer, side by side, on loopback.
#
# One Envoy (1 worker thread) with six listeners in front of the same echo
# upstream: `plain` (no filter), `noop` (a wasm filter that only says
# Continue: the floor of any wasm filter), `noop_native` (a native dynamic
# module that only says Continue: the floor of any native module),
# `edge_hmac` (this filter in V8), `edge_hmac_native` (the same core as a
# native module) and `ext_authz` (Envoy's ext_authz filter asking
# benches/ext-authz, an HTTP service verifying with this same core: the best
# case of an Envoy Gateway SecurityPolicy extAuth).
#
# Requests come from `edge-hmac load`, which signs every request afresh (new
# timestamp, and with a nonce case a new nonce), bounded in time. Cases: GET
# without body, POST 1 KiB, 64 KiB and 1 MiB, and GET with a fresh nonce.
# EXTRA=1 adds the earlier cases: POST 64 KiB UNSIGNED-PAYLOAD, GET in the
# RFC 9421 profile, a flood of invalid signatures, and nonces on a second
# Envoy with NONCE_WORKERS workers. wrk repeats one unsigned GET on `plain`
# as a check of the load generator itself. Then benches/nonce-store.sh: the
# shared nonce store against the per-process table (NONCE_STORE=0 skips it).
#
# Each case and listener is measured twice: throughput and CPU per request
# (Envoy, plus the ext_authz service) with CONNECTIONS connections
# (saturated), and latency with one connection (no queueing, so p50 is the
# per-request cost). Listeners run interleaved for ROUNDS rounds; the tables
# show the median round and the spread. criterion's SHA-256 of 64 KiB (the
# physical floor of the 64 KiB case) is measured first, for the targets.
#
# Output: a Markdown table and the targets on stdout, and in OUT (default
# target/envoy-load): results.tsv (every round), envoy-load.md,
# throughput.svg and latency.svg (drawn from the same medians by
# benches/plot.py).
#
# Usage:
#   benches/envoy-load.sh           # DURATION=3s LATENCY_DURATION=2s CONNECTIONS=16 ROUNDS=5
#   DURATION=5s ROUNDS=7 EXTRA=1 benches/envoy-load.sh
# Needs: make, cargo, python3, wrk (installed from apt when missing and root).
# Every run is bounded: WARMUP + DURATION + LATENCY_DURATION per listener and case.
set -euo pipefail

DURATION=${DURATION:-3s}
LATENCY_DURATION=${LATENCY_DURATION:-2s}
CONNECTIONS=${CONNECTIONS:-16}
WARMUP=${WARMUP:-1s}
ROUNDS=${ROUNDS:-5}
EXTRA=${EXTRA:-0}
NONCE_WORKERS=${NONCE_WORKERS:-2}
BASE_PORT=${BASE_PORT:-18100}
UPSTREAM_PORT=${UPSTREAM_PORT:-18180}
AUTHZ_PORT=${AUTHZ_PORT:-18185}
ADMIN_PORT=${ADMIN_PORT:-18190}

# shellcheck source=benches/common.sh
source "$(dirname "$0")/common.sh"

if ! command -v wrk >/dev/null; then
  if [ "$(id -u)" = 0 ]; then
    apt-get install -y -q wrk >/dev/null
  else
    echo "wrk is needed: sudo apt-get install wrk" >&2
    exit 1
  fi
fi

echo "building (release filters and modules, loader, ext_authz service)..." >&2
make -s wasm module venv >/dev/null
cargo build -q --release -p edge-hmac-noop-filter --target wasm32-wasip1
cargo build -q --release -p edge-hmac -p edge-hmac-ext-authz -p edge-hmac-noop-module
EDGE=$ROOT/target/release/edge-hmac
AUTHZ=$ROOT/target/release/edge-hmac-ext-authz
ENVOY=${ENVOY_BIN:-$ROOT/.venv/bin/envoy}
WASM=$ROOT/target/wasm32-wasip1/release/edge_hmac_filter.wasm
NOOP=$ROOT/target/wasm32-wasip1/release/edge_hmac_noop_filter.wasm
MODULE=$ROOT/target/module/libedge-hmac.so
NOOP_MODULE=$ROOT/target/release/libedge_hmac_noop_module.so

# The floor of the 64 KiB case: criterion's SHA-256 of the same body (plus
# HMAC's outer block), natively, measured now on this machine.
echo "criterion: verify/sha256_floor/64KiB..." >&2
cargo bench -q -p edge-hmac-benches --bench verify -- 'verify/sha256_floor/64KiB' >/dev/null 2>&1
SHA256_64K_US=$(python3 -c 'import json, sys
e = json.load(open(sys.argv[1]))
print(round(e["median"]["point_estimate"] / 1000, 1))' target/criterion/verify/sha256_floor/64KiB/new/estimates.json)
echo "SHA-256 of 64 KiB: $SHA256_64K_US us" >&2

export HMAC_SECRET="bench-$(python3 -c 'import secrets; print(secrets.token_hex(24))')"
export HMAC_ENVIRONMENT=dev
python3 -c 'import secrets; print("wrong-" + secrets.token_hex(24), end="")' >"$WORK/wrong.key"

# The replay table holds every nonce of a run: a TTL of 60 s and room for
# 2 x 15,000 nonces/s x 61 s (docs/replay-cache.md), far above this rate.
FILTER_ARGS=(--max-body-bytes 1048576 --unsigned-payload-path /v1/stream --formats v1,rfc9421
  --clock-skew 30 --nonce-ttl 60 --nonce-cache-max-entries 1830000)
AUTHZ_CONFIG='{"max_body_bytes":1048576,"unsigned_payload_paths":["/v1/stream"],"formats":["v1","rfc9421"],"clock_skew_seconds":30,"nonce_ttl_seconds":60,"nonce_cache_max_entries":1830000}'

"$EDGE" echo-upstream --listen "127.0.0.1:$UPSTREAM_PORT" 2>/dev/null &
PIDS+=($!)
"$AUTHZ" --listen "127.0.0.1:$AUTHZ_PORT" --config "$AUTHZ_CONFIG" 2>"$WORK/authz.log" &
AUTHZ_PID=$!
PIDS+=($AUTHZ_PID)

# start_envoy NAME BASE_PORT ADMIN_PORT CONCURRENCY [render args...]: sets
# REAL_PID_<NAME> to the Envoy process (the wheel's python wrapper execs or
# forks it).
start_envoy() {
  local name=$1 base=$2 admin=$3 workers=$4
  shift 4
  "$EDGE" render envoy --listen "127.0.0.1:$base" --admin "127.0.0.1:$admin" \
    --upstream "127.0.0.1:$UPSTREAM_PORT" --wasm "$WASM" "${FILTER_ARGS[@]}" "$@" \
    -o "$WORK/$name.yaml"
  run_envoy "$name" "$admin" "$workers"
}
start_envoy one "$BASE_PORT" "$ADMIN_PORT" 1 --with-baselines "$NOOP" --with-ext-authz "127.0.0.1:$AUTHZ_PORT" \
  --with-native "$MODULE" --with-noop-module "$NOOP_MODULE"
MULTI_BASE=$((BASE_PORT + 50))
[ "$EXTRA" = 1 ] && start_envoy multi "$MULTI_BASE" $((ADMIN_PORT + 1)) "$NONCE_WORKERS"

declare -A PORT=([edge_hmac]=$BASE_PORT [plain]=$((BASE_PORT + 1)) [noop]=$((BASE_PORT + 2))
  [ext_authz]=$((BASE_PORT + 3)) [edge_hmac_native]=$((BASE_PORT + 4)) [noop_native]=$((BASE_PORT + 5))
  [edge_hmac_${NONCE_WORKERS}w]=$MULTI_BASE)
declare -A ENVOY_OF=([edge_hmac]=one [plain]=one [noop]=one [ext_authz]=one [edge_hmac_native]=one
  [noop_native]=one [edge_hmac_${NONCE_WORKERS}w]=multi)

# CPU ticks of the Envoy serving LISTENER, plus the ext_authz service's
# (idle unless the ext_authz listener is loaded).
cpu_ticks() { # listener
  local var="REAL_PID_${ENVOY_OF[$1]}"
  awk '{s += $14 + $15} END {print s}' "/proc/${!var}/stat" "/proc/$AUTHZ_PID/stat"
}

head -c 1024 /dev/urandom >"$WORK/1k.bin"
head -c 65536 /dev/urandom >"$WORK/64k.bin"
head -c 1048576 /dev/urandom >"$WORK/1m.bin"

RESULTS=$OUT/results.tsv
: >"$RESULTS"
load_stats() { # edge-hmac load JSON -> "rps total p50_us p99_us non2xx"
  python3 -c '
import json, sys
r = json.load(sys.stdin)
ok = sum(n for s, n in r["status"].items() if s.isdigit() and 200 <= int(s) < 300)
l = r["latency_us"]
print("%.0f %d %d %d %d" % (r["rps"], r["requests"], l["p50"], l["p99"], r["requests"] - ok))'
}
wrk_stats() { # wrk output -> "rps total p50_us p99_us non2xx"
  python3 -c '
import re, sys
out = sys.stdin.read()
def us(v, u): return float(v) * {"us": 1.0, "ms": 1000.0, "s": 1e6}[u]
rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
total = int(re.search(r"(\d+) requests in", out).group(1))
p50 = us(*re.search(r"50%\s+([\d.]+)(us|ms|s)", out).groups())
p99 = us(*re.search(r"99%\s+([\d.]+)(us|ms|s)", out).groups())
bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
print(f"{rps:.0f} {total} {p50:.0f} {p99:.0f} {bad.group(1) if bad else 0}")'
}
# One row of results.tsv from a saturated and a one-connection measurement.
record() { # round case listener before after "rps total p50 p99 bad" "x x lp50 lp99 x"
  local round=$1 case=$2 listener=$3 before=$4 after=$5 sat=$6 lat=$7 rps total p50 p99 bad lp50 lp99 x cpu
  read -r rps total p50 p99 bad <<<"$sat"
  read -r x x lp50 lp99 x <<<"$lat"
  cpu=$(python3 -c "print(f'{($after - $before) / $(getconf CLK_TCK) * 1e6 / max($total, 1):.1f}')")
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$round" "$case" "$listener" "$rps" "$cpu" "$bad" "$lp50" "$lp99" "$p99" >>"$RESULTS"
}
run_load() { # round case listener path [edge-hmac load args...]
  local round=$1 case=$2 listener=$3 path=$4
  shift 4
  local url="http://127.0.0.1:${PORT[$listener]}$path" key=(--secret-env HMAC_SECRET --env dev)
  [ "${INVALID:-}" = 1 ] && key=(--secret-file "$WORK/wrong.key" --env dev)
  "$EDGE" load --url "$url" "${key[@]}" "$@" -c "$CONNECTIONS" --duration "$WARMUP" --output json >/dev/null
  local before after sat lat
  before=$(cpu_ticks "$listener")
  sat=$("$EDGE" load --url "$url" "${key[@]}" "$@" -c "$CONNECTIONS" --duration "$DURATION" --output json | load_stats)
  after=$(cpu_ticks "$listener")
  lat=$("$EDGE" load --url "$url" "${key[@]}" "$@" -c 1 --duration "$LATENCY_DURATION" --output json | load_stats)
  record "$round" "$case" "$listener" "$before" "$after" "$sat" "$lat"
}
run_wrk() { # round case listener path
  local round=$1 case=$2 listener=$3 url="http://127.0.0.1:${PORT[$3]}$4"
  wrk -t1 -c"$CONNECTIONS" -d"$WARMUP" "$url" >/dev/null
  local before after sat lat
  before=$(cpu_ticks "$listener")
  sat=$(wrk -t1 -c"$CONNECTIONS" -d"$DURATION" --latency "$url" | wrk_stats)
  after=$(cpu_ticks "$listener")
  lat=$(wrk -t1 -c1 -d"$LATENCY_DURATION" --latency "$url" | wrk_stats)
  record "$round" "$case" "$listener" "$before" "$after" "$sat" "$lat"
}

ALL=(plain noop noop_native edge_hmac edge_hmac_native ext_authz)
for round in $(seq "$ROUNDS"); do
  echo "  round $round: GET/0 unsigned (wrk) -> plain" >&2
  run_wrk "$round" "GET/0 unsigned (wrk)" plain "/v1/orders?limit=10"
  for spec in "GET/0|/v1/orders?limit=10|" "POST/1KiB|/v1/orders|-X POST -d @$WORK/1k.bin" \
    "POST/64KiB|/v1/upload|-X POST -d @$WORK/64k.bin" "POST/1MiB|/v1/upload|-X POST -d @$WORK/1m.bin"; do
    IFS='|' read -r case path extra <<<"$spec"
    read -r -a extra <<<"$extra"
    for listener in "${ALL[@]}"; do
      echo "  round $round: $case -> $listener" >&2
      run_load "$round" "$case" "$listener" "$path" "${extra[@]}"
    done
  done
  for listener in plain edge_hmac edge_hmac_native ext_authz; do
    echo "  round $round: GET/0 nonce -> $listener" >&2
    run_load "$round" "GET/0 nonce" "$listener" "/v1/orders?limit=10" --nonce
  done
  [ "$EXTRA" = 1 ] || continue
  for listener in plain noop edge_hmac edge_hmac_native ext_authz; do
    echo "  round $round: POST/64KiB unsigned-payload -> $listener" >&2
    run_load "$round" "POST/64KiB unsigned-payload" "$listener" /v1/stream -X POST -d "@$WORK/64k.bin" --unsigned-payload
  done
  for case in "GET/0" "GET/0 nonce"; do
    args=()
    [ "$case" = "GET/0 nonce" ] && args=(--nonce)
    echo "  round $round: $case -> edge_hmac, $NONCE_WORKERS workers" >&2
    run_load "$round" "$case" "edge_hmac_${NONCE_WORKERS}w" "/v1/orders?limit=10" "${args[@]}"
  done
  for listener in edge_hmac edge_hmac_native ext_authz; do
    echo "  round $round: GET/0 rfc9421 -> $listener" >&2
    run_load "$round" "GET/0 rfc9421" "$listener" "/v1/orders?limit=10" --format rfc9421
    echo "  round $round: GET/0 invalid sig -> $listener" >&2
    INVALID=1 run_load "$round" "GET/0 invalid sig" "$listener" "/v1/orders?limit=10"
  done
done

SHA256_64K_US=$SHA256_64K_US python3 benches/plot.py "$RESULTS" "$OUT" \
  "Envoy $("$ENVOY" --version 2>/dev/null | grep -o '[0-9]*\.[0-9]*\.[0-9]*' | head -1) on loopback (1 worker); requests from edge-hmac load, each signed afresh; throughput: -c $CONNECTIONS for $DURATION; latency: -c 1 for $LATENCY_DURATION; median of $ROUNDS interleaved rounds (spread: min-max of the rounds); CPU: Envoy + ext_authz service; SHA-256 of 64 KiB (criterion): $SHA256_64K_US us"

# The shared nonce store's cases (GET with a fresh nonce, local table vs the
# store, 1 and 2 workers, two Envoys sharing it) run on Envoys of their own,
# once these are stopped: benches/nonce-store.sh (NONCE_STORE=0 skips them).
if [ "${NONCE_STORE:-1}" = 1 ]; then
  cleanup
  trap - EXIT
  OUT=$OUT "$ROOT/benches/nonce-store.sh"
fi
