# concurrency: what concurrency keys cost.  A backlog of 5,000 two-step
# executions drained by 2 workers (completions/s from the commit that
# started them to the last ended_at): without a key; all under one key
# whose limit (10,000) never queues (the bookkeeping alone: every start
# and end locks that one slot row); over 50 keys of limit 20 (at most
# 1,000 running, the rest queued and admitted as others end).
concurrency_drain() {
  local options=$1 t0 rate
  t0=$("${PSQL[@]}" -c "SELECT clock_timestamp() FROM (SELECT count(allma_start_flow('cc2', '{}', $options)) FROM generate_series(1, 5000) n) s")
  "${PSQL[@]}" -c "DO \$\$ BEGIN WHILE EXISTS (SELECT FROM allma.executions WHERE flow_id = 'cc2' AND status IN ('RUNNING', 'QUEUED')) LOOP PERFORM pg_sleep(0.05); END LOOP; END \$\$"
  rate=$("${PSQL[@]}" -c "SELECT round(count(*) / extract(epoch FROM max(ended_at) - '$t0')) FROM allma.executions WHERE flow_id = 'cc2'")
  "${PSQL[@]}" -c "DELETE FROM allma.executions WHERE flow_id = 'cc2'" -c "VACUUM allma.executions, allma.step_executions, allma.execution_paths, allma.concurrency_slots, allma.concurrency_queue" >/dev/null
  echo "$rate"
}
scenario_concurrency() {
  "${PSQL[@]}" -c "SELECT allma_create_flow('{\"id\": \"cc2\", \"startStepInstanceId\": \"a\", \"steps\": {\"a\": {\"stepType\": \"NO_OP\", \"defaultNextStepInstanceId\": \"b\"}, \"b\": {\"stepType\": \"NO_OP\"}}}') WHERE NOT EXISTS (SELECT FROM allma.flows WHERE flow_id = 'cc2')" >/dev/null
  local kind options list
  for kind in none one many; do
    case $kind in
      none) options="'{}'" ;;
      one) options="'{\"concurrencyKey\": \"all\", \"maxConcurrent\": 10000}'" ;;
      many) options="jsonb_build_object('concurrencyKey', 'k' || (n % 50), 'maxConcurrent', 20)" ;;
    esac
    list=()
    for r in $(seq 1 "$RUNS"); do
      list+=("$(concurrency_drain "$options")")
      echo "   $kind, run $r: ${list[-1]} completions/s"
    done
    report "cc_$kind" "(cc) 5,000 two-step executions drained, concurrency key: $kind" \
      "$(printf '%s\n' "${list[@]}" | median) completions/s (runs: ${list[*]})" "keys cost little against none"
  done
}
