-- Priorities: options.priority of allma_start_flow (bounded, validated),
-- the claim order (due time moved by priority seconds, which is also the
-- aging rule), inheritance by branches and sub-flows, the claim index.
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS allma;
RESET client_min_messages;

SELECT allma_create_flow('{"id": "prio", "startStepInstanceId": "a",
  "steps": {"a": {"stepType": "NO_OP"}}}');

-- invalid priorities: a clear error naming the bounds
\set VERBOSITY default
SELECT allma_start_flow('prio', '{}', '{"priority": "high"}');
SELECT allma_start_flow('prio', '{}', '{"priority": 1.5}');
SELECT allma_start_flow('prio', '{}', '{"priority": 3601}');
SELECT allma_start_flow('prio', '{}', '{"priority": -3601}');
SELECT allma_start_flow('prio', '{}', '{"priority": 1e300}');
SELECT allma_start_flow('prio', '{}', '{"priority": null}');
\set VERBOSITY terse
-- nothing was started by the failed calls
SELECT count(*) FROM allma.executions WHERE flow_id = 'prio';

-- the bounds themselves are valid; the path carries the priority, the
-- execution's options record it (read before commit: no worker sees it yet)
BEGIN;
SELECT allma_start_flow('prio', '{}', '{"priority": 3600}') AS hi \gset
SELECT allma_start_flow('prio', '{}', '{"priority": -3600}') AS lo \gset
SELECT allma_start_flow('prio', '{}') AS dflt \gset
SELECT e.options->'priority' AS option, p.priority
  FROM allma.executions e JOIN allma.execution_paths p USING (execution_id)
 WHERE e.execution_id IN (:'hi', :'lo', :'dflt') ORDER BY p.priority DESC;
COMMIT;
SELECT allma_wait(:'hi'), allma_wait(:'lo'), allma_wait(:'dflt');

-- the claim order: due_at minus priority seconds, bounded, immutable
SELECT allma.claim_order('2026-01-01 00:01:00+00', 60) = '2026-01-01 00:00:00+00' AS earlier,
       allma.claim_order('2026-01-01 00:01:00+00', -60) = '2026-01-01 00:02:00+00' AS later,
       allma.claim_order('2026-01-01 00:01:00+00', 0) = '2026-01-01 00:01:00+00' AS same,
       allma.claim_order('2026-01-01 01:00:00+00', 100000) = '2026-01-01 00:00:00+00' AS clamped,
       allma.claim_order('infinity', 5) AS inf;
SELECT provolatile, proisstrict FROM pg_proc WHERE oid = 'allma.claim_order(timestamptz, integer)'::regprocedure;
-- the column's bounds hold for direct writes too
BEGIN;
SELECT allma_start_flow('prio') AS x \gset
UPDATE allma.execution_paths SET priority = 4000 WHERE execution_id = :'x';
ROLLBACK;

-- aging: among paths due at once, higher priority first; a path that has
-- waited longer than the gap of the priorities goes before newer ones
-- (the rows are read in the order the claim reads them, by the index)
CREATE TEMP TABLE q (name text, due_at timestamptz, priority int);
INSERT INTO q VALUES
  ('low, due 10 min ago',   now() - interval '10 min', -300),
  ('high, due now',         now(),                     300),
  ('default, due now',      now(),                     0),
  ('low, due now',          now(),                     -300),
  ('high, due 1 min ago',   now() - interval '1 min',  300),
  ('default, due 6 min ago', now() - interval '6 min', 0);
SELECT name FROM q ORDER BY allma.claim_order(due_at, priority), name;

-- the claim reads the claim index in claim order, up to the last key a
-- due path can have (the claim's time plus an hour, the lowest priority's delay);
-- later timers are never read.  Planned as the worker plans it (no
-- sequential or bitmap scans): due_at is filtered as claim_order(due_at, 0)
-- so that the READY index by due time cannot be read and sorted instead.
SELECT indexdef FROM pg_indexes WHERE indexname = 'execution_paths_claim_idx';
SET enable_seqscan = off;
SET enable_bitmapscan = off;
PREPARE claim(int, timestamptz) AS
SELECT * FROM allma.execution_paths
 WHERE status = 'READY'
   AND allma.claim_order(due_at, priority) <= allma.claim_order($2, -3600)
   AND allma.claim_order(due_at, 0) <= $2
 ORDER BY allma.claim_order(due_at, priority) LIMIT $1 FOR UPDATE SKIP LOCKED;
SET plan_cache_mode = force_generic_plan;
EXPLAIN (COSTS OFF) EXECUTE claim(64, now());
RESET plan_cache_mode;
DEALLOCATE claim;
RESET enable_bitmapscan;
RESET enable_seqscan;

