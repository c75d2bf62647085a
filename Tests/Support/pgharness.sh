#!/usr/bin/env bash
# A throw-away PostgreSQL for the cluster tests, the cluster example and the cluster benchmark.
#
#   pgharness.sh start DIR     initdb -A trust into DIR/data (DIR is created), start it on a free port of
#                              127.0.0.1 and print its URL: postgres://postgres@127.0.0.1:PORT/postgres
#   pgharness.sh stop DIR      stop it (fast shutdown: clients are disconnected); DIR stays
#   pgharness.sh restart DIR   start it again on the same port (after stop) and print the URL
#   pgharness.sh url DIR       print the URL
#   pgharness.sh destroy DIR   stop it if it runs and remove DIR
#
# PostgreSQL refuses to run as root: as root, every PostgreSQL command runs as the `postgres` user
# (`runuser -u postgres --`, override with PG_USER) and DIR is chowned to it. The binaries come from PG_BIN,
# else the newest /usr/lib/postgresql/*/bin (Debian), else PATH. The server listens on 127.0.0.1 only, its
# Unix socket lives in DIR, its log is DIR/log. It is stopped through pg_ctl, which signals the PID in
# DIR/data/postmaster.pid: nothing else is touched.
set -euo pipefail

die() { printf 'pgharness.sh: %s\n' "$*" >&2; exit 1; }

[[ $# -eq 2 ]] || die "usage: pgharness.sh start|stop|restart|url|destroy DIR"
verb=$1
dir=$2

find_bin() {
    if [[ -n ${PG_BIN:-} ]]; then printf '%s\n' "$PG_BIN"; return; fi
    local newest
    newest=$(find /usr/lib/postgresql -mindepth 3 -maxdepth 3 -path '*/bin/initdb' 2>/dev/null | sort -V | tail -n 1)
    if [[ -n $newest ]]; then dirname "$newest"; return; fi
    local initdb
    initdb=$(command -v initdb 2>/dev/null) || die "PostgreSQL not found (apt-get install postgresql, or set PG_BIN)"
    dirname "$initdb"
}
BIN=$(find_bin)

# as_pg CMD...: runs CMD as the PostgreSQL user when we are root, else as ourselves.
as_pg() {
    if [[ $(id -u) -eq 0 ]]; then
        runuser -u "${PG_USER:-postgres}" -- "$@"
    else
        "$@"
    fi
}

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

url() { printf 'postgres://postgres@127.0.0.1:%s/postgres\n' "$(cat "$dir/port")"; }

running() { [[ -f $dir/data/postmaster.pid ]] && as_pg "$BIN/pg_ctl" -D "$dir/data" status >/dev/null 2>&1; }

# launch: pg_ctl start -w on the port in DIR/port.
#
# The server outlives this script, so it must not inherit any descriptor but 0-2: Foundation's Process (the
# Swift tests) learns that a child exited when a socket the child inherited closes, and a PostgreSQL holding
# it made `pgharness.sh start` look alive forever. Every other inherited descriptor is closed for pg_ctl.
launch() {
    local options fd closes=""
    # shellcheck disable=SC2034 # used inside the eval below
    options="-p $(cat "$dir/port") -c listen_addresses=127.0.0.1 -k $dir -c max_connections=200 -c fsync=off"
    for fd in "/proc/$$/fd/"*; do
        fd=${fd##*/}
        if [[ $fd =~ ^[0-9]+$ ]] && ((fd > 2)); then closes+=" $fd>&-"; fi
    done
    eval 'as_pg "$BIN/pg_ctl" -D "$dir/data" -l "$dir/log" -w -t 30 -o "$options" start </dev/null >/dev/null'"$closes"
}

case $verb in
    start)
        [[ ! -e $dir/data ]] || die "$dir/data exists already (use restart)"
        mkdir -p "$dir"
        if [[ $(id -u) -eq 0 ]]; then chown "${PG_USER:-postgres}" "$dir"; fi
        as_pg "$BIN/initdb" -A trust -U postgres -E UTF8 --no-locale -D "$dir/data" >"$dir/initdb.log" 2>&1 \
            || die "initdb failed: $(tail -n 5 "$dir/initdb.log")"
        # A port picked free can be taken before PostgreSQL binds it: try a few.
        for _ in 1 2 3 4 5; do
            free_port >"$dir/port"
            if launch 2>"$dir/pg_ctl.err"; then url; exit 0; fi
        done
        die "PostgreSQL did not start: $(cat "$dir/pg_ctl.err"; tail -n 5 "$dir/log" 2>/dev/null)"
        ;;
    restart)
        [[ -f $dir/port ]] || die "no PostgreSQL was started in $dir"
        running || launch || die "PostgreSQL did not start again: $(tail -n 5 "$dir/log")"
        url
        ;;
    stop)
        [[ -d $dir/data ]] || die "no PostgreSQL was started in $dir"
        if running; then as_pg "$BIN/pg_ctl" -D "$dir/data" -m fast -w -t 30 stop >/dev/null; fi
        ;;
    url)
        [[ -f $dir/port ]] || die "no PostgreSQL was started in $dir"
        url
        ;;
    destroy)
        if [[ -d $dir/data ]] && running; then as_pg "$BIN/pg_ctl" -D "$dir/data" -m immediate -w -t 30 stop >/dev/null || true; fi
        rm -rf "$dir"
        ;;
    *) die "unknown verb: $verb (start, stop, restart, url, destroy)" ;;
esac
