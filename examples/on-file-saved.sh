#!/usr/bin/env bash
# Shows: running a command on each file the server saves, driven by serve's `file_saved` events:
# here, the file is checked against the SHA-256 in the event and moved to a "processed" directory.
# Under systemd, the same loop reads `journalctl -u xfer -o cat -f` instead of serve's stdout.
# Needs: xfer (or XFER=/path/to/xfer), jq, sha256sum.
set -euo pipefail
XFER=${XFER:-xfer}
work=$(mktemp -d)
mkdir -p "$work/processed"

# The command to run for each saved file: $1 is its absolute path, $2 the SHA-256 the server computed.
on_saved() {
    echo "$2  $1" | sha256sum --check --quiet -
    mv "$1" "$work/processed/"
    echo "processed $(basename "$1")" >&2
}

# Every event goes to events.jsonl; each file_saved line also runs on_saved, one file at a time.
"$XFER" serve --port 0 --dir "$work/inbox" 2>"$work/serve.log" > >(
    while IFS= read -r line; do
        printf '%s\n' "$line" >> "$work/events.jsonl"
        if [ "$(jq -r .event <<< "$line")" = file_saved ]; then
            on_saved "$(jq -r .path <<< "$line")" "$(jq -r .sha256 <<< "$line")"
        fi
    done
) &
server=$!
trap 'kill "$server" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"' EXIT
until [ -s "$work/events.jsonl" ]; do sleep 0.05; done
port=$(head -n 1 "$work/events.jsonl" | jq -r .port)

# Two uploads, as any client would send them.
seq 1 50000 > "$work/numbers.txt"
echo "report of $(date -u +%F)" > "$work/report.txt"
"$XFER" upload --server "127.0.0.1:$port" "$work/numbers.txt" "$work/report.txt" > /dev/null

# Both files end up processed (the loop runs after the server has answered the upload).
for _ in $(seq 1 200); do
    [ -f "$work/processed/numbers.txt" ] && [ -f "$work/processed/report.txt" ] && break
    sleep 0.05
done
cmp "$work/numbers.txt" "$work/processed/numbers.txt"
cmp "$work/report.txt" "$work/processed/report.txt"
echo "both files processed"
