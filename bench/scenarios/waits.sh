# waits: WAIT_FOR_EXTERNAL_EVENT at scale.  WAITS_N executions (default
# 100,000) park on their own correlation key; while they wait, the workers'
# private memory and CPU time are sampled (parked waits must cost neither);
# then one session resumes them all with
#     SELECT allma_resume_flow('w-' || i, ...) FROM generate_series(1, N) i
# and the scenario waits until every execution completed: resumes/s of the
# statement and end to end.  Then WAITS_TIMEOUT_N waits (default 10,000)
# get the same deadline, and the time from that deadline until all of them
# failed with StepTimeoutError is measured.
WAITS_N=${WAITS_N:-100000}
WAITS_TIMEOUT_N=${WAITS_TIMEOUT_N:-10000}

# worker_cpu_ticks: user+system clock ticks of this cluster's workers
worker_cpu_ticks() {
  local t=0 p
  for p in $(worker_pids); do
    t=$((t + $(awk '{print $14 + $15}' "/proc/$p/stat" 2>/dev/null || echo 0)))
  done
  echo "$t"
}

# waits_poll SQL: until SQL returns t (at most 30 min)
waits_poll() {
  for _ in $(seq 1 18000); do
    [ "$("${PSQL[@]}" -c "$1")" = t ] && return 0
    sleep 0.1
  done
  echo "   (gave up waiting for: $1)" >&2
  return 1
}

