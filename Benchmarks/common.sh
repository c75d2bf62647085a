# Helpers shared by the benchmark scripts in this folder; sourced, not run.
# shellcheck shell=bash

# usage: prints the script's header comment (its help).
usage() { sed -n '2,/^$/{s/^# \{0,1\}//;s/^#$//;p}' "$0"; }

# problem MESSAGE: records a failed check (the scripts exit non-zero when any was recorded).
problem() { PROBLEMS+=("$*"); log "PROBLEM: $*"; }

# fmt VALUE DECIMALS: a number rounded for the table ("-" when empty).
fmt() { if [[ -z ${1:-} ]]; then printf -- '-'; else awk -v v="$1" -v d="$2" 'BEGIN { printf "%.*f", d, v }'; fi; }

# calc EXPR VAR=VALUE...: awk arithmetic (6 decimals); empty if any input is empty or a division by zero.
calc() {
    local expr=$1; shift
    local args=() kv
    for kv in "$@"; do
        [[ -n ${kv#*=} ]] || { printf ''; return 0; }
        args+=(-v "$kv")
    done
    awk "${args[@]}" "BEGIN { x = ($expr); printf \"%.6f\", x }" 2>/dev/null || printf ''
}

# elapsed START END: END - START in seconds.
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.6f", b - a }'; }

# jget JSON FILTER: one value from a JSON object, empty when missing.
jget() { jq -r "$2 // empty" <<<"$1"; }

# make_workdir NAME: a new temporary directory (under BENCH_TMPDIR when set), printed.
make_workdir() {
    if [[ -n ${BENCH_TMPDIR:-} ]]; then
        mkdir -p "$BENCH_TMPDIR"
        mktemp -d "$BENCH_TMPDIR/$1.XXXXXX"
    else
        mktemp -d "${TMPDIR:-/tmp}/$1.XXXXXX"
    fi
}

# wait_listening PID FILE ERRFILE: waits for the listening line in FILE, sets SERVER_PORT.
wait_listening() {
    local pid=$1 file=$2 err=$3 i line=""
    for ((i = 0; i < 300; i++)); do
        if [[ -s $file ]]; then
            IFS= read -r line <"$file" || true
            if [[ $line == *'"listening"'* ]]; then
                SERVER_PORT=$(jq -r 'select(.event == "listening") | .port' <<<"$line")
                [[ $SERVER_PORT =~ ^[0-9]+$ && $SERVER_PORT -gt 0 ]] || die "bad listening line: $line"
                return 0
            fi
        fi
        kill -0 "$pid" 2>/dev/null || die "server (pid $pid) exited before listening: $(cat "$err" 2>/dev/null)"
        sleep 0.1
    done
    die "server (pid $pid) printed no listening line within 30 s"
}
