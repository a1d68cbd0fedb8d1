# baseline: the machine's own transaction rate, pgbench -N (4 clients,
# 2 threads), measured on the same cluster as the scenarios that follow;
# every "x pgbench" ratio divides by it.
scenario_baseline() {
  "${AS_PG[@]}" "$BENCH_BINDIR/pgbench" -q -i -s 10 -h "$WORK" -p "$PORT" -U postgres postgres >/dev/null 2>&1
  local list=() tps
  for r in $(seq 1 "$RUNS"); do
    tps=$("${AS_PG[@]}" "$BENCH_BINDIR/pgbench" -N -c 4 -j 2 -T "$SECONDS_PGBENCH" -h "$WORK" -p "$PORT" -U postgres postgres 2>/dev/null \
          | sed -n 's/^tps = \([0-9.]*\) .*/\1/p' | tail -1)
    echo "   run $r: $tps tps"
    list+=("${tps%.*}")
  done
  BASELINE_TPS=$(printf '%s\n' "${list[@]}" | median)
  report a "(a) baseline: pgbench -N, 4 clients, 2 threads, ${SECONDS_PGBENCH}s" \
    "$BASELINE_TPS tps (runs: ${list[*]})" ""
}
