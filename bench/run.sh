#!/usr/bin/env bash
# allma benchmarks.  Starts a throwaway cluster (same settings for every
# measurement), then measures in one run:
#   (a) baseline: pgbench -N, 4 clients, transactions/s
#   (b) step throughput: 1,000 concurrent executions of a 20-step flow, steps/s
#   (c) start-to-completion latency of a 3-step flow, single client, p50/p99
# Each measurement is repeated RUNS times (default 3); medians are reported.
# Results go to bench/RESULTS.md (and stdout).
#
#   bench/run.sh [--runs N] [--seconds S]
set -euo pipefail
cd "$(dirname "$0")/.."
SRC=$(pwd)
RUNS=3
SECONDS_PGBENCH=20
while [ $# -gt 0 ]; do
  case "$1" in
    --runs) RUNS=$2; shift 2 ;;
    --seconds) SECONDS_PGBENCH=$2; shift 2 ;;
    *) echo "usage: $0 [--runs N] [--seconds S]" >&2; exit 2 ;;
  esac
done

"$SRC/scripts/install-deps.sh"
PG_CONFIG=${PG_CONFIG:-/usr/lib/postgresql/15/bin/pg_config}
BINDIR=$("$PG_CONFIG" --bindir)
make -s PG_CONFIG="$PG_CONFIG" >/dev/null
make -s PG_CONFIG="$PG_CONFIG" install >/dev/null

AS_PG=()
[ "$(id -u)" -eq 0 ] && AS_PG=(runuser -u postgres --)
WORK=$(mktemp -d /tmp/allma-bench.XXXXXX)
[ "$(id -u)" -eq 0 ] && chown postgres "$WORK"
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')

"${AS_PG[@]}" "$BINDIR/initdb" -D "$WORK/data" -A trust -U postgres >/dev/null
cat >> "$WORK/data/postgresql.conf" <<CONF
port = $PORT
listen_addresses = ''
unix_socket_directories = '$WORK'
shared_preload_libraries = 'allma'
allma.database_name = 'postgres'
allma.max_workers = 2
allma.http_allowlist = '127.0.0.1'
allma.http_max_per_host = 2000
allma.http_max_in_flight = 2000
shared_buffers = 128MB
max_wal_size = 4GB
checkpoint_timeout = 30min
CONF
"${AS_PG[@]}" "$BINDIR/pg_ctl" -D "$WORK/data" -l "$WORK/server.log" -w start >/dev/null
# the mock HTTP server (loopback only)
python3 "$SRC/mock/mock_server.py" --port 0 --port-file "$WORK/mock.port" --smtp-port -1 >/dev/null 2>&1 &
MOCK_PID=$!
cleanup() {
  kill "$MOCK_PID" 2>/dev/null || true
  "${AS_PG[@]}" "$BINDIR/pg_ctl" -D "$WORK/data" -m fast stop >/dev/null 2>&1 || true
  rm -rf "$WORK"
}
trap cleanup EXIT

PSQL=("${AS_PG[@]}" "$BINDIR/psql" -X -q -At -h "$WORK" -p "$PORT" -U postgres -d postgres)
median() { sort -g | awk '{a[NR]=$1} END {if (NR%2) print a[(NR+1)/2]; else print (a[NR/2]+a[NR/2+1])/2}'; }

echo "== setup"
"${PSQL[@]}" -f "$SRC/bench/bench.sql" >/dev/null
"${AS_PG[@]}" "$BINDIR/pgbench" -q -i -s 10 -h "$WORK" -p "$PORT" -U postgres postgres >/dev/null 2>&1

echo "== (a) baseline: pgbench -N -c 4 -j 2 -T $SECONDS_PGBENCH"
tps_list=()
for r in $(seq 1 "$RUNS"); do
  tps=$("${AS_PG[@]}" "$BINDIR/pgbench" -N -c 4 -j 2 -T "$SECONDS_PGBENCH" -h "$WORK" -p "$PORT" -U postgres postgres 2>/dev/null \
        | sed -n 's/^tps = \([0-9.]*\) .*/\1/p' | tail -1)
  echo "   run $r: $tps tps"
  tps_list+=("$tps")
done
TPS=$(printf '%s\n' "${tps_list[@]}" | median)

echo "== (b) throughput: 1,000 executions x 20 steps"
sps_list=()
for r in $(seq 1 "$RUNS"); do
  secs=$("${PSQL[@]}" -c "CALL bench_throughput_run(1000, NULL)")
  sps=$(awk -v s="$secs" 'BEGIN {printf "%.0f", 20000 / s}')
  echo "   run $r: ${secs}s, $sps steps/s"
  sps_list+=("$sps")
done
SPS=$(printf '%s\n' "${sps_list[@]}" | median)

echo "== (b1) the same with allma.max_chain_steps = 1 (one step per path per transaction)"
"${PSQL[@]}" -c "ALTER SYSTEM SET allma.max_chain_steps = 1" -c "SELECT pg_reload_conf()" >/dev/null
sleep 1
sps1_list=()
for r in $(seq 1 "$RUNS"); do
  secs=$("${PSQL[@]}" -c "CALL bench_throughput_run(1000, NULL)")
  sps=$(awk -v s="$secs" 'BEGIN {printf "%.0f", 20000 / s}')
  echo "   run $r: ${secs}s, $sps steps/s"
  sps1_list+=("$sps")
