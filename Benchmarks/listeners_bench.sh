#!/usr/bin/env bash
# Benchmarks/listeners_bench.sh - how one `xfer serve` holds many connected listeners with pings.
#
# Usage: Benchmarks/listeners_bench.sh [--clients N] [--processes P] [--hold S] [--names K] [--json] [--help]
#
#   --clients N      listener connections to open (default 10000)
#   --processes P    Python helper processes sharing them (default 4)
#   --hold S         seconds to hold every connection while the server pings (default 20)
#   --names K        K shared listener names l0..l<K-1> instead of one name per connection
#   --json           print the figures as one JSON object on stdout (the human table then goes to stderr)
#
# Environment:
#   XFER_BIN           use this xfer binary instead of building one
#   SCRATCH_PATH       scratch path of the release build (default .build-bench)
#   PYTHON             Python with `websockets` installed (default python3)
#   PING_INTERVAL      the server's --ping-interval (default 2)
#   PING_TIMEOUT       the server's --ping-timeout (default 30)
#   CONCURRENCY        connection attempts in flight per helper (default 64)
#   CONNECT_TIMEOUT    seconds for all N to connect (default 300)
#   BROADCAST_TIMEOUT  seconds for the broadcast to reach every listener (default 120)
#   BENCH_TMPDIR       where to put event files (default: mktemp -d); KEEP_WORK=1 keeps them
#
# Steps: release build; `xfer serve --port 0 --dir TMP --ping-interval 2 --ping-timeout 30` with
# stdin from a FIFO (for the broadcast command) and stdout to a file; server RSS idle; N listeners
# (subprotocol xfer.v1, binary hello role=listen timezone=UTC name=l<i>) opened by P helper
# processes (Benchmarks/many_listeners.py) until the server has printed N `connected` events;
# hold S seconds: RSS, CPU time (utime+stime from /proc/PID/stat) and the RTTs of the server's
# `ping` events in that window; a {"cmd":"broadcast"} on the server's stdin, timed until the last
# listener got it (both when Python read it and when it reached the listener's socket buffer, from
# TCP_INFO, which separates the server's part from the helpers'), with `sent.delivered` checked
# against N; then SIGTERM to the server with every listener still connected (it should close them
# with 1001 and exit 0).
#
# Needs: Linux (/proc, TCP_INFO), bash >= 5, jq, coreutils, Python 3 with `pip install websockets`.
# Every process started here is killed by its PID on exit. Exit status 0 only when no problem
# was found (see the PROBLEMS list at the end of the table).

set -euo pipefail
# shellcheck source=Benchmarks/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
export LC_ALL=C

die() { printf 'listeners_bench.sh: %s\n' "$*" >&2; exit 1; }
usage_error() { printf 'listeners_bench.sh: %s (see --help)\n' "$*" >&2; exit 64; }

JSON=0
CLIENTS=10000
PROCESSES=4
HOLD=20
NAMES=0
while [[ $# -gt 0 ]]; do
    case "$1" in
        --json) JSON=1 ;;
        --clients | --processes | --hold | --names)
            [[ $# -ge 2 ]] || usage_error "$1 needs a number"
            case "$1" in
                --clients) CLIENTS=$2 ;;
                --processes) PROCESSES=$2 ;;
                --hold) HOLD=$2 ;;
                --names) NAMES=$2 ;;
            esac
            shift
            ;;
        --clients=*) CLIENTS=${1#*=} ;;
        --processes=*) PROCESSES=${1#*=} ;;
        --hold=*) HOLD=${1#*=} ;;
        --names=*) NAMES=${1#*=} ;;
        -h | --help) usage; exit 0 ;;
        *) usage_error "unknown argument: $1" ;;
    esac
    shift
done
[[ $CLIENTS =~ ^[1-9][0-9]*$ ]] || usage_error "--clients must be a positive integer"
[[ $PROCESSES =~ ^[1-9][0-9]*$ ]] || usage_error "--processes must be a positive integer"
[[ $HOLD =~ ^[1-9][0-9]*$ ]] || usage_error "--hold must be a positive whole number of seconds"
[[ $NAMES =~ ^[0-9]+$ ]] || usage_error "--names must be a whole number"
((PROCESSES <= CLIENTS)) || PROCESSES=$CLIENTS

PING_INTERVAL=${PING_INTERVAL:-2}
PING_TIMEOUT=${PING_TIMEOUT:-30}
CONCURRENCY=${CONCURRENCY:-64}
CONNECT_TIMEOUT=${CONNECT_TIMEOUT:-300}
BROADCAST_TIMEOUT=${BROADCAST_TIMEOUT:-120}
PYTHON=${PYTHON:-python3}
KEEP_WORK=${KEEP_WORK:-0}

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$BENCH_DIR/.." && pwd)
HELPER=$BENCH_DIR/many_listeners.py

