# largevalues: executions whose SQL step returns about 1.2 MB (10,000 rows of hex),
# followed by two steps that read one row of it through the context, with
# allma.out_of_line_threshold at its default (1 MB: the output goes to
# allma.large_values and the context and history hold a pointer) and at 0
# (everything inline, as in 1.0).  40 executions at once per run: their
# executions/s, the bytes the history and path tables grew by per execution
# (plus allma.large_values), and the workers' peak RssAnon.
LV_EXECUTIONS=${LV_EXECUTIONS:-40}

scenario_largevalues() {
  "${PSQL[@]}" -c "SELECT allma_create_flow('{\"id\": \"lv_bench\", \"startStepInstanceId\": \"q\", \"steps\": {
    \"q\": {\"stepType\": \"DATA_LOAD\", \"moduleIdentifier\": \"system/sql-query\",
          \"customConfig\": {\"sql\": \"SELECT g AS i, md5(g::text) || md5((-g)::text) || md5((g * 7)::text) AS pad FROM generate_series(1, 10000) g\"},
          \"defaultNextStepInstanceId\": \"use\"},
    \"use\": {\"stepType\": \"NO_OP\", \"inputMappings\": {\"row\": \"\$.steps_output.q.rows[9876]\"},
            \"outputMappings\": {\"\$.picked\": \"\$.row.i\"}, \"defaultNextStepInstanceId\": \"check\"},
    \"check\": {\"stepType\": \"NO_OP\", \"transitions\": [{\"condition\": \"\$.picked == 9877\", \"nextStepInstanceId\": \"done\"}]},
    \"done\": {\"stepType\": \"NO_OP\"}}}')" >/dev/null
  local setting label list secs sampler sizes before after
  # the bench starts executions as the bootstrap superuser (as soak.sh)
  set_guc allma.allow_superuser_sql_steps on
  for setting in DEFAULT 0; do
    [ "$setting" = DEFAULT ] && label="threshold 1 MB (out of line)" || label="threshold 0 (inline)"
    set_guc allma.out_of_line_threshold "$setting"
    list=()
    sizes=()
    : > "$WORK/rss.lv.$setting"
    sample_rss "$WORK/rss.lv.$setting" & sampler=$!
    for r in $(seq 1 "$RUNS"); do
      clear_history
      "${PSQL[@]}" -c "DELETE FROM allma.large_values" >/dev/null
      before=$("${PSQL[@]}" -c "SELECT pg_total_relation_size('allma.step_executions') + pg_total_relation_size('allma.execution_paths') + pg_total_relation_size('allma.executions') + pg_total_relation_size('allma.large_values')")
      local t0 ids id st
      t0=$(date +%s.%N)
      ids=$("${PSQL[@]}" -c "SELECT allma_start_flow('lv_bench', '{}') FROM generate_series(1, $LV_EXECUTIONS)")
      for id in $ids; do
        st=$("${PSQL[@]}" -c "SELECT allma_wait('$id', '10 min')")
        [ "$st" = COMPLETED ] || { echo "lv_bench execution $id: $st" >&2; "${PSQL[@]}" -c "SELECT error FROM allma.executions WHERE execution_id = '$id'" >&2; return 1; }
      done
      secs=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN {printf "%.3f", b - a}')
      after=$("${PSQL[@]}" -c "SELECT pg_total_relation_size('allma.step_executions') + pg_total_relation_size('allma.execution_paths') + pg_total_relation_size('allma.executions') + pg_total_relation_size('allma.large_values')")
      list+=("$(awk -v s="$secs" -v n="$LV_EXECUTIONS" 'BEGIN {printf "%.1f", n / s}')")
      sizes+=("$(( (after - before) / LV_EXECUTIONS / 1024 ))")
      echo "   $label, run $r: ${secs}s, ${list[-1]} executions/s, $(( (after - before) / LV_EXECUTIONS / 1024 )) kB per execution"
    done
    kill $sampler; wait $sampler 2>/dev/null || true
    report "lv$setting" "(lv) $LV_EXECUTIONS executions with a 1.2 MB SQL output read by two steps, $label" \
      "$(printf '%s\n' "${list[@]}" | median) executions/s (runs: ${list[*]}); $(printf '%s\n' "${sizes[@]}" | median) kB stored per execution; peak worker RssAnon $(( $(sort -n "$WORK/rss.lv.$setting" | tail -1) / 1024 )) MB" \
      "out of line: fewer bytes per execution, no less throughput"
  done
  set_guc allma.out_of_line_threshold DEFAULT
  set_guc allma.allow_superuser_sql_steps DEFAULT
}
