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
