#!/usr/bin/env bash
# A throwaway PostgreSQL server for slagen's `postgres` tests.
#
#   eval "$(scripts/postgres_for_tests.sh start)"     # prints the export lines below
#   .venv/bin/pytest tests/db -q                      # the postgres tests now run
#   scripts/postgres_for_tests.sh stop                # stops it and deletes its folder
#
# start: installs PostgreSQL from Debian packages when no server binaries are found, creates a cluster in
# a temp folder (owned by a non-root user when run as root: postgres refuses to run as root), listens on
# 127.0.0.1 on a free port with a random password, creates the database `slagen_test`, and prints
#   export SLAGEN_TEST_POSTGRES_URL=postgresql+psycopg2://slagen:PASSWORD@127.0.0.1:PORT/slagen_test
#   export SLAGEN_PG_DIR=/tmp/slagen-pg.XXXXXX
# stop [DIR]: stops the server in DIR (default $SLAGEN_PG_DIR) and removes DIR.
# Progress goes to stderr; only the export lines go to stdout. The role is a superuser of its own
# throwaway cluster: the tests create and drop one database per test.
set -euo pipefail

log() { echo "postgres_for_tests: $*" >&2; }
die() { log "error: $*"; exit 1; }

find_bindir() {
    local dir
    dir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
    if [[ -n "$dir" && -x "$dir/initdb" && -x "$dir/pg_ctl" ]]; then echo "$dir"; return; fi
    if command -v initdb >/dev/null && command -v pg_ctl >/dev/null; then dirname "$(command -v initdb)"; fi
}

install_postgres() {
    local sudo=""
    if [[ $(id -u) -ne 0 ]]; then
        command -v sudo >/dev/null || die "PostgreSQL is not installed and installing it needs root (apt-get install -y postgresql)"
        sudo="sudo"
    fi
    log "installing PostgreSQL (apt-get install -y postgresql)"
    export DEBIAN_FRONTEND=noninteractive
    if ! $sudo apt-get install -y postgresql >&2; then
        log "package not found in the local lists: running apt-get update first"
        $sudo apt-get update >&2
        $sudo apt-get install -y postgresql >&2
    fi
}

free_port() {
    local py
    for py in python3 python; do
        if command -v "$py" >/dev/null; then
            "$py" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
            return
        fi
    done
    local port
    for port in $(seq 54320 54420); do
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then echo "$port"; return; fi
    done
    die "no free port found in 54320..54420"
}

# Runs a command as the cluster's owner: `postgres` (created by the Debian package) when we are root.
as_owner() {
    if [[ $(id -u) -eq 0 ]]; then
        id postgres >/dev/null 2>&1 || die "running as root, but there is no 'postgres' user to own the cluster"
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}

start() {
    local bindir dir port password
    bindir=$(find_bindir)
    if [[ -z "$bindir" ]]; then
        install_postgres
        bindir=$(find_bindir)
        [[ -n "$bindir" ]] || die "PostgreSQL installed but initdb/pg_ctl not found under /usr/lib/postgresql"
    fi
    dir=$(mktemp -d /tmp/slagen-pg.XXXXXX)
    chmod 755 "$dir"
    [[ $(id -u) -eq 0 ]] && chown postgres: "$dir"
    port=$(free_port)
    password=$(head -c 18 /dev/urandom | od -An -tx1 | tr -d ' \n')
    as_owner bash -c "umask 077; printf '%s\n' '$password' > '$dir/pwfile'"
    log "cluster in $dir (server binaries $bindir), port $port"
    as_owner "$bindir/initdb" -D "$dir/data" -U slagen --pwfile="$dir/pwfile" --auth-local=trust \
        --auth-host=scram-sha-256 --encoding=UTF8 --no-sync >"$dir/initdb.log" 2>&1 \
        || { cat "$dir/initdb.log" >&2; die "initdb failed"; }
    as_owner "$bindir/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 \
        -o "-c listen_addresses=127.0.0.1 -p $port -c unix_socket_directories=$dir -c fsync=off -c max_connections=100" \
        start >&2 || { cat "$dir/server.log" >&2; die "the server did not start"; }
    PGPASSWORD="$password" as_owner "$bindir/createdb" -h 127.0.0.1 -p "$port" -U slagen slagen_test \
        || die "createdb failed (log: $dir/server.log)"
    log "ready; stop it with: scripts/postgres_for_tests.sh stop $dir"
    echo "export SLAGEN_TEST_POSTGRES_URL=postgresql+psycopg2://slagen:$password@127.0.0.1:$port/slagen_test"
    echo "export SLAGEN_PG_DIR=$dir"
}

stop() {
    local dir=${1:-${SLAGEN_PG_DIR:-}} bindir
    [[ -n "$dir" ]] || die "stop: which cluster? pass its folder or set SLAGEN_PG_DIR"
    [[ -d "$dir/data" ]] || die "stop: $dir holds no cluster (no $dir/data)"
    bindir=$(find_bindir)
    if [[ -f "$dir/data/postmaster.pid" ]]; then
        as_owner "$bindir/pg_ctl" -D "$dir/data" -m fast -w stop >&2
    fi
    rm -rf -- "$dir"
    log "stopped and removed $dir"
}

case "${1:-}" in
    start) start ;;
    stop) shift; stop "$@" ;;
    *) echo "usage: $0 start | stop [DIR]" >&2; exit 2 ;;
esac