scenario_waits() {
  bench_restart
  "${PSQL[@]}" >/dev/null <<'SQL'
SELECT allma_create_flow('{"id": "bench_wait", "startStepInstanceId": "wait", "enableExecutionLogs": false,
  "steps": {"wait": {"stepType": "WAIT_FOR_EXTERNAL_EVENT", "correlationKeyTemplate": "w-{{i}}",
                     "maxWaitTimeSeconds": 86400, "outputMappings": {"$.ok": "$.ok"},
                     "defaultNextStepInstanceId": "done"},
            "done": {"stepType": "NO_OP"}}}');
SELECT allma_create_flow('{"id": "bench_wait_timeout", "startStepInstanceId": "wait", "enableExecutionLogs": false,
  "steps": {"wait": {"stepType": "WAIT_FOR_EXTERNAL_EVENT", "correlationKeyTemplate": "t-{{i}}",
                     "maxWaitTimeSeconds": 86400}}}');
SQL
  local resume_list=() e2e_list=() timeout_list=() rss_list=() cpu_list=()
  local r t0 t1 t2 c0 c1 secs sampler
  for r in $(seq 1 "$RUNS"); do
    "${PSQL[@]}" -c "TRUNCATE allma.step_executions" -c "DELETE FROM allma.executions" >/dev/null
    # park them all
    "${PSQL[@]}" -c "SELECT count(allma_start_flow('bench_wait', jsonb_build_object('i', i)))
                     FROM generate_series(1, $WAITS_N) i" >/dev/null
    waits_poll "SELECT count(*) = $WAITS_N FROM allma.waits WHERE status = 'OPEN'" || return 1
    # parked: what do the workers use over 5 s?
    : > "$WORK/rss.waits"
    sample_rss "$WORK/rss.waits" & sampler=$!
    c0=$(worker_cpu_ticks)
    sleep 5
    c1=$(worker_cpu_ticks)
    kill $sampler; wait $sampler 2>/dev/null || true
    rss_list+=("$(( $(sort -n "$WORK/rss.waits" | tail -1) / 1024 ))")
    cpu_list+=("$(awk -v d=$((c1 - c0)) -v hz="$(getconf CLK_TCK)" 'BEGIN {printf "%.2f", d / hz / 5 * 100}')")
    # resume them from one session
    t0=$("${PSQL[@]}" -c "SELECT extract(epoch FROM clock_timestamp())")
    "${PSQL[@]}" -c "SELECT count(allma_resume_flow('w-' || i, '{\"ok\": true}'))
                     FROM generate_series(1, $WAITS_N) i" >/dev/null
    t1=$("${PSQL[@]}" -c "SELECT extract(epoch FROM clock_timestamp())")
    waits_poll "SELECT count(*) = $WAITS_N FROM allma.executions
                WHERE flow_id = 'bench_wait' AND status = 'COMPLETED'" || return 1
    t2=$("${PSQL[@]}" -c "SELECT extract(epoch FROM max(ended_at)) FROM allma.executions
                          WHERE flow_id = 'bench_wait'")
    resume_list+=("$(awk -v a="$t0" -v b="$t1" -v n="$WAITS_N" 'BEGIN {printf "%.0f", n / (b - a)}')")
    e2e_list+=("$(awk -v a="$t0" -v b="$t2" -v n="$WAITS_N" 'BEGIN {printf "%.0f", n / (b - a)}')")
    echo "   run $r: parked workers ${rss_list[-1]} MB RssAnon, ${cpu_list[-1]}% CPU;" \
         "resume statement ${resume_list[-1]}/s, end to end ${e2e_list[-1]}/s"

    # timeouts: WAITS_TIMEOUT_N waits, all with the same deadline
    "${PSQL[@]}" -c "SELECT count(allma_start_flow('bench_wait_timeout', jsonb_build_object('i', i)))
                     FROM generate_series(1, $WAITS_TIMEOUT_N) i" >/dev/null
    waits_poll "SELECT count(*) = $WAITS_TIMEOUT_N FROM allma.waits
                WHERE status = 'OPEN' AND correlation_key LIKE 't-%'" || return 1
    "${PSQL[@]}" >/dev/null <<SQL
CREATE TEMP TABLE deadline AS SELECT date_trunc('second', clock_timestamp()) + interval '2 s' AS at;
UPDATE allma.waits SET deadline = (SELECT at FROM deadline)
 WHERE status = 'OPEN' AND correlation_key LIKE 't-%';
UPDATE allma.execution_paths p SET due_at = (SELECT at FROM deadline)
  FROM allma.executions x WHERE x.execution_id = p.execution_id AND x.flow_id = 'bench_wait_timeout'
   AND p.status = 'WAITING';
CREATE TABLE IF NOT EXISTS bench_deadline AS SELECT at FROM deadline;
UPDATE bench_deadline SET at = (SELECT at FROM deadline);
SQL
    waits_poll "SELECT count(*) = $WAITS_TIMEOUT_N FROM allma.executions
                WHERE flow_id = 'bench_wait_timeout' AND status = 'FAILED'" || return 1
    secs=$("${PSQL[@]}" -c "SELECT round(extract(epoch FROM max(x.ended_at) - (SELECT at FROM bench_deadline))::numeric, 2)
                            FROM allma.executions x WHERE x.flow_id = 'bench_wait_timeout'")
    timeout_list+=("$secs")
    echo "   run $r: $WAITS_TIMEOUT_N waits with one deadline all failed ${secs}s after it"
  done
  report wait-park "(w1) $WAITS_N parked waits: the workers' peak private memory and CPU while they wait" \
    "RssAnon $(printf '%s\n' "${rss_list[@]}" | median) MB, CPU $(printf '%s\n' "${cpu_list[@]}" | median)% (runs: ${cpu_list[*]})" \
    "no memory or polling per wait"
  report wait-resume "(w2) resuming $WAITS_N waits from one session, SELECT allma_resume_flow(k, ...) FROM ..." \
    "statement $(printf '%s\n' "${resume_list[@]}" | median) resumes/s; end to end $(printf '%s\n' "${e2e_list[@]}" | median) resumes/s (runs: ${e2e_list[*]})" \
    ">= 10,000 resumes/s end to end"
  report wait-timeout "(w3) $WAITS_TIMEOUT_N waits timing out in the same second" \
    "all failed $(printf '%s\n' "${timeout_list[@]}" | median) s after the deadline (runs: ${timeout_list[*]})" \
    "within 2 s"
}
