# soak: a fixed offered load of a 5-step flow (a SQL step, a transformation,
# a 100 ms delay) for SOAK_SECONDS, with retention purging concurrently
# (allma.retention = SOAK_RETENTION, checked every second), sampling every
# 10 s: completions/s, start-to-end p50/p99 of the executions that ended in
# the interval, the backlog (running executions, due READY paths), size and
# dead tuples of each allma table, and the workers' private memory.
#
#   bench/run.sh --runs 1 soak                            10 minutes at 500/s
#   SOAK_SECONDS=60 SOAK_RATE=100 bench/run.sh --runs 1 --seconds 5 soak
#   SOAK_HOLD=180 bench/run.sh --runs 1 soak              the held-xmin variant
#
# SOAK_HOLD=N: from a third of the run on, a session holds one snapshot (and
# so the xmin horizon) for N seconds -- the case that makes SKIP LOCKED
# queues bloat: vacuum can remove no dead row meanwhile.  The samples taken
# while it holds are reported apart.
#
# Targets (issue 12): the last minute's throughput and p99 within 10 % of the
# first minute's; table sizes flat once retention runs; no backlog that
# keeps growing.  The samples are printed and kept in $WORK/soak.tsv; the
# report rows compare the first and the last minute.
SOAK_SECONDS=${SOAK_SECONDS:-600}
SOAK_RATE=${SOAK_RATE:-500}
SOAK_RETENTION=${SOAK_RETENTION:-60s}
SOAK_HOLD=${SOAK_HOLD:-0}
# SOAK_DIAG=1: also sample, for finding where time goes (costs some CPU):
# the allma workers' and autovacuum's wait events every 200 ms, per table and
# index of executions / paths / history the size, dead tuples, HOT updates and
# autovacuum passes every 10 s, WAL and checkpoints; pg_stat_statements (all
# nested statements, so the purge's DELETE and its trigger show) and the
# autovacuum log.  Printed at the end.
SOAK_DIAG=${SOAK_DIAG:-0}

