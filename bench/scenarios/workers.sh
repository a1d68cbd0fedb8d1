# workers: more workers must never mean less throughput.  A backlog of
# 20,000 one-step executions drained with allma.max_workers = 2, 8, 16 and
# 32 (completions/s from the commit that started them to the last
# ended_at).  With every commit waking every worker, more workers used to
# claim at once and steal each other's CPU; allma wakes a worker per batch
# of new work, and a worker that claims a full batch brings in one sleeper.
workers_drain() {
  local t0 rate
  t0=$("${PSQL[@]}" -c "SELECT clock_timestamp() FROM (SELECT count(allma_start_flow('workers1')) FROM generate_series(1, 20000)) s")
  "${PSQL[@]}" -c "DO \$\$ BEGIN WHILE EXISTS (SELECT FROM allma.executions WHERE flow_id = 'workers1' AND status = 'RUNNING') LOOP PERFORM pg_sleep(0.05); END LOOP; END \$\$"
  rate=$("${PSQL[@]}" -c "SELECT round(count(*) / extract(epoch FROM max(ended_at) - '$t0')) FROM allma.executions WHERE flow_id = 'workers1'")
  # the executions only: their statement trigger deletes the history (a
  # separate history DELETE by subquery can be planned as a nested loop
  # over a table whose statistics say empty, see kills.sh)
  "${PSQL[@]}" -c "SET enable_nestloop = off" -c "DELETE FROM allma.executions WHERE flow_id = 'workers1'" \
    -c "VACUUM allma.executions, allma.step_executions, allma.execution_paths" >/dev/null
  echo "$rate"
}
scenario_workers() {
  "${PSQL[@]}" -c "SELECT allma_create_flow('{\"id\": \"workers1\", \"startStepInstanceId\": \"a\", \"steps\": {\"a\": {\"stepType\": \"NO_OP\"}}}') WHERE NOT EXISTS (SELECT FROM allma.flows WHERE flow_id = 'workers1')" >/dev/null
  local w list
  for w in 2 8 16 32; do
    set_guc allma.max_workers "$w"
    for _ in $(seq 1 100); do
      [ "$("${PSQL[@]}" -c "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'allma worker'")" -ge "$w" ] && break
      sleep 0.2
    done
    list=()
    for r in $(seq 1 "$RUNS"); do
      list+=("$(workers_drain)")
      echo "   $w workers, run $r: ${list[-1]} completions/s"
    done
    report "w$w" "(w) a backlog of 20,000 one-step executions drained, allma.max_workers = $w" \
      "$(printf '%s\n' "${list[@]}" | median) completions/s (runs: ${list[*]})" "flat or rising with more workers"
  done
  set_guc allma.max_workers DEFAULT
}