# The human table goes to fd 3: stdout normally, stderr with --json.
if [[ $JSON -eq 1 ]]; then exec 3>&2; else exec 3>&1; fi

log() { printf '[listeners_bench %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

# --- prerequisites ------------------------------------------------------------------------------

command -v jq >/dev/null || die "jq is required (apt-get install jq)"
command -v "$PYTHON" >/dev/null || die "$PYTHON not found (set PYTHON)"
"$PYTHON" -c 'import websockets.asyncio.client' 2>/dev/null \
    || die "$PYTHON cannot import websockets.asyncio (>= 13): pip install websockets"
[[ -n ${EPOCHREALTIME:-} ]] || die "bash >= 5 is required (EPOCHREALTIME)"
[[ -r /proc/self/status && -r /proc/self/stat ]] || die "/proc is required (Linux)"
CLK_TCK=$(getconf CLK_TCK)

# Raise the soft limit on open files to the hard limit; every child inherits it.
FD_SOFT_BEFORE=$(ulimit -Sn)
FD_HARD=$(ulimit -Hn)
ulimit -Sn "$FD_HARD" 2>/dev/null || true
FD_SOFT=$(ulimit -Sn)
PER_HELPER=$(((CLIENTS + PROCESSES - 1) / PROCESSES))
if [[ $FD_SOFT != unlimited ]]; then
    ((CLIENTS + 64 <= FD_SOFT)) \
        || die "the server needs about $((CLIENTS + 64)) open files, the limit is $FD_SOFT (ulimit -Hn $FD_HARD): use fewer --clients"
    ((PER_HELPER + 64 <= FD_SOFT)) \
        || die "each helper needs about $((PER_HELPER + 64)) open files, the limit is $FD_SOFT: use more --processes"
fi

# --- cleanup: every process we start is killed by its PID -----------------------------------

PIDS=()
WORK=""
SERVER_IN=""
cleanup() {
    local pid i
    if [[ -n $SERVER_IN ]]; then exec {SERVER_IN}>&- || true; fi
    for pid in "${PIDS[@]}"; do
        kill "$pid" 2>/dev/null || true
    done
    # Give them up to 10 s (a server closing thousands of clients), then SIGKILL.
    for ((i = 0; i < 100; i++)); do
        local alive=0
        for pid in "${PIDS[@]}"; do
            if kill -0 "$pid" 2>/dev/null; then alive=1; fi
        done
        ((alive)) || break
        sleep 0.1
    done
    for pid in "${PIDS[@]}"; do
        kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    if [[ -n $WORK && $KEEP_WORK != 1 ]]; then
        rm -rf "$WORK"
    elif [[ -n $WORK ]]; then
        log "kept $WORK"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

WORK=$(make_workdir listeners_bench)

# --- results ------------------------------------------------------------------------------------

declare -A R=()
PROBLEMS=()

# percentiles: nearest-rank p50, p99 and max of the numbers on stdin, as "count p50 p99 max min" (or "0").
percentiles() {
    sort -g | awk '{ v[NR] = $1 }
        END {
            if (NR == 0) { print 0; exit }
            r50 = int((NR * 50 + 99) / 100); r99 = int((NR * 99 + 99) / 100)
            printf "%d %.3f %.3f %.3f %.3f\n", NR, v[r50], v[r99], v[NR], v[1]
        }'
}
# event_epoch TIME: an event's RFC 3339 time as epoch seconds.
event_epoch() { date -u -d "$1" +%s.%3N; }

# proc_rss_kb PID: VmRSS in kB (empty if gone).   proc_cpu_ticks PID: utime+stime in clock ticks.
proc_rss_kb() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status" 2>/dev/null || true; }
proc_status_kb() { awk -v k="$2:" '$1 == k { print $2 }' "/proc/$1/status" 2>/dev/null || true; }
proc_cpu_ticks() {
    local stat rest
    stat=$(<"/proc/$1/stat") || return 0
    rest=${stat##*) }
    local -a f
    read -ra f <<<"$rest"
    echo $((f[11] + f[12]))
}
proc_fds() { find "/proc/$1/fd" -mindepth 1 -maxdepth 1 2>/dev/null | wc -l; }

# helpers_cpu_ticks: utime+stime of every helper process, summed.
helpers_cpu_ticks() {
    local pid total=0 t
    for pid in "${HELPER_PIDS[@]}"; do
        t=$(proc_cpu_ticks "$pid")
        total=$((total + ${t:-0}))
    done
    echo "$total"
}
count_events() { grep -c "\"event\":\"$1\"" "$EVENTS" || true; }
server_alive() { kill -0 "$SERVER_PID" 2>/dev/null; }

# --- build ----------------------------------------------------------------------------------------

if [[ -n ${XFER_BIN:-} ]]; then
    XFER=$XFER_BIN
    [[ -x $XFER ]] || die "XFER_BIN=$XFER is not an executable"
    log "using XFER_BIN=$XFER (no build)"
else
    SCRATCH_PATH=${SCRATCH_PATH:-.build-bench}
    log "building xfer: swift build -c release --scratch-path $SCRATCH_PATH (1-3 minutes the first time)"
    (cd "$REPO" && swift build -c release --scratch-path "$SCRATCH_PATH" >&2) || die "release build failed"
    bin_dir=$(cd "$REPO" && swift build -c release --scratch-path "$SCRATCH_PATH" --show-bin-path)
    XFER=$bin_dir/xfer
    [[ -x $XFER ]] || die "no xfer binary at $XFER after the build"
fi

R[clients]=$CLIENTS
R[processes]=$PROCESSES
R[hold_seconds]=$HOLD
R[names]=$NAMES
R[ping_interval]=$PING_INTERVAL
R[ping_timeout]=$PING_TIMEOUT
R[fd_soft_limit_before]=$FD_SOFT_BEFORE
R[fd_soft_limit]=$FD_SOFT
R[fd_hard_limit]=$FD_HARD
R[nproc]=$(nproc)
R[load_avg_start]=$(cut -d' ' -f1-3 /proc/loadavg)
R[kernel]=$(uname -sr)
R[somaxconn]=$(cat /proc/sys/net/core/somaxconn 2>/dev/null || echo '?')
R[ip_local_port_range]=$(tr '\t' ' ' </proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || echo '?')
R[xfer_commit]=$(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo unknown)
if [[ -n $(git -C "$REPO" status --porcelain -- Sources Package.swift 2>/dev/null || true) ]]; then
    R[xfer_tree]="uncommitted changes in Sources/ or Package.swift"
else
    R[xfer_tree]="clean"
fi
R[xfer_version]=$("$XFER" --version 2>/dev/null || echo unknown)
R[xfer_bin]=$XFER
R[python]=$("$PYTHON" -c 'import sys, websockets; print("%d.%d.%d websockets %s" % (sys.version_info[:3] + (websockets.__version__,)))')

# --- server -------------------------------------------------------------------------------------

EVENTS=$WORK/server.events
SERVER_ERR=$WORK/server.err
FIFO=$WORK/server.stdin
mkfifo "$FIFO"
mkdir -p "$WORK/dir"
SERVER_ARGS=(serve --port 0 --dir "$WORK/dir" --ping-interval "$PING_INTERVAL" --ping-timeout "$PING_TIMEOUT")
# Every listener comes from 127.0.0.1: lift the per-address limit (1000 by default).
SERVER_ARGS+=(--max-connections-per-address 0)
# 10,000 is the server's default --max-connections: only go past it when asked for more.
if ((CLIENTS > 10000)); then SERVER_ARGS+=(--max-connections "$CLIENTS"); fi
R[server_command]="xfer ${SERVER_ARGS[*]}"
log "starting: ${R[server_command]}"
# The server opens the FIFO for reading while we open it for writing just below.
"$XFER" "${SERVER_ARGS[@]}" <"$FIFO" >"$EVENTS" 2>"$SERVER_ERR" &
SERVER_PID=$!
PIDS+=("$SERVER_PID")
exec {SERVER_IN}>"$FIFO"

PORT=""
for ((i = 0; i < 300; i++)); do
    if [[ -s $EVENTS ]]; then
        IFS= read -r line <"$EVENTS" || true
        if [[ $line == *'"listening"'* ]]; then
            PORT=$(jq -r 'select(.event == "listening") | .port' <<<"$line")
            break
        fi
    fi
    server_alive || die "server exited before listening: $(cat "$SERVER_ERR")"
    sleep 0.1
done
[[ $PORT =~ ^[1-9][0-9]*$ ]] || die "no listening line with a port within 30 s"
URL="ws://127.0.0.1:$PORT/"
R[port]=$PORT
R[server_fd_limit]=$(awk '/^Max open files/ { print $4 }' "/proc/$SERVER_PID/limits")
log "server pid $SERVER_PID listening on $URL (open files limit ${R[server_fd_limit]})"

sleep 1
R[rss_idle_kb]=$(proc_rss_kb "$SERVER_PID")
R[threads_idle]=$(proc_status_kb "$SERVER_PID" Threads)
log "server RSS idle: ${R[rss_idle_kb]} kB"

# --- connect N listeners --------------------------------------------------------------------------

MARKER="listeners-bench-broadcast-$$-$RANDOM"
HELPER_PIDS=()
HELPER_OUT=()
HELPER_RECEIPTS=()
connect_start=$EPOCHREALTIME
cpu_connect_start=$(proc_cpu_ticks "$SERVER_PID")
first=0
for ((p = 0; p < PROCESSES; p++)); do
    count=$(((CLIENTS - first) / (PROCESSES - p)))
    out=$WORK/helper$p.out
    receipts=$WORK/helper$p.receipts
    helper_args=(--url "$URL" --count "$count" --first "$first" --tag "h$p" --concurrency "$CONCURRENCY"
        --expect "$MARKER" --receipts "$receipts")
    if ((NAMES > 0)); then helper_args+=(--names "$NAMES"); fi
    # The helpers must not hold the server's stdin open.
    "$PYTHON" "$HELPER" "${helper_args[@]}" >"$out" 2>"$WORK/helper$p.err" {SERVER_IN}>&- &
    HELPER_PIDS+=("$!")
    PIDS+=("$!")
    HELPER_OUT+=("$out")
    HELPER_RECEIPTS+=("$receipts")
    first=$((first + count))
done
log "started $PROCESSES helper(s) (pids ${HELPER_PIDS[*]}) opening $CLIENTS listeners, $CONCURRENCY attempts in flight each"

# helper_lines EVENT: every helper line of that event type.
helper_lines() { cat "${HELPER_OUT[@]}" 2>/dev/null | grep "\"event\": \"$1\"" || true; }

connected=0
deadline=$((SECONDS + CONNECT_TIMEOUT))
ready_since=""
while :; do
    connected=$(count_events connected)
    ((connected >= CLIENTS)) && break
    server_alive || { problem "the server (pid $SERVER_PID) died while clients connected: $(tail -n 5 "$SERVER_ERR")"; break; }
    ready=$(helper_lines ready | wc -l)
    if ((ready >= PROCESSES)); then
        # Every attempt has finished: give the server's events 3 s to catch up, then stop waiting.
        [[ -n $ready_since ]] || ready_since=$SECONDS
        ((SECONDS - ready_since < 3)) || break
    fi
    if ((SECONDS >= deadline)); then
        problem "only $connected of $CLIENTS listeners connected within CONNECT_TIMEOUT=$CONNECT_TIMEOUT s"
        break
    fi
    sleep 0.2
done
connect_end=$EPOCHREALTIME
cpu_connect_end=$(proc_cpu_ticks "$SERVER_PID")
R[connected]=$connected
log "server reports $connected connected"

# The connect time from the events themselves: last `connected` event minus the helpers' start.
last_connected_time=$(grep '"event":"connected"' "$EVENTS" | tail -n 1 | jq -r '.time' || true)
if [[ -n $last_connected_time ]]; then
    R[connect_seconds]=$(calc 'b - a' a="$connect_start" b="$(event_epoch "$last_connected_time")")
else
    R[connect_seconds]=$(calc 'b - a' a="$connect_start" b="$connect_end")
fi
R[connect_rate]=$(calc 'n / s' n="$connected" s="${R[connect_seconds]}")
R[cpu_connect_seconds]=$(calc '(b - a) / t' a="$cpu_connect_start" b="$cpu_connect_end" t="$CLK_TCK")

# What the helpers saw while connecting.
R[helper_connected]=0
R[helper_failed]=0
ERRORS_JSON='{}'
while IFS= read -r line; do
    [[ -n $line ]] || continue
    R[helper_connected]=$((R[helper_connected] + $(jq -r '.connected' <<<"$line")))
    R[helper_failed]=$((R[helper_failed] + $(jq -r '.failed' <<<"$line")))
    ERRORS_JSON=$(jq -c --argjson a "$ERRORS_JSON" '.errors as $e | reduce ($e | keys[]) as $k ($a; .[$k] += $e[$k])' <<<"$line")
done < <(helper_lines ready)
R[helper_connect_errors]=$ERRORS_JSON
if ((R[helper_failed] > 0)); then
    problem "${R[helper_failed]} listener connection(s) failed on the client side: $(jq -c . <<<"$ERRORS_JSON" | cut -c1-600)"
fi
if ((connected < CLIENTS)); then
    problem "the server printed $connected of $CLIENTS connected events"
fi
R[rss_connected_kb]=$(proc_rss_kb "$SERVER_PID")
R[server_fds]=$(proc_fds "$SERVER_PID")

# --- hold ------------------------------------------------------------------------------------------

log "holding $connected listeners for $HOLD s (server pings every $PING_INTERVAL s)"
hold_line0=$(wc -l <"$EVENTS")
hold_start=$EPOCHREALTIME
cpu_hold_start=$(proc_cpu_ticks "$SERVER_PID")
helpers_cpu_hold_start=$(helpers_cpu_ticks)
R[rss_hold_start_kb]=$(proc_rss_kb "$SERVER_PID")
rss_min=${R[rss_hold_start_kb]}
rss_max=${R[rss_hold_start_kb]}
for ((s = 0; s < HOLD; s++)); do
    sleep 1
    server_alive || { problem "the server (pid $SERVER_PID) died during the hold: $(tail -n 5 "$SERVER_ERR")"; break; }
    rss=$(proc_rss_kb "$SERVER_PID")
    ((rss < rss_min)) && rss_min=$rss
    ((rss > rss_max)) && rss_max=$rss
done
hold_end=$EPOCHREALTIME
cpu_hold_end=$(proc_cpu_ticks "$SERVER_PID")
helpers_cpu_hold_end=$(helpers_cpu_ticks)
hold_line1=$(wc -l <"$EVENTS")
R[rss_held_kb]=$(proc_rss_kb "$SERVER_PID")
R[rss_hold_min_kb]=$rss_min
R[rss_hold_max_kb]=$rss_max
R[rss_hwm_kb]=$(proc_status_kb "$SERVER_PID" VmHWM)
R[threads_held]=$(proc_status_kb "$SERVER_PID" Threads)
R[hold_wall_seconds]=$(calc 'b - a' a="$hold_start" b="$hold_end")
R[cpu_hold_seconds]=$(calc '(b - a) / t' a="$cpu_hold_start" b="$cpu_hold_end" t="$CLK_TCK")
R[cpu_hold_percent_of_one_core]=$(calc '100 * c / w' c="${R[cpu_hold_seconds]}" w="${R[hold_wall_seconds]}")
R[helpers_cpu_hold_seconds]=$(calc '(b - a) / t' a="$helpers_cpu_hold_start" b="$helpers_cpu_hold_end" t="$CLK_TCK")
R[rss_per_connection_kb]=$(calc '(h - i) / n' h="${R[rss_held_kb]}" i="${R[rss_idle_kb]}" n="$connected")
R[rss_per_connection_bytes]=$(calc '1024 * (h - i) / n' h="${R[rss_held_kb]}" i="${R[rss_idle_kb]}" n="$connected")

HOLD_EVENTS=$WORK/hold.events
head -n "$hold_line1" "$EVENTS" | tail -n "+$((hold_line0 + 1))" >"$HOLD_EVENTS"
grep '"event":"ping"' "$HOLD_EVENTS" | jq -r '[.client, .rtt_ms] | @tsv' >"$WORK/hold.pings" || true
read -r n p50 p99 max _ < <(cut -f2 "$WORK/hold.pings" | percentiles)
R[pings_in_hold]=$n
R[rtt_p50_ms]=${p50:-}
R[rtt_p99_ms]=${p99:-}
R[rtt_max_ms]=${max:-}
R[pings_expected]=$(calc 'n * h / i' n="$connected" h="${R[hold_wall_seconds]}" i="$PING_INTERVAL")
read -r pinged min_per max_per < <(awk -F'\t' '{ c[$1]++ } END { n = 0; mn = -1; mx = 0
    for (k in c) { n++; if (mn < 0 || c[k] < mn) mn = c[k]; if (c[k] > mx) mx = c[k] }
    printf "%d %d %d\n", n, (mn < 0 ? 0 : mn), mx }' "$WORK/hold.pings")
R[clients_pinged_in_hold]=$pinged
R[pings_per_client_min]=$min_per
R[pings_per_client_max]=$max_per
if ((pinged < connected)); then
    problem "only $pinged of $connected connected clients had a ping answered during the $HOLD s hold"
fi
R[rtt_over_100ms]=$(awk -F'\t' '$2 > 100 { n++ } END { print n + 0 }' "$WORK/hold.pings")
R[rtt_over_1000ms]=$(awk -F'\t' '$2 > 1000 { n++ } END { print n + 0 }' "$WORK/hold.pings")
log "hold: ${R[pings_in_hold]} ping events, RTT p50 ${R[rtt_p50_ms]} ms p99 ${R[rtt_p99_ms]} ms max ${R[rtt_max_ms]} ms; CPU ${R[cpu_hold_seconds]} s"

R[disconnected_before_broadcast]=$(count_events disconnected)
R[errors_before_broadcast]=$(count_events error)
if ((R[disconnected_before_broadcast] > 0)); then
    problem "${R[disconnected_before_broadcast]} disconnected event(s) before the broadcast: $(grep '"event":"disconnected"' "$EVENTS" | jq -c '{reason, code, message}' | sort | uniq -c | sort -rn | head -n 5 | tr '\n' ';')"
fi
if ((R[errors_before_broadcast] > 0)); then
    problem "${R[errors_before_broadcast]} error event(s) from the server: $(grep '"event":"error"' "$EVENTS" | jq -c '{code, message}' | sort | uniq -c | sort -rn | head -n 5 | tr '\n' ';')"
fi

# --- broadcast ------------------------------------------------------------------------------------

log "broadcast to every listener"
broadcast_line0=$(wc -l <"$EVENTS")
cpu_bc_start=$(proc_cpu_ticks "$SERVER_PID")
helpers_cpu_bc_start=$(helpers_cpu_ticks)
broadcast_start=$EPOCHREALTIME
printf '{"cmd":"broadcast","text":"%s","ref":"bench"}\n' "$MARKER" >&"$SERVER_IN"
sent_line=""
all_received_at=""
deadline=$((SECONDS + BROADCAST_TIMEOUT))
while :; do
    sent_line=$(tail -n "+$((broadcast_line0 + 1))" "$EVENTS" | grep -m 1 '"event":"sent"' || true)
    received_lines=$(helper_lines received | wc -l)
    if ((received_lines >= PROCESSES)) && [[ -z $all_received_at ]]; then
        all_received_at=$EPOCHREALTIME
        cpu_bc_end=$(proc_cpu_ticks "$SERVER_PID")
        helpers_cpu_bc_end=$(helpers_cpu_ticks)
    fi
    if [[ -n $sent_line && -n $all_received_at ]]; then break; fi
    if ((SECONDS >= deadline)); then
        [[ -n $sent_line ]] || problem "no sent event within BROADCAST_TIMEOUT=$BROADCAST_TIMEOUT s of the broadcast command"
        ((received_lines >= PROCESSES)) \
            || problem "only $received_lines of $PROCESSES helpers got the broadcast on every connection within $BROADCAST_TIMEOUT s"
        break
    fi
    server_alive || { problem "the server died during the broadcast: $(tail -n 5 "$SERVER_ERR")"; break; }
    sleep 0.05
done
if [[ -z $all_received_at ]]; then
    cpu_bc_end=$(proc_cpu_ticks "$SERVER_PID")
    helpers_cpu_bc_end=$(helpers_cpu_ticks)
fi
R[helpers_cpu_broadcast_seconds]=$(calc '(b - a) / t' a="$helpers_cpu_bc_start" b="$helpers_cpu_bc_end" t="$CLK_TCK")
R[cpu_broadcast_seconds]=$(calc '(b - a) / t' a="$cpu_bc_start" b="$cpu_bc_end" t="$CLK_TCK")
if [[ -n $sent_line ]]; then
    R[broadcast_delivered]=$(jq -r '.delivered' <<<"$sent_line")
    R[broadcast_held]=$(jq -r '.held // 0' <<<"$sent_line")
    R[broadcast_sent_event_ms]=$(calc '1000 * (b - a)' a="$broadcast_start" b="$(event_epoch "$(jq -r '.time' <<<"$sent_line")")")
    if ((R[broadcast_delivered] != CLIENTS)); then
        problem "the broadcast's sent event says delivered ${R[broadcast_delivered]}, expected $CLIENTS"
    fi
fi
# Receipt times of every listener, relative to the moment the command was written: column 1 when
# Python had the message, column 2 when it reached the listener's socket buffer (TCP_INFO; "-"
# when a later ping hid it), which tells the server's part of the delay from the time the frame
# waited for Python.
cat "${HELPER_RECEIPTS[@]}" 2>/dev/null \
    | awk -v t0="$broadcast_start" '{ printf "%.3f %s\n", 1000 * ($1 - t0), ($2 == "-" ? "-" : sprintf("%.3f", 1000 * ($2 - t0))) }' \
        >"$WORK/broadcast.latency_ms" || true
read -r n p50 p99 max min < <(cut -d' ' -f1 "$WORK/broadcast.latency_ms" | percentiles)
R[broadcast_received]=$n
R[broadcast_p50_ms]=${p50:-}
R[broadcast_p99_ms]=${p99:-}
R[broadcast_last_ms]=${max:-}
R[broadcast_first_ms]=${min:-}
read -r known p50 p99 max min < <(awk '$2 != "-" { print $2 }' "$WORK/broadcast.latency_ms" | percentiles)
R[broadcast_arrived_known]=$known
R[broadcast_arrived_p50_ms]=${p50:-}
R[broadcast_arrived_p99_ms]=${p99:-}
R[broadcast_arrived_last_ms]=${max:-}
R[broadcast_arrived_first_ms]=${min:-}
if ((R[broadcast_received] != CLIENTS)); then
    problem "${R[broadcast_received]} of $CLIENTS listeners received the broadcast"
fi
log "broadcast: delivered ${R[broadcast_delivered]:-?}, received by ${R[broadcast_received]}, last read after ${R[broadcast_last_ms]:-?} ms, last in a socket buffer after ${R[broadcast_arrived_last_ms]:-?} ms"

# --- client-side summary ----------------------------------------------------------------------------

sleep 1
R[disconnected_before_shutdown]=$(count_events disconnected)
R[errors_before_shutdown]=$(count_events error)
if ((R[disconnected_before_shutdown] > R[disconnected_before_broadcast])); then
    problem "$((R[disconnected_before_shutdown] - R[disconnected_before_broadcast])) disconnected event(s) during the broadcast"
fi
summaries_before=$(helper_lines summary | wc -l)
helper_rss=0
for pid in "${HELPER_PIDS[@]}"; do
    rss=$(proc_rss_kb "$pid")
    helper_rss=$((helper_rss + ${rss:-0}))
    kill -USR1 "$pid" 2>/dev/null || true
done
R[helpers_rss_kb]=$helper_rss
for ((i = 0; i < 50; i++)); do
    (($(helper_lines summary | wc -l) >= summaries_before + PROCESSES)) && break
    sleep 0.1
done
SUMMARY_JSON=$(helper_lines summary | jq -sc '{lost: (map(.lost) | add), open: (map(.open) | add),
    received: (map(.received) | add), other_frames: (map(.other_frames) | add), bad_frames: (map(.bad_frames) | add),
    lost_codes: (map(.lost_codes) | reduce .[] as $m ({}; reduce ($m | keys[]) as $k (.; .[$k] += $m[$k])))}')
R[client_lost]=$(jq -r '.lost // 0' <<<"$SUMMARY_JSON")
R[client_open]=$(jq -r '.open // 0' <<<"$SUMMARY_JSON")
R[client_lost_codes]=$(jq -c '.lost_codes // {}' <<<"$SUMMARY_JSON")
R[client_bad_frames]=$(jq -r '.bad_frames // 0' <<<"$SUMMARY_JSON")
if ((R[client_lost] > 0)); then
    problem "${R[client_lost]} listener connection(s) closed under the helpers (close codes ${R[client_lost_codes]}): $(helper_lines lost | head -n 3 | jq -c '{name, code, reason, seconds}' | tr '\n' ' ')"
fi
if ((R[client_bad_frames] > 0)); then
    problem "${R[client_bad_frames]} frame(s) the listeners did not understand"
fi

# --- shutdown with every listener connected ------------------------------------------------------------

log "SIGTERM to the server with ${R[client_open]} listeners connected"
shutdown_line0=$(wc -l <"$EVENTS")
shutdown_start=$EPOCHREALTIME
kill -TERM "$SERVER_PID"
for ((i = 0; i < 300; i++)); do
    server_alive || break
    sleep 0.1
done
if server_alive; then
    problem "the server did not exit within 30 s of SIGTERM"
    R[shutdown_exit_status]=""
else
    status=0
    wait "$SERVER_PID" || status=$?
    R[shutdown_exit_status]=$status
    ((status == 0)) || problem "the server exited with status $status after SIGTERM (expected 0)"
fi
R[shutdown_seconds]=$(calc 'b - a' a="$shutdown_start" b="$EPOCHREALTIME")
R[shutdown_disconnected]=$(tail -n "+$((shutdown_line0 + 1))" "$EVENTS" | grep -c '"event":"disconnected"' || true)
R[shutdown_reasons]=$(tail -n "+$((shutdown_line0 + 1))" "$EVENTS" | grep '"event":"disconnected"' | jq -r '.reason' | sort | uniq -c | awk '{ printf "%s%s=%s", sep, $2, $1; sep = " " }' || true)
for ((p = 0; p < PROCESSES; p++)); do
    if [[ -s $WORK/helper$p.err ]]; then
        problem "helper h$p wrote to stderr ($(wc -l <"$WORK/helper$p.err") lines), last: $(tail -n 2 "$WORK/helper$p.err" | tr '\n' ' ' | cut -c1-300)"
    fi
done
if [[ -s $SERVER_ERR ]]; then
    R[server_stderr]=$(head -c 600 "$SERVER_ERR")
    problem "the server wrote to stderr: $(head -n 3 "$SERVER_ERR" | tr '\n' ' ')"
fi
R[load_avg_end]=$(cut -d' ' -f1-3 /proc/loadavg)

# --- report --------------------------------------------------------------------------------------------

row() { printf '  %-44s %s\n' "$1" "$2"; }
kb_mb() { if [[ -z ${1:-} ]]; then printf -- '-'; else awk -v v="$1" 'BEGIN { printf "%.1f MB", v / 1024 }'; fi; }

{
    echo "xfer listeners benchmark: $CLIENTS listeners, pings every $PING_INTERVAL s, hold $HOLD s"
    echo "========================================================================"
    row "xfer" "${R[xfer_commit]} (${R[xfer_tree]}), ${R[xfer_version]}"
    row "server command" "${R[server_command]}"
    row "machine" "nproc ${R[nproc]}, ${R[kernel]}, load ${R[load_avg_start]} -> ${R[load_avg_end]}"
    if awk -v l="${R[load_avg_start]%% *}" -v n="${R[nproc]}" 'BEGIN { exit !(l > n / 2) }'; then
        row "WARNING" "load average ${R[load_avg_start]%% *} at the start: other work shares the CPUs, the figures are noisy"
    fi
    row "open files (soft/hard)" "$FD_SOFT_BEFORE -> $FD_SOFT / $FD_HARD; server fds held: ${R[server_fds]:-?}"
    row "helpers" "$PROCESSES x ${R[python]}, $CONCURRENCY connects in flight each, names $( ((NAMES > 0)) && echo "l0..l$((NAMES - 1)) shared" || echo "l0..l$((CLIENTS - 1))")"
    echo
    echo "Connect"
    row "connected (server events / helpers)" "$connected / ${R[helper_connected]} of $CLIENTS; failed ${R[helper_failed]}"
    row "time to connect all" "$(fmt "${R[connect_seconds]}" 2) s ($(fmt "${R[connect_rate]}" 0) connections/s)"
    row "server CPU while connecting" "$(fmt "${R[cpu_connect_seconds]}" 2) s"
    echo
    echo "Memory (server VmRSS)"
    row "idle" "$(kb_mb "${R[rss_idle_kb]}")"
    row "all connected / end of hold" "$(kb_mb "${R[rss_connected_kb]}") / $(kb_mb "${R[rss_held_kb]}") (hold min $(kb_mb "$rss_min"), max $(kb_mb "$rss_max"); peak VmHWM $(kb_mb "${R[rss_hwm_kb]}"))"
    row "per connection (held - idle) / N" "$(fmt "${R[rss_per_connection_kb]}" 1) kB"
    row "threads idle / held" "${R[threads_idle]} / ${R[threads_held]}"
    row "helpers' RSS (all $PROCESSES)" "$(kb_mb "${R[helpers_rss_kb]}")"
    echo
    echo "Hold ($(fmt "${R[hold_wall_seconds]}" 1) s)"
    row "server CPU (utime+stime)" "$(fmt "${R[cpu_hold_seconds]}" 2) s = $(fmt "${R[cpu_hold_percent_of_one_core]}" 1) % of one core (helpers: $(fmt "${R[helpers_cpu_hold_seconds]}" 2) s)"
    row "ping events (expected ~N*hold/interval)" "${R[pings_in_hold]} (~$(fmt "${R[pings_expected]}" 0)); clients pinged $pinged; per client $min_per..$max_per"
    row "ping RTT p50 / p99 / max" "$(fmt "${R[rtt_p50_ms]}" 3) / $(fmt "${R[rtt_p99_ms]}" 3) / $(fmt "${R[rtt_max_ms]}" 3) ms"
    row "RTTs over 100 ms / over 1 s" "${R[rtt_over_100ms]} / ${R[rtt_over_1000ms]}"
    row "disconnected / error events" "${R[disconnected_before_broadcast]} / ${R[errors_before_broadcast]}"
    echo
    echo "Broadcast (stdin {\"cmd\":\"broadcast\"} -> every listener)"
    row "sent event: delivered / held" "${R[broadcast_delivered]:--} / ${R[broadcast_held]:--} (expected $CLIENTS / 0)"
    row "sent event after the command" "$(fmt "${R[broadcast_sent_event_ms]:-}" 0) ms (event times have 1 ms resolution)"
    row "received by" "${R[broadcast_received]} of $CLIENTS listeners"
    row "read by Python: first / p50 / p99 / last" "$(fmt "${R[broadcast_first_ms]:-}" 1) / $(fmt "${R[broadcast_p50_ms]:-}" 1) / $(fmt "${R[broadcast_p99_ms]:-}" 1) / $(fmt "${R[broadcast_last_ms]:-}" 1) ms"
    row "in the socket buffer (TCP_INFO), same" "$(fmt "${R[broadcast_arrived_first_ms]:-}" 0) / $(fmt "${R[broadcast_arrived_p50_ms]:-}" 0) / $(fmt "${R[broadcast_arrived_p99_ms]:-}" 0) / $(fmt "${R[broadcast_arrived_last_ms]:-}" 0) ms (server side, ~1 ms resolution; ${R[broadcast_arrived_known]} of ${R[broadcast_received]} known)"
    row "CPU until the last receipt: server / helpers" "$(fmt "${R[cpu_broadcast_seconds]}" 2) s / $(fmt "${R[helpers_cpu_broadcast_seconds]}" 2) s"
    echo
    echo "Shutdown (SIGTERM with every listener connected)"
    row "exit status / time" "${R[shutdown_exit_status]:-still running} / $(fmt "${R[shutdown_seconds]}" 2) s"
    row "disconnected events (by reason)" "${R[shutdown_disconnected]} (${R[shutdown_reasons]:-none})"
    row "listeners closed under the helpers" "${R[client_lost]} before shutdown (codes ${R[client_lost_codes]})"
    echo
    if [[ ${#PROBLEMS[@]} -eq 0 ]]; then
        echo "Checks: all $CLIENTS connected; every one pinged during the hold; no disconnected or error events;"
        echo "        the broadcast delivered to and received by all $CLIENTS; clean exit 0 on SIGTERM."
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
        elif [[ ${R[$key]} == '{'* ]] && jq -e . >/dev/null 2>&1 <<<"${R[$key]}"; then
            args+=(--argjson "$key" "${R[$key]}")
        else
            args+=(--arg "$key" "${R[$key]}")
        fi
    done
    problems_json=$(printf '%s\n' "${PROBLEMS[@]}" | jq -Rsc 'split("\n") | map(select(length > 0))')
    jq -nS --argjson problems "$problems_json" "${args[@]}" '$ARGS.named + {problems: $problems}'
fi

[[ ${#PROBLEMS[@]} -eq 0 ]]
