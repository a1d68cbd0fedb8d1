# waits: WAIT_FOR_EXTERNAL_EVENT at scale.  For each N of WAITS_NS (default
# 10,000 and 100,000), N executions park on their own correlation key; while they wait, the workers'
# private memory and CPU time are sampled (parked waits must cost neither);
# then one session resumes them all with
#     SELECT allma_resume_flow('w-' || i, ...) FROM generate_series(1, N) i
# and the scenario waits until every execution completed: resumes/s of the
# statement and end to end, and the CPU time the resuming backend and the
# workers spent (on a shared machine wall time alone says little).  Then
# WAITS_TIMEOUT_N waits (default 10,000) get the same deadline, the workers
# are woken once (as a park would have told them about it), and the time
# from that deadline until all of them failed with StepTimeoutError is
# measured.
#
# Each run starts from empty tables, deleted only once nothing is live: a
# DELETE of executions while a worker still held paths of them once
# deadlocked with it (the cascade to execution_paths against the worker's
# path-then-execution lock order); paths go first, then the rest, each with
# a lock timeout and retried.
WAITS_NS=${WAITS_NS:-10000 100000}
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

# waits_cleanup: empty allma's tables once no path is live (see above)
waits_cleanup() {
  local try
  waits_poll "SELECT NOT EXISTS (SELECT FROM allma.executions WHERE status = 'RUNNING')" || return 1
  for try in 1 2 3 4 5; do
    if "${PSQL[@]}" -v ON_ERROR_STOP=1 >/dev/null 2>&1 <<'SQL'
SET lock_timeout = '5s';
BEGIN;
DELETE FROM allma.execution_paths;
DELETE FROM allma.forks;
DELETE FROM allma.waits;
TRUNCATE allma.step_executions;
DELETE FROM allma.executions;
COMMIT;
SQL
    then
      "${PSQL[@]}" -c "VACUUM ANALYZE allma.executions, allma.execution_paths, allma.waits" >/dev/null
      return 0
    fi
    echo "   (cleanup attempt $try failed, retrying)" >&2
    sleep 1
  done
  return 1
}

