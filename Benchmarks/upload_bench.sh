#!/usr/bin/env bash
# Benchmarks/upload_bench.sh - upload throughput, memory and CPU of `xfer upload` -> `xfer serve` on
# loopback, measured on this machine in one run against nc (the raw TCP limit) and an rsync daemon.
#
# Usage: Benchmarks/upload_bench.sh [--runs N] [--big] [--json] [--help]
#
#   --runs N   rounds of the throughput measurements; per-round ratios and medians are reported (default 3)
#   --big      also upload a 4 GiB random file once (throughput, CPU, peak RSS each side; plus one nc run)
#   --json     print the figures as one JSON object on stdout (the human table then goes to stderr)
#
# Environment:
#   XFER_BIN         use this xfer binary instead of building one
#   SCRATCH_PATH     scratch path of the release build (default .build-bench)
#   PYTHON           Python 3 for free ports, the stdlib corpus and the counting proxy (default python3)
#   RANDOM_MIB       size of the random file in MiB (default 1024)
#   TEXT_MIB         size of the text corpus in MiB (default 300)
#   BIG_MIB          size of the --big random file in MiB (default 4096)
#   LOAD_MAX         1-minute load average to wait for before measuring (default 0.5)
#   LOAD_WAIT        seconds to wait for it at most (default 120)
#   RSS_TARGET_MIB   peak RSS target for each xfer process (default 64)
#   STEP_TIMEOUT     seconds before one transfer counts as hung (default 900)
#   STARTUP_RUNS     runs of the whole-process `xfer send x` timing (default 30, at least 30 for the target)
#   BENCH_TMPDIR     where to put the files (default: mktemp -d under $TMPDIR or /tmp); removed at exit
#
# Steps: release build with the Swift runtime linked statically (`--static-swift-stdlib`, the binary `make install`
# installs: it starts in ~10 ms where a dynamically linked one takes ~15); a random file (/dev/urandom) and a text corpus (common licenses, every man
# page under /usr/share/man decompressed, /usr/share/dict, a few logs from /var/log, Python's stdlib
# .py files, concatenated and repeated up to TEXT_MIB) created once in the temp dir; wait for a quiet
# machine; then RUNS rounds, each uploading both files with every tool in turn:
#   xfer     `xfer upload --server 127.0.0.1:PORT FILE` to a fresh `xfer serve --port 0 --dir D`
#   xfer -t1, -t2  the text file again with `--threads 1` and `--threads 2` (skipped when the binary has no
#            --threads): wall MB/s, and the client's compression rate per CPU second (file MB / client CPU s)
#   xfer wss the random file over `wss://` (serve --tls-cert/--tls-key with a self-signed EC certificate made by
#            openssl in the temp dir, the client trusting it with --tls-ca), against xfer over ws:// that round
#   nc       `nc -l -d 127.0.0.1 PORT > out` and `nc -N 127.0.0.1 PORT < FILE` (netcat-openbsd)
#   rsync    `rsync -a`, `rsync -az` (this rsync's default choice, zstd) and
#            `rsync -az --compress-choice=zlib` to an rsync daemon on loopback (use chroot = no)
# Throughput is file bytes / wall time from the client's start until it exits 0 (nc: until both
# ends exited, i.e. the file is written); 1 MB = 10^6 bytes. Every saved file is compared with cmp
# and deleted (then `sync`) before the next run. CPU is user+sys seconds: clients from
# /usr/bin/time, the xfer server from /proc/PID/stat before/after, the rsync daemon with its
# reaped children; "other" is the rest of the machine's busy CPU (/proc/stat) during the run, in
# cores. Peak RSS: the client's from /usr/bin/time (%M), the server's VmHWM, read from
# /proc/PID/status after the upload (a fresh server per upload). After the rounds: one more xfer
# upload of each file through Tests/Support/faultproxy.py (a counting TCP proxy) for the bytes on
# the wire (not in the throughput figures), and `gzip -1 -c | wc -c` (and `zstd -3 -T1`) for
# reference ratios. Then start-up: `xfer send --server 127.0.0.1:PORT x` as a whole process against a running
# server, STARTUP_RUNS times (hyperfine -N when installed, else a loop timed with `date +%s%N`); median reported.
#
# Ratios (xfer / nc, xfer / rsync, wss / ws, CPU per GiB) are taken per round from that round's runs, then the
# median of the rounds is compared with the targets of issue 12. CPU per GiB is the client's plus the server's
# user+sys seconds per GiB of file (rsync: client plus the daemon's per-connection processes).
#
# Needs: bash >= 5, jq, coreutils, GNU time at /usr/bin/time (apt-get install time), netcat-openbsd,
# rsync, gzip, openssl, Python 3; hyperfine if present. About 2 x (RANDOM_MIB + TEXT_MIB) MiB free in the temp dir (plus 2 x BIG_MIB
# with --big). Every process started here is killed by its PID on exit. Exit status 0 only when no
# problem was found (see PROBLEMS at the end of the table); targets not met are reported, not fatal.

set -euo pipefail
# shellcheck source=Benchmarks/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
export LC_ALL=C

die() { printf 'upload_bench.sh: %s\n' "$*" >&2; exit 1; }
usage_error() { printf 'upload_bench.sh: %s (see --help)\n' "$*" >&2; exit 64; }

JSON=0
RUNS=3
BIG=0
while [[ $# -gt 0 ]]; do
    case "$1" in
        --json) JSON=1 ;;
        --big) BIG=1 ;;
        --runs) [[ $# -ge 2 ]] || usage_error "--runs needs a number"
                RUNS=$2; shift ;;
        --runs=*) RUNS=${1#--runs=} ;;
        -h | --help) usage; exit 0 ;;
        *) usage_error "unknown argument: $1" ;;
    esac
    shift
done
[[ $RUNS =~ ^[1-9][0-9]*$ ]] || usage_error "--runs must be a positive integer"

RANDOM_MIB=${RANDOM_MIB:-1024}
TEXT_MIB=${TEXT_MIB:-300}
BIG_MIB=${BIG_MIB:-4096}
LOAD_MAX=${LOAD_MAX:-0.5}
LOAD_WAIT=${LOAD_WAIT:-120}
RSS_TARGET_MIB=${RSS_TARGET_MIB:-64}
STEP_TIMEOUT=${STEP_TIMEOUT:-900}
STARTUP_RUNS=${STARTUP_RUNS:-30}
PYTHON=${PYTHON:-python3}
for var in RANDOM_MIB TEXT_MIB BIG_MIB LOAD_WAIT RSS_TARGET_MIB STEP_TIMEOUT STARTUP_RUNS; do
    [[ ${!var} =~ ^[1-9][0-9]*$ ]] || usage_error "$var must be a positive integer"
done
[[ $LOAD_MAX =~ ^[0-9]+(\.[0-9]+)?$ ]] || usage_error "LOAD_MAX must be a number"

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$BENCH_DIR/.." && pwd)
PROXY=$REPO/Tests/Support/faultproxy.py

# The human table goes to fd 3: stdout normally, stderr with --json.
if [[ $JSON -eq 1 ]]; then exec 3>&2; else exec 3>&1; fi