soak_diag_setup() {
  printf '%s\n' "shared_preload_libraries = 'allma,pg_stat_statements'" "pg_stat_statements.track = all" \
    "log_autovacuum_min_duration = 0" | "${AS_PG[@]}" tee -a "$DATA/postgresql.conf" >/dev/null
  bench_restart
  "${PSQL[@]}" <<'SQL' >/dev/null
CREATE EXTENSION IF NOT EXISTS pg_stat_statements;
CREATE TABLE IF NOT EXISTS soak_waits (t double precision, who text, wait text, query text);
CREATE TABLE IF NOT EXISTS soak_rel (t int, rel text, kind text, mb numeric, live bigint, dead bigint,
	upd bigint, hot bigint, av bigint, scans bigint);
CREATE TABLE IF NOT EXISTS soak_wal (t int, wal_mb numeric, ckpt_timed bigint, ckpt_req bigint, buffers_backend bigint);
TRUNCATE soak_waits, soak_rel, soak_wal;
-- every 200 ms: what each allma worker and autovacuum worker is doing
CREATE OR REPLACE PROCEDURE soak_wait_sampler(seconds int)
LANGUAGE plpgsql AS $$
DECLARE t0 timestamptz := clock_timestamp();
BEGIN
	WHILE clock_timestamp() < t0 + make_interval(secs => seconds) LOOP
		INSERT INTO soak_waits
		SELECT extract(epoch FROM clock_timestamp() - t0), backend_type,
			   CASE WHEN state = 'idle' THEN 'idle' ELSE coalesce(wait_event_type || ':' || wait_event, 'cpu') END,
			   left(regexp_replace(query, '\s+', ' ', 'g'), 60)
		  FROM pg_stat_activity WHERE backend_type IN ('allma worker', 'autovacuum worker');
		COMMIT;
		PERFORM pg_sleep(0.2);
	END LOOP;
END $$;
CREATE OR REPLACE PROCEDURE soak_diag_sample(t int)
LANGUAGE sql AS $$
	INSERT INTO soak_rel
	SELECT t, c.relname, 'table', round(pg_relation_size(c.oid) / 1048576.0, 1), s.n_live_tup, s.n_dead_tup,
		   s.n_tup_upd, s.n_tup_hot_upd, s.autovacuum_count, s.seq_scan
	  FROM pg_stat_user_tables s JOIN pg_class c ON c.oid = s.relid
	 WHERE s.schemaname = 'allma' AND c.relname IN ('executions', 'execution_paths', 'step_executions')
	UNION ALL
	SELECT t, i.indexrelname, 'index', round(pg_relation_size(i.indexrelid) / 1048576.0, 1), NULL, NULL, NULL, NULL, NULL, i.idx_scan
	  FROM pg_stat_user_indexes i
	 WHERE i.schemaname = 'allma' AND i.relname IN ('executions', 'execution_paths', 'step_executions');
	INSERT INTO soak_wal
	SELECT t, round(pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0') / 1048576.0, 1),
		   checkpoints_timed, checkpoints_req, buffers_backend FROM pg_stat_bgwriter;
$$;
SQL
}

soak_diag_report() {
  echo "-- diag: wait events of the allma workers and autovacuum (share of 200-ms samples, per minute)"
  "${PSQL[@]}" -F $'\t' -c "SELECT (t / 60)::int AS min, who, wait, round(100.0 * count(*) / sum(count(*)) OVER (PARTITION BY (t / 60)::int, who), 1) AS pct
     FROM soak_waits GROUP BY 1, 2, 3 HAVING count(*) > 2 ORDER BY 1, 2, 4 DESC"
  echo "-- diag: what the allma workers run when not idle (query prefix, whole run)"
  "${PSQL[@]}" -F $'\t' -c "SELECT wait, query, count(*) FROM soak_waits WHERE who = 'allma worker' AND wait <> 'idle' GROUP BY 1, 2 ORDER BY 3 DESC LIMIT 15"
  echo "-- diag: relations every 60 s (MB, live, dead, updates, HOT updates, autovacuum passes, scans)"
  "${PSQL[@]}" -F $'\t' -c "SELECT * FROM soak_rel WHERE t % 60 = 0 OR t = 10 ORDER BY rel, t"
  echo "-- diag: WAL MB, checkpoints timed / requested, buffers written by backends"
  "${PSQL[@]}" -F $'\t' -c "SELECT * FROM soak_wal WHERE t % 60 = 0 OR t = 10 ORDER BY t"
  echo "-- diag: statements by total time (ms), calls, mean ms, rows"
  "${PSQL[@]}" -F $'\t' -c "SELECT round(total_exec_time) AS total_ms, calls, round(mean_exec_time::numeric, 3) AS mean_ms, round(max_exec_time::numeric, 1) AS max_ms, rows,
       left(regexp_replace(query, '\s+', ' ', 'g'), 140) FROM pg_stat_statements ORDER BY total_exec_time DESC LIMIT 25"
  echo "-- diag: autovacuum runs (from the server log)"
  grep -h "automatic vacuum\|automatic analyze\|system usage\|index scans\|pages:\|tuples:" "$WORK"/server-*.log 2>/dev/null | sed 's/^[^]]*] //' | tail -120
}

soak_setup() {
  "${PSQL[@]}" <<'SQL' >/dev/null
CREATE TABLE IF NOT EXISTS soak_items (id int PRIMARY KEY, v text);
INSERT INTO soak_items SELECT g, md5(g::text) FROM generate_series(1, 1000) g ON CONFLICT DO NOTHING;
SELECT allma_create_flow('{"id": "soak5", "startStepInstanceId": "a", "steps": {
  "a": {"stepType": "NO_OP", "defaultNextStepInstanceId": "q"},
  "q": {"stepType": "DATA_LOAD", "moduleIdentifier": "system/sql-query",
        "customConfig": {"sql": "SELECT v FROM soak_items WHERE id = $1", "parameters": ["$.id"]},
        "outputMappings": {"$.item": "$"}, "defaultNextStepInstanceId": "t"},
  "t": {"stepType": "DATA_TRANSFORMATION", "moduleIdentifier": "system/compose-object-from-input",
        "inputMappings": {"id": "$.id", "item": "$.item"}, "defaultNextStepInstanceId": "w"},
  "w": {"stepType": "NO_OP", "delay": {"milliseconds": 100, "position": "after"},
        "defaultNextStepInstanceId": "e"},
  "e": {"stepType": "END_FLOW"}}}');

-- the offered load: every 100 ms, rate/10 starts in one transaction, on a
-- fixed clock (a late tick does not shift the later ones)
CREATE OR REPLACE PROCEDURE soak_load(rate int, seconds int)
LANGUAGE plpgsql AS $$
DECLARE
	t0 timestamptz := clock_timestamp();
	per_tick int := greatest(rate / 10, 1);
	tick int := 0;
BEGIN
	WHILE clock_timestamp() < t0 + make_interval(secs => seconds) LOOP
		PERFORM allma_start_flow('soak5', jsonb_build_object('id', 1 + (tick * per_tick + g) % 1000))
		   FROM generate_series(1, per_tick) g;
		COMMIT;
		tick := tick + 1;
		PERFORM pg_sleep(greatest(extract(epoch FROM t0 + tick * interval '100 ms' - clock_timestamp()), 0));
	END LOOP;
END $$;

CREATE TABLE IF NOT EXISTS soak_samples (
	t int, completions_per_s numeric, p50_ms numeric, p99_ms numeric, running bigint,
	due_ready bigint, exec_mb numeric, paths_mb numeric, history_mb numeric,
	exec_dead bigint, paths_dead bigint, history_dead bigint, purged bigint);
TRUNCATE soak_samples;

-- one sample: the executions that ended in the last 10 s
CREATE OR REPLACE PROCEDURE soak_sample(t int)
LANGUAGE sql AS $$
	INSERT INTO soak_samples
	SELECT t,
		   round(count(*) / 10.0, 1),
		   round((percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM ended_at - started_at)) * 1000)::numeric, 1),
		   round((percentile_cont(0.99) WITHIN GROUP (ORDER BY extract(epoch FROM ended_at - started_at)) * 1000)::numeric, 1),
		   (SELECT count(*) FROM allma.executions WHERE status = 'RUNNING'),
		   (SELECT count(*) FROM allma.execution_paths WHERE status = 'READY' AND due_at < clock_timestamp()),
		   round(pg_total_relation_size('allma.executions') / 1048576.0, 1),
		   round(pg_total_relation_size('allma.execution_paths') / 1048576.0, 1),
		   round(pg_total_relation_size('allma.step_executions') / 1048576.0, 1),
		   (SELECT n_dead_tup FROM pg_stat_user_tables WHERE relid = 'allma.executions'::regclass),
		   (SELECT n_dead_tup FROM pg_stat_user_tables WHERE relid = 'allma.execution_paths'::regclass),
		   (SELECT n_dead_tup FROM pg_stat_user_tables WHERE relid = 'allma.step_executions'::regclass),
		   (SELECT n_tup_del FROM pg_stat_user_tables WHERE relid = 'allma.executions'::regclass)
	  FROM allma.executions
	 WHERE ended_at >= clock_timestamp() - interval '10 s' AND status = 'COMPLETED'
