# workers: more workers must never mean less throughput (issue 16), at
# allma.max_workers = 2, 8, 16 and 32 (allma.max_concurrent_passes at its
# default, twice the CPUs):
# (w)  a backlog of 60,000 one-step NO_OP executions drained: completions/s
#      from the commit that started them to the last ended_at.  All CPU:
#      the workers beyond the turns wait for one.
# (w1) the issue's own shape: one-step executions doing 1 ms of work (a SQL
#      step sleeping 1 ms), the queue topped up to 4,000 runnable paths by a
#      feeder, completions/s over WORKERS_SECONDS (default 10) after 2 s of
#      warm-up.  A pass running user SQL gives its turn back, so sleeping
#      SQL does not hold the CPU's turns.
workers_clean() {
  # the executions only: their statement trigger deletes the history (a
  # separate history DELETE by subquery can be planned as a nested loop
  # over a table whose statistics say empty, see kills.sh)
  "${PSQL[@]}" -c "SET enable_nestloop = off" -c "DELETE FROM allma.executions WHERE flow_id = '$1'" \
    -c "VACUUM allma.executions, allma.step_executions, allma.execution_paths" >/dev/null
}
workers_wait_done() {
  "${PSQL[@]}" -c "DO \$\$ BEGIN WHILE EXISTS (SELECT FROM allma.executions WHERE flow_id = '$1' AND status = 'RUNNING') LOOP PERFORM pg_sleep(0.05); END LOOP; END \$\$"
}
workers_drain() {
  local t0 rate
  t0=$("${PSQL[@]}" -c "SELECT clock_timestamp() FROM (SELECT count(allma_start_flow('workers1')) FROM generate_series(1, 60000)) s")
  workers_wait_done workers1
  rate=$("${PSQL[@]}" -c "SELECT round(count(*) / extract(epoch FROM max(ended_at) - '$t0')) FROM allma.executions WHERE flow_id = 'workers1'")
  # where the time went, for the log: seconds to the median, the 99th percentile and the last end
  echo "   drain: $("${PSQL[@]}" -c "SELECT string_agg(round(extract(epoch FROM q - '$t0')::numeric, 3)::text, ' / ') FROM unnest((SELECT percentile_disc(ARRAY[0.5, 0.99, 1]) WITHIN GROUP (ORDER BY ended_at) FROM allma.executions WHERE flow_id = 'workers1')) q") s to 50 % / 99 % / all" >&2
  workers_clean workers1
  echo "$rate"
}
workers_sustained() {
  local secs=${WORKERS_SECONDS:-10} feeder t1 t2 rate
  "${PSQL[@]}" -c "CALL bench_workers_feed('workers_sql', 4000, $((secs + 3)))" & feeder=$!
  sleep 2
  t1=$("${PSQL[@]}" -c "SELECT clock_timestamp()")
  sleep "$secs"
  t2=$("${PSQL[@]}" -c "SELECT clock_timestamp()")
  wait $feeder
  workers_wait_done workers_sql
  rate=$("${PSQL[@]}" -c "SELECT round(count(*) FILTER (WHERE ended_at BETWEEN '$t1' AND '$t2') / extract(epoch FROM '$t2'::timestamptz - '$t1')), count(*) FILTER (WHERE status <> 'COMPLETED') FROM allma.executions WHERE flow_id = 'workers_sql'")
  workers_clean workers_sql
  [ "${rate#*|}" = 0 ] || { echo "workers_sql: ${rate#*|} executions did not complete" >&2; exit 1; }
  echo "${rate%|*}"
}
scenario_workers() {
  "${PSQL[@]}" -c "SELECT allma_create_flow('{\"id\": \"workers1\", \"startStepInstanceId\": \"a\", \"steps\": {\"a\": {\"stepType\": \"NO_OP\"}}}') WHERE NOT EXISTS (SELECT FROM allma.flows WHERE flow_id = 'workers1')" >/dev/null
  # the bench starts executions as the bootstrap superuser (as fork.sh)
  set_guc allma.allow_superuser_sql_steps on
  local w list list1
  for w in ${WORKERS_WIDTHS:-2 8 16 32}; do
    set_guc allma.max_workers "$w"
    for _ in $(seq 1 100); do
      [ "$("${PSQL[@]}" -c "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'allma worker'")" -ge "$w" ] && break
      sleep 0.2
    done
    list=() list1=()
    for r in $(seq 1 "$RUNS"); do
      list+=("$(workers_drain)")
      list1+=("$(workers_sustained)")
      echo "   $w workers, run $r: drain ${list[-1]}, 1 ms steps ${list1[-1]} completions/s"
    done
    report "w$w" "(w) a backlog of 60,000 one-step NO_OP executions drained, allma.max_workers = $w" \
      "$(printf '%s\n' "${list[@]}" | median) completions/s (runs: ${list[*]})" "flat or rising with more workers"
    report "w1_$w" "(w1) one-step executions with 1 ms of SQL work, queue kept at 4,000, allma.max_workers = $w" \
      "$(printf '%s\n' "${list1[@]}" | median) completions/s (runs: ${list1[*]})" "flat or rising with more workers"
  done
  set_guc allma.max_workers DEFAULT
  set_guc allma.allow_superuser_sql_steps DEFAULT
}