# resume_all N: resumes w-1..w-N from one session; prints the statement's
# start and end (epoch seconds) and the backend's CPU ticks
resume_all() {
  "${PSQL[@]}" <<SQL
SELECT pg_backend_pid() AS pid \gset
\setenv BPID :pid
\! awk '{print "cpu0", \$14 + \$15}' /proc/\$BPID/stat
SELECT 't0', extract(epoch FROM clock_timestamp());
SELECT count(allma_resume_flow('w-' || i, '{"ok": true}')) FROM generate_series(1, $1) i \g /dev/null
SELECT 't1', extract(epoch FROM clock_timestamp());
\! awk '{print "cpu1", \$14 + \$15}' /proc/\$BPID/stat
SQL
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
SELECT allma_create_flow('{"id": "bench_wake", "startStepInstanceId": "n", "enableExecutionLogs": false,
  "steps": {"n": {"stepType": "NO_OP"}}}');
SQL
  local hz n r t0 t1 t2 c0 c1 w0 w1 b0 b1 out secs sampler
  local timeout_list=() rss_list=() cpu_list=()
  declare -A stmt_list e2e_list bcpu_list wcpu_list
  hz=$(getconf CLK_TCK)
  for r in $(seq 1 "$RUNS"); do
    for n in $WAITS_NS; do
      waits_cleanup || return 1
      # park them all
      "${PSQL[@]}" -c "SELECT count(allma_start_flow('bench_wait', jsonb_build_object('i', i)))
                       FROM generate_series(1, $n) i" >/dev/null
      waits_poll "SELECT count(*) = $n FROM allma.waits WHERE status = 'OPEN'" || return 1
      # parked: what do the workers use over 5 s?
      : > "$WORK/rss.waits"
      sample_rss "$WORK/rss.waits" & sampler=$!
      c0=$(worker_cpu_ticks)
      sleep 5
      c1=$(worker_cpu_ticks)
      kill $sampler; wait $sampler 2>/dev/null || true
      rss_list+=("$(( $(sort -n "$WORK/rss.waits" | tail -1) / 1024 ))")
      cpu_list+=("$(awk -v d=$((c1 - c0)) -v hz="$hz" 'BEGIN {printf "%.2f", d / hz / 5 * 100}')")
      # resume them from one session
      w0=$(worker_cpu_ticks)
      out=$(resume_all "$n")
      t0=$(awk -F'|' '$1 == "t0" {print $2}' <<<"$out")
      t1=$(awk -F'|' '$1 == "t1" {print $2}' <<<"$out")
      b0=$(awk '$1 == "cpu0" {print $2}' <<<"$out")
      b1=$(awk '$1 == "cpu1" {print $2}' <<<"$out")
      waits_poll "SELECT count(*) = $n FROM allma.executions
                  WHERE flow_id = 'bench_wait' AND status = 'COMPLETED'" || return 1
      w1=$(worker_cpu_ticks)
      t2=$("${PSQL[@]}" -c "SELECT extract(epoch FROM max(ended_at)) FROM allma.executions
                            WHERE flow_id = 'bench_wait'")
      stmt_list[$n]+=" $(awk -v a="$t0" -v b="$t1" -v n="$n" 'BEGIN {printf "%.0f", n / (b - a)}')"
      e2e_list[$n]+=" $(awk -v a="$t0" -v b="$t2" -v n="$n" 'BEGIN {printf "%.0f", n / (b - a)}')"
      bcpu_list[$n]+=" $(awk -v d=$((b1 - b0)) -v hz="$hz" -v n="$n" 'BEGIN {printf "%.1f", d / hz * 1e6 / n}')"
      wcpu_list[$n]+=" $(awk -v d=$((w1 - w0)) -v hz="$hz" -v n="$n" 'BEGIN {printf "%.1f", d / hz * 1e6 / n}')"
      echo "   run $r, $n waits: parked workers ${rss_list[-1]} MB RssAnon, ${cpu_list[-1]}% CPU;" \
           "resume statement ${stmt_list[$n]##* }/s, end to end ${e2e_list[$n]##* }/s;" \
           "CPU per resume: backend ${bcpu_list[$n]##* } us, workers ${wcpu_list[$n]##* } us"
    done

    # timeouts: WAITS_TIMEOUT_N waits, all with the same deadline
    waits_cleanup || return 1
    "${PSQL[@]}" -c "SELECT count(allma_start_flow('bench_wait_timeout', jsonb_build_object('i', i)))
                     FROM generate_series(1, $WAITS_TIMEOUT_N) i" >/dev/null
    waits_poll "SELECT count(*) = $WAITS_TIMEOUT_N FROM allma.waits
                WHERE status = 'OPEN' AND correlation_key LIKE 't-%'" || return 1
    # one deadline (the next whole second but one); a wake, so that the
    # workers learn it as they would have when the waits parked
    "${PSQL[@]}" >/dev/null <<SQL
CREATE TEMP TABLE deadline AS SELECT date_trunc('second', clock_timestamp()) + interval '2 s' AS at;
UPDATE allma.waits SET deadline = (SELECT at FROM deadline)
 WHERE status = 'OPEN' AND correlation_key LIKE 't-%';
UPDATE allma.execution_paths p SET due_at = (SELECT at FROM deadline)
  FROM allma.executions x WHERE x.execution_id = p.execution_id AND x.flow_id = 'bench_wait_timeout'
   AND p.status = 'WAITING';
CREATE TABLE IF NOT EXISTS bench_deadline AS SELECT at FROM deadline;
UPDATE bench_deadline SET at = (SELECT at FROM deadline);
SELECT allma_start_flow('bench_wake', '{}');
SQL
    waits_poll "SELECT count(*) = $WAITS_TIMEOUT_N FROM allma.executions
                WHERE flow_id = 'bench_wait_timeout' AND status = 'FAILED'" || return 1
    secs=$("${PSQL[@]}" -c "SELECT round(extract(epoch FROM max(x.ended_at) - (SELECT at FROM bench_deadline))::numeric, 2)
                            FROM allma.executions x WHERE x.flow_id = 'bench_wait_timeout'")
    timeout_list+=("$secs")
    echo "   run $r: $WAITS_TIMEOUT_N waits with one deadline all failed ${secs}s after it"
  done
  report wait-park "(w1) parked waits ($WAITS_NS): the workers' peak private memory and CPU while they wait" \
    "RssAnon $(printf '%s\n' "${rss_list[@]}" | median) MB (samples: ${rss_list[*]}), CPU $(printf '%s\n' "${cpu_list[@]}" | median)% (samples: ${cpu_list[*]})" \
    "no memory or polling per wait"
  for n in $WAITS_NS; do
    report "wait-resume-$n" "(w2) resuming $n waits from one session, SELECT allma_resume_flow(k, ...) FROM ..." \
      "end to end $(tr ' ' '\n' <<<"${e2e_list[$n]}" | grep . | median) resumes/s (runs:${e2e_list[$n]}); statement $(tr ' ' '\n' <<<"${stmt_list[$n]}" | grep . | median)/s; CPU per resume: backend $(tr ' ' '\n' <<<"${bcpu_list[$n]}" | grep . | median) us, workers $(tr ' ' '\n' <<<"${wcpu_list[$n]}" | grep . | median) us" \
      ">= 10,000 resumes/s end to end"
  done
  report wait-timeout "(w3) $WAITS_TIMEOUT_N waits timing out in the same second" \
    "all failed $(printf '%s\n' "${timeout_list[@]}" | median) s after the deadline (runs: ${timeout_list[*]})" \
    "within 2 s"
}
