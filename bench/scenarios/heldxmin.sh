# heldxmin: sustained load while a transaction holds the xmin horizon.
# A fixed offered load of one-step executions (HELDXMIN_RATE/s, default
# 800, started HELDXMIN_PER_XACT (default 8) per transaction by pgbench -R
# with 4 clients: one start per transaction is more commits than a loaded
# 2-core machine offers at that rate)
# runs for a warm-up (HELDXMIN_WARMUP s, default 30), then while a session
# holds BEGIN ISOLATION LEVEL REPEATABLE READ; SELECT txid_current(); open
# (HELDXMIN_HOLD s, default 180), then after it ended (HELDXMIN_AFTER s,
# default 60).  Every 5 s it samples the executions ended and started so
# far and the backlog (RUNNING executions); per phase it reports the median
# completions/s and its ratio to the load actually offered, the lowest
# 5-s sample (and the lowest ratio of one sample's completions to the
# starts of the same 5 s), the start-to-end p99 of the executions
# started in the phase (a claim that walks dead index entries shows here
# first), the workers' CPU time per completed execution, and the backlog at
# the end.  While the old snapshot is held, vacuum can remove nothing that
# was deleted or updated after it began: every path that ran leaves dead
# entries in the index the claim reads.  HELDXMIN_RESCAN (e.g. 5s) sets
# allma.claim_rescan_interval where the build has it (keyset claims,
# docs/claims.md).
heldxmin_cpu_ticks() {
  local p t=0
  for p in $(worker_pids); do
    t=$((t + $(awk '{print $14 + $15}' "/proc/$p/stat" 2>/dev/null || echo 0)))
  done
  echo "$t"
}

# heldxmin_probe PHASE: two claim-shaped scans (the worker's claim without
# its row locks, LIMIT 64), measured by this transaction's statistics: the
# index entries each walked (pg_stat_get_xact_tuples_returned of the index
# it read) and its time.  The first reads from the start of the index (what
# every claim did before keyset claims, and what a full claim still does
# every allma.claim_rescan_interval); the second from now() - 2 s (a keyset
# claim, claimfloor.c; builds without the claim index read the READY index
# from due time now() - 2 s).  Appended to $WORK/heldxmin.probe as
# "phase full_walked full_ms floor_walked floor_ms".
heldxmin_probe() {
  local phase=$1 idx q
  if [ -n "$("${PSQL[@]}" -c "SELECT 1 FROM pg_class WHERE relname = 'execution_paths_claim_idx'")" ]; then
    idx=allma.execution_paths_claim_idx
    q="SELECT execution_id FROM allma.execution_paths WHERE status = 'READY' AND allma.claim_order(due_at, priority) >= %s AND allma.claim_order(due_at, priority) <= allma.claim_order(now(), -3600) AND allma.claim_order(due_at, 0) <= now() ORDER BY allma.claim_order(due_at, priority) LIMIT 64"
  else
    idx=allma.execution_paths_ready_idx
    q="SELECT execution_id FROM allma.execution_paths WHERE status = 'READY' AND due_at >= %s AND due_at <= now() ORDER BY due_at LIMIT 64"
  fi
  # shellcheck disable=SC2059
  "${PSQL[@]}" -F ' ' -c "SET enable_seqscan = off" -c "SET enable_bitmapscan = off" -c "BEGIN" \
    -c "CREATE TEMP TABLE IF NOT EXISTS probe_t (k int, t timestamptz, n bigint)" \
    -c "INSERT INTO probe_t VALUES (0, clock_timestamp(), pg_stat_get_xact_tuples_returned('$idx'::regclass))" \
    -c "SELECT count(*) FROM ($(printf "$q" "'-infinity'")) s" \
    -c "INSERT INTO probe_t VALUES (1, clock_timestamp(), pg_stat_get_xact_tuples_returned('$idx'::regclass))" \
    -c "SELECT count(*) FROM ($(printf "$q" "now() - interval '2 s'")) s" \
    -c "INSERT INTO probe_t VALUES (2, clock_timestamp(), pg_stat_get_xact_tuples_returned('$idx'::regclass))" \
    -c "SELECT '$phase', b.n - a.n, round(extract(epoch FROM b.t - a.t) * 1000, 1), c.n - b.n, round(extract(epoch FROM c.t - b.t) * 1000, 1)
          FROM probe_t a, probe_t b, probe_t c WHERE a.k = 0 AND b.k = 1 AND c.k = 2" -c "ROLLBACK" 2>/dev/null \
    | grep "^$phase " >> "$WORK/heldxmin.probe" || true
}

