# latency: start-to-completion of a 3-step flow from a single client
# (allma_start_flow, commit, allma_wait), 300 executions per run.
scenario_latency() {
  "${PSQL[@]}" -c "TRUNCATE bench_latency"
  for r in $(seq 1 "$RUNS"); do
    "${PSQL[@]}" -c "CALL bench_latency_run($r, 300)"
    echo "   run $r: $("${PSQL[@]}" -c "SELECT format('p50 %s ms, p99 %s ms', round(percentile_cont(0.5) WITHIN GROUP (ORDER BY ms)::numeric, 2), round(percentile_cont(0.99) WITHIN GROUP (ORDER BY ms)::numeric, 2)) FROM bench_latency WHERE run = $r")"
  done
  report c50 "(c) start-to-completion latency, 3-step flow, single client: p50 (median of runs)" \
    "$("${PSQL[@]}" -c "SELECT round(percentile_cont(0.5) WITHIN GROUP (ORDER BY p50)::numeric, 2) FROM (SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY ms) AS p50 FROM bench_latency GROUP BY run) r") ms" "<= 10 ms"
  report c99 "(c) p99 (median of runs)" \
    "$("${PSQL[@]}" -c "SELECT round(percentile_cont(0.5) WITHIN GROUP (ORDER BY p99)::numeric, 2) FROM (SELECT percentile_cont(0.99) WITHIN GROUP (ORDER BY ms) AS p99 FROM bench_latency GROUP BY run) r") ms" ""
}
