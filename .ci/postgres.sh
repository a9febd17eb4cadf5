#!/usr/bin/env bash
# A throw-away PostgreSQL server for the review-store tests, on loopback only.
#
#   .ci/postgres.sh          # ensure it runs; prints its URL (only the URL goes to stdout)
#   .ci/postgres.sh stop     # stop it
#
#   IMPACTS_TEST_POSTGRES_URL=$(.ci/postgres.sh) pytest tests/unit/service/review
#
# What it does, idempotently (under a second when the server already runs):
#   1. finds the PostgreSQL server binaries (initdb, pg_ctl); when absent and running as
#      root, installs Debian's `postgresql` package with apt-get (otherwise says how to);
#   2. initialises a cluster OUTSIDE the repository, in $IMPACTS_PG_DIR, default
#      /var/cache/mars-impacts/pg as root (the `postgres` user owns it: initdb refuses root,
#      and cannot reach into root's home) or ${XDG_CACHE_HOME:-$HOME/.cache}/mars-impacts/pg
#      for other users (who own it themselves);
#   3. starts it listening on 127.0.0.1 only, port $IMPACTS_PG_PORT (54329), sockets in the
#      cluster folder, password (scram) login over TCP;
#   4. creates the role `impacts` (password `impacts`) and its database `impacts_test`.
# Test data only: never point production at this server or this password.
set -euo pipefail

PORT=${IMPACTS_PG_PORT:-54329}
ROLE=impacts
PASSWORD=impacts
DB=impacts_test
if [ "$(id -u)" = 0 ]; then
    ROOT=${IMPACTS_PG_DIR:-/var/cache/mars-impacts/pg}
    OWNER=postgres
else
    ROOT=${IMPACTS_PG_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/mars-impacts/pg}
    OWNER=$(id -un)
fi
DATA=$ROOT/data
SOCKETS=$ROOT/run
URL="postgresql+psycopg://$ROLE:$PASSWORD@127.0.0.1:$PORT/$DB"

log() { printf '[postgres] %s\n' "$*" >&2; }
die() {
    printf '[postgres] ERROR: %s\n' "$*" >&2
    exit 1
}

find_bindir() {
    local d
    if command -v pg_config >/dev/null 2>&1; then
        d=$(pg_config --bindir 2>/dev/null || true)
        if [ -x "$d/initdb" ] && [ -x "$d/pg_ctl" ]; then
            echo "$d"
            return
        fi
    fi
    for d in $(printf '%s\n' /usr/lib/postgresql/*/bin | sort -V -r); do
        if [ -x "$d/initdb" ] && [ -x "$d/pg_ctl" ]; then
            echo "$d"
            return
        fi
    done
    if command -v initdb >/dev/null 2>&1 && command -v pg_ctl >/dev/null 2>&1; then
        dirname "$(command -v initdb)"
    fi
}

# Run a command as the cluster's owner.
as_owner() {
    if [ "$(id -u)" = 0 ]; then
        runuser -u "$OWNER" -- "$@"
    else
        "$@"
    fi
}

BIN=$(find_bindir)

if [ "${1:-}" = stop ]; then
    if [ -n "$BIN" ] && [ -f "$DATA/postmaster.pid" ]; then
        as_owner "$BIN/pg_ctl" -D "$DATA" -m fast -w stop >&2
    fi
    exit 0
fi

if [ -z "$BIN" ]; then
    [ "$(id -u)" = 0 ] || die "PostgreSQL server binaries not found; install them (sudo apt-get install postgresql) or set IMPACTS_TEST_POSTGRES_URL to a server of yours"
    log "installing PostgreSQL with apt-get"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >&2
    apt-get install -y -qq --no-install-recommends postgresql >&2
    BIN=$(find_bindir)
    [ -n "$BIN" ] || die "apt-get installed postgresql but initdb/pg_ctl are still missing"
fi

psql_owner() {
    as_owner "$BIN/psql" -X -q -h "$SOCKETS" -p "$PORT" -U "$OWNER" -d postgres -v ON_ERROR_STOP=1 "$@"
}

if [ ! -s "$DATA/PG_VERSION" ]; then
    log "initialising a cluster in $DATA"
    mkdir -p "$ROOT"
    if [ "$(id -u)" = 0 ]; then chown "$OWNER" "$ROOT"; fi
    as_owner mkdir -p "$DATA" "$SOCKETS"
    as_owner chmod 700 "$DATA"
    as_owner "$BIN/initdb" -D "$DATA" -U "$OWNER" --auth-local=peer --auth-host=scram-sha-256 \
        --encoding=UTF8 --no-locale >"$ROOT/initdb.log" 2>&1 || {
        cat "$ROOT/initdb.log" >&2
        die "initdb failed (log above)"
    }
fi
as_owner mkdir -p "$SOCKETS"

if ! as_owner "$BIN/pg_ctl" -D "$DATA" status >/dev/null 2>&1; then
    log "starting PostgreSQL on 127.0.0.1:$PORT"
    as_owner "$BIN/pg_ctl" -D "$DATA" -l "$ROOT/server.log" -w -t 60 \
        -o "-c listen_addresses=127.0.0.1 -c port=$PORT -c unix_socket_directories=$SOCKETS -c fsync=off -c max_connections=200" \
        start >&2 || {
        tail -n 30 "$ROOT/server.log" >&2 || true
        die "the server did not start (log above: $ROOT/server.log); is port $PORT taken?"
    }
fi

if [ "$(psql_owner -tAc "SELECT 1 FROM pg_roles WHERE rolname = '$ROLE'")" != 1 ]; then
    log "creating role $ROLE"
    psql_owner -c "CREATE ROLE $ROLE LOGIN PASSWORD '$PASSWORD'"
fi
if [ "$(psql_owner -tAc "SELECT 1 FROM pg_database WHERE datname = '$DB'")" != 1 ]; then
    log "creating database $DB"
    psql_owner -c "CREATE DATABASE $DB OWNER $ROLE"
fi

echo "$URL"
