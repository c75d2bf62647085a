#!/usr/bin/env bash
# Benchmarks/abuse_bench.sh - what hostile clients cost one `xfer serve` (issue 10).
#
# Two runs against a fresh server each: a quiet one, and one under abuse (Benchmarks/abuse_peers.py):
# IDLE idle sockets (10,000; upgraded, then silent, spread over source addresses 127.0.0.2-11 so that the
# per-address limit lets them in), STALLED upgrades that never finish (500; reopened whenever the server drops
# them) and FLOODERS plain clients that send texts and never read (5). In both runs a normal `xfer send` loop
# (SENDS messages, one process each) and one UPLOAD_MIB MiB upload (256) run; the script prints the server's
# peak RSS (VmHWM), the send latency p50/p95 in ms and the upload time, for both runs, and checks the goals:
# peak RSS under abuse within the documented limits, normal p50 within 2x of the quiet run.
#
# Options: --json prints one JSON object instead of the table; --help prints this.
# Environment: XFER_BIN (a built xfer; default: a release build in SCRATCH_PATH, default .build-bench),
# IDLE, STALLED, FLOODERS, SENDS (default 50), UPLOAD_MIB, BENCH_TMPDIR.
# Needs python3, jq; raises the open-file limit to 20000 (the hard limit here).
set -euo pipefail
BENCH_DIR=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$BENCH_DIR/.." && pwd)
# shellcheck source=Benchmarks/common.sh
source "$BENCH_DIR/common.sh"
log() { printf 'abuse_bench: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }
PROBLEMS=()
JSON=0
for arg in "$@"; do
    case $arg in
        --json) JSON=1 ;;
        --help | -h) usage; exit 0 ;;
        *) die "unknown argument $arg (see --help)" ;;
    esac
done
IDLE=${IDLE:-10000}
STALLED=${STALLED:-500}
FLOODERS=${FLOODERS:-5}
SENDS=${SENDS:-50}
UPLOAD_MIB=${UPLOAD_MIB:-256}
ulimit -n 20000 2>/dev/null || log "could not raise the open-file limit; IDLE may not fit"

if [[ -n ${XFER_BIN:-} ]]; then
    XFER=$XFER_BIN
else
    SCRATCH_PATH=${SCRATCH_PATH:-.build-bench}
    log "building xfer: swift build -c release --scratch-path $SCRATCH_PATH"
    (cd "$REPO" && swift build -c release --scratch-path "$SCRATCH_PATH" >&2) || die "release build failed"
    XFER=$(cd "$REPO" && swift build -c release --scratch-path "$SCRATCH_PATH" --show-bin-path)/xfer
fi

WORK=$(make_workdir abuse-bench)
PIDS=()
cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    rm -rf "$WORK"
}
trap cleanup EXIT
head -c $((UPLOAD_MIB << 20)) /dev/urandom >"$WORK/upload.bin"

declare -A R
# run NAME ABUSE(0|1): one server, the normal workload, with or without the abuse.
run() {
    local name=$1 abuse=$2 server_pid abuse_pid="" i start end
    mkdir -p "$WORK/$name/dir"
    "$XFER" serve --port 0 --dir "$WORK/$name/dir" --max-connections 12000 \
        >"$WORK/$name/serve.jsonl" 2>"$WORK/$name/serve.err" </dev/null &
    server_pid=$!
    PIDS+=("$server_pid")
    wait_listening "$server_pid" "$WORK/$name/serve.jsonl" "$WORK/$name/serve.err"
    if ((abuse)); then
        python3 "$BENCH_DIR/abuse_peers.py" "$SERVER_PORT" "$IDLE" "$STALLED" "$FLOODERS" 100000 \
            >"$WORK/$name/abuse.jsonl" 2>"$WORK/$name/abuse.err" &
        abuse_pid=$!
        PIDS+=("$abuse_pid")
        for ((i = 0; i < 1200; i++)); do
            grep -q ready "$WORK/$name/abuse.jsonl" 2>/dev/null && break
            kill -0 "$abuse_pid" 2>/dev/null || die "abuse_peers.py failed: $(cat "$WORK/$name/abuse.err")"
            sleep 0.1
        done
        log "$name: abuse ready: $(cat "$WORK/$name/abuse.jsonl")"
    fi
    start=$(date +%s.%N)
    "$XFER" upload --server "127.0.0.1:$SERVER_PORT" "$WORK/upload.bin" >"$WORK/$name/upload.jsonl" &
    local upload_pid=$!
    : >"$WORK/$name/latency.txt"
    for ((i = 0; i < SENDS; i++)); do
        "$XFER" send --server "127.0.0.1:$SERVER_PORT" "normal $i" \
            | jq -r 'select(.event == "status") | .latency_ms' >>"$WORK/$name/latency.txt" \
            || problem "$name: send $i failed"
    done
    wait "$upload_pid" || problem "$name: upload failed"
    end=$(date +%s.%N)
    R[${name}_upload_seconds]=""
    if jq -e 'select(.event == "status") | .ok' "$WORK/$name/upload.jsonl" >/dev/null; then
        R[${name}_upload_seconds]=$(elapsed "$start" "$end")
    fi
    R[${name}_peak_rss_mb]=$(awk '/VmHWM/ { printf "%.1f", $2 / 1024 }' "/proc/$server_pid/status")
    R[${name}_p50_ms]=$(sort -n "$WORK/$name/latency.txt" | awk '{ a[NR] = $1 } END { if (NR) print a[int((NR + 1) / 2)] }')
    R[${name}_p95_ms]=$(sort -n "$WORK/$name/latency.txt" | awk '{ a[NR] = $1 } END { if (NR) print a[int(NR * 0.95 + 0.5)] }')
    if [[ -n $abuse_pid ]]; then kill "$abuse_pid" 2>/dev/null || true; fi
    kill "$server_pid"
    wait "$server_pid" || true
}

run quiet 0
run abuse 1

# Documented bound: 8 MiB queued per flooding connection at most, plus ~16 KiB per idle connection; 1 GiB is
# far above what that adds up to, and far below what the unbounded server reached (1.15 GB from one client).
if awk -v r="${R[abuse_peak_rss_mb]:-0}" 'BEGIN { exit !(r > 1024) }'; then
    problem "peak RSS under abuse ${R[abuse_peak_rss_mb]} MB is over 1024 MB"
fi
if awk -v a="${R[abuse_p50_ms]:-0}" -v q="${R[quiet_p50_ms]:-0}" 'BEGIN { exit !(a > 2 * q) }'; then
    problem "send p50 under abuse ${R[abuse_p50_ms]} ms is over twice the quiet ${R[quiet_p50_ms]} ms"
fi

if ((JSON)); then
    for key in "${!R[@]}"; do printf '%s\t%s\n' "$key" "${R[$key]}"; done \
        | jq -R -s 'split("\n") | map(select(length > 0) | split("\t") | {(.[0]): (.[1] | tonumber? // .)}) | add'
else
    printf '%-8s %14s %10s %10s %12s\n' run "peak RSS (MB)" "p50 (ms)" "p95 (ms)" "upload (s)"
    for name in quiet abuse; do
        printf '%-8s %14s %10s %10s %12s\n' "$name" "${R[${name}_peak_rss_mb]:--}" "$(fmt "${R[${name}_p50_ms]:-}" 3)" \
            "$(fmt "${R[${name}_p95_ms]:-}" 3)" "$(fmt "${R[${name}_upload_seconds]:-}" 1)"
    done
fi
((${#PROBLEMS[@]} == 0))