$$;
SQL
}

scenario_soak() {
  set_guc allma.allow_superuser_sql_steps on
  set_guc allma.retention "$SOAK_RETENTION"
  set_guc allma.purge_interval 1s
  soak_setup
  [ "$SOAK_DIAG" = 1 ] && soak_diag_setup
  local out="$WORK/soak.tsv" load_pid rss t
  echo -e "t_s\tcompl/s\tp50_ms\tp99_ms\trunning\tdue_ready\texec_MB\tpaths_MB\thist_MB\texec_dead\tpaths_dead\thist_dead\tpurged\tworker_rss_kB" | tee "$out"
  # the load goes on 10 s past the last sample, so that every sample is under load
  "${PSQL[@]}" -c "CALL soak_load($SOAK_RATE, $((SOAK_SECONDS + 10)))" &
  load_pid=$!
  local diag_pid=
  if [ "$SOAK_DIAG" = 1 ]; then
    "${PSQL[@]}" -c "CALL soak_wait_sampler($SOAK_SECONDS)" &
    diag_pid=$!
  fi
  local hold_from=$((SOAK_SECONDS / 3)) hold_pid= t0
  # samples on a fixed clock (t0 + t): sleeping 10 s after each sample let
  # the samples drift past the end of the load (a last sample at half load)
  t0=$(date +%s.%N)
  for t in $(seq 10 10 "$SOAK_SECONDS"); do
    if [ "$SOAK_HOLD" -gt 0 ] && [ -z "$hold_pid" ] && [ "$t" -gt "$hold_from" ]; then
      # a snapshot held open: the xmin horizon stands still for SOAK_HOLD seconds
      "${PSQL[@]}" -c "BEGIN ISOLATION LEVEL REPEATABLE READ; SELECT count(*) FROM allma.executions; SELECT pg_sleep($SOAK_HOLD); COMMIT" >/dev/null &
      hold_pid=$!
      echo "   (from here on a snapshot is held for ${SOAK_HOLD}s)"
      hold_from=$((t - 10))
    fi
    sleep "$(awk -v a="$t0" -v t="$t" -v n="$(date +%s.%N)" 'BEGIN {d = a + t - n; print (d > 0) ? d : 0}')"
    "${PSQL[@]}" -c "CALL soak_sample($t)" >/dev/null
    [ "$SOAK_DIAG" = 1 ] && "${PSQL[@]}" -c "CALL soak_diag_sample($t)" >/dev/null
    rss=$(for p in $(worker_pids); do awk '/^RssAnon/ {print $2}' "/proc/$p/status" 2>/dev/null; done | sort -n | tail -1)
    echo -e "$("${PSQL[@]}" -F $'\t' -c "SELECT * FROM soak_samples WHERE t = $t")\t${rss:-}" | tee -a "$out"
  done
  wait "$load_pid" || true
  [ -n "$diag_pid" ] && { wait "$diag_pid" || true; soak_diag_report; }
  [ -n "$hold_pid" ] && wait "$hold_pid" 2>/dev/null || true
  if [ "$SOAK_HOLD" -gt 0 ]; then
    report soak-hold "(soak) while a snapshot was held (${SOAK_HOLD}s from t=${hold_from}s): completions/s min / avg, p99 max, due READY paths max" \
      "$("${PSQL[@]}" -c "SELECT min(completions_per_s) || ' / ' || round(avg(completions_per_s), 1) || ', p99 ' || max(p99_ms) || ' ms, ' || max(due_ready) || ' due' FROM soak_samples WHERE t > $hold_from AND t <= $hold_from + $SOAK_HOLD")" \
      ">= 90 % of the offered load, claim p99 < 500 ms"
  fi
  # first and last minute (or half, for runs shorter than two minutes)
  local span=60
  [ "$SOAK_SECONDS" -lt 120 ] && span=$((SOAK_SECONDS / 2))
  local first last
  first=$("${PSQL[@]}" -c "SELECT round(avg(completions_per_s), 1) || ' completions/s, p99 ' || round(avg(p99_ms), 1) || ' ms' FROM soak_samples WHERE t <= $span")
  last=$("${PSQL[@]}" -c "SELECT round(avg(completions_per_s), 1) || ' completions/s, p99 ' || round(avg(p99_ms), 1) || ' ms' FROM soak_samples WHERE t > $SOAK_SECONDS - $span")
  report soak-first "(soak) $SOAK_RATE executions/s offered of a 5-step flow for ${SOAK_SECONDS}s, retention $SOAK_RETENTION: first ${span}s" "$first" ""
  report soak-last "(soak) last ${span}s" "$last" "within 10 % of the first"
  report soak-size "(soak) allma tables at the end (executions + paths + history), dead tuples of the history, executions purged" \
    "$("${PSQL[@]}" -c "SELECT (exec_mb + paths_mb + history_mb) || ' MB, ' || history_dead || ' dead, ' || purged || ' purged' FROM soak_samples ORDER BY t DESC LIMIT 1")" "flat once retention runs"
  report soak-backlog "(soak) running executions: min / max over the samples" \
    "$("${PSQL[@]}" -c "SELECT min(running) || ' / ' || max(running) FROM soak_samples")" "no growing backlog"
  set_guc allma.retention DEFAULT
  set_guc allma.purge_interval DEFAULT
  set_guc allma.allow_superuser_sql_steps DEFAULT
}
