#!/usr/bin/env bash
# Shows: an upload run from cron, guarded by flock(1) so that a run that starts while the last one is
# still uploading skips instead of sending the same files twice; the exit code says what happened.
# The crontab line this stands for (every 15 minutes; exit codes in xfer(1), EXIT STATUS):
#   */15 * * * * flock -n /run/lock/xfer-backup.lock xfer upload --server box:8000 /srv/backup/db.dump
# Needs: xfer (or XFER=/path/to/xfer), jq, flock (util-linux), cmp.
set -euo pipefail
XFER=${XFER:-xfer}
work=$(mktemp -d)
"$XFER" serve --port 0 --dir "$work/inbox" > "$work/events.jsonl" 2>"$work/serve.log" &
server=$!
holder=""
trap 'kill "$server" $holder 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"' EXIT
until [ -s "$work/events.jsonl" ]; do sleep 0.05; done
port=$(head -n 1 "$work/events.jsonl" | jq -r .port)
seq 1 200000 | sed 's/^/backup line /' > "$work/db.dump"
lock="$work/xfer-backup.lock"

# What cron runs. flock -n exits with 99 (-E, a status xfer never uses) when another run holds the lock.
backup() {
    flock -n -E 99 "$lock" "$XFER" upload --server "127.0.0.1:$port" "$work/db.dump" > "$work/upload.jsonl" \
        2>>"$work/upload.log" && return 0
    local status=$?
    if [ "$status" -eq 99 ]; then
        echo "backup: another run holds $lock; skipped" >&2
    else
        echo "backup: upload failed with exit status $status" >&2
    fi
    return "$status"
}

# A run that still holds the lock (here: a sleep standing in for a slow upload) makes the next one skip.
(flock 9 && exec sleep 30) 9> "$lock" &
holder=$!
until ! flock -n "$lock" true; do sleep 0.05; done
if backup; then echo "expected the second run to skip" >&2; exit 1; fi
kill "$holder"; wait "$holder" 2>/dev/null || true; holder=""

# The lock is free again: this run uploads, and the exit code is 0 once the server has saved the file.
backup
jq -r 'select(.event=="status") | "uploaded \(.bytes) bytes as \(.path)"' "$work/upload.jsonl"
cmp "$work/db.dump" "$work/inbox/db.dump"
