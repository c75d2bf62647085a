#!/usr/bin/env bash
# Shows: a cron-style backup upload that acts on xfer's exit code and status event, and a live
# byte stream piped into `xfer upload - --name NAME`; the server's file_saved events read with jq.
# Needs: xfer (or XFER=/path/to/xfer), jq, cmp.
set -euo pipefail
XFER=${XFER:-xfer}
work=$(mktemp -d)
"$XFER" serve --port 0 --dir "$work/inbox" > "$work/events.jsonl" 2>"$work/serve.log" &
server=$!
trap 'kill "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true; rm -rf "$work"' EXIT
until [ -s "$work/events.jsonl" ]; do sleep 0.05; done
port=$(head -n 1 "$work/events.jsonl" | jq -r .port)

# A "backup" to upload: about 9 MB of log-like text.
seq 1 300000 | sed 's/^/2026-11-25 backup line /' > "$work/db.dump"

# From cron: the exit code says whether the file landed (0), or why not (see xfer(1), EXIT STATUS).
if "$XFER" upload --server "127.0.0.1:$port" "$work/db.dump" > "$work/upload.jsonl" 2>/dev/null; then
    jq -r 'select(.event=="status") | "saved as \(.path), \(.bytes) bytes, sha256 \(.sha256[0:16])..."' \
        "$work/upload.jsonl"
else
    status=$?
    echo "upload failed with exit status $status: $(jq -r 'select(.event=="error").message' "$work/upload.jsonl")" >&2
    exit "$status"
fi
cmp "$work/db.dump" "$work/inbox/db.dump"

# A live stream: whatever a command writes, saved under --name once it ends.
seq 1 100000 | "$XFER" upload --server "127.0.0.1:$port" - --name counter.txt > /dev/null
cmp <(seq 1 100000) "$work/inbox/counter.txt"

# The server's view: one file_saved event per upload, with the absolute path it wrote.
until [ "$(jq -s 'map(select(.event=="file_saved")) | length' "$work/events.jsonl")" -eq 2 ]; do sleep 0.05; done
jq -r 'select(.event=="file_saved") | "server saved \(.name) (\(.bytes) bytes)"' "$work/events.jsonl"
