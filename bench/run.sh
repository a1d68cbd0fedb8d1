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
shared_buffers = 1GB
max_wal_size = 4GB
checkpoint_timeout = 30min
CONF
"${AS_PG[@]}" "$BINDIR/pg_ctl" -D "$WORK/data" -l "$WORK/server.log" -w start >/dev/null
cleanup() { "${AS_PG[@]}" "$BINDIR/pg_ctl" -D "$WORK/data" -m fast stop >/dev/null 2>&1 || true; rm -rf "$WORK"; }
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

RATIO=$(awk -v a="$SPS" -v b="$TPS" 'BEGIN {printf "%.2f", a / b}')
RATIO1=$(awk -v a="$SPS1" -v b="$TPS" 'BEGIN {printf "%.2f", a / b}')
CPU=$(lscpu | sed -n 's/^Model name: *//p' | head -1)
PGV=$("${PSQL[@]}" -c "SHOW server_version")
GIT=$(git -C "$SRC" rev-parse --short HEAD 2>/dev/null || echo unknown)

cat > "$SRC/bench/RESULTS.md" <<MD
# allma benchmark results

Produced by \`bench/run.sh\` (medians of $RUNS runs, all measured in one run on one cluster).

| machine | value |
| --- | --- |
| date | $(date -u +%Y-%m-%dT%H:%MZ) |
| commit | $GIT |
| CPU | $CPU, $(nproc) cores |
| memory | $(free -g | awk '/^Mem:/ {print $2}') GiB |
| PostgreSQL | $PGV |
| server settings | shared_buffers = 1GB, max_wal_size = 4GB, synchronous_commit = on (default), allma.max_workers = 2, allma.batch_size = default, allma.max_chain_steps = default |

| measurement | result | target |
| --- | --- | --- |
| (a) baseline: pgbench -N, 4 clients, 2 threads, ${SECONDS_PGBENCH}s | $TPS tps (runs: ${tps_list[*]}) | |
| (b) step throughput: 1,000 concurrent executions x 20 steps | $SPS steps/s (runs: ${sps_list[*]}) | |
| (b)/(a) | $RATIO | >= 3 |
| (b1) the same, allma.max_chain_steps = 1: every step of a path commits separately, batching only across executions | $SPS1 steps/s (runs: ${sps1_list[*]}) | |
| (b1)/(a) | $RATIO1 | |
| (c) start-to-completion latency, 3-step flow, single client: p50 | $P50 ms | <= 10 ms |
| (c) p99 | $P99 ms | |
MD
echo
cat "$SRC/bench/RESULTS.md"
