#!/usr/bin/env bash
# Runs every fuzz target with its seeds and dictionary (cargo +nightly fuzz,
# libFuzzer with AddressSanitizer). Usage: fuzz/run.sh [SECONDS_PER_TARGET] [RUNS]
#   fuzz/run.sh 10            a short smoke run of each target (make fuzz-smoke)
#   fuzz/run.sh 600 10000000  the long run recorded in docs/fuzzing.md
# FUZZ_TARGETS="a b" limits the run to those targets.
# Needs the nightly toolchain and cargo-fuzz (`cargo +nightly install cargo-fuzz --locked`).
# Exits non-zero on a build failure, a crash, a leak or a timeout; a failing
# input is left in fuzz/artifacts/<target>/.
set -euo pipefail
cd "$(dirname "$0")/.."
secs="${1:-10}"
runs="${2:--1}"
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
for t in ${FUZZ_TARGETS:-hostmap verify_headers config_compile body_chunks secret_json raw_request exempt_path}; do
    dict=()
    case "$t" in
        hostmap | verify_headers) dict=(-dict=fuzz/dict/headers.dict) ;;
        config_compile | secret_json) dict=(-dict=fuzz/dict/config.dict) ;;
        raw_request) dict=(-dict=fuzz/dict/http.dict) ;;
        exempt_path) dict=(-dict=fuzz/dict/paths.dict) ;;
    esac
    mkdir -p "fuzz/corpus/$t"
    echo "fuzz: $t (${secs}s, runs ${runs})" >&2
    status=0
    cargo +nightly fuzz run "$t" "fuzz/corpus/$t" "fuzz/seeds/$t" -- \
        -max_total_time="$secs" -runs="$runs" -rss_limit_mb=2048 -timeout=10 "${dict[@]}" \
        >"$log" 2>&1 || status=$?
    grep -E '^#[0-9]+.*(DONE|INITED)|^Done [0-9]+ runs' "$log" || true
    if [[ $status -ne 0 ]]; then
        tail -40 "$log" >&2
        echo "fuzz: $t failed (exit $status); a failing input is in fuzz/artifacts/$t/ (reproduce: cargo +nightly fuzz run $t <file>)" >&2
        exit 1
    fi
done