heldxmin_run() {
  local rate=${HELDXMIN_RATE:-800} warm=${HELDXMIN_WARMUP:-30} hold=${HELDXMIN_HOLD:-180}
  local after=${HELDXMIN_AFTER:-60} per=${HELDXMIN_PER_XACT:-8} total pgb holder t0 now phase cpu
  total=$((warm + hold + after))
  : > "$WORK/heldxmin.probe"
  probe_n=0
  "${PSQL[@]}" -c "DELETE FROM allma.step_executions" -c "DELETE FROM allma.executions" \
    -c "VACUUM ANALYZE allma.executions, allma.execution_paths, allma.step_executions" >/dev/null
  echo "SELECT count(allma_start_flow('hx1')) FROM generate_series(1, $per);" > "$WORK/heldxmin.sql"
  "${PSQL[@]}" -c "CREATE TABLE IF NOT EXISTS bench_heldxmin (t double precision, phase text, ended bigint, started bigint, running bigint, cpu bigint, oldest double precision, workers text)" \
    -c "TRUNCATE bench_heldxmin" >/dev/null
  "${AS_PG[@]}" "$BENCH_BINDIR/pgbench" -n -c 4 -j 2 -R "$(awk -v r="$rate" -v p="$per" 'BEGIN {print r / p}')" -T "$total" -f "$WORK/heldxmin.sql" \
    -h "$WORK" -p "$PORT" -U postgres postgres > "$WORK/heldxmin.pgbench" 2>&1 &
  pgb=$!
  t0=$(date +%s.%N)
  holder=
  while :; do
    now=$(awk -v a="$(date +%s.%N)" -v b="$t0" 'BEGIN {print a - b}')
    awk -v n="$now" -v t="$total" 'BEGIN {exit !(n >= t)}' && break
    if awk -v n="$now" -v w="$warm" 'BEGIN {exit !(n < w)}'; then
      phase=before
    elif awk -v n="$now" -v w="$warm" -v h="$hold" 'BEGIN {exit !(n < w + h)}'; then
      phase=held
      if [ -z "$holder" ]; then
        "${PSQL[@]}" -c "BEGIN ISOLATION LEVEL REPEATABLE READ" -c "SELECT txid_current()" \
          -c "SELECT pg_sleep($hold)" -c "COMMIT" >/dev/null &
        holder=$!
      fi
    else
      phase=after
    fi
    # every 30 s (and right before the hold ends), probe one claim
    probe_n=$(( ${probe_n:-0} + 1 ))
    if [ $((probe_n % 6)) -eq 0 ]; then heldxmin_probe "$phase"; fi
    cpu=$(heldxmin_cpu_ticks)
    "${PSQL[@]}" -c "INSERT INTO bench_heldxmin SELECT extract(epoch FROM clock_timestamp()), '$phase', count(*) FILTER (WHERE status <> 'RUNNING'), count(*), count(*) FILTER (WHERE status = 'RUNNING'), $cpu,
      (SELECT extract(epoch FROM clock_timestamp() - min(due_at)) FROM allma.execution_paths WHERE status = 'READY'),
      (SELECT string_agg(coalesce(wait_event, 'cpu'), ',') FROM pg_stat_activity WHERE backend_type = 'allma worker')
      FROM allma.executions WHERE flow_id = 'hx1'" >/dev/null
    sleep 5
  done
  wait "$pgb" || true
  [ -n "$holder" ] && { wait "$holder" || true; }
  # one row per phase: median completions/s, offered/s, lowest sample,
  # start-to-end p99, worker CPU ms per completion, backlog at its end
  "${PSQL[@]}" -F ' ' -c "
    WITH d AS (
      SELECT phase, t, running,
             (ended - lag(ended) OVER w) / (t - lag(t) OVER w) AS done_s,
             (started - lag(started) OVER w) / (t - lag(t) OVER w) AS offered_s,
             ended - lag(ended) OVER w AS d_ended, cpu - lag(cpu) OVER w AS d_cpu
        FROM bench_heldxmin WINDOW w AS (PARTITION BY phase ORDER BY t)),
    s AS (SELECT phase, min(t) AS t0, max(t) AS t1 FROM bench_heldxmin GROUP BY phase),
    l AS (SELECT s.phase,
                 percentile_cont(0.99) WITHIN GROUP (ORDER BY extract(epoch FROM e.ended_at - e.started_at) * 1000) AS p99
            FROM s JOIN allma.executions e ON e.flow_id = 'hx1'
             AND e.started_at >= to_timestamp(s.t0) AND e.started_at < to_timestamp(s.t1)
           GROUP BY s.phase)
    SELECT d.phase, round(percentile_cont(0.5) WITHIN GROUP (ORDER BY done_s)::numeric),
           round(percentile_cont(0.5) WITHIN GROUP (ORDER BY offered_s)::numeric),
           round(min(done_s)::numeric),
           round(min(done_s / nullif(offered_s, 0))::numeric, 2),
           coalesce(round(max(l.p99)::numeric), -1),
           round((sum(d_cpu) * 1000.0 / 100 / greatest(sum(d_ended), 1))::numeric, 2),
           (array_agg(running ORDER BY t DESC))[1]
      FROM d LEFT JOIN l USING (phase) WHERE done_s IS NOT NULL GROUP BY d.phase" > "$WORK/heldxmin.phases"
  # the samples, for the log: seconds, phase, completions/s, starts/s,
  # backlog, age of the oldest READY path (s), the workers' wait events
  "${PSQL[@]}" -F ' ' -c "SELECT round(t - min(t) OVER ()), phase,
      round((ended - lag(ended) OVER w) / (t - lag(t) OVER w)), round((started - lag(started) OVER w) / (t - lag(t) OVER w)), running,
      round(oldest::numeric, 1), workers
      FROM bench_heldxmin WINDOW w AS (ORDER BY t) ORDER BY t" | tr '\n' ';' >&2
  echo >&2
  # the claim probes: phase, index entries walked, live tuples found, ms
  echo "claim probes (phase, from the start: index entries walked, ms; from now - 2 s: walked, ms):" >&2
  tr '\n' ';' < "$WORK/heldxmin.probe" >&2
  echo >&2
  # errors in the server log (a worker's failed pass pauses it for a second)
  grep -h "ERROR\|FATAL" "$WORK"/server-*.log 2>/dev/null | sed 's/^[^]]*] //' | sort | uniq -c | sort -rn | head -5 >&2 || true
}

