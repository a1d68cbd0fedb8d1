#!/usr/bin/env bash
# Sets up everything allma needs (Debian packages included), builds and
# installs it, starts a throwaway PostgreSQL cluster under .demo/ with
# shared_preload_libraries = 'allma,pg_cron', runs the demo flow
# (demo/demo.sql) and prints its execution history.  The cluster is stopped
# at the end; pass --keep to leave it running.
set -euo pipefail
cd "$(dirname "$0")/.."
SRC=$(pwd)
KEEP=0
[ "${1:-}" = "--keep" ] && KEEP=1

"$SRC/scripts/install-deps.sh"
PG_CONFIG=${PG_CONFIG:-/usr/lib/postgresql/15/bin/pg_config}
BINDIR=$("$PG_CONFIG" --bindir)
make -s PG_CONFIG="$PG_CONFIG" >/dev/null
make -s PG_CONFIG="$PG_CONFIG" install >/dev/null

DEMO="$SRC/.demo"
if [ "$(id -u)" -eq 0 ]; then
  AS_PG=(runuser -u postgres --)
  # the server's user must be able to reach the directory
  runuser -u postgres -- test -x "$SRC" 2>/dev/null || DEMO=$(mktemp -d /tmp/allma-demo.XXXXXX)
else
  AS_PG=()
fi

if [ -f "$DEMO/data/postmaster.pid" ]; then
  "${AS_PG[@]}" "$BINDIR/pg_ctl" -D "$DEMO/data" -m fast stop >/dev/null 2>&1 || true
fi
rm -rf "$DEMO"
mkdir -p "$DEMO"
[ "$(id -u)" -eq 0 ] && chown postgres "$DEMO"

# a free port
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')

"${AS_PG[@]}" "$BINDIR/initdb" -D "$DEMO/data" -A trust -U postgres >/dev/null
cat >> "$DEMO/data/postgresql.conf" <<CONF
port = $PORT
listen_addresses = ''
unix_socket_directories = '$DEMO'
shared_preload_libraries = 'allma,pg_cron'
allma.database_name = 'postgres'
cron.database_name = 'postgres'
CONF
"${AS_PG[@]}" "$BINDIR/pg_ctl" -D "$DEMO/data" -l "$DEMO/server.log" -w start >/dev/null

stop_server() {
  "${AS_PG[@]}" "$BINDIR/pg_ctl" -D "$DEMO/data" -m fast stop >/dev/null 2>&1 || true
}
if [ $KEEP -eq 0 ]; then trap stop_server EXIT; fi

echo "allma demo: cluster on port $PORT (socket in $DEMO)"
"${AS_PG[@]}" "$BINDIR/psql" -X -h "$DEMO" -p "$PORT" -U postgres -d postgres -f "$SRC/demo/demo.sql"

if [ $KEEP -eq 1 ]; then
  echo "The cluster keeps running: psql -h $DEMO -p $PORT -U postgres"
  echo "Stop it with: ${AS_PG[*]} $BINDIR/pg_ctl -D $DEMO/data stop"
fi
