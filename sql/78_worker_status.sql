-- allma_worker_status() and allma.worker_status: 1.0's columns first, then
-- steps run, requests in flight per worker and the database's queue
-- (runnable, timers, events, sub-flows, rate limits, oldest runnable age),
-- counted over the executions the caller may see.  alice holds one
-- execution in a SQL step (runnable: a worker is on it) and one on a day-long
-- timer; rows inserted as the superuser stand for waits 1.0's engine cannot
-- make yet (an event, a sub-flow) and for a request in flight owned by
-- worker slot 0.
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS allma;
RESET client_min_messages;

CREATE ROLE regress_allma_ws_alice;
CREATE ROLE regress_allma_ws_bob;
GRANT allma_user TO regress_allma_ws_alice, regress_allma_ws_bob;

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

-- the columns, 1.0's four first
SELECT attname, format_type(atttypid, atttypmod)
  FROM pg_attribute WHERE attrelid = 'allma.worker_status'::regclass ORDER BY attnum;

SELECT allma_create_flow($$ {"id": "ws-hold", "startStepInstanceId": "hold", "steps": {
  "hold": {"stepType": "DATA_LOAD", "moduleIdentifier": "system/sql-query",
           "customConfig": {"sql": "SELECT true AS passed FROM pg_advisory_xact_lock_shared(7801)"}}}} $$);
SELECT allma_create_flow($$ {"id": "ws-timer", "startStepInstanceId": "later", "steps": {
  "later": {"stepType": "NO_OP", "delay": {"milliseconds": 86400000, "position": "before"}}}} $$);
SELECT allma_grant_flow('ws-hold', 'allma_user', 'START'), allma_grant_flow('ws-timer', 'allma_user', 'START');

SELECT pg_advisory_lock(7801);
SET ROLE regress_allma_ws_alice;
SELECT allma_start_flow('ws-hold', '{}', '{"executionId": "00000000-0000-4000-8000-0000000078a1"}');
SELECT allma_start_flow('ws-timer', '{}', '{"executionId": "00000000-0000-4000-8000-0000000078a2"}');
RESET ROLE;
SELECT pg_temp.wait_until($$ SELECT EXISTS (SELECT FROM pg_locks WHERE locktype = 'advisory'
                                               AND objid = 7801 AND NOT granted) $$) AS held,
       pg_temp.wait_until($$ SELECT EXISTS (SELECT FROM allma.execution_paths
                                             WHERE execution_id = '00000000-0000-4000-8000-0000000078a2'
                                               AND status = 'READY' AND due_at > now() + interval '10 min') $$) AS on_timer;

-- an event wait, a parent waiting on its running sub-flow, a request in
-- flight owned by worker slot 0 (its lease a day away), all alice's
INSERT INTO allma.executions (execution_id, flow_id, flow_version, input, started_by, parent_execution_id, parent_path_id)
VALUES ('00000000-0000-4000-8000-0000000078b1', 'ws-timer', 1, '{}', 'regress_allma_ws_alice', NULL, NULL),
       ('00000000-0000-4000-8000-0000000078b2', 'ws-timer', 1, '{}', 'regress_allma_ws_alice', NULL, NULL),
       ('00000000-0000-4000-8000-0000000078b3', 'ws-timer', 1, '{}', 'regress_allma_ws_alice',
        '00000000-0000-4000-8000-0000000078b2', 0),
       ('00000000-0000-4000-8000-0000000078b4', 'ws-timer', 1, '{}', 'regress_allma_ws_alice', NULL, NULL);
INSERT INTO allma.execution_paths (execution_id, path_id, status, step_instance_id, context, lease_until, owner_slot)
VALUES ('00000000-0000-4000-8000-0000000078b1', 0, 'WAITING', 'later', '{}', NULL, NULL),
       ('00000000-0000-4000-8000-0000000078b2', 0, 'WAITING', 'later', '{}', NULL, NULL),
       ('00000000-0000-4000-8000-0000000078b4', 0, 'INFLIGHT', 'later', '{}', now() + interval '1 day', 0);

SET ROLE regress_allma_ws_alice;
SELECT worker, pid > 0 AS has_pid, database, state IN ('idle', 'busy') AS working, steps_run >= 0 AS counted,
       inflight_requests, runnable, waiting_timers, waiting_events, waiting_children, waiting_rate_limits,
       oldest_runnable_age > '0 s' AS late
  FROM allma_worker_status() ORDER BY worker;
RESET ROLE;
-- bob sees the workers, and a queue without alice's executions
SET ROLE regress_allma_ws_bob;
SELECT worker, inflight_requests, runnable, waiting_timers, waiting_events, waiting_children,
       oldest_runnable_age
  FROM allma.worker_status ORDER BY worker;
RESET ROLE;
-- a role outside allma_user may not call it
CREATE ROLE regress_allma_ws_nobody;
SET ROLE regress_allma_ws_nobody;
SELECT count(*) FROM allma_worker_status();
RESET ROLE;

-- clean up: release the hold, drop the rest
SELECT pg_advisory_unlock(7801);
SELECT allma_wait('00000000-0000-4000-8000-0000000078a1');
DELETE FROM allma.step_executions WHERE execution_id IN
	(SELECT execution_id FROM allma.executions WHERE flow_id LIKE 'ws-%');
DELETE FROM allma.executions WHERE flow_id LIKE 'ws-%';
DELETE FROM allma.flows WHERE flow_id LIKE 'ws-%';
DROP ROLE regress_allma_ws_alice, regress_allma_ws_bob, regress_allma_ws_nobody;
