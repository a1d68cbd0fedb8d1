# kills: terminated workers (a killed worker must be replaced at once and
# the others must absorb its work).  A backlog of 40,000 one-step
# executions is drained twice: undisturbed, and while every allma worker is
# terminated (pg_terminate_backend) twice a second.  Reports completions/s
# of both (from the commit that started them to the last ended_at) and
# their ratio, then the start-to-completion time of 100 executions started
# one by one right after the kills stop (pickup p99).  KILLS_N sets the
# backlog (default 40,000; at 35,000/s that drain lasts about a second, i.e.
# two or three rounds of kills).
KILLS_N=${KILLS_N:-40000}
kills_window() {
  local kill=$1 t0 killer= rate
  # t0: when the starting statement has started them all (just before its commit)
  t0=$("${PSQL[@]}" -c "SELECT clock_timestamp() FROM (SELECT count(allma_start_flow('kills1')) FROM generate_series(1, $KILLS_N)) s")
  : > "$WORK/kill_rounds"
  if [ "$kill" = 1 ]; then
    ( while :; do
        "${PSQL[@]}" -c "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE backend_type = 'allma worker'" >> "$WORK/kill_rounds" 2>/dev/null
        sleep 0.5
      done ) &
    killer=$!
  fi
  "${PSQL[@]}" -c "DO \$\$ BEGIN WHILE EXISTS (SELECT FROM allma.executions WHERE flow_id = 'kills1' AND status = 'RUNNING') LOOP PERFORM pg_sleep(0.1); END LOOP; END \$\$"
  [ -n "$killer" ] && { kill "$killer"; wait "$killer" 2>/dev/null || true; }
  rate=$("${PSQL[@]}" -c "SELECT round(count(*) / extract(epoch FROM max(ended_at) - '$t0')) FROM allma.executions WHERE flow_id = 'kills1'")
  # Cleanup, the same state before every window: the executions' delete
  # trigger deletes their history in one statement (hash or merge join: the
  # planner must not pick a nested loop over a table it believes empty,
  # which made a separate history DELETE quadratic), then VACUUM.
  "${PSQL[@]}" -c "SET enable_nestloop = off" -c "DELETE FROM allma.executions WHERE flow_id = 'kills1'" \
    -c "VACUUM allma.executions, allma.step_executions, allma.execution_paths" >/dev/null
  echo "$rate"
}
scenario_kills() {
  "${PSQL[@]}" -c "SELECT allma_create_flow('{\"id\": \"kills1\", \"startStepInstanceId\": \"a\", \"steps\": {\"a\": {\"stepType\": \"NO_OP\"}}}') WHERE NOT EXISTS (SELECT FROM allma.flows WHERE flow_id = 'kills1')" >/dev/null
  local calm=() killed=() ratios=() c k
  for r in $(seq 1 "$RUNS"); do
    c=$(kills_window 0); k=$(kills_window 1)
    calm+=("$c"); killed+=("$k")
    ratios+=("$(awk -v a="$k" -v b="$c" 'BEGIN {printf "%.2f", (b > 0) ? a / b : 0}')")
    echo "   run $r: ${c}/s undisturbed, ${k}/s with kills (${ratios[-1]}; $(grep -c . "$WORK/kill_rounds") rounds of kills," \
      "$(awk '{n += $1} END {print n + 0}' "$WORK/kill_rounds") workers terminated)"
  done
  # pickup right after the kills stop: 100 executions, one at a time
  "${PSQL[@]}" -c "CREATE TABLE IF NOT EXISTS bench_pickup (ms double precision)" -c "TRUNCATE bench_pickup" >/dev/null
  "${PSQL[@]}" -c "DO \$\$ DECLARE e uuid; t timestamptz; BEGIN FOR i IN 1..100 LOOP t := clock_timestamp(); e := allma_start_flow('kills1'); COMMIT; PERFORM allma_wait(e, '60 s'); INSERT INTO bench_pickup VALUES (extract(epoch FROM clock_timestamp() - t) * 1000); COMMIT; END LOOP; END \$\$" >/dev/null
  report k1 "(k) a backlog of $KILLS_N one-step executions drained, undisturbed" \
    "$(printf '%s\n' "${calm[@]}" | median) completions/s (runs: ${calm[*]})" ""
  report k2 "(k) the same while every allma worker is terminated twice a second" \
    "$(printf '%s\n' "${killed[@]}" | median) completions/s (runs: ${killed[*]}); ratio $(printf '%s\n' "${ratios[@]}" | median)" ">= 0.80 of undisturbed"
  report k3 "(k) start-to-completion right after the kills stop, 100 executions one at a time: p99" \
    "$("${PSQL[@]}" -c "SELECT round(percentile_cont(0.99) WITHIN GROUP (ORDER BY ms)::numeric, 1) FROM bench_pickup") ms" "< 1000 ms"
}