-- branches inherit their fork's priority; sub-flows their parent path's
-- (the branches wait an hour before their step: their paths can be read)
SELECT allma_create_flow('{"id": "prio-fork", "startStepInstanceId": "fork",
  "steps": {"fork": {"stepType": "PARALLEL_FORK_MANAGER", "itemsPath": "$.items",
                     "parallelBranches": [{"branchId": "b", "stepInstanceId": "slow"}]},
            "slow": {"stepType": "NO_OP", "delay": {"milliseconds": 3600000, "position": "before"}}}}');
SELECT allma_start_flow('prio-fork', '{"items": [1, 2, 3]}', '{"priority": 42}') AS f \gset
CREATE FUNCTION pg_temp.await_branches(e uuid, n int) RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
	FOR i IN 1..6000 LOOP
		IF (SELECT count(*) FROM allma.execution_paths WHERE execution_id = e AND path_id <> 0) >= n THEN
			RETURN true;
		END IF;
		PERFORM pg_sleep(0.01);
	END LOOP;
	RETURN false;
END $$;
SELECT pg_temp.await_branches(:'f', 3);
SELECT path_id = 0 AS main, status, priority, count(*)
  FROM allma.execution_paths WHERE execution_id = :'f' GROUP BY 1, 2, 3 ORDER BY 1, 2;
SELECT allma_cancel_execution(:'f') IS NOT NULL AS cancelled;

SELECT allma_create_flow('{"id": "prio-child", "startStepInstanceId": "a",
  "steps": {"a": {"stepType": "NO_OP"}}}');
SELECT allma_create_flow('{"id": "prio-parent", "startStepInstanceId": "start",
  "steps": {"start": {"stepType": "START_SUB_FLOW", "subFlowDefinitionId": "prio-child"}}}');
SELECT allma_start_flow('prio-parent', '{}', '{"priority": -7}') AS p \gset
SELECT allma_wait(:'p');
SELECT flow_id, options->'priority' AS priority FROM allma.executions
 WHERE root_execution_id = :'p' ORDER BY depth;

CREATE FUNCTION pg_temp.wait_until(condition text, timeout interval DEFAULT '120 s') RETURNS boolean
LANGUAGE plpgsql AS $$
DECLARE
	ok boolean;
	deadline timestamptz := clock_timestamp() + timeout;
BEGIN
	LOOP
		EXECUTE condition INTO ok;
		IF ok THEN RETURN true; END IF;
		IF clock_timestamp() > deadline THEN RETURN false; END IF;
		PERFORM pg_sleep(0.02);
	END LOOP;
END $$;
-- an execution queued on a concurrency key gets its priority when it is
-- admitted (its path is made then)
SELECT allma_create_flow($${"id": "prio-wait", "startStepInstanceId": "w",
  "steps": {"w": {"stepType": "WAIT_FOR_EXTERNAL_EVENT", "correlationKeyTemplate": "pw-{{n}}",
                  "maxWaitTimeSeconds": 86400}}}$$) IS NOT NULL AS created;
SELECT allma_start_flow('prio-wait', '{"n": 1}', '{"concurrencyKey": "prio-k", "maxConcurrent": 1}') AS pa \gset
SELECT allma_start_flow('prio-wait', '{"n": 2}',
                        '{"concurrencyKey": "prio-k", "maxConcurrent": 1, "priority": 120}') AS pb \gset
SELECT status, (SELECT count(*) FROM allma.execution_paths p WHERE p.execution_id = x.execution_id) AS paths
  FROM allma.executions x WHERE execution_id = :'pb';
SELECT pg_temp.wait_until(format($$ SELECT EXISTS (SELECT FROM allma.waits w
       WHERE w.execution_id = %L AND w.status = 'OPEN') $$, :'pa')) AS first_parked;
SELECT allma_cancel_execution(:'pa') IS NOT NULL AS first_cancelled;
SELECT x.status, p.priority FROM allma.executions x JOIN allma.execution_paths p USING (execution_id)
 WHERE x.execution_id = :'pb';
-- (cancelled once parked: a path a worker holds while it is cancelled is
-- dropped only when a worker next takes it, which a parked wait is not)
SELECT pg_temp.wait_until(format($$ SELECT EXISTS (SELECT FROM allma.waits w
       WHERE w.execution_id = %L AND w.status = 'OPEN') $$, :'pb')) AS parked;
SELECT allma_cancel_execution(:'pb') IS NOT NULL AS second_cancelled;
SELECT count(*) AS paths_left FROM allma.execution_paths WHERE execution_id IN (:'pa', :'pb');
