#!/usr/bin/env bash
# Shows: a cluster on one machine: a throw-away PostgreSQL, 3 `xfer serve --cluster` instances sharing one
# --dir, and HAProxy in front (examples/cluster/haproxy.cfg), all on 127.0.0.1 on free ports. Prints where
# to connect and runs until Ctrl-C, then stops everything it started, by PID.
#   --self-check   start it all, send a text from one client to a listener and upload a file, both
#                  through HAProxy, check what arrived, stop everything, exit 0 when it all worked.
# Needs: xfer (or XFER=/path/to/xfer), haproxy, PostgreSQL server binaries (Debian: postgresql; found in
# /usr/lib/postgresql/*/bin, or PG_BIN), jq, curl, python3 (to pick free ports). As root, PostgreSQL
# runs as the `postgres` user (it refuses root).
set -euo pipefail
XFER=${XFER:-xfer}
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
self_check=0
case "${1:-}" in
    "") ;;
    --self-check) self_check=1 ;;
    *) echo "usage: run.sh [--self-check]" >&2; exit 64 ;;
esac

die() { echo "run.sh: $*" >&2; exit 1; }
command -v haproxy >/dev/null || die "haproxy not found (apt-get install haproxy)"
if [[ -n ${PG_BIN:-} ]]; then
    pg_bin=$PG_BIN
else
    pg_bin=$(find /usr/lib/postgresql -mindepth 3 -maxdepth 3 -path '*/bin/initdb' 2>/dev/null | sort -V | tail -n 1)
    pg_bin=${pg_bin%/initdb}
    [[ -n $pg_bin ]] || pg_bin=$(dirname "$(command -v initdb || die "PostgreSQL not found (apt-get install postgresql)")")
fi

work=$(mktemp -d)
chmod 755 "$work"                      # the postgres user must reach $work/pg
pids=()
pg_started=0
as_pg() { if [[ $(id -u) -eq 0 ]]; then runuser -u postgres -- "$@"; else "$@"; fi; }
cleanup() {
    local pid
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
    if ((pg_started)); then as_pg "$pg_bin/pg_ctl" -D "$work/pg/data" -m fast -w stop >/dev/null 2>&1 || true; fi
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

# 1. PostgreSQL: initdb into a temporary directory, started on a free port of 127.0.0.1.
mkdir "$work/pg"
if [[ $(id -u) -eq 0 ]]; then chown postgres "$work/pg"; fi
as_pg "$pg_bin/initdb" -A trust -U postgres -E UTF8 --no-locale -D "$work/pg/data" >/dev/null
pg_port=$(free_port)
as_pg "$pg_bin/pg_ctl" -D "$work/pg/data" -l "$work/pg/log" -w \
    -o "-p $pg_port -c listen_addresses=127.0.0.1 -k $work/pg" start >/dev/null
pg_started=1
export XFER_CLUSTER="postgres://postgres@127.0.0.1:$pg_port/postgres"

# 2. Three instances on one shared directory; each reads the cluster URL from XFER_CLUSTER.
mkdir "$work/inbox"
for n in 1 2 3; do
    "$XFER" serve --port 0 --dir "$work/inbox" --instance "xfer-$n" \
        </dev/null >"$work/xfer-$n.jsonl" 2>"$work/xfer-$n.log" &
    pids+=($!)
done
for n in 1 2 3; do
    for _ in $(seq 300); do
        grep -q '"listening"' "$work/xfer-$n.jsonl" 2>/dev/null && break
        kill -0 "${pids[n - 1]}" 2>/dev/null || die "xfer-$n exited: $(cat "$work/xfer-$n.jsonl" "$work/xfer-$n.log")"
        sleep 0.1
    done
    port=$(jq -r 'select(.event=="listening").port' "$work/xfer-$n.jsonl")
    [[ $port =~ ^[0-9]+$ ]] || die "xfer-$n did not start listening"
    export "XFER_PORT_$n=$port"
done

# 3. HAProxy in the foreground (-db), with the ports of the instances in its environment.
XFER_LB_PORT=$(free_port)
export XFER_LB_PORT
haproxy -db -f "$here/haproxy.cfg" >"$work/haproxy.log" 2>&1 &
pids+=($!)
lb="127.0.0.1:$XFER_LB_PORT"
for _ in $(seq 300); do
    curl -fs "http://$lb/health" >/dev/null 2>&1 && break
    sleep 0.1
done
curl -fs "http://$lb/health" >/dev/null || die "HAProxy does not answer: $(cat "$work/haproxy.log")"

echo "PostgreSQL: $XFER_CLUSTER"
for n in 1 2 3; do
    port_var="XFER_PORT_$n"
    echo "xfer-$n:     ws://127.0.0.1:${!port_var} (events in $work/xfer-$n.jsonl)"
done
echo "HAProxy:    ws://$lb  (connect here)"
echo "  xfer listen --server $lb --name ops"
echo "  xfer send --server $lb --to ops \"hello from any instance\""
echo "  xfer upload --server $lb FILE     (saved in $work/inbox)"
echo "  curl http://$lb/health"

if ((self_check == 0)); then
    echo "Ctrl-C stops everything."
    while true; do sleep 3600; done
fi

# --self-check: a listener and a sender through HAProxy, then an upload through HAProxy.
"$XFER" listen --server "$lb" --name ops >"$work/listen.jsonl" 2>"$work/listen.log" &
listener=$!
pids+=("$listener")
for _ in $(seq 300); do grep -q '"connected"' "$work/listen.jsonl" 2>/dev/null && break; sleep 0.1; done
grep -q '"connected"' "$work/listen.jsonl" || die "the listener did not connect: $(cat "$work/listen.log")"
# The listener is registered cluster-wide before it prints `connected`; retry briefly anyway.
for _ in $(seq 20); do
    "$XFER" send --server "$lb" --to ops "hello across the cluster" >"$work/send.jsonl" 2>/dev/null && break
    sleep 0.5
done
jq -se 'any(.[]; .event == "status" and .ok == true and .delivered == 1)' "$work/send.jsonl" >/dev/null \
    || die "send failed: $(cat "$work/send.jsonl")"
for _ in $(seq 100); do grep -q 'hello across the cluster' "$work/listen.jsonl" && break; sleep 0.1; done
jq -se 'any(.[]; .event == "text" and .text == "hello across the cluster" and .seq == 1)' "$work/listen.jsonl" >/dev/null \
    || die "the listener did not print the text: $(cat "$work/listen.jsonl")"
echo "self-check: text delivered through HAProxy"

head -c 3000000 /dev/urandom >"$work/blob.bin"
"$XFER" upload --server "$lb" "$work/blob.bin" >"$work/upload.jsonl" || die "upload failed: $(cat "$work/upload.jsonl")"
cmp "$work/blob.bin" "$work/inbox/blob.bin"
saved_by=$(jq -r 'select(.event=="file_saved") | .instance' "$work"/xfer-?.jsonl)
[[ $saved_by == xfer-[123] ]] || die "expected one file_saved event with an instance, got: $saved_by"
echo "self-check: upload saved by $saved_by, byte-identical"
curl -fs "http://$lb/health" | jq -e '.ok == true and (.instance | test("^xfer-[123]$"))' >/dev/null \
    || die "GET /health through HAProxy does not name an instance: $(curl -s "http://$lb/health")"
echo "self-check: ok"