log() { printf '[upload_bench %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

# --- prerequisites ------------------------------------------------------------------------------

command -v jq >/dev/null || die "jq is required (apt-get install jq)"
command -v timeout >/dev/null || die "timeout (coreutils) is required"
command -v "$PYTHON" >/dev/null || die "$PYTHON not found (set PYTHON)"
command -v nc >/dev/null || die "nc is required (apt-get install netcat-openbsd)"
[[ $(nc -h 2>&1 || true) == *$'\n'*-N* ]] || die "this nc has no -N: netcat-openbsd is required (apt-get install netcat-openbsd)"
command -v rsync >/dev/null || die "rsync is required (apt-get install rsync)"
command -v gzip >/dev/null || die "gzip is required"
command -v openssl >/dev/null || die "openssl is required for the wss:// upload (apt-get install openssl)"
command -v pgrep >/dev/null || die "pgrep is required (apt-get install procps)"
[[ -x /usr/bin/time ]] || die "GNU time is required at /usr/bin/time (apt-get install time)"
/usr/bin/time -f '%M' -o /dev/null true 2>/dev/null || die "/usr/bin/time is not GNU time (apt-get install time)"
[[ -f $PROXY ]] || die "missing $PROXY"
[[ -n ${EPOCHREALTIME:-} ]] || die "bash >= 5 is required (EPOCHREALTIME)"
[[ -r /proc/self/status && -r /proc/self/stat && -r /proc/stat ]] || die "/proc is required (Linux)"
CLK_TCK=$(getconf CLK_TCK)

# --- cleanup: every process we start is killed by its PID -----------------------------------

PIDS=()
WORK=""
cleanup() {
    local pid i alive
    for pid in "${PIDS[@]}"; do
        kill "$pid" 2>/dev/null || true
    done
    for ((i = 0; i < 50; i++)); do
        alive=0
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
    if [[ -n $WORK ]]; then
        rm -rf "$WORK"
    fi
}
trap cleanup EXIT
# forget PID: a process that was waited for leaves the list (its PID may be reused).
forget() {
    local keep=() pid
    for pid in "${PIDS[@]}"; do
        [[ $pid == "$1" ]] || keep+=("$pid")
    done
    PIDS=("${keep[@]}")
}
trap 'exit 130' INT
trap 'exit 143' TERM

WORK=$(make_workdir upload_bench)

# --- results ------------------------------------------------------------------------------------

declare -A R=()
PROBLEMS=()

# median/minimum/maximum of a space-separated list (empty for an empty list).
median() {
    local v
    read -ra v <<<"$1"
    [[ ${#v[@]} -gt 0 ]] || return 0
    printf '%s\n' "${v[@]}" | sort -g | awk '{ v[NR] = $1 } END { if (NR % 2) printf "%.6f", v[(NR + 1) / 2]; else printf "%.6f", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}
minimum() {
    local v
    read -ra v <<<"$1"
    [[ ${#v[@]} -gt 0 ]] || return 0
    printf '%s\n' "${v[@]}" | sort -g | sed -n 1p
}
maximum() {
    local v
    read -ra v <<<"$1"
    [[ ${#v[@]} -gt 0 ]] || return 0
    printf '%s\n' "${v[@]}" | sort -g | tail -n1
}
# add KEY VALUE: appends VALUE to the per-run list R[KEY] (skipped when VALUE is empty).
add() { [[ -z ${2:-} ]] || R[$1]="${R[$1]:+${R[$1]} }$2"; }
mib() { calc "k / 1024" k="${1:-}"; }
is_lt() { [[ -n ${1:-} ]] && awk -v a="$1" -v b="$2" 'BEGIN { exit !(a < b) }'; }

# --- build ----------------------------------------------------------------------------------------

if [[ -n ${XFER_BIN:-} ]]; then
    XFER=$XFER_BIN
    [[ -x $XFER ]] || die "XFER_BIN=$XFER is not an executable"
    log "using XFER_BIN=$XFER (no build)"
else
    SCRATCH_PATH=${SCRATCH_PATH:-.build-bench}
    log "building xfer: swift build -c release --static-swift-stdlib --scratch-path $SCRATCH_PATH (1-5 minutes the first time)"
    build_start=$EPOCHREALTIME
    (cd "$REPO" && swift build -c release --static-swift-stdlib --product xfer --scratch-path "$SCRATCH_PATH" >&2) ||
        die "release build failed"
    R[build_seconds]=$(elapsed "$build_start" "$EPOCHREALTIME")
    bin_dir=$(cd "$REPO" && swift build -c release --static-swift-stdlib --scratch-path "$SCRATCH_PATH" --show-bin-path)
    XFER=$bin_dir/xfer
    [[ -x $XFER ]] || die "no xfer binary at $XFER after the build"
fi

# --- machine and version info ----------------------------------------------------------------------

R[nproc]=$(nproc)
R[cpu]=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo 2>/dev/null || true)
R[kernel]=$(uname -sr)
R[mem_total_mib]=$(awk '/^MemTotal/ { printf "%d", $2 / 1024 }' /proc/meminfo)
R[xfer_commit]=$(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo unknown)
if [[ -n $(git -C "$REPO" status --porcelain -- Sources Package.swift 2>/dev/null || true) ]]; then
    R[xfer_tree]="uncommitted changes in Sources/ or Package.swift"
else
    R[xfer_tree]="clean"
fi
R[xfer_version]=$("$XFER" --version 2>/dev/null || echo unknown)
# Builds before issue 12 have no --threads: their -t1/-t2 rows stay empty.
THREADS=0
if "$XFER" upload --help 2>&1 | grep -q -- '--threads'; then THREADS=1; fi
R[xfer_has_threads]=$THREADS
R[xfer_bin]=$XFER
R[rsync_version]=$(rsync --version | sed -n 1p | tr -s ' ')
R[rsync_compress_list]=$(rsync --version | awk '/^Compress list:/ { getline; gsub(/^ +| +$/, ""); print; exit }')
R[nc_version]=$(dpkg-query -W -f '${Package} ${Version}' netcat-openbsd 2>/dev/null || echo "nc (version unknown)")
R[gzip_version]=$(gzip --version | sed -n 1p)
R[work_dir]=$WORK
R[work_fs]=$(df -P "$WORK" | awk 'NR == 2 { print $1 " mounted on " $6 }')
R[runs]=$RUNS
R[random_mib]=$RANDOM_MIB
R[text_mib]=$TEXT_MIB
R[rss_target_mib]=$RSS_TARGET_MIB

need_mib=$((2 * (RANDOM_MIB + TEXT_MIB) + 512))
((BIG)) && need_mib=$((need_mib + 2 * BIG_MIB))
avail_mib=$(df -P -m "$WORK" | awk 'NR == 2 { print $4 }')
((avail_mib >= need_mib)) || die "$WORK has $avail_mib MiB free, this run needs about $need_mib MiB (set BENCH_TMPDIR)"

# --- CPU accounting -------------------------------------------------------------------------------

# busy_ticks: machine-wide busy CPU (user+nice+system+irq+softirq) and steal, in clock ticks.
busy_ticks() {
    local user nice system irq softirq steal
    read -r _ user nice system _ _ irq softirq steal _ </proc/stat
    printf '%d %d' $((user + nice + system + irq + softirq)) "$steal"
}
# proc_ticks PID [children]: utime+stime of PID (all threads), plus reaped children with "children".
proc_ticks() {
    local stat
    stat=$(cat "/proc/$1/stat" 2>/dev/null) || { printf ''; return 0; }
    stat=${stat##*) }
    # After "pid (comm) ": state=1 ... utime=12 stime=13 cutime=14 cstime=15.
    if [[ ${2:-} == children ]]; then
        awk '{ printf "%d", $12 + $13 + $14 + $15 }' <<<"$stat"
    else
        awk '{ printf "%d", $12 + $13 }' <<<"$stat"
    fi
}
ticks_to_s() { calc "t / hz" t="${1:-}" hz="$CLK_TCK"; }
# read_time FILE: sets T_USER_SYS (s) and T_RSS_KIB from the last line of `/usr/bin/time -f '%e %U %S %M'`.
T_USER_SYS=""
T_RSS_KIB=""
read_time() {
    local line
    T_USER_SYS=""
    T_RSS_KIB=""
    [[ -s $1 ]] || return 0
    line=$(tail -n1 "$1")
    if [[ $line =~ ^[0-9.]+\ ([0-9.]+)\ ([0-9.]+)\ ([0-9]+)$ ]]; then
        T_USER_SYS=$(calc "u + s" u="${BASH_REMATCH[1]}" s="${BASH_REMATCH[2]}")
        T_RSS_KIB=${BASH_REMATCH[3]}
    fi
}
TIME_FMT='%e %U %S %M'

# record KEY BYTES SECONDS CLIENT_CPU SERVER_CPU BUSY_DELTA_TICKS STEAL_DELTA_TICKS [BUSY_SECONDS]:
# per-run figures; BUSY_SECONDS is the span of the /proc/stat readings when longer than SECONDS.
record() {
    local key=$1 bytes=$2 secs=$3 ccpu=$4 scpu=$5 busy=$6 steal=$7 span=${8:-$3} other
    add "$key.mbps_runs" "$(calc "b / s / 1000000" b="$bytes" s="$secs")"
    add "$key.wall_runs" "$secs"
    add "$key.client_cpu_runs" "$ccpu"
    add "$key.server_cpu_runs" "$scpu"
    add "$key.cores_runs" "$(calc "(c + v) / s" c="$ccpu" v="$scpu" s="$secs")"
    add "$key.cpu_per_gib_runs" "$(calc "(c + v) / (b / 1073741824)" c="$ccpu" v="$scpu" b="$bytes")"
    # The client's rate per CPU second: xfer's only (nc's and rsync's clients use too little CPU to time).
    [[ $key != xfer* ]] || add "$key.client_mb_per_cpu_s_runs" "$(calc "c > 0 ? b / 1000000 / c : 0" b="$bytes" c="$ccpu")"
    # This round's figures, for the per-round ratios.
    R[$key.mbps.round$ROUND]=$(calc "b / s / 1000000" b="$bytes" s="$secs")
    R[$key.cpu_per_gib.round$ROUND]=$(calc "(c + v) / (b / 1073741824)" c="$ccpu" v="$scpu" b="$bytes")
    # Other processes' CPU is summed over the runs of KEY (ticks are 1/CLK_TCK s: short runs alone are too coarse).
    other=$(calc "(b / hz) - c - v" b="$busy" hz="$CLK_TCK" c="$ccpu" v="$scpu")
    [[ -n $other ]] || return 0
    R[$key.other_cpu_sum]=$(calc "a + o" a="${R[$key.other_cpu_sum]:-0}" o="$other")
    R[$key.steal_cpu_sum]=$(calc "a + t / hz" a="${R[$key.steal_cpu_sum]:-0}" t="$steal" hz="$CLK_TCK")
    R[$key.span_sum]=$(calc "a + s" a="${R[$key.span_sum]:-0}" s="$span")
}

# --- helpers: ports, servers ------------------------------------------------------------------------

free_port() {
    "$PYTHON" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}
# port_listening PORT: true when something listens on 127.0.0.1:PORT or *:PORT (IPv4).
port_listening() {
    local hex
    hex=$(printf '%04X' "$1")
    awk -v h=":$hex" 'NR > 1 && $4 == "0A" && substr($2, length($2) - 4) == h { found = 1 } END { exit !found }' /proc/net/tcp
}
wait_port() {
    local pid=$1 port=$2 i
    for ((i = 0; i < 300; i++)); do
        port_listening "$port" && return 0
        kill -0 "$pid" 2>/dev/null || return 1
        sleep 0.05
    done
    return 1
}

SERVER_PID=""
SERVER_PORT=""
SERVER_DIR=""
SERVER_EVENTS=""


# start_xfer_server TAG [SERVE_ARGS...]: a fresh server with an empty --dir, events to $WORK/TAG.events.
start_xfer_server() {
    local tag=$1 listen_pid
    shift
    SERVER_DIR=$WORK/$tag.dir
    SERVER_EVENTS=$WORK/$tag.events
    mkdir -p "$SERVER_DIR"
    "$XFER" serve --host 127.0.0.1 --port 0 --dir "$SERVER_DIR" "$@" >"$SERVER_EVENTS" 2>"$WORK/$tag.server.err" </dev/null &
    SERVER_PID=$!
    PIDS+=("$SERVER_PID")
    wait_listening "$SERVER_PID" "$SERVER_EVENTS" "$WORK/$tag.server.err"
    listen_pid=$(head -n1 "$SERVER_EVENTS" | jq -r '.pid // empty')
    if [[ -n $listen_pid && $listen_pid != "$SERVER_PID" ]]; then
        problem "xfer serve's listening event says pid $listen_pid, the process started is $SERVER_PID"
        PIDS+=("$listen_pid")
    fi
}

# stop_server: SIGTERM by PID, then wait for it (xfer exits 0 on SIGTERM).
stop_server() {
    local pid=$SERVER_PID rc=0
    [[ -n $pid ]] || return 0
    kill -TERM "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || rc=$?
    forget "$pid"
    SERVER_PID=""
    return "$rc"
}

# check_stderr FILE WHAT: anything a benchmark process wrote to stderr is worth a look.
check_stderr() {
    if [[ -s $1 ]]; then
        problem "$2 wrote to stderr: $(head -c 400 "$1" | tr '\n' ' ')"
    fi
}

# wait_event FILE JQ_FILTER: waits up to 10 s for an event matching the filter.
wait_event() {
    local i
    for ((i = 0; i < 100; i++)); do
        [[ -n $(jq -c "select($2)" "$1" 2>/dev/null | sed -n 1p) ]] && return 0
        sleep 0.1
    done
    return 1
}

# settle: removes what the last run wrote and flushes dirty pages, so that runs start alike.
settle() {
    rm -rf "$@"
    sync
}

# --- inputs ---------------------------------------------------------------------------------------

RANDOM_FILE=$WORK/random.bin
TEXT_FILE=$WORK/corpus.txt
BIG_FILE=$WORK/big.bin
declare -A SIZE=() SHA=() LABEL=() PATH_OF=()

log "creating $RANDOM_MIB MiB of /dev/urandom in $WORK"
head -c $((RANDOM_MIB * 1048576)) /dev/urandom >"$RANDOM_FILE"

# The corpus: real text of several kinds, concatenated once (its parts in a fixed order), then
# repeated; the repeat distance (the base size) is far beyond any compressor window used here.
log "building a $TEXT_MIB MiB text corpus"
stdlib=$("$PYTHON" -c 'import sysconfig; print(sysconfig.get_paths()["stdlib"])')
parts=()
add_part() {
    local name=$1 file=$WORK/part.$1 bytes
    shift
    "$@" >"$file" 2>/dev/null || true
    bytes=$(stat -c %s "$file")
    if ((bytes > 0)); then
        parts+=("$file")
        R[corpus_parts]="${R[corpus_parts]:+${R[corpus_parts]}, }$name $(fmt "$(calc "b / 1048576" b="$bytes")" 1) MiB"
    else
        rm -f "$file"
    fi
}
cat_licenses() { find /usr/share/common-licenses -type f -print0 | sort -z | xargs -0 -r cat; }
cat_man() { find /usr/share/man -type f -name '*.gz' -print0 | sort -z | xargs -0 -r zcat -f; }
cat_dict() { find /usr/share/dict -type f -print0 | sort -z | xargs -0 -r cat; }
cat_logs() {
    local f
    for f in /var/log/dpkg.log /var/log/alternatives.log /var/log/apt/history.log /var/log/apt/term.log; do
        [[ -f $f && -r $f ]] && cat "$f"
    done
    return 0
}
cat_stdlib() { find "$stdlib" -path '*/site-packages' -prune -o -type f -name '*.py' -print0 | sort -z | xargs -0 -r cat; }
add_part man-pages cat_man
add_part licenses cat_licenses
add_part dict cat_dict
add_part logs cat_logs
add_part python-stdlib cat_stdlib
[[ ${#parts[@]} -gt 0 ]] || die "found no text to build the corpus from"
cat "${parts[@]}" >"$WORK/corpus.base"
rm -f "${parts[@]}"
base_bytes=$(stat -c %s "$WORK/corpus.base")
((base_bytes >= 4 * 1048576)) || die "only $base_bytes bytes of text found for the corpus (want at least 4 MiB)"
target=$((TEXT_MIB * 1048576))
: >"$TEXT_FILE"
for ((copied = 0; copied < target; copied += base_bytes)); do
    cat "$WORK/corpus.base" >>"$TEXT_FILE"
done
truncate -s "$target" "$TEXT_FILE"
rm -f "$WORK/corpus.base"
R[corpus_base_mib]=$(calc "b / 1048576" b="$base_bytes")
R[corpus_copies]=$(calc "t / b" t="$target" b="$base_bytes")

if ((BIG)); then
    log "creating $BIG_MIB MiB of /dev/urandom for --big"
    head -c $((BIG_MIB * 1048576)) /dev/urandom >"$BIG_FILE"
fi

# The wss:// server's self-signed certificate (EC P-256, the kind a small server would use).
CERT=$WORK/cert.pem
CERT_KEY=$WORK/key.pem
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout "$CERT_KEY" -out "$CERT" \
    -days 2 -subj "/CN=xfer bench" -addext "subjectAltName=IP:127.0.0.1" >"$WORK/openssl.out" 2>&1 \
    || die "openssl could not make a certificate: $(head -c 300 "$WORK/openssl.out")"

FILES=(random text)
((BIG)) && FILES+=(big)
PATH_OF[random]=$RANDOM_FILE
PATH_OF[text]=$TEXT_FILE
PATH_OF[big]=$BIG_FILE
LABEL[random]="random $RANDOM_MIB MiB"
LABEL[text]="text $TEXT_MIB MiB"
LABEL[big]="random $BIG_MIB MiB (--big)"
for f in "${FILES[@]}"; do
    SIZE[$f]=$(stat -c %s "${PATH_OF[$f]}")
    SHA[$f]=$(sha256sum "${PATH_OF[$f]}" | cut -d' ' -f1)
done
sync

# --- quiet machine ----------------------------------------------------------------------------------

waited=0
while :; do
    load1=$(cut -d' ' -f1 /proc/loadavg)
    if is_lt "$load1" "$LOAD_MAX"; then break; fi
    if ((waited >= LOAD_WAIT)); then
        R[load_wait_timed_out]=1
        log "the 1-minute load average is still $load1 after ${waited} s: measuring anyway"
        break
    fi
    if ((waited == 0)); then log "waiting up to $LOAD_WAIT s for the 1-minute load average ($load1) to fall below $LOAD_MAX"; fi
    sleep 5
    waited=$((waited + 5))
done
R[load_wait_seconds]=$waited
R[load_avg_start]=$(cut -d' ' -f1-3 /proc/loadavg)
read -r _ run_steal0 <<<"$(busy_ticks)"
run_t0=$EPOCHREALTIME

# --- measurements -----------------------------------------------------------------------------------

# xfer_run KIND TAG [VARIANT]: one `xfer upload` of KIND's file to a fresh server; figures under xfer.KIND,
# or xfer_VARIANT.KIND for VARIANT t1 (--threads 1), t2 (--threads 2) or tls (wss:// with a self-signed cert).
xfer_run() {
    local kind=$1 tag=$2 variant=${3:-} key=xfer.$1
    local file=${PATH_OF[$1]} rc=0 t0 t1 srv0 srv1 busy0 busy1 steal0 steal1 hwm status saved name ccpu
    local serve_args=() client_args=() scheme=ws
    case "$variant" in
        "") ;;
        t1) client_args=(--threads 1) ;;
        t2) client_args=(--threads 2) ;;
        tls) serve_args=(--tls-cert "$CERT" --tls-key "$CERT_KEY"); client_args=(--tls-ca "$CERT"); scheme=wss ;;
        *) die "xfer_run: unknown variant $variant" ;;
    esac
    [[ -z $variant ]] || key=xfer_$variant.$kind
    name=$(basename "$file")
    start_xfer_server "$tag" "${serve_args[@]}"
    add "$key.server_idle_rss_kib_runs" "$(awk '/^VmRSS/ { print $2 }' "/proc/$SERVER_PID/status" 2>/dev/null || true)"
    srv0=$(proc_ticks "$SERVER_PID")
    read -r busy0 steal0 <<<"$(busy_ticks)"
    t0=$EPOCHREALTIME
    /usr/bin/time -f "$TIME_FMT" -o "$WORK/$tag.time" timeout "$STEP_TIMEOUT" \
        "$XFER" upload --server "$scheme://127.0.0.1:$SERVER_PORT" "${client_args[@]}" "$file" >"$WORK/$tag.client.out" 2>"$WORK/$tag.client.err" || rc=$?
    t1=$EPOCHREALTIME
    read -r busy1 steal1 <<<"$(busy_ticks)"
    srv1=$(proc_ticks "$SERVER_PID")
    wait_event "$SERVER_EVENTS" '.event == "file_saved" or .event == "error"' || true
    hwm=$(awk '/^VmHWM/ { print $2 }' "/proc/$SERVER_PID/status" 2>/dev/null || true)
    [[ -n $hwm ]] || problem "$tag: xfer serve (pid $SERVER_PID) was gone after the upload"
    stop_server || problem "$tag: xfer serve exited $? on SIGTERM"
    read_time "$WORK/$tag.time"
    ccpu=$T_USER_SYS
    [[ $rc -eq 0 ]] || problem "$tag: xfer upload exited $rc$([[ $rc -eq 124 ]] && echo " (timed out after $STEP_TIMEOUT s)")"
    check_stderr "$WORK/$tag.client.err" "$tag: xfer upload"
    check_stderr "$WORK/$tag.server.err" "$tag: xfer serve"
    status=$(jq -c 'select(.event == "status")' "$WORK/$tag.client.out" | tail -n1)
    if [[ $(jget "$status" .ok) != true || $(jget "$status" .bytes) != "${SIZE[$kind]}" || $(jget "$status" .sha256) != "${SHA[$kind]}" ]]; then
        problem "$tag: xfer upload's status is not ok with the file's size and SHA-256: ${status:-none}"
    fi
    [[ $(jget "$status" .resumed_from) == 0 ]] || problem "$tag: a fresh upload reported resumed_from $(jget "$status" .resumed_from)"
    saved=$(jq -c 'select(.event == "file_saved")' "$SERVER_EVENTS" | tail -n1)
    if [[ $(jget "$saved" .bytes) != "${SIZE[$kind]}" || $(jget "$saved" .sha256) != "${SHA[$kind]}" || $(jget "$saved" .path) != "$SERVER_DIR/$name" ]]; then
        problem "$tag: xfer serve's file_saved does not match the file: ${saved:-none}"
    fi
    if grep -q '"event":"error"' "$SERVER_EVENTS" "$WORK/$tag.client.out"; then
        problem "$tag: error events: $(grep -h '"event":"error"' "$SERVER_EVENTS" "$WORK/$tag.client.out" | head -c 400)"
    fi
    if ! cmp -s "$file" "$SERVER_DIR/$name"; then
        problem "$tag: the saved file differs from the original (cmp: $(cmp "$file" "$SERVER_DIR/$name" 2>&1 | head -c 200))"
    elif [[ -n $(find "$SERVER_DIR" -mindepth 1 -not -name "$name" -not -path "$SERVER_DIR/.xfer-partial" -print -quit) ||
        -n $(find "$SERVER_DIR/.xfer-partial" -mindepth 1 -print -quit 2>/dev/null) ]]; then
        problem "$tag: files left in --dir after a complete upload: $(find "$SERVER_DIR" -mindepth 1 -not -name "$name" | head -n5 | tr '\n' ' ')"
    fi
    if [[ $rc -eq 0 ]]; then
        record "$key" "${SIZE[$kind]}" "$(elapsed "$t0" "$t1")" "$ccpu" "$(ticks_to_s $((srv1 - srv0)))" \
            $((busy1 - busy0)) $((steal1 - steal0))
        add "$key.client_rss_kib_runs" "$T_RSS_KIB"
        add "$key.server_rss_kib_runs" "$hwm"
        log "$tag: $(fmt "$(calc "b / s / 1000000" b="${SIZE[$kind]}" s="$(elapsed "$t0" "$t1")")" 1) MB/s, client CPU $(fmt "$ccpu" 2) s, server CPU $(fmt "$(ticks_to_s $((srv1 - srv0)))" 2) s, client RSS $(fmt "$(mib "$T_RSS_KIB")" 1) MiB, server VmHWM $(fmt "$(mib "$hwm")" 1) MiB"
    fi
    settle "$SERVER_DIR" "$SERVER_EVENTS" "$WORK/$tag".*
}

# nc_run KIND TAG: `nc -l -d 127.0.0.1 PORT > out` and `nc -N 127.0.0.1 PORT < FILE`; figures under nc.KIND.
nc_run() {
    local kind=$1 tag=$2 key=nc.$1
    local file=${PATH_OF[$1]} rc=0 src=0 t0 t1 busy0 busy1 steal0 steal1 port tpid ncpid out=$WORK/$2.out ccpu crss
    port=$(free_port)
    /usr/bin/time -f "$TIME_FMT" -o "$WORK/$tag.server.time" nc -l -d 127.0.0.1 "$port" >"$out" 2>"$WORK/$tag.server.err" </dev/null &
    tpid=$!
    PIDS+=("$tpid")
    if ! wait_port "$tpid" "$port"; then
        problem "$tag: nc -l did not listen on port $port: $(head -c 200 "$WORK/$tag.server.err")"
        kill "$tpid" 2>/dev/null || true
        wait "$tpid" 2>/dev/null || true
        forget "$tpid"
        return 0
    fi
    ncpid=$(pgrep -P "$tpid" | sed -n 1p || true)
    [[ -z $ncpid ]] || PIDS+=("$ncpid")
    read -r busy0 steal0 <<<"$(busy_ticks)"
    t0=$EPOCHREALTIME
    /usr/bin/time -f "$TIME_FMT" -o "$WORK/$tag.time" timeout "$STEP_TIMEOUT" \
        nc -N 127.0.0.1 "$port" <"$file" >/dev/null 2>"$WORK/$tag.client.err" || rc=$?
    if [[ $rc -ne 0 && -n $ncpid ]]; then kill "$ncpid" 2>/dev/null || true; fi
    wait "$tpid" || src=$?
    forget "$tpid"
    [[ -z $ncpid ]] || forget "$ncpid"
    t1=$EPOCHREALTIME
    read -r busy1 steal1 <<<"$(busy_ticks)"
    [[ $rc -eq 0 ]] || problem "$tag: nc -N exited $rc"
    [[ $src -eq 0 ]] || problem "$tag: nc -l exited $src"
    check_stderr "$WORK/$tag.client.err" "$tag: nc -N"
    check_stderr "$WORK/$tag.server.err" "$tag: nc -l"
    cmp -s "$file" "$out" || problem "$tag: nc's output differs from the original ($(stat -c %s "$out") of ${SIZE[$kind]} bytes)"
    read_time "$WORK/$tag.time"
    ccpu=$T_USER_SYS
    crss=$T_RSS_KIB
    read_time "$WORK/$tag.server.time"
    if [[ $rc -eq 0 && $src -eq 0 ]]; then
        record "$key" "${SIZE[$kind]}" "$(elapsed "$t0" "$t1")" "$ccpu" "$T_USER_SYS" $((busy1 - busy0)) $((steal1 - steal0))
        add "$key.client_rss_kib_runs" "$crss"
        add "$key.server_rss_kib_runs" "$T_RSS_KIB"
        log "$tag: $(fmt "$(calc "b / s / 1000000" b="${SIZE[$kind]}" s="$(elapsed "$t0" "$t1")")" 1) MB/s"
    fi
    settle "$out" "$WORK/$tag".*
}

RSYNC_PID=""
RSYNC_PORT=""
RSYNC_DEST=$WORK/rsync.dest
start_rsync_daemon() {
    local conf=$WORK/rsyncd.conf
    mkdir -p "$RSYNC_DEST"
    cat >"$conf" <<EOF
use chroot = no
uid = $(id -u)
gid = $(id -g)
log file = $WORK/rsyncd.log
[up]
    path = $RSYNC_DEST
    read only = false
EOF
    RSYNC_PORT=$(free_port)
    rsync --daemon --no-detach --config="$conf" --address=127.0.0.1 --port="$RSYNC_PORT" </dev/null >"$WORK/rsyncd.out" 2>&1 &
    RSYNC_PID=$!
    PIDS+=("$RSYNC_PID")
    wait_port "$RSYNC_PID" "$RSYNC_PORT" || die "the rsync daemon did not listen on port $RSYNC_PORT: $(cat "$WORK/rsyncd.out" "$WORK/rsyncd.log" 2>/dev/null | head -c 400)"
}

# rsync_run MODE KIND TAG: MODE a | az | azzlib; figures under rsync_MODE.KIND.
rsync_run() {
    local mode=$1 kind=$2 tag=$3 key=rsync_$1.$2
    local file=${PATH_OF[$2]} rc=0 t0 t1 t2 busy0 busy1 steal0 steal1 d0 d1 i opts=() sent name choice
    case "$mode" in
        a) opts=(-a) ;;
        az) opts=(-az) ;;
        azzlib) opts=(-az --compress-choice=zlib) ;;
    esac
    name=$(basename "$file")
    d0=$(proc_ticks "$RSYNC_PID" children)
    read -r busy0 steal0 <<<"$(busy_ticks)"
    t0=$EPOCHREALTIME
    /usr/bin/time -f "$TIME_FMT" -o "$WORK/$tag.time" timeout "$STEP_TIMEOUT" \
        rsync "${opts[@]}" --stats --debug=NSTR "$file" "rsync://127.0.0.1:$RSYNC_PORT/up/" \
        >"$WORK/$tag.out" 2>"$WORK/$tag.err" || rc=$?
    t1=$EPOCHREALTIME
    # The daemon's per-connection processes count once it has reaped them.
    for ((i = 0; i < 100; i++)); do
        [[ -z $(pgrep -P "$RSYNC_PID" || true) ]] && break
        sleep 0.1
    done
    read -r busy1 steal1 <<<"$(busy_ticks)"
    t2=$EPOCHREALTIME
    d1=$(proc_ticks "$RSYNC_PID" children)
    [[ $rc -eq 0 ]] || problem "$tag: rsync ${opts[*]} exited $rc: $(head -c 300 "$WORK/$tag.err")"
    check_stderr "$WORK/$tag.err" "$tag: rsync ${opts[*]}"
    cmp -s "$file" "$RSYNC_DEST/$name" || problem "$tag: rsync's copy differs from the original"
    sent=$(awk -F': ' '/^Total bytes sent:/ { gsub(/,/, "", $2); print $2 }' "$WORK/$tag.out")
    choice=$(sed -n 's/^Client \(negotiated \)\{0,1\}compress: //p' "$WORK/$tag.out" | sed -n 1p)
    [[ -z $choice ]] || R[rsync_$mode.compress]=$choice
    read_time "$WORK/$tag.time"
    if [[ $rc -eq 0 ]]; then
        record "$key" "${SIZE[$kind]}" "$(elapsed "$t0" "$t1")" "$T_USER_SYS" "$(ticks_to_s $((d1 - d0)))" \
            $((busy1 - busy0)) $((steal1 - steal0)) "$(elapsed "$t0" "$t2")"
        add "$key.client_rss_kib_runs" "$T_RSS_KIB"
        add "$key.wire_ratio_runs" "$(calc "w / b" w="$sent" b="${SIZE[$kind]}")"
        log "$tag: $(fmt "$(calc "b / s / 1000000" b="${SIZE[$kind]}" s="$(elapsed "$t0" "$t1")")" 1) MB/s, sent $sent bytes${choice:+ ($choice)}"
    fi
    settle "$RSYNC_DEST/$name" "$RSYNC_DEST"/.[!.]* "$WORK/$tag".*
}

start_rsync_daemon
log "rsync daemon on 127.0.0.1:$RSYNC_PORT (${R[rsync_version]})"

ROUND=0
for ((run = 1; run <= RUNS; run++)); do
    ROUND=$run
    log "round $run of $RUNS"
    for kind in random text; do
        xfer_run "$kind" "xfer.$kind.$run"
        if [[ $kind == random ]]; then
            xfer_run random "xfer_tls.random.$run" tls
        elif ((THREADS)); then
            xfer_run text "xfer_t1.text.$run" t1
            xfer_run text "xfer_t2.text.$run" t2
        fi
        nc_run "$kind" "nc.$kind.$run"
        rsync_run a "$kind" "rsync_a.$kind.$run"
        rsync_run az "$kind" "rsync_az.$kind.$run"
        rsync_run azzlib "$kind" "rsync_azzlib.$kind.$run"
    done
done
ROUND=big
kill -TERM "$RSYNC_PID" 2>/dev/null || true
wait "$RSYNC_PID" 2>/dev/null || true
forget "$RSYNC_PID"

if ((BIG)); then
    log "--big: one upload of $BIG_MIB MiB with xfer and with nc"
    xfer_run big xfer.big.1
    nc_run big nc.big.1
    rm -f "$BIG_FILE"
fi

read -r _ run_steal1 <<<"$(busy_ticks)"
R[measure_seconds]=$(elapsed "$run_t0" "$EPOCHREALTIME")
R[steal_cores]=$(calc "(t / hz) / s" t=$((run_steal1 - run_steal0)) hz="$CLK_TCK" s="${R[measure_seconds]}")
R[load_avg_end]=$(cut -d' ' -f1-3 /proc/loadavg)

# --- bytes on the wire ------------------------------------------------------------------------------

# wire_run KIND: one xfer upload through the counting proxy; up/down bytes of its one connection.
wire_run() {
    local kind=$1 tag=wire.$1 file=${PATH_OF[$1]} rc=0 ppid pport i line name
    name=$(basename "$file")
    start_xfer_server "$tag"
    "$PYTHON" "$PROXY" "$SERVER_PORT" >"$WORK/$tag.proxy.out" 2>"$WORK/$tag.proxy.err" </dev/null &
    ppid=$!
    PIDS+=("$ppid")
    pport=""
    for ((i = 0; i < 100; i++)); do
        pport=$(head -n1 "$WORK/$tag.proxy.out" 2>/dev/null | jq -r '.port // empty' 2>/dev/null || true)
        [[ -n $pport ]] && break
        kill -0 "$ppid" 2>/dev/null || break
        sleep 0.1
    done
    [[ -n $pport ]] || die "the counting proxy printed no port: $(head -c 300 "$WORK/$tag.proxy.err")"
    timeout "$STEP_TIMEOUT" "$XFER" upload --server "127.0.0.1:$pport" "$file" \
        >"$WORK/$tag.client.out" 2>"$WORK/$tag.client.err" || rc=$?
    [[ $rc -eq 0 ]] || problem "$tag: xfer upload through the counting proxy exited $rc"
    check_stderr "$WORK/$tag.client.err" "$tag: xfer upload"
    line=""
    for ((i = 0; i < 150; i++)); do
        line=$(grep '"conn"' "$WORK/$tag.proxy.out" | sed -n 1p || true)
        [[ -n $line ]] && break
        sleep 0.1
    done
    kill "$ppid" 2>/dev/null || true
    wait "$ppid" 2>/dev/null || true
    forget "$ppid"
    wait_event "$SERVER_EVENTS" '.event == "file_saved"' || true
    stop_server || problem "$tag: xfer serve exited $? on SIGTERM"
    cmp -s "$file" "$SERVER_DIR/$name" || problem "$tag: the saved file differs from the original"
    if [[ -z $line ]]; then
        problem "$tag: the counting proxy reported no connection"
    else
        [[ $(grep -c '"conn"' "$WORK/$tag.proxy.out") -eq 1 ]] || problem "$tag: the upload used more than one connection: $(tr '\n' ' ' <"$WORK/$tag.proxy.out")"
        R[xfer.$kind.wire_up]=$(jget "$line" .up)
        R[xfer.$kind.wire_down]=$(jget "$line" .down)
        R[xfer.$kind.wire_ratio]=$(calc "u / b" u="${R[xfer.$kind.wire_up]}" b="${SIZE[$kind]}")
        log "$tag: $(jget "$line" .up) bytes up for ${SIZE[$kind]} (ratio $(fmt "${R[xfer.$kind.wire_ratio]}" 4))"
    fi
    settle "$SERVER_DIR" "$WORK/$tag".*
}
log "bytes on the wire: one more xfer upload of each file through $PROXY"
wire_run text
wire_run random

log "reference compressors on the text corpus"
t0=$EPOCHREALTIME
R[gzip1.bytes]=$(gzip -1 -c "$TEXT_FILE" | wc -c)
R[gzip1.mbps]=$(calc "b / s / 1000000" b="${SIZE[text]}" s="$(elapsed "$t0" "$EPOCHREALTIME")")
R[gzip1.ratio]=$(calc "c / b" c="${R[gzip1.bytes]}" b="${SIZE[text]}")
if command -v zstd >/dev/null; then
    t0=$EPOCHREALTIME
    R[zstd3.bytes]=$(zstd -3 -T1 -q -c "$TEXT_FILE" | wc -c)
    R[zstd3.mbps]=$(calc "b / s / 1000000" b="${SIZE[text]}" s="$(elapsed "$t0" "$EPOCHREALTIME")")
    R[zstd3.ratio]=$(calc "c / b" c="${R[zstd3.bytes]}" b="${SIZE[text]}")
fi

# --- start-up: `xfer send x` as a whole process ----------------------------------------------------------

# time_startup: STARTUP_RUNS whole-process runs of `xfer send x` against the running server, after 3 warm-ups.
time_startup() {
    local out=$WORK/startup.json i t0 t1 rc ms=()
    local cmd=("$XFER" send --server "127.0.0.1:$SERVER_PORT" x)
    if command -v hyperfine >/dev/null &&
        hyperfine -N --style none --warmup 3 --runs "$STARTUP_RUNS" --export-json "$out" "$(printf '%q ' "${cmd[@]}")" \
            >/dev/null 2>"$WORK/startup.hyperfine.err"; then
        R[startup.tool]="hyperfine $(hyperfine --version | awk '{ print $2 }') -N"
        R[startup.median_ms]=$(jq '.results[0].median * 1000' "$out")
        R[startup.mean_ms]=$(jq '.results[0].mean * 1000' "$out")
        R[startup.min_ms]=$(jq '.results[0].min * 1000' "$out")
        R[startup.max_ms]=$(jq '.results[0].max * 1000' "$out")
        R[startup.cpu_ms]=$(jq '(.results[0].user + .results[0].system) * 1000' "$out")
        return 0
    fi
    [[ ! -s $WORK/startup.hyperfine.err ]] || log "hyperfine failed ($(head -c 200 "$WORK/startup.hyperfine.err" | tr '\n' ' ')); timing with a loop"
    for ((i = -3; i < STARTUP_RUNS; i++)); do
        t0=$(date +%s%N)
        rc=0
        "${cmd[@]}" >/dev/null 2>>"$WORK/startup.err" || rc=$?
        t1=$(date +%s%N)
        [[ $rc -eq 0 ]] || { problem "startup: xfer send exited $rc: $(head -c 200 "$WORK/startup.err")"; return 0; }
        ((i < 0)) || ms+=("$(calc "(b - a) / 1000000" a="$t0" b="$t1")")
    done
    R[startup.tool]="bash loop, date +%s%N"
    R[startup.median_ms]=$(median "${ms[*]}")
    R[startup.min_ms]=$(minimum "${ms[*]}")
    R[startup.max_ms]=$(maximum "${ms[*]}")
}
log "start-up: xfer send x as a whole process, $STARTUP_RUNS runs against a running server"
start_xfer_server startup
time_startup
stop_server || problem "startup: xfer serve exited $? on SIGTERM"
check_stderr "$WORK/startup.server.err" "startup: xfer serve"
R[load_avg_end]=$(cut -d' ' -f1-3 /proc/loadavg)

# --- summaries ----------------------------------------------------------------------------------------

for key in "${!R[@]}"; do
    [[ $key == *_runs ]] || continue
    base=${key%_runs}
    R[$base]=$(median "${R[$key]}")
    case "$base" in
        *.mbps) R[$base.min]=$(minimum "${R[$key]}"); R[$base.max]=$(maximum "${R[$key]}") ;;
        *rss_kib) R[$base.max]=$(maximum "${R[$key]}") ;;
    esac
done
for key in "${!R[@]}"; do
    [[ $key == *.span_sum ]] || continue
    base=${key%.span_sum}
    other=$(calc "o / s" o="${R[$base.other_cpu_sum]:-}" s="${R[$key]}")
    R[$base.other_cores]=$(calc "x < 0 ? 0 : x" x="$other")
    R[$base.steal_cores]=$(calc "t / s" t="${R[$base.steal_cpu_sum]:-}" s="${R[$key]}")
done
# Per-round ratios NAME = A / B of one round's figures (A and B: KEY.mbps or KEY.cpu_per_gib); the median of the
# rounds is R[ratio_NAME].
RATIOS=(
    "random_xfer_vs_nc xfer.random.mbps nc.random.mbps"
    "random_xfer_vs_rsync_a xfer.random.mbps rsync_a.random.mbps"
    "text_xfer_vs_rsync_zstd xfer.text.mbps rsync_az.text.mbps"
    "text_xfer_vs_rsync_zlib xfer.text.mbps rsync_azzlib.text.mbps"
    "text_xfer_vs_nc xfer.text.mbps nc.text.mbps"
    "wss_vs_ws xfer_tls.random.mbps xfer.random.mbps"
    "cpu_random_xfer_vs_rsync_a xfer.random.cpu_per_gib rsync_a.random.cpu_per_gib"
    "cpu_text_xfer_vs_rsync_zstd xfer.text.cpu_per_gib rsync_az.text.cpu_per_gib"
    "text_t2_vs_t1 xfer_t2.text.mbps xfer_t1.text.mbps"
)
for spec in "${RATIOS[@]}"; do
    read -r name a b <<<"$spec"
    for ((run = 1; run <= RUNS; run++)); do
        add "ratio_${name}_runs" "$(calc "x / y" x="${R[$a.round$run]:-}" y="${R[$b.round$run]:-}")"
    done
    R[ratio_$name]=$(median "${R[ratio_${name}_runs]:-}")
done
R[ratio_wire_xfer_vs_gzip1]=$(calc "a / b" a="${R[xfer.text.wire_ratio]:-}" b="${R[gzip1.ratio]:-}")
if ((BIG)); then
    R[ratio_big_xfer_vs_nc]=$(calc "a / b" a="${R[xfer.big.mbps]:-}" b="${R[nc.big.mbps]:-}")
fi
rss_client=""
rss_server=""
for key in "${!R[@]}"; do
    [[ $key == xfer*.client_rss_kib_runs ]] && rss_client+=" ${R[$key]}"
    [[ $key == xfer*.server_rss_kib_runs ]] && rss_server+=" ${R[$key]}"
done
R[xfer_client_rss_kib_max]=$(maximum "$rss_client")
R[xfer_server_rss_kib_max]=$(maximum "$rss_server")

# Was the machine busy? The benchmark itself uses up to 2 cores, so the end load says little:
# the CPU that others used during our runs ("other") does.
BUSY_NOTES=()
if [[ ${R[load_wait_timed_out]:-0} -eq 1 ]]; then
    BUSY_NOTES+=("the 1-minute load average was ${R[load_avg_start]%% *} at the start (waited ${R[load_wait_seconds]} s for < $LOAD_MAX)")
fi
for key in "${!R[@]}"; do
    [[ $key == *.other_cores && -n ${R[$key]} ]] || continue
    # Under a second in all is too coarse to judge (10 ms ticks).
    is_lt "${R[${key%.other_cores}.span_sum]}" 1 && continue
    if ! is_lt "${R[$key]}" 0.2; then
        BUSY_NOTES+=("${key%.other_cores}: other processes kept $(fmt "${R[$key]}" 2) cores busy on average during its runs")
    fi
done
if ! is_lt "${R[steal_cores]:-0}" 0.05; then
    BUSY_NOTES+=("the hypervisor stole $(fmt "${R[steal_cores]}" 2) cores on average")
fi
mapfile -t BUSY_NOTES < <(printf '%s\n' "${BUSY_NOTES[@]}" | sed '/^$/d' | sort)

# --- report ------------------------------------------------------------------------------------

yesno() { if [[ -n ${1:-} ]] && awk -v v="$1" -v t="$3" "BEGIN { exit !(v $2 t) }"; then printf 'met'; else printf 'NOT met'; fi; }
mibfmt() { if [[ -z ${1:-} ]]; then printf -- '-'; else printf '%s MiB' "$(fmt "$(mib "$1")" 1)"; fi; }

row() {
    local label=$1 key=$2
    [[ -n ${R[$key.mbps]:-} ]] || { printf '    %-40s %s\n' "$label" "(no successful run)"; return 0; }
    printf '    %-40s %8s %17s %7s %8s %8s %7s %8s %6s %6s %11s %11s\n' "$label" \
        "$(fmt "${R[$key.mbps]}" 1)" "($(fmt "${R[$key.mbps.min]}" 0)..$(fmt "${R[$key.mbps.max]}" 0))" \
        "$(fmt "${R[$key.wall]:-}" 2)" "$(fmt "${R[$key.client_cpu]:-}" 2)" "$(fmt "${R[$key.server_cpu]:-}" 2)" \
        "$(fmt "${R[$key.cpu_per_gib]:-}" 2)" "$(fmt "${R[$key.client_mb_per_cpu_s]:-}" 0)" \
        "$(fmt "${R[$key.cores]:-}" 2)" "$(fmt "${R[$key.other_cores]:-}" 2)" \
        "$(mibfmt "${R[$key.client_rss_kib.max]:-}")" "$(mibfmt "${R[$key.server_rss_kib.max]:-}")"
}

{
    echo "xfer upload benchmark"
    echo "====================="
    printf '  %-22s %s\n' "xfer commit" "${R[xfer_commit]} (${R[xfer_tree]}), ${R[xfer_version]}"
    if ldd "$XFER" 2>/dev/null | grep -q 'libswiftCore'; then linkage="Swift runtime linked dynamically"
    else linkage="Swift runtime linked statically, as make install builds it"; fi
    printf '  %-22s %s\n' "xfer binary" "$XFER ($linkage)"
    printf '  %-22s %s\n' "machine" "nproc ${R[nproc]}, ${R[cpu]:-?}, ${R[mem_total_mib]} MiB, ${R[kernel]}"
    printf '  %-22s %s\n' "temp dir" "$WORK on ${R[work_fs]}"
    printf '  %-22s %s\n' "load average" "start ${R[load_avg_start]} (after waiting ${R[load_wait_seconds]} s) / end ${R[load_avg_end]}"
    printf '  %-22s %s\n' "references" "${R[rsync_version]} (compress list: ${R[rsync_compress_list]:-?}); ${R[nc_version]}; ${R[gzip_version]}"
    printf '  %-22s %s\n' "rsync -az compression" "${R[rsync_az.compress]:-?}; with --compress-choice=zlib: ${R[rsync_azzlib.compress]:-?}"
    printf '  %-22s %s\n' "text corpus" "$(fmt "${R[corpus_base_mib]}" 1) MiB of ${R[corpus_parts]:-?}; repeated $(fmt "${R[corpus_copies]}" 2) times to $TEXT_MIB MiB"
    [[ -n ${R[build_seconds]:-} ]] && printf '  %-22s %s s\n' "release build" "$(fmt "${R[build_seconds]}" 1)"
    if [[ ${#BUSY_NOTES[@]} -gt 0 ]]; then
        printf '  %-22s %s\n' "WARNING" "the machine was busy, the figures are noisier (and the CPU-bound ones lower) than on a quiet machine:"
        for note in "${BUSY_NOTES[@]}"; do printf '  %-22s - %s\n' "" "$note"; done
    fi
    echo
    echo "1. Uploads on loopback, median of $RUNS run(s) (min..max); MB/s = 10^6 file bytes per second of wall time"
    echo "   wall: client start .. exit 0 (nc: .. both ends exited); CPU: user+sys seconds; cores: (client+server CPU)/wall;"
    echo "   CPU/GiB: (client+server CPU s) per GiB of file; cl MB/cpu: file MB per client CPU second (the client's rate when"
    echo "   it has its cores to itself); other: CPU of everything else on the machine during the runs (all runs together),"
    echo "   in cores; RSS: peak over the runs"
    printf '    %-40s %8s %17s %7s %8s %8s %7s %8s %6s %6s %11s %11s\n' "" "MB/s" "(min..max)" "wall s" "client" "server" "CPU/GiB" "clMB/cpu" "cores" "other" "client RSS" "server RSS"
    for kind in "${FILES[@]}"; do
        echo "  ${LABEL[$kind]}"
        row "xfer upload -> xfer serve" "xfer.$kind"
        [[ $kind == random ]] && row "xfer upload over wss:// (TLS)" "xfer_tls.$kind"
        if [[ $kind == text ]]; then
            if ((THREADS)); then
                row "xfer upload --threads 1" "xfer_t1.$kind"
                row "xfer upload --threads 2" "xfer_t2.$kind"
            else
                printf '    %-40s %s\n' "xfer upload --threads 1 / 2" "(this xfer has no --threads)"
            fi
        fi
        row "nc -N -> nc -l -d > file (raw TCP)" "nc.$kind"
        if [[ $kind != big ]]; then
            row "rsync -a -> rsync daemon" "rsync_a.$kind"
            row "rsync -az (${R[rsync_az.compress]:-default})" "rsync_az.$kind"
            row "rsync -az --compress-choice=zlib" "rsync_azzlib.$kind"
        fi
    done
    echo "   rsync's server column is the daemon's reaped per-connection processes (generator and receiver);"
    echo "   other includes kernel threads (e.g. writeback of the saved files) and is coarse when the runs add up to under a second"
    echo
    echo "2. Bytes on the wire / file size"
    printf '  %-58s %8s   %s\n' "xfer upload, text (counting proxy, client -> server)" "$(fmt "${R[xfer.text.wire_ratio]:-}" 4)" "(${R[xfer.text.wire_up]:-?} bytes up, ${R[xfer.text.wire_down]:-?} down)"
    printf '  %-58s %8s   %s\n' "xfer upload, random (counting proxy)" "$(fmt "${R[xfer.random.wire_ratio]:-}" 4)" "(${R[xfer.random.wire_up]:-?} bytes up)"
    printf '  %-58s %8s   %s\n' "gzip -1 -c | wc -c, text (one stream, one core)" "$(fmt "${R[gzip1.ratio]:-}" 4)" "($(fmt "${R[gzip1.mbps]:-}" 1) MB/s)"
    [[ -n ${R[zstd3.ratio]:-} ]] && printf '  %-58s %8s   %s\n' "zstd -3 -T1, text" "$(fmt "${R[zstd3.ratio]}" 4)" "($(fmt "${R[zstd3.mbps]:-}" 1) MB/s)"
    printf '  %-58s %8s\n' "rsync -az (${R[rsync_az.compress]:-?}), text: Total bytes sent" "$(fmt "${R[rsync_az.text.wire_ratio]:-}" 4)"
    printf '  %-58s %8s\n' "rsync -az --compress-choice=zlib, text: Total bytes sent" "$(fmt "${R[rsync_azzlib.text.wire_ratio]:-}" 4)"
    printf '  %-58s %8s\n' "rsync -a, random: Total bytes sent" "$(fmt "${R[rsync_a.random.wire_ratio]:-}" 4)"
    echo
    echo "3. Ratios per round (A / B of the same round) and their median"
    for spec in "${RATIOS[@]}"; do
        read -r name _ _ <<<"$spec"
        printf '  %-34s %8s   rounds: %s\n' "$name" "$(fmt "${R[ratio_$name]:-}" 3)" \
            "$(for v in ${R[ratio_${name}_runs]:-}; do printf '%s ' "$(fmt "$v" 3)"; done)"
    done
    echo
    echo "4. Start-up: xfer send --server 127.0.0.1:PORT x, whole process against a running server (${R[startup.tool]:-?})"
    printf '  %-58s %8s   (min %s, max %s, CPU %s ms)\n' "median of $STARTUP_RUNS runs, ms" "$(fmt "${R[startup.median_ms]:-}" 1)" \
        "$(fmt "${R[startup.min_ms]:-}" 1)" "$(fmt "${R[startup.max_ms]:-}" 1)" "$(fmt "${R[startup.cpu_ms]:-}" 1)"
    echo
    echo "5. Targets (issue 12; medians of the per-round ratios)"
    printf '  %-58s %8s   (target >= 0.75: %s)\n' "xfer text MB/s / rsync -az (${R[rsync_az.compress]:-default})" "$(fmt "${R[ratio_text_xfer_vs_rsync_zstd]:-}" 2)" "$(yesno "${R[ratio_text_xfer_vs_rsync_zstd]:-}" '>=' 0.75)"
    printf '  %-58s %8s   (target <= 1.02: %s)\n' "xfer text wire ratio / gzip -1 ratio" "$(fmt "${R[ratio_wire_xfer_vs_gzip1]:-}" 4)" "$(yesno "${R[ratio_wire_xfer_vs_gzip1]:-}" '<=' 1.02)"
    printf '  %-58s %8s   (target >= 1.0: %s)\n' "xfer random MB/s / nc random MB/s" "$(fmt "${R[ratio_random_xfer_vs_nc]:-}" 2)" "$(yesno "${R[ratio_random_xfer_vs_nc]:-}" '>=' 1.0)"
    printf '  %-58s %8s   (target >= 1.0: %s)\n' "xfer random MB/s / rsync -a random MB/s" "$(fmt "${R[ratio_random_xfer_vs_rsync_a]:-}" 2)" "$(yesno "${R[ratio_random_xfer_vs_rsync_a]:-}" '>=' 1.0)"
    printf '  %-58s %8s   (target <= 1.0: %s)\n' "xfer CPU s/GiB / rsync -a CPU s/GiB, random" "$(fmt "${R[ratio_cpu_random_xfer_vs_rsync_a]:-}" 2)" "$(yesno "${R[ratio_cpu_random_xfer_vs_rsync_a]:-}" '<=' 1.0)"
    printf '  %-58s %8s   (target >= 0.8: %s)\n' "xfer wss:// MB/s / ws:// MB/s, random" "$(fmt "${R[ratio_wss_vs_ws]:-}" 2)" "$(yesno "${R[ratio_wss_vs_ws]:-}" '>=' 0.8)"
    printf '  %-58s %8s   (target < 15 ms: %s)\n' "xfer send x, whole process, median ms" "$(fmt "${R[startup.median_ms]:-}" 1)" "$(yesno "${R[startup.median_ms]:-}" '<' 15)"
    printf '  %-58s %8s   (target < %s MiB: %s)\n' "xfer upload peak RSS (max over all uploads)" "$(mibfmt "${R[xfer_client_rss_kib_max]:-}")" "$RSS_TARGET_MIB" "$(yesno "${R[xfer_client_rss_kib_max]:-}" '<' $((RSS_TARGET_MIB * 1024)))"
    printf '  %-58s %8s   (target < %s MiB: %s)\n' "xfer serve peak RSS, VmHWM (max over all uploads)" "$(mibfmt "${R[xfer_server_rss_kib_max]:-}")" "$RSS_TARGET_MIB" "$(yesno "${R[xfer_server_rss_kib_max]:-}" '<' $((RSS_TARGET_MIB * 1024)))"
    printf '  %-58s %8s\n' "  xfer serve RSS when idle, before the upload (median)" "$(mibfmt "${R[xfer.random.server_idle_rss_kib]:-}")"
    for kind in "${FILES[@]}"; do
        printf '  %-58s %8s / %s\n' "  ${LABEL[$kind]}: client / server peak RSS" "$(mibfmt "${R[xfer.$kind.client_rss_kib.max]:-}")" "$(mibfmt "${R[xfer.$kind.server_rss_kib.max]:-}")"
    done
    printf '  %-58s %8s\n' "xfer text MB/s / rsync -az --compress-choice=zlib" "$(fmt "${R[ratio_text_xfer_vs_rsync_zlib]:-}" 2)"
    printf '  %-58s %8s\n' "xfer text MB/s / nc text MB/s" "$(fmt "${R[ratio_text_xfer_vs_nc]:-}" 2)"
    printf '  %-58s %8s\n' "xfer text client MB per CPU s, --threads 1 / 2" "$(fmt "${R[xfer_t1.text.client_mb_per_cpu_s]:-}" 0) / $(fmt "${R[xfer_t2.text.client_mb_per_cpu_s]:-}" 0)"
    if ((BIG)); then
        printf '  %-58s %8s\n' "xfer / nc, $BIG_MIB MiB random (one run each)" "$(fmt "${R[ratio_big_xfer_vs_nc]:-}" 2)"
    fi
    echo
    if [[ ${#PROBLEMS[@]} -eq 0 ]]; then
        echo "Checks: every upload exited 0; every saved file identical (cmp) to its original; xfer's status and file_saved"
        echo "        carried the right size and SHA-256; no error events; nothing on stderr; servers exited 0 on SIGTERM."
    else
        echo "PROBLEMS (${#PROBLEMS[@]}):"
        printf '  - %s\n' "${PROBLEMS[@]}"
    fi
} >&3

if [[ $JSON -eq 1 ]]; then
    args=()
    for key in "${!R[@]}"; do
        if [[ $key == *_runs ]]; then
            args+=(--argjson "$key" "[$(tr ' ' ',' <<<"${R[$key]}")]")
        elif [[ ${R[$key]} =~ ^-?[0-9]+(\.[0-9]+)?([eE][-+]?[0-9]+)?$ ]]; then
            args+=(--argjson "$key" "${R[$key]}")
        else
            args+=(--arg "$key" "${R[$key]}")
        fi
    done
    problems_json=$(printf '%s\n' "${PROBLEMS[@]}" | jq -Rsc 'split("\n") | map(select(length > 0))')
    busy_json=$(printf '%s\n' "${BUSY_NOTES[@]}" | jq -Rsc 'split("\n") | map(select(length > 0))')
    jq -nS --argjson problems "$problems_json" --argjson busy "$busy_json" "${args[@]}" '$ARGS.named + {problems: $problems, busy: $busy}'
fi

[[ ${#PROBLEMS[@]} -eq 0 ]]