done
SPS1=$(printf '%s\n' "${sps1_list[@]}" | median)
"${PSQL[@]}" -c "ALTER SYSTEM RESET allma.max_chain_steps" -c "SELECT pg_reload_conf()" >/dev/null
sleep 1

echo "== (c) latency: 3-step flow, single client, 300 executions per run"
"${PSQL[@]}" -c "TRUNCATE bench_latency"
for r in $(seq 1 "$RUNS"); do
  "${PSQL[@]}" -c "CALL bench_latency_run($r, 300)"
  echo "   run $r: $("${PSQL[@]}" -c "SELECT format('p50 %s ms, p99 %s ms', round(percentile_cont(0.5) WITHIN GROUP (ORDER BY ms)::numeric, 2), round(percentile_cont(0.99) WITHIN GROUP (ORDER BY ms)::numeric, 2)) FROM bench_latency WHERE run = $r")"
done
P50=$("${PSQL[@]}" -c "SELECT round(percentile_cont(0.5) WITHIN GROUP (ORDER BY p50)::numeric, 2) FROM (SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY ms) AS p50 FROM bench_latency GROUP BY run) r")
P99=$("${PSQL[@]}" -c "SELECT round(percentile_cont(0.5) WITHIN GROUP (ORDER BY p99)::numeric, 2) FROM (SELECT percentile_cont(0.99) WITHIN GROUP (ORDER BY ms) AS p99 FROM bench_latency GROUP BY run) r")

echo "== (d) fan-out: one execution forking 10,000 and 100,000 NO_OP branches (fresh workers)"
"${AS_PG[@]}" "$BINDIR/pg_ctl" -D "$WORK/data" -l "$WORK/server.log" -w restart >/dev/null
"${PSQL[@]}" -c "SELECT pg_sleep(2)" >/dev/null
# this cluster's workers only (other clusters on the machine may run allma too)
worker_pids() { pgrep -P "$(head -1 "$WORK/data/postmaster.pid")" -f "allma worker" | tr '\n' ' '; }
# samples the workers' anonymous memory (RssAnon) every 50 ms into $1
sample_rss() {
  while :; do
    for p in $(worker_pids); do awk '/^RssAnon/ {print $2}' "/proc/$p/status" 2>/dev/null; done >> "$1"
    sleep 0.05
  done
}
hwm() { for p in $(worker_pids); do awk '/^VmHWM/ {print $2}' "/proc/$p/status" 2>/dev/null; done | sort -n | tail -1; }
FORK_ROWS=""
for n in 10000 100000; do
  bps_list=()
  : > "$WORK/rss.$n"
  sample_rss "$WORK/rss.$n" & SAMPLER=$!
  for r in $(seq 1 "$RUNS"); do
    secs=$("${PSQL[@]}" -c "CALL bench_fork_run($n, NULL)")
    bps=$(awk -v s="$secs" -v n="$n" 'BEGIN {printf "%.0f", n / s}')
    echo "   $n branches, run $r: ${secs}s, $bps branches/s"
    bps_list+=("$bps")
  done
  kill $SAMPLER; wait $SAMPLER 2>/dev/null || true
  BPS=$(printf '%s\n' "${bps_list[@]}" | median)
  HWM=$(( $(hwm) / 1024 ))
  ANON=$(( $(sort -n "$WORK/rss.$n" | tail -1) / 1024 ))
  echo "   $n branches: median $BPS branches/s, worker VmHWM so far ${HWM} MB, peak RssAnon ${ANON} MB"
  FORK_ROWS="$FORK_ROWS
| (d) fan-out, $n NO_OP branches, COLLECT_ARRAY | $BPS branches/s (runs: ${bps_list[*]}); worker VmHWM after these runs: ${HWM} MB; peak worker RssAnon: ${ANON} MB | >= 5,000 branches/s; VmHWM < 256 MB, not growing from 10k to 100k |"
done

# a fresh start, so that VmHWM shows what the HTTP and LLM runs need
"${AS_PG[@]}" "$BINDIR/pg_ctl" -D "$WORK/data" -l "$WORK/server.log" -w restart >/dev/null
"${PSQL[@]}" -c "SELECT pg_sleep(2)" >/dev/null
echo "== (e) HTTP: 2,000 concurrent executions, one API_CALL each, mock latency 500 ms"
for i in $(seq 1 100); do [ -s "$WORK/mock.port" ] && break; sleep 0.1; done
MOCK_URL="http://127.0.0.1:$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['http'])" "$WORK/mock.port")"
api_list=()
: > "$WORK/rss.api"
sample_rss "$WORK/rss.api" & SAMPLER=$!
# The earlier measurements left many dead rows behind; like autovacuum would
# in a running system, clear them before each run.  One warm-up run (new
# connections to the mock, plans prepared) is not counted.
clear_history() {
  "${PSQL[@]}" -c "DELETE FROM allma.step_executions" -c "DELETE FROM allma.executions" >/dev/null
  "${PSQL[@]}" -c "VACUUM ANALYZE allma.executions, allma.execution_paths, allma.step_executions" >/dev/null
}
clear_history
"${PSQL[@]}" -c "CALL bench_api_run(2000, '$MOCK_URL', NULL)" >/dev/null
for r in $(seq 1 "$RUNS"); do
  clear_history
  secs=$("${PSQL[@]}" -c "CALL bench_api_run(2000, '$MOCK_URL', NULL)")
  sps=$(awk -v s="$secs" 'BEGIN {printf "%.0f", 2000 / s}')
  echo "   run $r: ${secs}s, $sps completed steps/s"
  api_list+=("$sps")
