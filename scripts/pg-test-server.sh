#!/usr/bin/env bash
# Starts (or stops) a throw-away PostgreSQL 15 cluster for the tests, owned by
# the 'postgres' OS user, listening only on a unix socket in $PGDIR and on
# 127.0.0.1:$PGPORT. Prints the libpq URL on stdout.
#   scripts/pg-test-server.sh start [DIR] [PORT]
#   scripts/pg-test-server.sh stop  [DIR]
set -euo pipefail
cmd=${1:-start}
PGDIR=${2:-/tmp/koukan-pg}
PGPORT=${3:-55432}
BIN=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
as_pg() { if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
case "$cmd" in
  start)
    if [ -f "$PGDIR/data/postmaster.pid" ] && as_pg "$BIN/pg_ctl" -D "$PGDIR/data" status >/dev/null 2>&1; then
      :
    else
      rm -rf "$PGDIR"; mkdir -p "$PGDIR"
      [ "$(id -u)" -eq 0 ] && chown postgres "$PGDIR"
      as_pg "$BIN/initdb" -D "$PGDIR/data" -A trust -U postgres >"$PGDIR/initdb.log" 2>&1 \
        || { cat "$PGDIR/initdb.log" >&2; exit 1; }
      as_pg "$BIN/pg_ctl" -D "$PGDIR/data" -l "$PGDIR/server.log" -w \
        -o "-k $PGDIR -p $PGPORT -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200" start >/dev/null \
        || { cat "$PGDIR/server.log" >&2; exit 1; }
    fi
    echo "postgresql://postgres@127.0.0.1:$PGPORT/postgres"
    ;;
  stop)
    as_pg "$BIN/pg_ctl" -D "$PGDIR/data" -m fast stop >/dev/null 2>&1 || true
    ;;
  *) echo "usage: $0 start|stop [DIR] [PORT]" >&2; exit 2 ;;
esac