scenario_heldxmin() {
  # HELDXMIN_RESCAN=5s: keyset claims on (builds that have the setting)
  if [ -n "${HELDXMIN_RESCAN:-}" ] && [ -n "$("${PSQL[@]}" -c "SELECT 1 FROM pg_settings WHERE name = 'allma.claim_rescan_interval'")" ]; then
    set_guc allma.claim_rescan_interval "$HELDXMIN_RESCAN"
  fi
  "${PSQL[@]}" -c "SELECT allma_create_flow('{\"id\": \"hx1\", \"startStepInstanceId\": \"a\", \"steps\": {\"a\": {\"stepType\": \"NO_OP\"}}}') WHERE NOT EXISTS (SELECT FROM allma.flows WHERE flow_id = 'hx1')" >/dev/null
  local r ph done off low lowr p99 cpu left
  declare -A D=() O=() LOW=() LOWR=() P99=() CPU=() LEFT=()
  for r in $(seq 1 "$RUNS"); do
    heldxmin_run
    while read -r ph done off low lowr p99 cpu left; do
      D[$ph]+="$done "; O[$ph]+="$off "; LOW[$ph]+="$low "; LOWR[$ph]+="$lowr "; P99[$ph]+="$p99 "; CPU[$ph]+="$cpu "; LEFT[$ph]+="$left "
      echo "   run $r, $ph: $done/s of $off/s offered (lowest $low/s, lowest ratio in a sample $lowr), start-to-end p99 $p99 ms, worker CPU $cpu ms per execution, backlog $left"
    done < "$WORK/heldxmin.phases"
  done
  local rate=${HELDXMIN_RATE:-800} hold=${HELDXMIN_HOLD:-180}
  m() { printf '%s\n' $1 | median; }
  for ph in before held after; do
    [ -n "${D[$ph]:-}" ] || continue
    local md mo
    md=$(m "${D[$ph]}"); mo=$(m "${O[$ph]}")
    report "hx_$ph" "(hx) $rate one-step executions/s offered (${HELDXMIN_PER_XACT:-8} per transaction), $ph a ${hold}s transaction holding the xmin horizon: completions/s" \
      "$md/s of $mo/s offered, ratio $(awk -v a="$md" -v b="$mo" 'BEGIN {printf "%.2f", (b > 0) ? a / b : 0}'); lowest 5-s sample $(m "${LOW[$ph]}")/s, lowest ratio of a 5-s sample $(m "${LOWR[$ph]}") (runs: ${D[$ph]% })" \
      "$([ "$ph" = held ] && echo ">= 0.90 of offered throughout")"
    report "hx_${ph}_p99" "(hx) $ph: start-to-end p99 of the executions started in the phase" \
      "$(m "${P99[$ph]}") ms" "$([ "$ph" = held ] && echo "< 500 ms")"
    report "hx_${ph}_cpu" "(hx) $ph: allma workers' CPU time per completed execution" "$(m "${CPU[$ph]}") ms" ""
  done
  for ph in before held after; do
    local pr
    pr=$(awk -v p="$ph" '$1 == p {if ($2 > w) w = $2; if ($3 > m) m = $3; if ($4 > w2) w2 = $4; if ($5 > m2) m2 = $5; n++}
      END {if (n) printf "from the start: max %d index entries walked, max %.1f ms; from now - 2 s: max %d walked, max %.1f ms (%d probes)", w, m, w2, m2, n}' "$WORK/heldxmin.probe")
    [ -n "$pr" ] && report "hx_${ph}_probe" "(hx) $ph: a claim-shaped scan (LIMIT 64, no locks) every 30 s of the last run" "$pr" ""
  done
  report hx_left "(hx) backlog (RUNNING executions) when the load stops, ${HELDXMIN_AFTER:-60}s after the hold ended" \
    "$(m "${LEFT[after]:-0}")" "0 (no backlog after recovery)"
}