done
kill $SAMPLER; wait $SAMPLER 2>/dev/null || true
API_SPS=$(printf '%s\n' "${api_list[@]}" | median)
API_ANON=$(( $(sort -n "$WORK/rss.api" | tail -1) / 1024 ))
API_HWM=$(( $(hwm) / 1024 ))
echo "   median $API_SPS steps/s, peak worker RssAnon ${API_ANON} MB, VmHWM ${API_HWM} MB"

echo "== (f) LLM: 2,000 concurrent executions, one LLM_INVOCATION each (OpenAI-compatible mock, 500 ms)"
llm_list=()
clear_history
"${PSQL[@]}" -c "CALL bench_llm_run(2000, '$MOCK_URL', NULL)" >/dev/null
for r in $(seq 1 "$RUNS"); do
  clear_history
  secs=$("${PSQL[@]}" -c "CALL bench_llm_run(2000, '$MOCK_URL', NULL)")
  sps=$(awk -v s="$secs" 'BEGIN {printf "%.0f", 2000 / s}')
  echo "   run $r: ${secs}s, $sps completed steps/s"
  llm_list+=("$sps")
done
LLM_SPS=$(printf '%s\n' "${llm_list[@]}" | median)

RATIO=$(awk -v a="$SPS" -v b="$TPS" 'BEGIN {printf "%.2f", a / b}')
RATIO1=$(awk -v a="$SPS1" -v b="$TPS" 'BEGIN {printf "%.2f", a / b}')
CPU=$(lscpu | sed -n 's/^Model name: *//p' | head -1)
PGV=$("${PSQL[@]}" -c "SHOW server_version")
GIT=$(git -C "$SRC" rev-parse --short HEAD 2>/dev/null || echo unknown)

cat > "$SRC/bench/RESULTS.md" <<MD
# allma benchmark results

Produced by \`bench/run.sh\` (medians of $RUNS runs, all measured in one run on one cluster).
How these compare with the targets, and why: [NOTES.md](NOTES.md).

| machine | value |
| --- | --- |
| date | $(date -u +%Y-%m-%dT%H:%MZ) |
| commit | $GIT |
| CPU | $CPU, $(nproc) cores |
| memory | $(free -g | awk '/^Mem:/ {print $2}') GiB |
| PostgreSQL | $PGV |
| server settings | shared_buffers = 128MB, max_wal_size = 4GB, synchronous_commit = on (default), allma.max_workers = 2, allma.batch_size = default, allma.max_chain_steps = default |

| measurement | result | target |
| --- | --- | --- |
| (a) baseline: pgbench -N, 4 clients, 2 threads, ${SECONDS_PGBENCH}s | $TPS tps (runs: ${tps_list[*]}) | |
| (b) step throughput: 1,000 concurrent executions x 20 steps | $SPS steps/s (runs: ${sps_list[*]}) | |
| (b)/(a) | $RATIO | >= 3 |
| (b1) the same, allma.max_chain_steps = 1: every step of a path commits separately, batching only across executions | $SPS1 steps/s (runs: ${sps1_list[*]}) | |
| (b1)/(a) | $RATIO1 | |
| (c) start-to-completion latency, 3-step flow, single client: p50 | $P50 ms | <= 10 ms |
| (c) p99 | $P99 ms | |$FORK_ROWS
| (e) HTTP: 2,000 concurrent executions x one API_CALL, mock latency 500 ms, from the commit that started them to the last ended_at (allma.http_max_in_flight = allma.http_max_per_host = 2000) | $API_SPS completed steps/s (runs: ${api_list[*]}), 0 failed; peak worker RssAnon ${API_ANON} MB, VmHWM ${API_HWM} MB | >= 3,000 steps/s (ceiling 4,000), RSS < 200 MB |
| (f) LLM: 2,000 concurrent executions x one LLM_INVOCATION (OpenAI-compatible mock, 500 ms, JSON mode), from the commit that started them to the last ended_at | $LLM_SPS completed steps/s (runs: ${llm_list[*]}), 0 failed | |

VmHWM is the workers' peak resident set since they started (the cluster is restarted before (d) and
before (e)), and
includes the shared-buffer pages a worker touched; RssAnon is its private memory, sampled every 50 ms.
MD
echo
cat "$SRC/bench/RESULTS.md"
