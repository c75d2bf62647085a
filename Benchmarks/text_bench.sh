#!/usr/bin/env bash
# Benchmarks/text_bench.sh - text-message throughput and latency of `xfer send` / `xfer serve`,
# measured on this machine in one run against a Python `websockets` reference.
#
# Usage: Benchmarks/text_bench.sh [--json] [--runs N] [--help]
#
#   --json     print the figures as one JSON object on stdout (the human table then goes to stderr)
#   --runs N   repetitions of each pipelined-rate measurement; the median is reported (default 5)
#
# Environment:
#   XFER_BIN          use this xfer binary instead of building one
#   SCRATCH_PATH      scratch path of the release build (default .build-bench)
#   PYTHON            Python with `websockets` installed (default python3)
#   MESSAGES          messages in the pipelined test (default 100000)
#   MESSAGE_BYTES     bytes per message (default 100)
#   RTT_MESSAGES      messages in the one-at-a-time test (default 10000)
#   ONESHOT_RUNS      runs of the whole-process test (default 50; Python one-shot: half that)
#   PY_WINDOW         window of the Python pipelining client (default 100)
#   STEP_TIMEOUT      seconds before one client run counts as hung (default 300)
#   BENCH_TMPDIR      where to put inputs and event files (default: mktemp -d)
#
# Needs: bash >= 5, jq, coreutils, Python 3 with `pip install websockets`; hyperfine if present
# (otherwise a Python timing loop). Every server runs on --port 0; its port is read from its
# `listening` line and it is killed by PID on exit.

set -euo pipefail
# shellcheck source=Benchmarks/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
export LC_ALL=C


JSON=0
RUNS=5
while [[ $# -gt 0 ]]; do
    case "$1" in
        --json) JSON=1 ;;
        --runs) [[ $# -ge 2 ]] || { echo "text_bench.sh: --runs needs a number" >&2; exit 64; }
                RUNS=$2; shift ;;
        --runs=*) RUNS=${1#--runs=} ;;
        -h|--help) usage; exit 0 ;;
        *) echo "text_bench.sh: unknown argument: $1 (see --help)" >&2; exit 64 ;;
    esac
    shift
done
[[ $RUNS =~ ^[1-9][0-9]*$ ]] || { echo "text_bench.sh: --runs must be a positive integer" >&2; exit 64; }

MESSAGES=${MESSAGES:-100000}
MESSAGE_BYTES=${MESSAGE_BYTES:-100}
RTT_MESSAGES=${RTT_MESSAGES:-10000}
ONESHOT_RUNS=${ONESHOT_RUNS:-50}
PY_WINDOW=${PY_WINDOW:-100}
STEP_TIMEOUT=${STEP_TIMEOUT:-300}
PYTHON=${PYTHON:-python3}

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$BENCH_DIR/.." && pwd)
PYREF=$BENCH_DIR/py_ws_reference.py

# The human table goes to fd 3: stdout normally, stderr with --json.
if [[ $JSON -eq 1 ]]; then exec 3>&2; else exec 3>&1; fi

log() { printf '[text_bench] %s\n' "$*" >&2; }
die() { printf 'text_bench.sh: %s\n' "$*" >&2; exit 1; }

# --- prerequisites ------------------------------------------------------------------------------

command -v jq >/dev/null || die "jq is required (apt-get install jq)"
command -v timeout >/dev/null || die "timeout (coreutils) is required"
command -v "$PYTHON" >/dev/null || die "$PYTHON not found (set PYTHON)"
"$PYTHON" -c 'import websockets.asyncio.client' 2>/dev/null \
    || die "$PYTHON cannot import websockets.asyncio (>= 13): pip install websockets"
[[ -n ${EPOCHREALTIME:-} ]] || die "bash >= 5 is required (EPOCHREALTIME)"

# --- cleanup: every process we start is killed by its PID -----------------------------------

PIDS=()
WORK=""
KEEP_WORK=0
cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do
        kill "$pid" 2>/dev/null || true
    done
    for pid in "${PIDS[@]}"; do
        wait "$pid" 2>/dev/null || true
    done
    if [[ -n $WORK && $KEEP_WORK -eq 0 ]]; then
        rm -rf "$WORK"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

WORK=$(make_workdir text_bench)

# --- results ------------------------------------------------------------------------------------

declare -A R=()
PROBLEMS=()

median() { printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { if (NR % 2) printf "%.6f", v[(NR + 1) / 2]; else printf "%.6f", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

# --- build ----------------------------------------------------------------------------------------

if [[ -n ${XFER_BIN:-} ]]; then
    XFER=$XFER_BIN
    [[ -x $XFER ]] || die "XFER_BIN=$XFER is not an executable"
    log "using XFER_BIN=$XFER (no build)"
else
    SCRATCH_PATH=${SCRATCH_PATH:-.build-bench}
    log "building xfer: swift build -c release --scratch-path $SCRATCH_PATH (1-3 minutes the first time)"
    build_start=$EPOCHREALTIME
    (cd "$REPO" && swift build -c release --scratch-path "$SCRATCH_PATH" >&2) || die "release build failed"
    R[build_seconds]=$(elapsed "$build_start" "$EPOCHREALTIME")
    bin_dir=$(cd "$REPO" && swift build -c release --scratch-path "$SCRATCH_PATH" --show-bin-path)
    XFER=$bin_dir/xfer
    [[ -x $XFER ]] || die "no xfer binary at $XFER after the build"
fi

# --- machine and version info ----------------------------------------------------------------------

R[nproc]=$(nproc)
R[load_avg_start]=$(cut -d' ' -f1-3 /proc/loadavg)
R[cpu]=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo 2>/dev/null || true)
R[kernel]=$(uname -sr)
R[xfer_commit]=$(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo unknown)
if [[ -n $(git -C "$REPO" status --porcelain -- Sources Package.swift 2>/dev/null || true) ]]; then
    R[xfer_tree]="uncommitted changes in Sources/ or Package.swift"
else
    R[xfer_tree]="clean"
fi
R[xfer_version]=$("$XFER" --version 2>/dev/null || echo unknown)
R[xfer_bin]=$XFER
R[python]=$("$PYTHON" -c 'import sys, websockets; print("%d.%d.%d websockets %s" % (sys.version_info[:3] + (websockets.__version__,)))')
R[messages]=$MESSAGES
R[message_bytes]=$MESSAGE_BYTES
R[rtt_messages]=$RTT_MESSAGES
R[py_window]=$PY_WINDOW
R[runs]=$RUNS

# --- servers -----------------------------------------------------------------------------------------

SERVER_PID=""
SERVER_PORT=""


# start_xfer_server MODE TAG: MODE "file" writes events to $WORK/TAG.events;
# MODE "discard" sends them into a pipe drained to /dev/null (only the listening line is kept).
start_xfer_server() {
    local mode=$1 tag=$2 listen_pid
    local dir=$WORK/$tag.dir events=$WORK/$tag.events err=$WORK/$tag.server.err
    mkdir -p "$dir"
    if [[ $mode == file ]]; then
        "$XFER" serve --host 127.0.0.1 --port 0 --dir "$dir" >"$events" 2>"$err" </dev/null &
    else
        # The server's stdout cannot be both /dev/null and readable for the port: a pipe keeps the
        # first (listening) line and hands everything else to /dev/null.
        "$XFER" serve --host 127.0.0.1 --port 0 --dir "$dir" \
            > >(IFS= read -r first; printf '%s\n' "$first" >"$events"; exec cat >/dev/null) \
            2>"$err" </dev/null &
    fi
    SERVER_PID=$!
    PIDS+=("$SERVER_PID")
    wait_listening "$SERVER_PID" "$events" "$err"
    listen_pid=$(head -n1 "$events" | jq -r '.pid // empty')
    if [[ -n $listen_pid && $listen_pid != "$SERVER_PID" ]]; then
        PIDS+=("$listen_pid")
    fi
}

start_py_server() {
    local tag=$1
    local events=$WORK/$tag.events err=$WORK/$tag.server.err
    "$PYTHON" "$PYREF" server --host 127.0.0.1 --port 0 >"$events" 2>"$err" </dev/null &
    SERVER_PID=$!
    PIDS+=("$SERVER_PID")
    wait_listening "$SERVER_PID" "$events" "$err"
}

# stop_server: SIGTERM by PID, then wait for it (xfer exits 0 on SIGTERM).
stop_server() {
    local pid=$SERVER_PID rc=0
    [[ -n $pid ]] || return 0
    kill -TERM "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || rc=$?
    SERVER_PID=""
    return "$rc"
}

# count_events FILE: {"text":N,"status_ok":N,"status_failed":N,"error":N,"disconnected":N}
count_events() {
    jq -nc 'reduce (inputs | select(type == "object")) as $e
        ({text: 0, status_ok: 0, status_failed: 0, error: 0, disconnected: 0};
         if $e.event == "text" then .text += 1
         elif $e.event == "status" then (if $e.ok == true then .status_ok += 1 else .status_failed += 1 end)
         elif $e.event == "error" then .error += 1
         elif $e.event == "disconnected" then .disconnected += 1
         else . end)' "$1"
}

# check_stderr FILE WHAT: anything a benchmark process wrote to stderr is worth a look.
check_stderr() {
    if [[ -s $1 ]]; then
        problem "$2 wrote to stderr: $(head -c 400 "$1" | tr '\n' ' ')"
    fi
}

# --- inputs ---------------------------------------------------------------------------------------

INPUT=$WORK/input.txt
RTT_INPUT=$WORK/rtt_input.txt
"$PYTHON" "$PYREF" gen --count "$MESSAGES" --size "$MESSAGE_BYTES" --output "$INPUT"
head -n "$RTT_MESSAGES" "$INPUT" >"$RTT_INPUT"
[[ $(wc -l <"$RTT_INPUT") -eq $RTT_MESSAGES ]] || die "RTT_MESSAGES ($RTT_MESSAGES) is larger than MESSAGES ($MESSAGES)"

# --- 1. pipelined rate ----------------------------------------------------------------------------

# xfer_pipeline MODE WINDOW KEY: one xfer send of $INPUT per run, on a fresh server each run.
xfer_pipeline() {
    local mode=$1 window=$2 key=$3 run rc t0 t1 secs counts tag
    local rates=()
    for ((run = 1; run <= RUNS; run++)); do
        tag=$key.$run
        start_xfer_server "$mode" "$tag"
        rc=0
        t0=$EPOCHREALTIME
        timeout "$STEP_TIMEOUT" "$XFER" send --server "127.0.0.1:$SERVER_PORT" --window "$window" \
            <"$INPUT" >"$WORK/$tag.send.out" 2>"$WORK/$tag.send.err" || rc=$?
        t1=$EPOCHREALTIME
        secs=$(elapsed "$t0" "$t1")
        stop_server || problem "$key run $run: xfer serve exited $? on SIGTERM"
        [[ $rc -eq 0 ]] || problem "$key run $run: xfer send exited $rc$([[ $rc -eq 124 ]] && echo ' (timed out)')"
        check_stderr "$WORK/$tag.send.err" "$key run $run: xfer send"
        check_stderr "$WORK/$tag.server.err" "$key run $run: xfer serve"
        counts=$(count_events "$WORK/$tag.send.out")
        if [[ $(jget "$counts" .status_ok) -ne $MESSAGES || $(jget "$counts" .status_failed) -ne 0 ]]; then
            problem "$key run $run: xfer send printed $(jget "$counts" .status_ok) ok statuses (want $MESSAGES), $(jget "$counts" .status_failed) failed, $(jget "$counts" .error) errors"
        fi
        if [[ $mode == file ]]; then
            counts=$(count_events "$WORK/$tag.events")
            R[$key.server_text_events]=$(jget "$counts" .text)
            if [[ $(jget "$counts" .text) -ne $MESSAGES ]]; then
                problem "$key run $run: server printed $(jget "$counts" .text) text events, want $MESSAGES"
            elif ! jq -r 'select(.event == "text") | .text' "$WORK/$tag.events" | cmp -s - "$INPUT"; then
                problem "$key run $run: the server's text events differ from the input (content or order)"
            fi
        fi
        rates+=("$(calc "n / s" n="$MESSAGES" s="$secs")")
        log "$key run $run: $(fmt "$secs" 3) s, $(fmt "${rates[-1]}" 0) msg/s"
        rm -f "$WORK/$tag.events" "$WORK/$tag.send.out"
    done
    R[$key.rate]=$(median "${rates[@]}")
    R[$key.rate_min]=$(median "$(printf '%s\n' "${rates[@]}" | sort -g | head -n1)")
    R[$key.rate_max]=$(median "$(printf '%s\n' "${rates[@]}" | sort -g | tail -n1)")
}

# py_pipeline SERVER KEY: the Python pipelining client against a Python server or xfer serve (file).
py_pipeline() {
    local server=$1 key=$2 run rc out tag
    local rates=() proc_rates=() t0 t1
    for ((run = 1; run <= RUNS; run++)); do
        tag=$key.$run
        if [[ $server == python ]]; then start_py_server "$tag"; else start_xfer_server file "$tag"; fi
        rc=0
        t0=$EPOCHREALTIME
        timeout "$STEP_TIMEOUT" "$PYTHON" "$PYREF" pipeline --url "ws://127.0.0.1:$SERVER_PORT" \
            --input "$INPUT" --window "$PY_WINDOW" >"$WORK/$tag.client.out" 2>"$WORK/$tag.client.err" || rc=$?
        t1=$EPOCHREALTIME
        stop_server || problem "$key run $run: $server server exited $? on SIGTERM"
        [[ $rc -eq 0 ]] || problem "$key run $run: python pipeline client exited $rc"
        check_stderr "$WORK/$tag.client.err" "$key run $run: python client"
        out=$(tail -n1 "$WORK/$tag.client.out")
        if [[ $(jget "$out" .acknowledged) != "$MESSAGES" || $(jget "$out" .failures) != 0 ]]; then
            problem "$key run $run: python client got $(jget "$out" .acknowledged) acknowledgements, $(jget "$out" .failures) not ok"
        fi
        if [[ $server == xfer ]]; then
            check_stderr "$WORK/$tag.server.err" "$key run $run: xfer serve"
            local texts
            texts=$(count_events "$WORK/$tag.events" | jq .text)
            [[ $texts -eq $MESSAGES ]] || problem "$key run $run: xfer serve printed $texts text events, want $MESSAGES"
        fi
        # In-process time (connect .. last acknowledgement .. close), without interpreter start-up.
        rates+=("$(jget "$out" .rate)")
        proc_rates+=("$(calc "n / s" n="$MESSAGES" s="$(elapsed "$t0" "$t1")")")
        log "$key run $run: $(fmt "$(jget "$out" .seconds)" 3) s in-process, $(fmt "${rates[-1]}" 0) msg/s"
        rm -f "$WORK/$tag.events"
    done
    R[$key.rate]=$(median "${rates[@]}")
    R[$key.rate_min]=$(median "$(printf '%s\n' "${rates[@]}" | sort -g | head -n1)")
    R[$key.rate_max]=$(median "$(printf '%s\n' "${rates[@]}" | sort -g | tail -n1)")
    R[$key.rate_whole_process]=$(median "${proc_rates[@]}")
}

log "1. pipelined rate: $MESSAGES messages of $MESSAGE_BYTES bytes, $RUNS run(s) each"
xfer_pipeline file 1000 xfer_file
xfer_pipeline discard 1000 xfer_discard
xfer_pipeline file "$PY_WINDOW" "xfer_file_w$PY_WINDOW"
py_pipeline python py
py_pipeline xfer py_to_xfer
R[ratio_rate_file]=$(calc "a / b" a="${R[xfer_file.rate]}" b="${R[py.rate]}")
R[ratio_rate_discard]=$(calc "a / b" a="${R[xfer_discard.rate]}" b="${R[py.rate]}")
# Python's best run against xfer's median: the ratio least flattering to xfer.
R[ratio_rate_file_vs_py_best]=$(calc "a / b" a="${R[xfer_file.rate]}" b="${R[py.rate_max]}")
R[ratio_rate_same_window]=$(calc "a / b" a="${R[xfer_file_w$PY_WINDOW.rate]}" b="${R[py.rate]}")

# --- 2. one message at a time -------------------------------------------------------------------

log "2. round trip, one message at a time: $RTT_MESSAGES messages"
start_xfer_server file rtt_xfer
rc=0
t0=$EPOCHREALTIME
timeout "$STEP_TIMEOUT" "$XFER" send --server "127.0.0.1:$SERVER_PORT" --window 1 \
    <"$RTT_INPUT" >"$WORK/rtt_xfer.send.out" 2>"$WORK/rtt_xfer.send.err" || rc=$?
t1=$EPOCHREALTIME
[[ $rc -eq 0 ]] || problem "rtt: xfer send --window 1 exited $rc"
check_stderr "$WORK/rtt_xfer.send.err" "rtt: xfer send --window 1"
R[xfer_rtt.rate]=$(calc "n / s" n="$RTT_MESSAGES" s="$(elapsed "$t0" "$t1")")
stats=$(jq -c 'select(.event == "status" and .ok == true)' "$WORK/rtt_xfer.send.out" | "$PYTHON" "$PYREF" stats)
[[ $(jget "$stats" .count) -eq $RTT_MESSAGES ]] || problem "rtt: xfer send --window 1 printed $(jget "$stats" .count) ok statuses, want $RTT_MESSAGES"
R[xfer_rtt.median_ms]=$(jget "$stats" .median_ms)
R[xfer_rtt.p99_ms]=$(jget "$stats" .p99_ms)
R[xfer_rtt.mean_ms]=$(jget "$stats" .mean_ms)
R[xfer_rtt.max_ms]=$(jget "$stats" .max_ms)
# Python's client against xfer serve: the server's share, timed the same way as the Python reference.
rc=0
stats=$(timeout "$STEP_TIMEOUT" "$PYTHON" "$PYREF" rtt --url "ws://127.0.0.1:$SERVER_PORT" --input "$RTT_INPUT" \
    2>"$WORK/rtt_py_to_xfer.err") || rc=$?
[[ $rc -eq 0 ]] || problem "rtt: python client against xfer serve exited $rc"
check_stderr "$WORK/rtt_py_to_xfer.err" "rtt: python client against xfer serve"
R[py_to_xfer_rtt.median_ms]=$(jget "$stats" .median_ms)
R[py_to_xfer_rtt.p99_ms]=$(jget "$stats" .p99_ms)
stop_server || problem "rtt: xfer serve exited $? on SIGTERM"
check_stderr "$WORK/rtt_xfer.server.err" "rtt: xfer serve"
texts=$(count_events "$WORK/rtt_xfer.events" | jq .text)
[[ $texts -eq $((2 * RTT_MESSAGES)) ]] || problem "rtt: xfer serve printed $texts text events, want $((2 * RTT_MESSAGES))"

start_py_server rtt_py
rc=0
stats=$(timeout "$STEP_TIMEOUT" "$PYTHON" "$PYREF" rtt --url "ws://127.0.0.1:$SERVER_PORT" --input "$RTT_INPUT" \
    2>"$WORK/rtt_py.err") || rc=$?
[[ $rc -eq 0 ]] || problem "rtt: python client against python server exited $rc"
[[ $(jget "$stats" .failures) == 0 ]] || problem "rtt: python reference got $(jget "$stats" .failures) failures"
R[py_rtt.median_ms]=$(jget "$stats" .median_ms)
R[py_rtt.p99_ms]=$(jget "$stats" .p99_ms)
R[py_rtt.mean_ms]=$(jget "$stats" .mean_ms)
R[py_rtt.max_ms]=$(jget "$stats" .max_ms)
stop_server || true
R[ratio_rtt_median]=$(calc "a / b" a="${R[xfer_rtt.median_ms]}" b="${R[py_rtt.median_ms]}")
R[ratio_rtt_p99]=$(calc "a / b" a="${R[xfer_rtt.p99_ms]}" b="${R[py_rtt.p99_ms]}")

# --- 3. whole-process time of one message ------------------------------------------------------

# time_command KEY RUNS CMD...: whole-process time with hyperfine, else a Python loop.
time_command() {
    local key=$1 runs=$2 out=$WORK/$1.timing.json res
    shift 2
    res=""
    if command -v hyperfine >/dev/null; then
        local quoted
        quoted=$(printf '%q ' "$@")
        if hyperfine -N --style none --warmup 3 --runs "$runs" --export-json "$out" "$quoted" >/dev/null 2>"$WORK/$key.hyperfine.err"; then
            res=$(jq -c '.results[0] | {mean_ms: (.mean * 1000), median_ms: (.median * 1000), stddev_ms: (.stddev * 1000),
                                       min_ms: (.min * 1000), max_ms: (.max * 1000)}' "$out")
            R[oneshot_tool]="hyperfine $(hyperfine --version | awk '{ print $2 }')"
        else
            # An old hyperfine without -N, or the command failed: the loop below tells which.
            log "$key: hyperfine failed ($(head -c 200 "$WORK/$key.hyperfine.err" | tr '\n' ' ')); timing with a Python loop"
        fi
    fi
    if [[ -z $res ]]; then
        res=$("$PYTHON" "$PYREF" timecmd --runs "$runs" --warmup 3 -- "$@" 2>"$WORK/$key.timecmd.err") \
            || { problem "$key: timing loop failed: $(head -c 400 "$WORK/$key.timecmd.err")"; return 0; }
        R[oneshot_tool]="python subprocess loop"
    fi
    R[$key.mean_ms]=$(jget "$res" .mean_ms)
    R[$key.median_ms]=$(jget "$res" .median_ms)
    R[$key.stddev_ms]=$(jget "$res" .stddev_ms)
    R[$key.min_ms]=$(jget "$res" .min_ms)
    R[$key.max_ms]=$(jget "$res" .max_ms)
}

log "3. whole-process time of one message: $ONESHOT_RUNS runs"
start_xfer_server file oneshot_xfer
time_command xfer_oneshot "$ONESHOT_RUNS" "$XFER" send --server "127.0.0.1:$SERVER_PORT" x
stop_server || problem "oneshot: xfer serve exited $? on SIGTERM"
check_stderr "$WORK/oneshot_xfer.server.err" "oneshot: xfer serve"
start_py_server oneshot_py
PY_ONESHOT_RUNS=$(((ONESHOT_RUNS + 1) / 2))
time_command py_oneshot "$PY_ONESHOT_RUNS" "$PYTHON" "$PYREF" oneshot --url "ws://127.0.0.1:$SERVER_PORT" x
stop_server || true
R[load_avg_end]=$(cut -d' ' -f1-3 /proc/loadavg)

# --- report ------------------------------------------------------------------------------------

yesno() { if [[ -n ${1:-} ]] && awk -v v="$1" -v t="$3" "BEGIN { exit !(v $2 t) }"; then printf 'met'; else printf 'NOT met'; fi; }
rate_row() { printf '  %-62s %10s msg/s   (runs: %s .. %s)\n' "$1" "$(fmt "${R[$2.rate]:-}" 0)" "$(fmt "${R[$2.rate_min]:-}" 0)" "$(fmt "${R[$2.rate_max]:-}" 0)"; }
us() { if [[ -z ${1:-} ]]; then printf -- '-'; else awk -v v="$1" 'BEGIN { printf "%.1f us", v * 1000 }'; fi; }

{
    echo "xfer text benchmark"
    echo "==================="
    printf '  %-22s %s\n' "xfer commit" "${R[xfer_commit]} (${R[xfer_tree]}), ${R[xfer_version]}"
    printf '  %-22s %s\n' "xfer binary" "$XFER"
    printf '  %-22s %s\n' "machine" "nproc ${R[nproc]}, ${R[cpu]:-?}, ${R[kernel]}"
    printf '  %-22s %s\n' "load average" "start ${R[load_avg_start]} / end ${R[load_avg_end]}"
    if awk -v l="${R[load_avg_start]%% *}" -v e="${R[load_avg_end]%% *}" -v n="${R[nproc]}" 'BEGIN { exit !(l > n / 4 || e > n) }'; then
        printf '  %-22s %s\n' "WARNING" "other work was running (load averages above): the figures are noisier than on a quiet machine"
    fi
    printf '  %-22s %s\n' "python reference" "${R[python]}, compression off"
    [[ -n ${R[build_seconds]:-} ]] && printf '  %-22s %s s\n' "release build" "$(fmt "${R[build_seconds]}" 1)"
    echo
    echo "1. Pipelined rate: $MESSAGES messages of $MESSAGE_BYTES bytes, median of $RUNS run(s)"
    echo "   xfer: $MESSAGES / wall time of the xfer send process; python: in-process connect..close time"
    rate_row "xfer send (window 1000) -> xfer serve, events to file" xfer_file
    rate_row "xfer send (window 1000) -> xfer serve, events to /dev/null*" xfer_discard
    rate_row "xfer send (window $PY_WINDOW) -> xfer serve, events to file" "xfer_file_w$PY_WINDOW"
    rate_row "python client (window $PY_WINDOW) -> python server" py
    rate_row "python client (window $PY_WINDOW) -> xfer serve, events to file" py_to_xfer
    printf '  %-62s %10s x   (target >= 3x: %s)\n' "ratio xfer/python (events to file)" "$(fmt "${R[ratio_rate_file]:-}" 2)" "$(yesno "${R[ratio_rate_file]:-}" '>=' 3)"
    printf '  %-62s %10s x\n' "ratio xfer median / python best run (events to file)" "$(fmt "${R[ratio_rate_file_vs_py_best]:-}" 2)"
    printf '  %-62s %10s x\n' "ratio xfer/python (events to /dev/null*)" "$(fmt "${R[ratio_rate_discard]:-}" 2)"
    printf '  %-62s %10s x\n' "ratio xfer/python (both window $PY_WINDOW)" "$(fmt "${R[ratio_rate_same_window]:-}" 2)"
    printf '  %-62s %10s msg/s\n' "python client (window $PY_WINDOW) -> python server, whole process" "$(fmt "${R[py.rate_whole_process]:-}" 0)"
    printf '  %-62s %10s\n' "server text events (last run, events to file)" "${R[xfer_file.server_text_events]:-?} of $MESSAGES"
    echo "   * the server's stdout is a pipe whose first line is kept for the port and the rest goes to /dev/null"
    echo
    echo "2. One message at a time: $RTT_MESSAGES messages, window 1"
    printf '  %-62s %12s %12s\n' "" "median" "p99"
    printf '  %-62s %12s %12s\n' "xfer send --window 1 -> xfer serve (latency_ms)" "$(us "${R[xfer_rtt.median_ms]:-}")" "$(us "${R[xfer_rtt.p99_ms]:-}")"
    printf '  %-62s %12s %12s\n' "python client -> python server (perf_counter_ns)" "$(us "${R[py_rtt.median_ms]:-}")" "$(us "${R[py_rtt.p99_ms]:-}")"
    printf '  %-62s %12s %12s\n' "python client -> xfer serve (perf_counter_ns)" "$(us "${R[py_to_xfer_rtt.median_ms]:-}")" "$(us "${R[py_to_xfer_rtt.p99_ms]:-}")"
    printf '  %-62s %12s %12s   (target median <= 1: %s)\n' "ratio xfer/python (lower is better)" "$(fmt "${R[ratio_rtt_median]:-}" 2)" "$(fmt "${R[ratio_rtt_p99]:-}" 2)" "$(yesno "${R[ratio_rtt_median]:-}" '<=' 1)"
    printf '  %-62s %10s msg/s\n' "xfer --window 1 rate (process wall time)" "$(fmt "${R[xfer_rtt.rate]:-}" 0)"
    echo "   xfer's latency_ms has 0.01 ms resolution"
    echo
    echo "3. Whole-process time of one message (connect, timezone, message, status, close), ${R[oneshot_tool]:-?}"
    printf '  %-62s %10s %10s %10s %10s\n' "" "mean" "median" "min" "max"
    printf '  %-62s %10s %10s %10s %10s   (target < 30 ms: %s)\n' "xfer send x ($ONESHOT_RUNS runs)" \
        "$(fmt "${R[xfer_oneshot.mean_ms]:-}" 2) ms" "$(fmt "${R[xfer_oneshot.median_ms]:-}" 2) ms" \
        "$(fmt "${R[xfer_oneshot.min_ms]:-}" 2) ms" "$(fmt "${R[xfer_oneshot.max_ms]:-}" 2) ms" "$(yesno "${R[xfer_oneshot.mean_ms]:-}" '<' 30)"
    printf '  %-62s %10s %10s %10s %10s\n' "python one-shot client ($PY_ONESHOT_RUNS runs)" \
        "$(fmt "${R[py_oneshot.mean_ms]:-}" 2) ms" "$(fmt "${R[py_oneshot.median_ms]:-}" 2) ms" \
        "$(fmt "${R[py_oneshot.min_ms]:-}" 2) ms" "$(fmt "${R[py_oneshot.max_ms]:-}" 2) ms"
    echo
    if [[ ${#PROBLEMS[@]} -eq 0 ]]; then
        echo "Checks: every message acknowledged ok; server text events complete and in order; nothing on stderr."
    else
        echo "PROBLEMS (${#PROBLEMS[@]}):"
        printf '  - %s\n' "${PROBLEMS[@]}"
    fi
} >&3

if [[ $JSON -eq 1 ]]; then
    args=()
    for key in "${!R[@]}"; do
        if [[ ${R[$key]} =~ ^-?[0-9]+(\.[0-9]+)?([eE][-+]?[0-9]+)?$ ]]; then
            args+=(--argjson "$key" "${R[$key]}")
        else
            args+=(--arg "$key" "${R[$key]}")
        fi
    done
    problems_json=$(printf '%s\n' "${PROBLEMS[@]}" | jq -Rsc 'split("\n") | map(select(length > 0))')
    jq -nS --argjson problems "$problems_json" "${args[@]}" '$ARGS.named + {problems: $problems}'
fi

[[ ${#PROBLEMS[@]} -eq 0 ]]
