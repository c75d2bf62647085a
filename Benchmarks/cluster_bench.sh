#!/usr/bin/env bash
# Benchmarks/cluster_bench.sh - what running several `xfer serve --cluster` instances behind HAProxy costs,
# measured on this machine in one run: a throw-away PostgreSQL, 3 instances on one --dir, HAProxy in front
# (examples/cluster/haproxy.cfg), all on 127.0.0.1.
#
# Usage: Benchmarks/cluster_bench.sh [--json] [--runs N] [--help]
#
#   --json     print the figures as one JSON object on stdout (the human table then goes to stderr)
#   --runs N   repetitions of each upload and pipelined-text measurement; the median is reported (default 3)
#
# Environment:
#   XFER_BIN        use this xfer binary instead of building one
#   SCRATCH_PATH    scratch path of the release build (default .build-bench)
#   UPLOAD_MIB      size of the random file uploaded direct and through HAProxy (default 512)
#   KILL_MIB        size of the file whose instance is killed mid-upload (default 1024)
#   MESSAGES        texts in the pipelined test (default 20000), of MESSAGE_BYTES bytes (default 100)
#   RTT_MESSAGES    texts sent one at a time for the round trip (default 2000)
#   STEP_TIMEOUT    seconds before one step counts as hung (default 300)
#   BENCH_TMPDIR    where to put inputs and event files (default: mktemp -d)
#
# Needs: bash >= 5, jq, haproxy, PostgreSQL server binaries (Debian postgresql), python3 (free ports), curl.
# As root, PostgreSQL runs as the `postgres` user (Tests/Support/pgharness.sh). Every process is stopped by
# PID on exit.
#
# What is measured:
#   1. upload: `xfer upload` of UPLOAD_MIB MiB straight to instance xfer-1 vs through HAProxy (MB/s, wall
#      time of the client; 1 MB = 10^6 bytes); goal: through HAProxy >= 0.9 x direct.
#   2. pipelined texts: `xfer send --to bench` of MESSAGES lines (window 1000) with the listener on the same
#      instance as the sender vs on another instance, and against a standalone `xfer serve` (no --cluster);
#      rate = MESSAGES / time from the start of send until the listener printed the last text.
#   3. round trip, one text at a time (`--window 1`): status latency p50 (the status comes once the text is
#      committed) and delivery p50 (the listener's `text` time minus the send time, from the events' `time`
#      fields, 1 ms resolution), listener on the same vs another instance, and standalone;
#      goal: across instances <= 2 x one instance.
#   4. kill -9: an upload of KILL_MIB MiB through HAProxy; once 64 MiB went, the instance serving it gets
#      SIGKILL; reported: the time from the kill to the client's next `connected` (through HAProxy, to
#      another instance) and to its first progress there, and the `resumed_from` of the finished upload.

set -euo pipefail
# shellcheck source=Benchmarks/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
export LC_ALL=C

JSON=0
RUNS=3
while [[ $# -gt 0 ]]; do
    case "$1" in
        --json) JSON=1 ;;
        --runs) [[ $# -ge 2 ]] || { echo "cluster_bench.sh: --runs needs a number" >&2; exit 64; }
                RUNS=$2; shift ;;
        --runs=*) RUNS=${1#--runs=} ;;
        -h|--help) usage; exit 0 ;;
        *) echo "cluster_bench.sh: unknown argument: $1 (see --help)" >&2; exit 64 ;;
    esac
    shift
done
[[ $RUNS =~ ^[1-9][0-9]*$ ]] || { echo "cluster_bench.sh: --runs must be a positive integer" >&2; exit 64; }

UPLOAD_MIB=${UPLOAD_MIB:-512}
KILL_MIB=${KILL_MIB:-1024}
MESSAGES=${MESSAGES:-20000}
MESSAGE_BYTES=${MESSAGE_BYTES:-100}
RTT_MESSAGES=${RTT_MESSAGES:-2000}
STEP_TIMEOUT=${STEP_TIMEOUT:-300}

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$BENCH_DIR/.." && pwd)
PGHARNESS=$REPO/Tests/Support/pgharness.sh

if [[ $JSON -eq 1 ]]; then exec 3>&2; else exec 3>&1; fi
log() { printf '[cluster_bench] %s\n' "$*" >&2; }
die() { printf 'cluster_bench.sh: %s\n' "$*" >&2; exit 1; }

# --- prerequisites ------------------------------------------------------------------------------

