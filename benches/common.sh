# shellcheck shell=bash
# Shared by the Envoy benchmark scripts (sourced): the checkout as ROOT, OUT
# for results, a scratch WORK dir, and background processes (PIDS) stopped
# and WORK removed on exit; `run_envoy` starts an Envoy on a rendered
# bootstrap and waits until it is ready.

cd "$(dirname "$0")/.."
ROOT=$PWD
OUT=${OUT:-$ROOT/target/envoy-load}
mkdir -p "$OUT"
WORK=$(mktemp -d)
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

# run_envoy NAME ADMIN_PORT WORKERS: Envoy ($ENVOY) on $WORK/NAME.yaml with
# WORKERS worker threads, logging to $WORK/NAME.log; waits for the admin
# /ready (the log is shown and the script ends if it never comes) and sets
# REAL_PID_<NAME> to the Envoy process (the wheel's python wrapper execs or
# forks it).
run_envoy() {
  local name=$1 admin=$2 workers=$3
  "$ENVOY" -c "$WORK/$name.yaml" --concurrency "$workers" --use-dynamic-base-id -l warning \
    --log-path "$WORK/$name.log" &
  local pid=$!
  PIDS+=($pid)
  ready() { python3 -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:$admin/ready', timeout=1)" 2>/dev/null; }
  for _ in $(seq 100); do ready && break; sleep 0.1; done
  ready || { cat "$WORK/$name.log" >&2; exit 1; }
  printf -v "REAL_PID_$name" '%s' "$(pgrep -P "$pid" envoy || echo "$pid")"
}
