#!/usr/bin/env bash
# A throwaway PostgreSQL cluster for the benchmarks (dbbench, suite), listening on
# loopback only.
#
#   postgres.sh start DIR PORT   initdb a fresh cluster in DIR (which must be
#                                missing or empty) and start it on
#                                127.0.0.1:PORT, with durable commits
#   postgres.sh stop DIR PORT    stop the cluster in DIR (fast shutdown); a
#                                cluster that is not running is not an error
#
# Finds initdb/pg_ctl on PATH or in /usr/lib/postgresql/*/bin; only if they
# are in neither place does it install Debian's `postgresql` package with
# apt-get (without creating Debian's default cluster). PostgreSQL refuses to
# run as root, so as root the cluster runs as the `postgres` system user
# (made if missing) and DIR is handed to it. Every step that waits is bounded.
# A cluster whose starter (the script's parent process) ends without
# stopping it is stopped by a watchdog within about a second.
set -euo pipefail

# Seconds pg_ctl waits for the server to start or stop.
readonly PG_CTL_TIMEOUT=120
# Seconds apt-get may take to install the package.
readonly APT_TIMEOUT=900
readonly PG_USER=postgres

usage() {
    echo "usage: $0 start|stop DIR PORT" >&2
    exit 2
}

log() {
    echo "postgres.sh: $*" >&2
}

# Prints the directory holding initdb and pg_ctl, or nothing.
find_bindir() {
    if command -v initdb >/dev/null 2>&1 && command -v pg_ctl >/dev/null 2>&1; then
        dirname "$(command -v pg_ctl)"
        return
    fi
    local dir
    # Newest major version first.
    for dir in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -t/ -k5,5 -rn); do
        if [[ -x "$dir/initdb" && -x "$dir/pg_ctl" ]]; then
            echo "$dir"
            return
        fi
    done
}

install_postgres() {
    if ! command -v apt-get >/dev/null 2>&1; then
        log "initdb/pg_ctl not found and apt-get is not available; install PostgreSQL first"
        exit 1
    fi
    if [[ "$(id -u)" != 0 ]]; then
        log "initdb/pg_ctl not found; installing them needs root (apt-get install postgresql)"
        exit 1
    fi
    log "initdb/pg_ctl not found; installing Debian's postgresql package"
    # Debian's package would otherwise create and start a default cluster.
    mkdir -p /etc/postgresql-common
    if [[ ! -e /etc/postgresql-common/createcluster.conf ]]; then
        echo "create_main_cluster = false" >/etc/postgresql-common/createcluster.conf
    fi
    export DEBIAN_FRONTEND=noninteractive
    timeout "$APT_TIMEOUT" apt-get update -q >&2
    timeout "$APT_TIMEOUT" apt-get install -y -q --no-install-recommends postgresql >&2
}

# Runs a command as the cluster's owner: the postgres user when we are root.
as_owner() {
    if [[ "$(id -u)" == 0 ]]; then
        runuser -u "$PG_USER" -- "$@"
    else
        "$@"
    fi
}

ensure_pg_user() {
    [[ "$(id -u)" == 0 ]] || return 0
    if ! id -u "$PG_USER" >/dev/null 2>&1; then
        log "creating the $PG_USER system user"
        useradd --system --user-group --no-create-home --home-dir /nonexistent \
            --shell /usr/sbin/nologin "$PG_USER"
    fi
}

[[ $# == 3 ]] || usage
readonly CMD=$1 PORT=$3
# Absolute, since the commands below run from / (the postgres user may not
# be allowed into the caller's working directory).
DIR=$(realpath -m -- "$2")
readonly DIR
cd /
[[ "$PORT" =~ ^[0-9]+$ ]] && ((PORT > 0 && PORT < 65536)) || {
    log "bad port: $PORT"
    exit 2
}

BINDIR=$(find_bindir)

case "$CMD" in
start)
    if [[ -z "$BINDIR" ]]; then
        install_postgres
        BINDIR=$(find_bindir)
        [[ -n "$BINDIR" ]] || {
            log "installed postgresql but still found no initdb/pg_ctl"
            exit 1
        }
    fi
    ensure_pg_user
    if [[ -e "$DIR" && -n "$(ls -A "$DIR")" ]]; then
        log "$DIR is not empty; start wants a fresh directory"
        exit 1
    fi
    mkdir -p "$DIR"
    if [[ "$(id -u)" == 0 ]]; then
        chown "$PG_USER:" "$DIR"
        chmod 700 "$DIR"
        if ! runuser -u "$PG_USER" -- test -w "$DIR"; then
            log "user $PG_USER cannot reach $DIR; every parent directory needs o+x"
            exit 1
        fi
    fi
    # --no-sync: initdb's own files need not survive a crash of this
    # scratch cluster; the server's commits are durable (fsync=on below).
    as_owner "$BINDIR/initdb" -D "$DIR" -U postgres --auth=trust --encoding=UTF8 \
        --locale=C --no-sync >"$DIR.initdb.log" 2>&1 || {
        cat "$DIR.initdb.log" >&2
        exit 1
    }
    rm -f "$DIR.initdb.log"
    # Loopback TCP only (no Unix socket). Commits are durable as in
    # production: fsync=on, synchronous_commit=on, full_page_writes=on,
    # wal_sync_method left at the platform default (fdatasync on Linux).
    # shared_buffers holds the benchmark's data set; max_wal_size keeps
    # checkpoints from being forced by WAL volume during a load.
    opts="-c listen_addresses=127.0.0.1 -c port=$PORT -c unix_socket_directories=''"
    opts+=" -c fsync=on -c synchronous_commit=on -c full_page_writes=on"
    opts+=" -c max_connections=300 -c shared_buffers=1GB -c max_wal_size=8GB"
    opts+=" -c checkpoint_timeout=30min -c log_min_messages=warning"
    as_owner "$BINDIR/pg_ctl" -D "$DIR" -l "$DIR/server.log" -w -t "$PG_CTL_TIMEOUT" \
        -o "$opts" start >&2 || {
        log "the server did not start; its log follows"
        cat "$DIR/server.log" >&2 || true
        exit 1
    }
    log "$("$BINDIR/postgres" --version) running in $DIR on 127.0.0.1:$PORT"
    # A watchdog stops the cluster if the process that started it (this
    # script's parent: the benchmark) ends without stopping it, e.g. when it
    # is interrupted; it checks once a second and leaves once the cluster
    # is stopped.
    parent=$PPID
    (
        while kill -0 "$parent" 2>/dev/null && [[ -f "$DIR/postmaster.pid" ]]; do
            sleep 1
        done
        if [[ -f "$DIR/postmaster.pid" ]]; then
            as_owner "$BINDIR/pg_ctl" -D "$DIR" -m fast -w -t "$PG_CTL_TIMEOUT" stop
        fi
    ) </dev/null >/dev/null 2>&1 &
    disown
    ;;
stop)
    if [[ -z "$BINDIR" ]]; then
        log "no pg_ctl found; nothing to stop"
        exit 0
    fi
    if [[ ! -f "$DIR/postmaster.pid" ]]; then
        log "no server running in $DIR"
        exit 0
    fi
    as_owner "$BINDIR/pg_ctl" -D "$DIR" -m fast -w -t "$PG_CTL_TIMEOUT" stop >&2
    ;;
*)
    usage
    ;;
esac
