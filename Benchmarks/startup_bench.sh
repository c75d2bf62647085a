#!/usr/bin/env bash
# Benchmarks/startup_bench.sh - start-up time of whole `xfer` processes (issue 12 goal 5: `xfer send x`
# against a running server, median < 15 ms), for one or more binaries side by side.
#
# Usage: Benchmarks/startup_bench.sh [--runs N] [--help] [BINARY...]
#
#   --runs N   runs of each measurement (default 100); the median and the 90th percentile are reported
#   BINARY     xfer binaries to compare (default: $XFER_BIN, else a release build with
#              --static-swift-stdlib, the way `make install` builds it)
#
# Environment:
#   XFER_BIN       the binary when none is given
#   SCRATCH_PATH   scratch path of the release build (default .build-bench)
#   SERVER_BIN     the server every client talks to (default: the first BINARY); one server for all
#   LOAD_MAX       1-minute load average to wait for before measuring (default 0.5)
#   LOAD_WAIT      seconds to wait for it at most (default 60)
#
# For each binary: its size, the shared libraries it loads (ldd), and the wall time of
#   version  `xfer --version` (dynamic loading, Swift runtime and argument parsing, no network)
#   send     `xfer send --server ws://127.0.0.1:PORT x` (also the event loop, the connection, the
#            upgrade, one acknowledged message and the closing handshake)
# Times come from hyperfine (-N, 5 warm-up runs) when present, else from a Python timing loop.
# The server runs on --port 0 and is killed by its PID on exit.
#
# Needs: bash >= 5, jq, Python 3; hyperfine if present.

set -euo pipefail
# shellcheck source=Benchmarks/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
export LC_ALL=C

die() { printf 'startup_bench.sh: %s\n' "$*" >&2; exit 1; }
usage_error() { printf 'startup_bench.sh: %s (see --help)\n' "$*" >&2; exit 64; }
log() { printf '%s\n' "$*" >&2; }

RUNS=100
BINARIES=()
while [[ $# -gt 0 ]]; do
    case "$1" in
    --runs)
        [[ $# -ge 2 && $2 =~ ^[1-9][0-9]*$ ]] || usage_error "--runs needs a positive number"
        RUNS=$2
        shift 2
        ;;
    --help | -h)
        usage
        exit 0
        ;;
    -*) usage_error "unknown option $1" ;;
    *)
        BINARIES+=("$1")
        shift
        ;;
    esac
done

cd "$(dirname "${BASH_SOURCE[0]}")/.."
if [[ ${#BINARIES[@]} -eq 0 ]]; then
    if [[ -n ${XFER_BIN:-} ]]; then
        BINARIES=("$XFER_BIN")
    else
        scratch=${SCRATCH_PATH:-.build-bench}
        log "building: swift build -c release --static-swift-stdlib --product xfer --scratch-path $scratch"
        swift build -c release --static-swift-stdlib --product xfer --scratch-path "$scratch" >&2
        BINARIES=("$(swift build -c release --static-swift-stdlib --scratch-path "$scratch" --show-bin-path)/xfer")
    fi
fi
for binary in "${BINARIES[@]}"; do
    [[ -x $binary ]] || die "not an executable: $binary"
done

work=$(make_workdir xfer-startup)
server_pid=""
cleanup() {
    if [[ -n $server_pid ]]; then kill "$server_pid" 2>/dev/null || true; fi
    rm -rf "$work"
}
trap cleanup EXIT

server_bin=${SERVER_BIN:-${BINARIES[0]}}
"$server_bin" serve --port 0 --dir "$work/dir" --ping-timeout 600 >"$work/serve.jsonl" 2>"$work/serve.err" </dev/null &
server_pid=$!
wait_listening "$server_pid" "$work/serve.jsonl" "$work/serve.err"
url="ws://127.0.0.1:$SERVER_PORT"

load_max=${LOAD_MAX:-0.5}
for ((waited = 0; waited < ${LOAD_WAIT:-60}; waited++)); do
    load=$(cut -d' ' -f1 /proc/loadavg)
    awk -v l="$load" -v m="$load_max" 'BEGIN { exit !(l <= m) }' && break
    sleep 1
done
log "1-minute load average at start: $(cut -d' ' -f1 /proc/loadavg) (cores: $(nproc))"

# measure NAME COMMAND...: prints "median p90" in milliseconds.
measure() {
    local name=$1
    shift
    if command -v hyperfine >/dev/null; then
        hyperfine -N --warmup 5 --runs "$RUNS" --export-json "$work/$name.json" -- "$(printf '%q ' "$@")" \
            >/dev/null 2>&1 || die "hyperfine failed for: $*"
        jq -r '.results[0].times | sort | "\(.[length / 2 | floor] * 1000) \(.[length * 9 / 10 | floor] * 1000)"' \
            "$work/$name.json"
    else
        python3 - "$RUNS" "$@" <<'PY'
import subprocess, sys, time
runs, command = int(sys.argv[1]), sys.argv[2:]
for _ in range(5):
    subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
times = []
for _ in range(runs):
    start = time.perf_counter()
    subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    times.append((time.perf_counter() - start) * 1000)
times.sort()
print(times[len(times) // 2], times[len(times) * 9 // 10])
PY
    fi
}

printf '%-60s %8s %5s %16s %16s\n' "binary" "MB" "libs" "version ms" "send ms" >&2
printf '%-60s %8s %5s %16s %16s\n' "" "" "" "median / p90" "median / p90" >&2
index=0
for binary in "${BINARIES[@]}"; do
    index=$((index + 1))
    size=$(stat -c %s "$binary")
    libs=$(ldd "$binary" 2>/dev/null | grep -c '=>' || true)
    "$binary" send --server "$url" x >/dev/null || die "$binary send failed against $url"
    read -r version_median version_p90 < <(measure "version$index" "$binary" --version)
    read -r send_median send_p90 < <(measure "send$index" "$binary" send --server "$url" x)
    printf '%-60s %8s %5s %16s %16s\n' "$binary" "$(fmt "$(calc 's / 1e6' s="$size")" 1)" "$libs" \
        "$(fmt "$version_median" 1) / $(fmt "$version_p90" 1)" "$(fmt "$send_median" 1) / $(fmt "$send_p90" 1)" >&2
    if awk -v m="$send_median" 'BEGIN { exit !(m < 15) }'; then
        log "  send median < 15 ms: met"
    else
        log "  send median < 15 ms: NOT met"
    fi
done
