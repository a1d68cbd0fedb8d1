-- Concurrency keys: at most N executions with the same key run at once, the
-- others wait QUEUED in arrival order (no path), and every way a running
-- one ends admits the next: completed, failed, cancelled, timed out,
-- deleted.  The executions park in a WAIT_FOR_EXTERNAL_EVENT step, so the
-- test decides when each ends (no race with the workers).
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS allma;
RESET client_min_messages;

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
CREATE FUNCTION pg_temp.try(stmt text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
	EXECUTE stmt;
	RETURN 'no error';
EXCEPTION WHEN OTHERS THEN
	RETURN SQLSTATE || ': ' || SQLERRM;
END $$;

-- a flow that waits for "cc-<n>", then completes, or fails on {"outcome": "fail"}
SELECT allma_create_flow($$
{"id": "cc", "startStepInstanceId": "wait",
 "steps": {
  "wait": {"stepType": "WAIT_FOR_EXTERNAL_EVENT", "correlationKeyTemplate": "cc-{{n}}",
           "maxWaitTimeSeconds": 86400, "outputMappings": {"$.outcome": "$.outcome"},
           "transitions": [{"condition": "$.outcome == 'fail'", "nextStepInstanceId": "boom"}]},
  "boom": {"stepType": "DATA_LOAD", "moduleIdentifier": "system/sql-query",
           "customConfig": {"sql": "SELECT 1/0"}}}}$$) IS NOT NULL AS created;

-- ---------------------------------------------------------------------------
-- Validation: the field in the message, LM340 for keys, LM341 for limits
-- ---------------------------------------------------------------------------
SELECT pg_temp.try($$ SELECT allma_start_flow('cc', '{"n": 0}', '{"concurrencyKey": 42, "maxConcurrent": 2}') $$);
SELECT pg_temp.try($$ SELECT allma_start_flow('cc', '{"n": 0}', '{"concurrencyKey": "", "maxConcurrent": 2}') $$);
SELECT pg_temp.try(format($f$ SELECT allma_start_flow('cc', '{"n": 0}', '{"concurrencyKey": "%s", "maxConcurrent": 2}') $f$,
                          repeat('k', 257)));
SELECT pg_temp.try($$ SELECT allma_start_flow('cc', '{"n": 0}', '{"concurrencyKey": "k", "maxConcurrent": 0}') $$);
SELECT pg_temp.try($$ SELECT allma_start_flow('cc', '{"n": 0}', '{"concurrencyKey": "k", "maxConcurrent": 10001}') $$);
SELECT pg_temp.try($$ SELECT allma_start_flow('cc', '{"n": 0}', '{"concurrencyKey": "k", "maxConcurrent": 1.5}') $$);
SELECT pg_temp.try($$ SELECT allma_start_flow('cc', '{"n": 0}', '{"concurrencyKey": "k", "maxConcurrent": "2"}') $$);
SELECT pg_temp.try($$ SELECT allma_start_flow('cc', '{"n": 0}', '{"concurrencyKey": "k"}') $$);
SELECT pg_temp.try($$ SELECT allma_start_flow('cc', '{"n": 0}', '{"maxConcurrent": 2}') $$);
-- a key of exactly 256 bytes is fine (started, then cancelled)
SELECT allma_cancel_execution(allma_start_flow('cc', '{"n": 0}',
         jsonb_build_object('concurrencyKey', repeat('k', 256), 'maxConcurrent', 1))) LIKE '%cancelled' AS max_key_ok;

-- the flow's "concurrency"
SELECT pg_temp.try($$ SELECT allma_validate_flow('{"id": "v", "startStepInstanceId": "a",
  "concurrency": "tenant", "steps": {"a": {"stepType": "NO_OP"}}}') $$);
SELECT pg_temp.try($$ SELECT allma_validate_flow('{"id": "v", "startStepInstanceId": "a",
  "concurrency": {"keyTemplate": "t-{{tenant}}"}, "steps": {"a": {"stepType": "NO_OP"}}}') $$);
SELECT pg_temp.try($$ SELECT allma_validate_flow('{"id": "v", "startStepInstanceId": "a",
  "concurrency": {"limit": 2}, "steps": {"a": {"stepType": "NO_OP"}}}') $$);
SELECT pg_temp.try($$ SELECT allma_validate_flow('{"id": "v", "startStepInstanceId": "a",
  "concurrency": {"keyTemplate": "t", "limit": 0}, "steps": {"a": {"stepType": "NO_OP"}}}') $$);
SELECT pg_temp.try($$ SELECT allma_validate_flow('{"id": "v", "startStepInstanceId": "a",
  "concurrency": {"keyTemplate": "t", "limit": 2, "limt": 3}, "steps": {"a": {"stepType": "NO_OP"}}}') $$);
SELECT pg_temp.try($$ SELECT allma_validate_flow('{"id": "v", "startStepInstanceId": "a",
  "concurrency": {"keyTemplate": "t-{{#if}}", "limit": 2}, "steps": {"a": {"stepType": "NO_OP"}}}') $$);
SELECT pg_temp.try($$ SELECT allma_validate_flow('{"id": "v", "startStepInstanceId": "a",
  "concurrency": {"keyTemplate": "t", "limit": 2}, "steps": {"a": {"stepType": "NO_OP"}}}') $$);

-- nothing was left behind by the failed starts
SELECT count(*) AS keyed_executions FROM allma.executions WHERE concurrency_key IS NOT NULL AND status <> 'CANCELLED';
SELECT count(*) AS slots FROM allma.concurrency_slots;

-- ---------------------------------------------------------------------------
-- Queue order and admission on each kind of end (key k1, limit 2)
-- ---------------------------------------------------------------------------
CREATE TEMP TABLE ids (n int PRIMARY KEY, e uuid);
INSERT INTO ids SELECT n, allma_start_flow('cc', jsonb_build_object('n', n),
                                           '{"concurrencyKey": "k1", "maxConcurrent": 2}')
  FROM generate_series(1, 5) n ORDER BY n;
CREATE FUNCTION pg_temp.st() RETURNS text LANGUAGE sql AS $$
	SELECT string_agg(i.n || ':' || x.status, ' ' ORDER BY i.n)
	  FROM ids i JOIN allma.executions x ON x.execution_id = i.e $$;
CREATE FUNCTION pg_temp.parked(n int) RETURNS boolean LANGUAGE sql AS $$
	SELECT EXISTS (SELECT FROM allma.waits w JOIN ids i ON i.e = w.execution_id
				   WHERE i.n = parked.n AND w.status = 'OPEN') $$;
SELECT pg_temp.st();
SELECT concurrency_key, max_concurrent, running FROM allma.concurrency_slots;
-- queued executions have no path; the queue keeps arrival order
SELECT count(*) AS paths_of_queued FROM allma.execution_paths p JOIN ids i ON i.e = p.execution_id WHERE i.n > 2;
SELECT i.n, q.step_instance_id FROM allma.concurrency_queue q JOIN ids i ON i.e = q.execution_id ORDER BY q.seq;
-- visible: execution_progress and concurrency_keys (once the admitted two
-- have parked in their wait, so that what they wait on is settled)
SELECT pg_temp.wait_until('SELECT pg_temp.parked(1) AND pg_temp.parked(2)') AS first_two_parked;
SELECT i.n, p.status, p.waiting_on, p.concurrency_key, p.queue_position,
       p.waits->0->>'concurrencyKey' AS waits_key
  FROM allma.execution_progress p JOIN ids i ON i.e = p.execution_id ORDER BY i.n;
SELECT concurrency_key, max_concurrent, running, queued, oldest_queued_at IS NOT NULL AS has_oldest
  FROM allma.concurrency_keys WHERE concurrency_key = 'k1';
SELECT queued_at <= started_at AS queued_before_start, status FROM allma.executions x JOIN ids i ON i.e = x.execution_id WHERE i.n = 1;

-- completed: 1 ends, 3 starts
SELECT allma_resume_flow('cc-1') IS NOT NULL AS resumed;
SELECT pg_temp.wait_until($$ SELECT pg_temp.st() = '1:COMPLETED 2:RUNNING 3:RUNNING 4:QUEUED 5:QUEUED' $$) AS after_complete;
SELECT pg_temp.wait_until('SELECT pg_temp.parked(3)') AS third_parked;
SELECT x.started_at > x.queued_at AS waited FROM allma.executions x JOIN ids i ON i.e = x.execution_id WHERE i.n = 3;

-- failed: 2 fails, 4 starts
SELECT allma_resume_flow('cc-2', '{"outcome": "fail"}') IS NOT NULL AS resumed;
SELECT pg_temp.wait_until($$ SELECT pg_temp.st() = '1:COMPLETED 2:FAILED 3:RUNNING 4:RUNNING 5:QUEUED' $$) AS after_fail;
SELECT pg_temp.wait_until('SELECT pg_temp.parked(4)') AS fourth_parked;

-- cancelled while queued: 6 arrives and is cancelled; nothing else moves
INSERT INTO ids VALUES (6, allma_start_flow('cc', '{"n": 6}', '{"concurrencyKey": "k1", "maxConcurrent": 2}'));
SELECT pg_temp.st();
SELECT allma_cancel_execution(e) LIKE '%cancelled' AS cancelled FROM ids WHERE n = 6;
SELECT pg_temp.st();
SELECT count(*) AS queue_rows_of_6 FROM allma.concurrency_queue q JOIN ids i ON i.e = q.execution_id WHERE i.n = 6;
SELECT running FROM allma.concurrency_slots WHERE concurrency_key = 'k1';

-- cancelled while running: 3 is cancelled, 5 starts (in the cancel's transaction)
SELECT allma_cancel_execution(e) LIKE '%cancelled' AS cancelled FROM ids WHERE n = 3;
SELECT pg_temp.st();
SELECT pg_temp.wait_until('SELECT pg_temp.parked(5)') AS fifth_parked;

-- deleted while running (by hand; the purge deletes only finished ones): 7 starts
INSERT INTO ids VALUES (7, allma_start_flow('cc', '{"n": 7}', '{"concurrencyKey": "k1", "maxConcurrent": 2}'));
SELECT pg_temp.st();
DELETE FROM allma.executions WHERE execution_id = (SELECT e FROM ids WHERE n = 4);
SELECT pg_temp.st();
SELECT running FROM allma.concurrency_slots WHERE concurrency_key = 'k1';
-- the purge of finished ones changes nothing
SELECT allma_purge('0 s', 'cc') >= 3 AS purged;
SELECT pg_temp.st();
SELECT running FROM allma.concurrency_slots WHERE concurrency_key = 'k1';
DELETE FROM ids i WHERE NOT EXISTS (SELECT FROM allma.executions x WHERE x.execution_id = i.e);

-- timed out: a flow allowed 2 s (20 ms in the test server), key k2, limit 1
SELECT allma_create_flow($$
{"id": "cc-slow", "startStepInstanceId": "wait", "timeoutSeconds": 2,
 "steps": {"wait": {"stepType": "WAIT_FOR_EXTERNAL_EVENT", "correlationKeyTemplate": "slow-{{n}}",
                    "maxWaitTimeSeconds": 86400}}}$$) IS NOT NULL AS created;
BEGIN;
INSERT INTO ids VALUES (11, allma_start_flow('cc-slow', '{"n": 11}', '{"concurrencyKey": "k2", "maxConcurrent": 1}'));
INSERT INTO ids VALUES (12, allma_start_flow('cc-slow', '{"n": 12}', '{"concurrencyKey": "k2", "maxConcurrent": 1}'));
-- inside the starting transaction both are QUEUED (admission happens at commit); the deadline moves with the start
SELECT i.n, x.status, x.deadline - x.started_at AS timeout FROM ids i JOIN allma.executions x ON x.execution_id = i.e
 WHERE i.n > 10 ORDER BY i.n;
COMMIT;
SELECT pg_temp.wait_until($$ SELECT status = 'TIMED_OUT' FROM allma.executions WHERE execution_id = (SELECT e FROM ids WHERE n = 12) $$)
  AS second_timed_out_too;
SELECT a.status AS first, b.status AS second, b.started_at >= a.ended_at AS second_started_after_first_ended,
       b.deadline - b.started_at AS second_timeout, b.error->'errorDetails'->>'timeoutSeconds' AS timeout_seconds
  FROM allma.executions a, allma.executions b
 WHERE a.execution_id = (SELECT e FROM ids WHERE n = 11) AND b.execution_id = (SELECT e FROM ids WHERE n = 12);
SELECT count(*) AS k2_slots FROM allma.concurrency_slots WHERE concurrency_key = 'k2';

-- ---------------------------------------------------------------------------
-- The flow's concurrency: the key rendered against the input; options win
-- ---------------------------------------------------------------------------
SELECT allma_create_flow($$
{"id": "cc-tenant", "startStepInstanceId": "wait", "concurrency": {"keyTemplate": "tenant-{{tenant}}", "limit": 1},
 "steps": {"wait": {"stepType": "WAIT_FOR_EXTERNAL_EVENT", "correlationKeyTemplate": "tenant-{{n}}",
                    "maxWaitTimeSeconds": 86400}}}$$) IS NOT NULL AS created;
INSERT INTO ids VALUES (21, allma_start_flow('cc-tenant', '{"tenant": "a", "n": 21}'));
INSERT INTO ids VALUES (22, allma_start_flow('cc-tenant', '{"tenant": "a", "n": 22}'));
INSERT INTO ids VALUES (23, allma_start_flow('cc-tenant', '{"tenant": "b", "n": 23}'));
INSERT INTO ids VALUES (24, allma_start_flow('cc-tenant', '{"tenant": "b", "n": 24}', '{"maxConcurrent": 2}'));
INSERT INTO ids VALUES (25, allma_start_flow('cc-tenant', '{"tenant": "a", "n": 25}', '{"concurrencyKey": "other"}'));
SELECT i.n, x.status, x.concurrency_key, x.concurrency_limit FROM ids i JOIN allma.executions x ON x.execution_id = i.e
 WHERE i.n > 20 ORDER BY i.n;
-- a key that renders too long, or empty
SELECT pg_temp.try(format($f$ SELECT allma_start_flow('cc-tenant', '{"tenant": "%s"}') $f$, repeat('x', 300)))
  AS long_key;
SELECT allma_create_flow($$
{"id": "cc-empty", "startStepInstanceId": "a", "concurrency": {"keyTemplate": "{{tenant}}", "limit": 1},
 "steps": {"a": {"stepType": "NO_OP"}}}$$) IS NOT NULL AS created;
SELECT pg_temp.try($$ SELECT allma_start_flow('cc-empty', '{}') $$) AS empty_key;

-- ---------------------------------------------------------------------------
-- Sync sub-flows keyed by their flow: the parent waits while its child is
-- queued; the child's admission and end wake it, and so does a cancel of
-- the queued child
-- ---------------------------------------------------------------------------
SELECT allma_create_flow($$
{"id": "cc-child", "startStepInstanceId": "work", "concurrency": {"keyTemplate": "sub", "limit": 1},
 "steps": {"work": {"stepType": "NO_OP"}}}$$) IS NOT NULL AS created;
SELECT allma_create_flow($$
{"id": "cc-parent", "startStepInstanceId": "sub",
 "steps": {"sub": {"stepType": "START_SUB_FLOW", "subFlowDefinitionId": "cc-child"}}}$$) IS NOT NULL AS created;
-- a blocker holds the only slot of "sub"
INSERT INTO ids VALUES (41, allma_start_flow('cc', '{"n": 41}', '{"concurrencyKey": "sub", "maxConcurrent": 1}'));
INSERT INTO ids VALUES (42, allma_start_flow('cc-parent', '{"n": 42}'));
INSERT INTO ids VALUES (43, allma_start_flow('cc-parent', '{"n": 43}'));
SELECT pg_temp.wait_until($$ SELECT count(*) = 2 FROM allma.executions WHERE flow_id = 'cc-child' AND status = 'QUEUED' $$)
  AS children_queued;
SELECT x.status, c.status AS child_status FROM ids i JOIN allma.executions x ON x.execution_id = i.e
  JOIN allma.executions c ON c.parent_execution_id = x.execution_id WHERE i.n IN (42, 43) ORDER BY i.n;
-- the second parent's queued child is cancelled: that parent fails
SELECT allma_cancel_execution(c.execution_id) LIKE '%cancelled' AS child_cancelled
  FROM allma.executions c WHERE c.parent_execution_id = (SELECT e FROM ids WHERE n = 43);
SELECT allma_wait(e, '60 s') AS parent_of_cancelled_child FROM ids WHERE n = 43;
-- the blocker ends: the first parent's child runs, the parent completes
SELECT allma_cancel_execution(e) LIKE '%cancelled' AS blocker_cancelled FROM ids WHERE n = 41;
SELECT allma_wait(e, '60 s') AS parent_of_admitted_child FROM ids WHERE n = 42;
SELECT c.status, c.started_at > c.queued_at AS waited FROM allma.executions c
 WHERE c.parent_execution_id = (SELECT e FROM ids WHERE n = 42);

-- ---------------------------------------------------------------------------
-- Security: nobody but allma_admin reads the slots; a role sees the keys
-- and queue rows of its own executions only
-- ---------------------------------------------------------------------------
CREATE ROLE regress_allma_cc_alice;
CREATE ROLE regress_allma_cc_bob;
GRANT allma_user TO regress_allma_cc_alice, regress_allma_cc_bob;
SELECT allma_grant_flow('cc', 'regress_allma_cc_alice', 'START');
SET ROLE regress_allma_cc_alice;
SELECT allma_start_flow('cc', '{"n": 31}', '{"concurrencyKey": "alice-secret", "maxConcurrent": 1}') AS a1 \gset
SELECT allma_start_flow('cc', '{"n": 32}', '{"concurrencyKey": "alice-secret", "maxConcurrent": 1}') AS a2 \gset
SELECT concurrency_key, running, queued FROM allma.concurrency_keys;
SELECT count(*) AS alice_queue_rows FROM allma.concurrency_queue;
SELECT pg_temp.try('SELECT count(*) FROM allma.concurrency_slots') AS alice_slots;
RESET ROLE;
SET ROLE regress_allma_cc_bob;
SELECT count(*) AS bob_keys FROM allma.concurrency_keys;
SELECT count(*) AS bob_queue_rows FROM allma.concurrency_queue;
SELECT count(*) AS bob_progress_rows FROM allma.execution_progress WHERE concurrency_key IS NOT NULL;
SELECT pg_temp.try('SELECT allma.concurrency_release_deleted()') AS bob_trigger_fn;
RESET ROLE;

-- ---------------------------------------------------------------------------
-- Clean up: cancel what runs or waits; every slot is gone
-- ---------------------------------------------------------------------------
SELECT count(*) > 0 AS cancelled FROM allma.executions x,
       LATERAL allma_cancel_execution(x.execution_id) c
 WHERE x.status IN ('RUNNING', 'QUEUED') AND x.concurrency_key IS NOT NULL;
SELECT count(*) AS slots_left FROM allma.concurrency_slots;
SELECT count(*) AS queued_left FROM allma.concurrency_queue;
DROP OWNED BY regress_allma_cc_alice, regress_allma_cc_bob;
DELETE FROM allma.executions WHERE started_by IN ('regress_allma_cc_alice'::regrole);
DROP ROLE regress_allma_cc_alice, regress_allma_cc_bob;
