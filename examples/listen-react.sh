#!/usr/bin/env bash
# Shows: a script that reacts to every text `xfer listen --name ops` prints, fed by
# `xfer send --to ops` and by a command on the server's stdin; the text "stop" ends it.
# Needs: xfer (or XFER=/path/to/xfer), jq.
set -euo pipefail
XFER=${XFER:-xfer}
work=$(mktemp -d)
mkfifo "$work/commands" "$work/listen"
"$XFER" serve --port 0 --dir "$work/inbox" < "$work/commands" > "$work/events.jsonl" 2>"$work/serve.log" &
server=$!
exec 3> "$work/commands"   # keeps the server's stdin open so that we can send it commands
listener=""
trap 'exec 3>&-; kill "$server" $listener 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"' EXIT
until [ -s "$work/events.jsonl" ]; do sleep 0.05; done
port=$(head -n 1 "$work/events.jsonl" | jq -r .port)

"$XFER" listen --server "127.0.0.1:$port" --name ops > "$work/listen" 2>/dev/null &
listener=$!

# Talk to the listener once the server has seen it: through the server, and from the server's stdin.
(
    until jq -e 'select(.event=="connected" and .name=="ops")' "$work/events.jsonl" > /dev/null 2>&1; do
        sleep 0.05
    done
    "$XFER" send --server "127.0.0.1:$port" --to ops "deploy started" > /dev/null
    echo '{"cmd":"send","to":"ops","text":"from the operator"}' >&3
    "$XFER" send --server "127.0.0.1:$port" --to ops "stop" > /dev/null
) &

reactions=0
while read -r event; do
    text=$(jq -r 'select(.event=="text") | "\(.seq) \(.from) \(.text)"' <<< "$event")
    [ -n "$text" ] || continue
    read -r seq from message <<< "$text"
    echo "#$seq from $from: $message"
    reactions=$((reactions + 1))
    if [ "$message" = "stop" ]; then kill -INT "$listener"; fi
done < "$work/listen"
wait "$listener"   # exits 0 after SIGINT: it closed the connection cleanly
[ "$reactions" -eq 3 ] || { echo "expected 3 texts, got $reactions" >&2; exit 1; }