command -v jq >/dev/null || die "jq is required (apt-get install jq)"
command -v curl >/dev/null || die "curl is required"
command -v python3 >/dev/null || die "python3 is required (free ports)"
command -v timeout >/dev/null || die "timeout (coreutils) is required"
HAPROXY=$(command -v haproxy || echo /usr/sbin/haproxy)
[[ -x $HAPROXY ]] || die "haproxy is required (apt-get install haproxy)"
compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null || [[ -n ${PG_BIN:-} ]] || command -v initdb >/dev/null \
    || die "PostgreSQL is required (apt-get install postgresql)"
[[ -n ${EPOCHREALTIME:-} ]] || die "bash >= 5 is required (EPOCHREALTIME)"

# --- cleanup: every process we start is stopped by its PID; PostgreSQL through pg_ctl ------------

PIDS=()
WORK=""
PGDIR=""
cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
    if [[ -n $PGDIR ]]; then bash "$PGHARNESS" destroy "$PGDIR" >/dev/null 2>&1 || true; fi
    if [[ -n $WORK ]]; then rm -rf "$WORK"; fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

WORK=$(make_workdir cluster_bench)
chmod 755 "$WORK"

declare -A R=()
PROBLEMS=()
median() { printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { if (NR % 2) printf "%.6f", v[(NR + 1) / 2]; else printf "%.6f", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
# p50 of the numbers on stdin.
p50() { sort -g | awk '{ v[NR] = $1 } END { if (NR == 0) exit; printf "%.6f", v[int((NR + 1) / 2)] }'; }
# jq: an event time (ISO 8601, UTC) as ms since midnight.
JQ_MS='def ms: sub("Z$"; "") | capture("T(?<h>..):(?<m>..):(?<s>[0-9.]+)$")
    | ((.h | tonumber) * 3600 + (.m | tonumber) * 60 + (.s | tonumber)) * 1000;'
now_ms() { awk -v t="$EPOCHREALTIME" 'BEGIN { printf "%.3f", t * 1000 }'; }
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

# --- build ----------------------------------------------------------------------------------------

if [[ -n ${XFER_BIN:-} ]]; then
    XFER=$XFER_BIN
    [[ -x $XFER ]] || die "XFER_BIN=$XFER is not an executable"
    log "using XFER_BIN=$XFER (no build)"
else
    SCRATCH_PATH=${SCRATCH_PATH:-.build-bench}
    log "building xfer: swift build -c release --scratch-path $SCRATCH_PATH (several minutes the first time)"
    build_start=$EPOCHREALTIME
    (cd "$REPO" && swift build -c release --scratch-path "$SCRATCH_PATH" >&2) || die "release build failed"
    R[build_seconds]=$(elapsed "$build_start" "$EPOCHREALTIME")
    XFER=$(cd "$REPO" && swift build -c release --scratch-path "$SCRATCH_PATH" --show-bin-path)/xfer
    [[ -x $XFER ]] || die "no xfer binary at $XFER after the build"
fi

R[nproc]=$(nproc)
R[load_avg_start]=$(cut -d' ' -f1-3 /proc/loadavg)
R[xfer_commit]=$(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo unknown)
R[xfer_version]=$("$XFER" --version 2>/dev/null || echo unknown)
R[haproxy]=$("$HAPROXY" -v 2>/dev/null | awk 'NR == 1 { print $3 }')

# --- the cluster ------------------------------------------------------------------------------------

PGDIR=$WORK/pg
PG_URL=$(bash "$PGHARNESS" start "$PGDIR") || die "PostgreSQL did not start"
R[postgres]=$("$(dirname "$(find /usr/lib/postgresql -path '*/bin/postgres' 2>/dev/null | sort -V | tail -n 1)")/postgres" --version 2>/dev/null | awk '{ print $3 }' || true)
INBOX=$WORK/inbox
mkdir -p "$INBOX"
declare -A PORT=() SPID=()

# start_serve TAG ARGS...: xfer serve --port 0 --dir $INBOX ARGS..., events in $WORK/TAG.events.
start_serve() {
    local tag=$1
    shift
    "$XFER" serve --port 0 --dir "$INBOX" "$@" </dev/null >"$WORK/$tag.events" 2>"$WORK/$tag.err" &
    SPID[$tag]=$!
    PIDS+=("${SPID[$tag]}")
    # With --cluster the `cluster` event comes first: look for `listening` on any line.
    local i
    for ((i = 0; i < 300; i++)); do
        PORT[$tag]=$(jq -r 'select(.event == "listening") | .port' "$WORK/$tag.events" 2>/dev/null | head -n 1)
        [[ -n ${PORT[$tag]} ]] && return 0
        kill -0 "${SPID[$tag]}" 2>/dev/null || die "$tag exited before listening: $(cat "$WORK/$tag.events" "$WORK/$tag.err")"
        sleep 0.1
    done
    die "$tag printed no listening event within 30 s"
}
for n in 1 2 3; do start_serve "xfer-$n" --cluster "$PG_URL" --instance "xfer-$n"; done
start_serve standalone

XFER_LB_PORT=$(free_port)
export XFER_LB_PORT XFER_PORT_1=${PORT[xfer-1]} XFER_PORT_2=${PORT[xfer-2]} XFER_PORT_3=${PORT[xfer-3]}
"$HAPROXY" -db -f "$REPO/examples/cluster/haproxy.cfg" >"$WORK/haproxy.log" 2>&1 &
HAPROXY_PID=$!
PIDS+=("$HAPROXY_PID")
LB=127.0.0.1:$XFER_LB_PORT
for _ in $(seq 300); do
    seen=$(for i in $(seq 12); do curl -fs "http://$LB/health?upload=probe-$i" | jq -r .instance; done 2>/dev/null | sort -u | wc -l)
    [[ $seen -eq 3 ]] && break
    sleep 0.1
done
[[ $seen -eq 3 ]] || die "HAProxy does not reach the 3 instances: $(cat "$WORK/haproxy.log")"
log "PostgreSQL $PG_URL, instances on ports ${PORT[xfer-1]} ${PORT[xfer-2]} ${PORT[xfer-3]}, HAProxy on $LB"

# instance_of_upload: the instance whose events show the latest upload connection.
instance_of_upload() {
    local n best="" best_time="" t
    for n in 1 2 3; do
        t=$(jq -r 'select(.event == "connected" and .role == "upload") | .time' "$WORK/xfer-$n.events" | tail -n 1)
        if [[ -n $t && ( -z $best_time || $t > $best_time ) ]]; then best=xfer-$n; best_time=$t; fi
    done
    printf '%s' "$best"
}

# --- 1. upload: direct vs through HAProxy -------------------------------------------------------------

log "1. upload of $UPLOAD_MIB MiB, direct vs through HAProxy, $RUNS run(s) each"
head -c "$((UPLOAD_MIB * 1048576))" /dev/urandom >"$WORK/upload.bin"
BYTES=$((UPLOAD_MIB * 1048576))
# upload_once SERVER NAME: MB/s of one upload, checked with cmp and then deleted.
upload_once() {
    local server=$1 name=$2 t0 t1 rc=0
    t0=$EPOCHREALTIME
    timeout "$STEP_TIMEOUT" "$XFER" upload --server "$server" --name "$name" "$WORK/upload.bin" \
        >"$WORK/$name.out" 2>"$WORK/$name.err" || rc=$?
    t1=$EPOCHREALTIME
    [[ $rc -eq 0 ]] || { problem "upload $name to $server exited $rc: $(tail -c 300 "$WORK/$name.out")"; return 0; }
    cmp -s "$WORK/upload.bin" "$INBOX/$name" || problem "upload $name: the saved file differs"
    rm -f "$INBOX/$name"
    calc "b / s / 1000000" b="$BYTES" s="$(elapsed "$t0" "$t1")"
}
direct=() balanced=()
for ((run = 1; run <= RUNS; run++)); do
    direct+=("$(upload_once "127.0.0.1:${PORT[xfer-1]}" "direct-$run.bin")")
    balanced+=("$(upload_once "$LB" "balanced-$run.bin")")
    log "run $run: direct $(fmt "${direct[-1]}" 0) MB/s, through HAProxy $(fmt "${balanced[-1]}" 0) MB/s"
done
R[upload_direct_mbps]=$(median "${direct[@]}")
R[upload_haproxy_mbps]=$(median "${balanced[@]}")
R[ratio_upload]=$(calc "a / b" a="${R[upload_haproxy_mbps]}" b="${R[upload_direct_mbps]}")
rm -f "$WORK/upload.bin"

# --- 2. pipelined texts ------------------------------------------------------------------------------

log "2. pipelined texts: $MESSAGES of $MESSAGE_BYTES bytes, $RUNS run(s) each"
python3 -c "
import sys
n, size = int(sys.argv[1]), int(sys.argv[2])
with open(sys.argv[3], 'w') as f:
    for i in range(n):
        head = 'm%d ' % i
        f.write(head + 'x' * max(0, size - len(head)) + '\n')
" "$MESSAGES" "$MESSAGE_BYTES" "$WORK/texts.txt"
head -n "$RTT_MESSAGES" "$WORK/texts.txt" >"$WORK/rtt.txt"

# texts KEY LISTEN_TAG SEND_TAG FILE WINDOW: a listener on LISTEN_TAG (a fresh name), `xfer send --to` of FILE
# through SEND_TAG; sets the figures R[KEY.*]: rate (texts/s until the listener printed the last one),
# status_p50_ms, delivery_p50_ms.
texts() {
    local key=$1 listen_tag=$2 send_tag=$3 file=$4 window=$5 count name listener t0 t1 rc=0 i
    count=$(wc -l <"$file")
    name=$key-$RANDOM
    "$XFER" listen --server "127.0.0.1:${PORT[$listen_tag]}" --name "$name" \
        >"$WORK/$key.listen" 2>"$WORK/$key.listen.err" </dev/null &
    listener=$!
    PIDS+=("$listener")
    for ((i = 0; i < 300; i++)); do grep -q '"connected"' "$WORK/$key.listen" 2>/dev/null && break; sleep 0.05; done
    t0=$EPOCHREALTIME
    timeout "$STEP_TIMEOUT" "$XFER" send --server "127.0.0.1:${PORT[$send_tag]}" --to "$name" --window "$window" \
        <"$file" >"$WORK/$key.send" 2>"$WORK/$key.send.err" || rc=$?
    [[ $rc -eq 0 ]] || problem "$key: xfer send exited $rc: $(tail -c 300 "$WORK/$key.send.err")"
    for ((i = 0; i < STEP_TIMEOUT * 100; i++)); do
        [[ $(grep -c '"event":"text"' "$WORK/$key.listen") -ge $count ]] && break
        sleep 0.01
    done
    t1=$EPOCHREALTIME
    kill "$listener" 2>/dev/null || true
    wait "$listener" 2>/dev/null || true
    local got
    got=$(jq -r 'select(.event == "text") | .text' "$WORK/$key.listen" | cmp -s - "$file" && echo same || echo differ)
    if [[ $got != same ]]; then
        problem "$key: the listener printed other texts than were sent (gap, duplicate or order): $(jq -r 'select(.event == "text") | .text' "$WORK/$key.listen" | diff - "$file" | head -n 4 | cut -c1-60 | tr '\n' ' ')"
    fi
    R[$key.rate]=$(calc "n / s" n="$count" s="$(elapsed "$t0" "$t1")")
    R[$key.status_p50_ms]=$(jq -r 'select(.event == "status" and .ok == true) | .latency_ms' "$WORK/$key.send" | p50)
    # Delivery: the listener's time of text i minus (status time - latency) of text i; times in ms.
    R[$key.delivery_p50_ms]=$(jq -rs --slurpfile l "$WORK/$key.listen" "$JQ_MS"'
        [.[] | select(.event == "status" and .ok == true) | ((.time | ms) - .latency_ms)] as $sent
        | [$l[] | select(.event == "text") | (.time | ms)] as $got
        | range(0; [$sent, $got] | map(length) | min) | $got[.] - $sent[.]' "$WORK/$key.send" | p50)
}
declare -A RATES=()
for ((run = 1; run <= RUNS; run++)); do
    texts "same_$run" xfer-1 xfer-1 "$WORK/texts.txt" 1000
    texts "across_$run" xfer-1 xfer-2 "$WORK/texts.txt" 1000
    texts "standalone_$run" standalone standalone "$WORK/texts.txt" 1000
    for kind in same across standalone; do RATES[$kind]+=" ${R[${kind}_$run.rate]}"; done
    log "run $run: same instance $(fmt "${R[same_$run.rate]}" 0)/s, across $(fmt "${R[across_$run.rate]}" 0)/s, standalone $(fmt "${R[standalone_$run.rate]}" 0)/s"
done
for kind in same across standalone; do
    # shellcheck disable=SC2086 # a list of numbers
    R[texts_${kind}_rate]=$(median ${RATES[$kind]})
done
R[ratio_texts_across_same]=$(calc "a / b" a="${R[texts_across_rate]}" b="${R[texts_same_rate]}")
R[ratio_texts_across_standalone]=$(calc "a / b" a="${R[texts_across_rate]}" b="${R[texts_standalone_rate]}")

# --- 3. round trip, one at a time --------------------------------------------------------------------

log "3. round trip: $RTT_MESSAGES texts with --window 1"
texts rtt_same xfer-1 xfer-1 "$WORK/rtt.txt" 1
texts rtt_across xfer-1 xfer-2 "$WORK/rtt.txt" 1
texts rtt_standalone standalone standalone "$WORK/rtt.txt" 1
R[ratio_rtt_status]=$(calc "a / b" a="${R[rtt_across.status_p50_ms]}" b="${R[rtt_same.status_p50_ms]}")
R[ratio_rtt_delivery]=$(calc "a / b" a="${R[rtt_across.delivery_p50_ms]}" b="${R[rtt_same.delivery_p50_ms]}")

# --- 4. kill -9 of the instance serving an upload ---------------------------------------------------------

log "4. kill -9 of the instance serving a $KILL_MIB MiB upload through HAProxy"
head -c "$((KILL_MIB * 1048576))" /dev/urandom >"$WORK/kill.bin"
"$XFER" upload --server "$LB" --retries 10 "$WORK/kill.bin" >"$WORK/kill.out" 2>"$WORK/kill.err" &
UPLOADER=$!
PIDS+=("$UPLOADER")
for ((i = 0; i < STEP_TIMEOUT * 20; i++)); do
    [[ $(jq -r 'select(.event == "progress") | .bytes' "$WORK/kill.out" 2>/dev/null | tail -n 1) -ge $((64 * 1048576)) ]] 2>/dev/null && break
    sleep 0.05
done
victim=$(instance_of_upload)
if [[ -z $victim ]]; then
    problem "kill: no instance printed an upload connection"
else
    kill -KILL "${SPID[$victim]}"
    KILL_MS=$(now_ms)
    wait "${SPID[$victim]}" 2>/dev/null || true
    rc=0
    wait "$UPLOADER" || rc=$?
    [[ $rc -eq 0 ]] || problem "kill: the upload exited $rc: $(tail -c 300 "$WORK/kill.out")"
    cmp -s "$WORK/kill.bin" "$INBOX/kill.bin" || problem "kill: the saved file differs"
    R[kill_victim]=$victim
    R[kill_resumed_from]=$(jq -r 'select(.event == "status") | .resumed_from' "$WORK/kill.out" | tail -n 1)
    R[kill_saved_by]=$(jq -rs 'map(select(.event == "file_saved" and .name == "kill.bin")) | .[0].instance // empty' "$WORK"/xfer-?.events)
    # The wall clock of the kill as ms since midnight UTC, like the events' times.
    kill_of_day=$(awk -v t="$KILL_MS" 'BEGIN { printf "%.3f", t - int(t / 86400000) * 86400000 }')
    # The first `connected` after the kill, and the first progress after that one.
    read -r kill_to_connected kill_to_progress < <(jq -rs --argjson k "$kill_of_day" "$JQ_MS"'
        (map(select(.event == "connected") | (.time | ms) - $k | select(. >= 0)) | min) as $c
        | (if $c == null then null
           else map(select(.event == "progress") | (.time | ms) - $k | select(. >= $c)) | min end) as $p
        | "\($c // "-") \($p // "-")"' "$WORK/kill.out")
    R[kill_to_connected_ms]=${kill_to_connected/#-/}
    R[kill_to_progress_ms]=${kill_to_progress/#-/}
    [[ ${R[kill_saved_by]} != "$victim" ]] || problem "kill: the killed instance saved the file"
    [[ ${R[kill_resumed_from]:-0} -gt 0 ]] || problem "kill: the upload started over (resumed_from 0)"
fi
rm -f "$WORK/kill.bin"
R[load_avg_end]=$(cut -d' ' -f1-3 /proc/loadavg)

# --- report ------------------------------------------------------------------------------------------

yesno() { if [[ -n ${1:-} ]] && awk -v v="$1" -v t="$3" "BEGIN { exit !(v $2 t) }"; then printf 'met'; else printf 'NOT met'; fi; }
{
    echo "xfer cluster benchmark"
    echo "======================"
    printf '  %-22s %s\n' "xfer" "${R[xfer_commit]}, ${R[xfer_version]}, $XFER"
    printf '  %-22s %s\n' "stack" "HAProxy ${R[haproxy]}, PostgreSQL ${R[postgres]:-?} (fsync off), 3 instances, one --dir"
    printf '  %-22s %s\n' "machine" "nproc ${R[nproc]}, load start ${R[load_avg_start]} / end ${R[load_avg_end]}"
    echo
    echo "1. Upload of $UPLOAD_MIB MiB (median of $RUNS)"
    printf '  %-48s %10s MB/s\n' "direct to xfer-1" "$(fmt "${R[upload_direct_mbps]}" 0)"
    printf '  %-48s %10s MB/s\n' "through HAProxy" "$(fmt "${R[upload_haproxy_mbps]}" 0)"
    printf '  %-48s %10s x   (goal >= 0.9: %s)\n' "ratio HAProxy / direct" "$(fmt "${R[ratio_upload]}" 2)" "$(yesno "${R[ratio_upload]}" '>=' 0.9)"
    echo
    echo "2. Pipelined texts: $MESSAGES of $MESSAGE_BYTES bytes, window 1000, until the listener printed all (median of $RUNS)"
    printf '  %-48s %10s texts/s\n' "standalone xfer serve (no --cluster)" "$(fmt "${R[texts_standalone_rate]}" 0)"
    printf '  %-48s %10s texts/s\n' "cluster, listener on the sender's instance" "$(fmt "${R[texts_same_rate]}" 0)"
    printf '  %-48s %10s texts/s\n' "cluster, listener on another instance" "$(fmt "${R[texts_across_rate]}" 0)"
    printf '  %-48s %10s x\n' "ratio across / same instance" "$(fmt "${R[ratio_texts_across_same]}" 2)"
    printf '  %-48s %10s x\n' "ratio across / standalone" "$(fmt "${R[ratio_texts_across_standalone]}" 2)"
    echo
    echo "3. Round trip, $RTT_MESSAGES texts one at a time (p50, ms)"
    printf '  %-48s %10s %10s\n' "" "status" "delivery"
    printf '  %-48s %10s %10s\n' "standalone xfer serve" "$(fmt "${R[rtt_standalone.status_p50_ms]}" 3)" "$(fmt "${R[rtt_standalone.delivery_p50_ms]}" 3)"
    printf '  %-48s %10s %10s\n' "cluster, one instance" "$(fmt "${R[rtt_same.status_p50_ms]}" 3)" "$(fmt "${R[rtt_same.delivery_p50_ms]}" 3)"
    printf '  %-48s %10s %10s\n' "cluster, across instances" "$(fmt "${R[rtt_across.status_p50_ms]}" 3)" "$(fmt "${R[rtt_across.delivery_p50_ms]}" 3)"
    printf '  %-48s %10s %10s   (goal <= 2x: status %s, delivery %s)\n' "ratio across / one instance" \
        "$(fmt "${R[ratio_rtt_status]}" 2)" "$(fmt "${R[ratio_rtt_delivery]}" 2)" \
        "$(yesno "${R[ratio_rtt_status]}" '<=' 2)" "$(yesno "${R[ratio_rtt_delivery]}" '<=' 2)"
    echo "  (delivery: listener's text time - send time, from event times with 1 ms resolution)"
    echo
    echo "4. kill -9 of the instance serving a $KILL_MIB MiB upload through HAProxy"
    printf '  %-48s %10s\n' "killed / saved by" "${R[kill_victim]:--} / ${R[kill_saved_by]:--}"
    printf '  %-48s %10s ms\n' "kill -> client connected again (elsewhere)" "$(fmt "${R[kill_to_connected_ms]:-}" 0)"
    printf '  %-48s %10s ms\n' "kill -> first progress after the reconnect" "$(fmt "${R[kill_to_progress_ms]:-}" 0)"
    printf '  %-48s %10s bytes\n' "resumed_from" "${R[kill_resumed_from]:--}"
    if ((${#PROBLEMS[@]})); then
        echo
        echo "PROBLEMS:"
        printf '  - %s\n' "${PROBLEMS[@]}"
    fi
} >&3

if [[ $JSON -eq 1 ]]; then
    for k in "${!R[@]}"; do printf '%s\0%s\0' "$k" "${R[$k]}"; done \
        | jq -Rs 'split("\u0000") | .[:-1] | [range(0; length; 2) as $i | {key: .[$i], value: (.[$i + 1] | tonumber? // .)}] | from_entries'
fi
((${#PROBLEMS[@]} == 0))
