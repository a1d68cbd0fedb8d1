# bench/lib.sh: what every benchmark scenario shares -- a throwaway cluster
# per build, psql, medians, worker memory sampling, the mock server, and the
# rows a scenario reports.  Sourced by bench/run.sh; not run directly.
#
# A scenario is a file bench/scenarios/NAME.sh defining scenario_NAME.  It
# runs against the cluster that is up (bench_start has been called), uses
# "${PSQL[@]}", repeats its measurement $RUNS times and reports each figure
# with
#     report KEY "label" "value" "target"
# (KEY identifies the figure across builds, so that --compare can put two
# builds' values side by side).

AS_PG=()
[ "$(id -u)" -eq 0 ] && AS_PG=(runuser -u postgres --)

median() { sort -g | awk '{a[NR]=$1} END {if (NR%2) print a[(NR+1)/2]; else print (a[NR/2]+a[NR/2+1])/2}'; }

# report KEY LABEL VALUE TARGET: one figure of the scenario running now
report() {
  printf '%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$4" >> "$REPORT_FILE"
  echo "   => $2: $3"
}

# bench_start BINDIR NAME [extra postgresql.conf lines]: a fresh cluster of
# that installation's binaries (and its allma.so), started, with the mock
# server running and bench/bench.sql loaded.  Sets PSQL, DATA, MOCK_URL.
bench_start() {
  local bindir=$1 name=$2 extra=${3:-}
  BENCH_BINDIR=$bindir
  DATA="$WORK/data-$name"
  PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  rm -rf "$DATA"
  "${AS_PG[@]}" "$bindir/initdb" -D "$DATA" -A trust -U postgres >/dev/null
  cat >> "$DATA/postgresql.conf" <<CONF
port = $PORT
listen_addresses = ''
unix_socket_directories = '$WORK'
shared_preload_libraries = 'allma'
allma.database_name = 'postgres'
allma.max_workers = 2
allma.http_allowlist = '127.0.0.1'
shared_buffers = 128MB
max_worker_processes = 40
max_wal_size = 4GB
checkpoint_timeout = 30min
$extra
CONF
  "${AS_PG[@]}" "$bindir/pg_ctl" -D "$DATA" -l "$WORK/server-$name.log" -w start >/dev/null
  PSQL=("${AS_PG[@]}" "$bindir/psql" -X -q -At -h "$WORK" -p "$PORT" -U postgres -d postgres)
  "${PSQL[@]}" -f "$SRC/bench/bench.sql" >/dev/null
  if [ -z "${MOCK_PID:-}" ]; then
    python3 "$SRC/mock/mock_server.py" --port 0 --port-file "$WORK/mock.port" --smtp-port -1 >/dev/null 2>&1 &
    MOCK_PID=$!
    for _ in $(seq 1 100); do [ -s "$WORK/mock.port" ] && break; sleep 0.1; done
    MOCK_URL="http://127.0.0.1:$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['http'])" "$WORK/mock.port")"
  fi
}

bench_restart() {
  "${AS_PG[@]}" "$BENCH_BINDIR/pg_ctl" -D "$DATA" -l "$WORK/server-restart.log" -w restart >/dev/null
  "${PSQL[@]}" -c "SELECT pg_sleep(2)" >/dev/null
}

bench_stop() {
  [ -n "${DATA:-}" ] && "${AS_PG[@]}" "$BENCH_BINDIR/pg_ctl" -D "$DATA" -m fast stop >/dev/null 2>&1 || true
  rm -rf "$DATA"
  DATA=
}

# set_guc NAME VALUE (or NAME DEFAULT): ALTER SYSTEM and reload, then wait
# until a fresh session sees it (workers read it at their next pass)
set_guc() {
  if [ "$2" = DEFAULT ]; then
    "${PSQL[@]}" -c "ALTER SYSTEM RESET $1" -c "SELECT pg_reload_conf()" >/dev/null
  else
    "${PSQL[@]}" -c "ALTER SYSTEM SET $1 = '$2'" -c "SELECT pg_reload_conf()" >/dev/null
  fi
  sleep 1
}

# this cluster's workers only (other clusters on the machine may run allma too)
worker_pids() { pgrep -P "$(head -1 "$DATA/postmaster.pid")" -f "allma worker" | tr '\n' ' '; }

# sample_rss FILE: the workers' private memory (RssAnon, kB) every 50 ms, until killed
sample_rss() {
  while :; do
    for p in $(worker_pids); do awk '/^RssAnon/ {print $2}' "/proc/$p/status" 2>/dev/null; done >> "$1"
    sleep 0.05
  done
}
# peak resident set (VmHWM, kB) of the workers since they started
worker_hwm() { for p in $(worker_pids); do awk '/^VmHWM/ {print $2}' "/proc/$p/status" 2>/dev/null; done | sort -n | tail -1; }

# next_xid: the next transaction id to be assigned (consumes none).  The
# difference across a measurement counts the write transactions committed
# or aborted meanwhile (plus subtransactions that wrote): commits/s beside
# steps/s.  Statistics counters would lag by up to a second.
next_xid() { "${PSQL[@]}" -c "SELECT txid_snapshot_xmax(txid_current_snapshot())"; }

# clear_history: delete what earlier runs left and vacuum, as autovacuum would
clear_history() {
  "${PSQL[@]}" -c "DELETE FROM allma.step_executions" -c "DELETE FROM allma.executions" >/dev/null
  "${PSQL[@]}" -c "VACUUM ANALYZE allma.executions, allma.execution_paths, allma.step_executions" >/dev/null
}
