#!/usr/bin/env bash
# A throwaway PostgreSQL for the store tests (tests/store.rs). Idempotent: installs Debian's
# `postgresql` package if no server binaries are found, initialises a cluster in a data
# directory, starts it on 127.0.0.1 (fsync on), creates the user and database `switchyard`
# (password `switchyard`, CREATEDB so each test can create its own database), and prints
# the one line to evaluate:
#
#   eval "$(.ci/postgres.sh)"      # then: cargo test --test store
#   .ci/postgres.sh stop           # stops the server (the data directory is kept)
#
# Settings (environment): SWITCHYARD_PG_PORT (default 55432; the next free port is used if
# it is taken by something else), SWITCHYARD_PG_DIR (default ${TMPDIR:-/tmp}/switchyard-pg).
# When run as root, the cluster belongs to the `postgres` user, because PostgreSQL refuses
# to run as root. Everything but the export line goes to stderr.
set -euo pipefail

PORT="${SWITCHYARD_PG_PORT:-55432}"
BASE="${SWITCHYARD_PG_DIR:-${TMPDIR:-/tmp}/switchyard-pg}"
DATA="$BASE/data"
SOCKETS="$BASE/run"
LOG="$BASE/server.log"

say() { echo "postgres.sh: $*" >&2; }

# A directory holding every server program this script runs.
find_bin_dir() {
    local candidates=() dir
    if command -v pg_ctl >/dev/null 2>&1; then
        candidates+=("$(dirname "$(readlink -f "$(command -v pg_ctl)")")")
    fi
    while IFS= read -r dir; do candidates+=("$dir"); done \
        < <(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -rV)
    for dir in "${candidates[@]}"; do
        if [ -x "$dir/pg_ctl" ] && [ -x "$dir/initdb" ] && [ -x "$dir/pg_isready" ] &&
            [ -x "$dir/psql" ]; then
            echo "$dir"
            return 0
        fi
    done
    return 1
}

as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

BIN="$(find_bin_dir || true)"
if [ -z "$BIN" ]; then
    say "no PostgreSQL server binaries found; installing the Debian package 'postgresql'"
    as_root apt-get update -qq >&2
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >&2
    BIN="$(find_bin_dir)" || { say "postgresql installed but pg_ctl/initdb not found"; exit 1; }
fi

# Run PostgreSQL programs as a non-root user.
if [ "$(id -u)" -eq 0 ]; then
    RUN_AS=postgres
    if ! id "$RUN_AS" >/dev/null 2>&1; then
        useradd --system --home-dir /var/lib/postgresql --shell /bin/bash "$RUN_AS"
    fi
    pg() {
        local cmd
        printf -v cmd '%q ' "$@"
        if command -v runuser >/dev/null 2>&1; then
            runuser -u "$RUN_AS" -- "$@"
        else
            su "$RUN_AS" -s /bin/sh -c "$cmd"
        fi
    }
else
    RUN_AS="$(id -un)"
    pg() { "$@"; }
fi

mkdir -p "$BASE" "$SOCKETS"
if [ "$(id -u)" -eq 0 ]; then
    chown "$RUN_AS" "$BASE" "$SOCKETS"
    chmod 755 "$BASE"
fi

if [ "${1:-}" = "stop" ]; then
    if [ -f "$DATA/postmaster.pid" ]; then
        pg "$BIN/pg_ctl" -D "$DATA" -m fast -w stop >&2
    else
        say "not running"
    fi
    exit 0
fi

if [ ! -f "$DATA/PG_VERSION" ]; then
    say "initialising a cluster in $DATA"
    pwfile="$BASE/.superuser-password"
    (umask 077 && head -c 18 /dev/urandom | base64 >"$pwfile")
    [ "$(id -u)" -eq 0 ] && chown "$RUN_AS" "$pwfile"
    pg "$BIN/initdb" -D "$DATA" -U postgres --pwfile="$pwfile" \
        --auth-local=trust --auth-host=scram-sha-256 -E UTF8 --locale=C.UTF-8 >&2 ||
        pg "$BIN/initdb" -D "$DATA" -U postgres --pwfile="$pwfile" \
            --auth-local=trust --auth-host=scram-sha-256 -E UTF8 --locale=C >&2
fi

port_is_free() {
    ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

if pg "$BIN/pg_ctl" -D "$DATA" status >/dev/null 2>&1; then
    # Already running: use the port it listens on (line 4 of postmaster.pid).
    PORT="$(sed -n 4p "$DATA/postmaster.pid")"
    say "already running on port $PORT"
else
    for _ in $(seq 1 20); do
        port_is_free "$PORT" && break
        say "port $PORT is taken; trying $((PORT + 1))"
        PORT=$((PORT + 1))
    done
    port_is_free "$PORT" || { say "no free port found"; exit 1; }
    say "starting on 127.0.0.1:$PORT (log: $LOG)"
    pg "$BIN/pg_ctl" -D "$DATA" -l "$LOG" -w -t 60 start \
        -o "-c listen_addresses=127.0.0.1 -p $PORT -k $SOCKETS -c fsync=on -c max_connections=300" >&2
fi

for _ in $(seq 1 60); do
    if pg "$BIN/pg_isready" -q -h "$SOCKETS" -p "$PORT"; then break; fi
    sleep 1
done
pg "$BIN/pg_isready" -q -h "$SOCKETS" -p "$PORT" || { say "server not ready; see $LOG"; exit 1; }

pg "$BIN/psql" -q -X -v ON_ERROR_STOP=1 -h "$SOCKETS" -p "$PORT" -U postgres -d postgres >&2 <<'SQL'
SELECT 'CREATE ROLE switchyard LOGIN CREATEDB PASSWORD ''switchyard'''
WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'switchyard')
\gexec
ALTER ROLE switchyard LOGIN CREATEDB PASSWORD 'switchyard';
SELECT 'CREATE DATABASE switchyard OWNER switchyard'
WHERE NOT EXISTS (SELECT 1 FROM pg_database WHERE datname = 'switchyard')
\gexec
SQL

say "ready; stop with: $0 stop"
echo "export SWITCHYARD_TEST_DATABASE_URL=postgres://switchyard:switchyard@127.0.0.1:$PORT/switchyard"
