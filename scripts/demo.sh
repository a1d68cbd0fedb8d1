#!/usr/bin/env bash
# Sets up everything allma needs (Debian packages included), builds and
# installs it, starts a throwaway PostgreSQL cluster under .demo/ with
# shared_preload_libraries = 'allma,pg_cron', runs the demo flow
# (demo/demo.sql) and prints its execution history.  The cluster is stopped
# at the end; pass --keep to leave it running.
#
# The flow's LLM step talks to the mock server shipped in mock/ (started on
# 127.0.0.1) unless a real OpenAI-compatible provider is given:
#   ALLMA_DEMO_LLM_BASE_URL=https://api.openai.com/v1 \
#   ALLMA_DEMO_LLM_API_KEY=sk-... ALLMA_DEMO_LLM_MODEL=gpt-4o-mini scripts/demo.sh
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
# pg_cron runs jobs in background workers: no connection, so no cron.host,
# password or cron.job.nodename edits (docs/operations.md)
cron.use_background_workers = on
max_worker_processes = 16
CONF
"${AS_PG[@]}" "$BINDIR/pg_ctl" -D "$DEMO/data" -l "$DEMO/server.log" -w start >/dev/null

stop_server() {
  "${AS_PG[@]}" "$BINDIR/pg_ctl" -D "$DEMO/data" -m fast stop >/dev/null 2>&1 || true
}

# the LLM: a real provider when asked for, else the mock on 127.0.0.1
MOCK_PID=
if [ -n "${ALLMA_DEMO_LLM_BASE_URL:-}" ]; then
  LLM_BASE_URL=$ALLMA_DEMO_LLM_BASE_URL
  LLM_API_KEY=${ALLMA_DEMO_LLM_API_KEY:?set ALLMA_DEMO_LLM_API_KEY too}
  LLM_MODEL=${ALLMA_DEMO_LLM_MODEL:-gpt-4o-mini}
else
  python3 "$SRC/mock/mock_server.py" --port 0 --port-file "$DEMO/mock.port" --smtp-port -1 \
    >"$DEMO/mock.log" 2>&1 &
  MOCK_PID=$!
  for _ in $(seq 1 100); do [ -s "$DEMO/mock.port" ] && break; sleep 0.1; done
  MOCK_PORT=$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['http'])" "$DEMO/mock.port")
  LLM_BASE_URL="http://127.0.0.1:$MOCK_PORT/v1"
  LLM_API_KEY=demo-key
  LLM_MODEL=mock-echo
  # the mock is on loopback, which allma refuses unless allowed
  "${AS_PG[@]}" "$BINDIR/psql" -X -q -h "$DEMO" -p "$PORT" -U postgres -d postgres \
    -c "ALTER SYSTEM SET allma.http_allowlist = '127.0.0.1'" -c "SELECT pg_reload_conf()" >/dev/null
fi
stop_all() {
  [ -n "$MOCK_PID" ] && kill "$MOCK_PID" 2>/dev/null
  [ $KEEP -eq 0 ] && stop_server
  return 0
}
trap stop_all EXIT

echo "allma demo: cluster on port $PORT (socket in $DEMO), LLM at $LLM_BASE_URL ($LLM_MODEL)"
"${AS_PG[@]}" "$BINDIR/psql" -X -h "$DEMO" -p "$PORT" -U postgres -d postgres \
  -v llm_base_url="$LLM_BASE_URL" -v llm_model="$LLM_MODEL" -v llm_api_key="$LLM_API_KEY" \
  -f "$SRC/demo/demo.sql"

if [ $KEEP -eq 1 ]; then
  echo "The cluster keeps running: psql -h $DEMO -p $PORT -U postgres"
  echo "Stop it with: ${AS_PG[*]} $BINDIR/pg_ctl -D $DEMO/data stop"
fi
