#!/usr/bin/env bash
# Shows: a server started in the background on a free port, a few acknowledged messages,
# and the server's events read back with jq.
# Needs: xfer (or XFER=/path/to/xfer), jq.
set -euo pipefail
XFER=${XFER:-xfer}
work=$(mktemp -d)
"$XFER" serve --port 0 --dir "$work/inbox" > "$work/events.jsonl" 2>"$work/serve.log" &
server=$!
trap 'kill "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true; rm -rf "$work"' EXIT

# The first event says which port --port 0 picked.
until [ -s "$work/events.jsonl" ]; do sleep 0.05; done
port=$(head -n 1 "$work/events.jsonl" | jq -r 'select(.event=="listening").port')
echo "server listening on port $port" >&2

# Two arguments, two messages; then three more from stdin, one per line.
"$XFER" send --server "127.0.0.1:$port" "backup done" "disk at 71%" > /dev/null
printf 'line one\nline two\nline three\n' | "$XFER" send --server "127.0.0.1:$port" > /dev/null

# Every message the server saw, with the client that sent it.
jq -r 'select(.event=="text") | "client \(.client) #\(.id): \(.text)"' "$work/events.jsonl"
count=$(jq -s 'map(select(.event=="text")) | length' "$work/events.jsonl")
[ "$count" -eq 5 ] || { echo "expected 5 text events, got $count" >&2; exit 1; }
