-- allma.execution_progress and allma.live_path_waits: running executions,
-- their current steps, steps completed, checkpoints, percent, fork
-- branches and what each path waits on (runnable, timer, http, branches,
-- concurrency, child, event), seen by the starter, another allma_user and
-- an allma_admin member.  Executions are held where the test looks: a SQL
-- step waits for an advisory lock the test holds, a delay is a day long;
-- waits that 1.0's engine cannot make yet (events, sub-flows) are rows
-- the test inserts as the superuser.
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS allma;
RESET client_min_messages;

CREATE ROLE regress_allma_obs_alice;
CREATE ROLE regress_allma_obs_bob;
CREATE ROLE regress_allma_obs_admin;
GRANT allma_user TO regress_allma_obs_alice, regress_allma_obs_bob;
GRANT allma_admin TO regress_allma_obs_admin;

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
-- true once a session waits for advisory lock k
CREATE FUNCTION pg_temp.lock_waited(k int) RETURNS boolean LANGUAGE sql AS $$
  SELECT pg_temp.wait_until(format($q$ SELECT EXISTS (SELECT FROM pg_locks WHERE locktype = 'advisory'
                                        AND objid = %s AND NOT granted) $q$, k)) $$;

------------------------------------------------------------------------------
-- 1. Checkpoints: a step held mid-flight after two of three checkpoints
--    (a worker runs the steps of a pass in one transaction: the short delay
--    before "hold" ends the pass, so the first two steps are committed)
------------------------------------------------------------------------------
SELECT allma_create_flow($$ {"id": "obs-checkpoints", "startStepInstanceId": "intake", "steps": {
  "intake": {"stepType": "NO_OP", "checkpoint": {"id": "received", "label": "Order received", "order": 1},
             "defaultNextStepInstanceId": "check"},
  "check": {"stepType": "NO_OP", "checkpoint": {"id": "checked", "label": "Order checked", "order": 2},
            "defaultNextStepInstanceId": "hold"},
  "hold": {"stepType": "DATA_LOAD", "moduleIdentifier": "system/sql-query",
           "delay": {"milliseconds": 100, "position": "before"},
           "customConfig": {"sql": "SELECT true AS passed FROM pg_advisory_xact_lock_shared(7601)"},
           "defaultNextStepInstanceId": "ship"},
  "ship": {"stepType": "NO_OP", "checkpoint": {"id": "shipped", "label": "Shipped", "order": 3}}}} $$);
SELECT allma_grant_flow('obs-checkpoints', 'allma_user', 'START');
SELECT pg_advisory_lock(7601);
SET ROLE regress_allma_obs_alice;
SELECT allma_start_flow('obs-checkpoints', '{}', '{"executionId": "00000000-0000-4000-8000-0000000076a1"}');
RESET ROLE;
SELECT pg_temp.lock_waited(7601) AS held;
SELECT flow_id, current_steps, live_paths, steps_completed, checkpoint_id, checkpoint_label,
       checkpoint_ordinal, checkpoints_total, percent, percent_basis, running_forks, waiting_on,
       waits #- '{0,dueAt}' #- '{0,since}' AS waits, running_for >= '0 s' AS running_for_ok,
       current_step_since = last_step_ended_at AS at_hold_since_check_ended, started_by, depth,
       root_execution_id = execution_id AS own_root
  FROM allma.execution_progress WHERE execution_id = '00000000-0000-4000-8000-0000000076a1';

-- who sees it: alice (the starter), not bob, the allma_admin member
SET ROLE regress_allma_obs_alice;
SELECT count(*) AS alice_sees FROM allma.execution_progress WHERE flow_id LIKE 'obs-%';
RESET ROLE;
SET ROLE regress_allma_obs_bob;
SELECT count(*) AS bob_sees FROM allma.execution_progress WHERE flow_id LIKE 'obs-%';
SELECT count(*) AS bob_sees_paths FROM allma.live_path_waits
 WHERE execution_id = '00000000-0000-4000-8000-0000000076a1';
RESET ROLE;
SET ROLE regress_allma_obs_admin;
SELECT execution_id, checkpoint_id, percent FROM allma.execution_progress WHERE flow_id LIKE 'obs-%';
RESET ROLE;

SELECT pg_advisory_unlock(7601);
SELECT allma_wait('00000000-0000-4000-8000-0000000076a1');
-- only running executions have progress
SELECT count(*) AS finished_rows FROM allma.execution_progress
 WHERE execution_id = '00000000-0000-4000-8000-0000000076a1';

------------------------------------------------------------------------------
-- 2. No checkpoints: percent from steps completed / steps defined; a timer
------------------------------------------------------------------------------
SELECT allma_create_flow($$ {"id": "obs-timer", "startStepInstanceId": "one", "steps": {
  "one": {"stepType": "NO_OP", "defaultNextStepInstanceId": "two"},
  "two": {"stepType": "NO_OP", "defaultNextStepInstanceId": "later"},
  "later": {"stepType": "NO_OP", "delay": {"milliseconds": 86400000, "position": "before"},
            "defaultNextStepInstanceId": "end"},
  "end": {"stepType": "NO_OP"}}} $$);
SELECT allma_start_flow('obs-timer', '{}', '{"executionId": "00000000-0000-4000-8000-0000000076b2"}');
SELECT pg_temp.wait_until($$ SELECT EXISTS (SELECT FROM allma.execution_paths
   WHERE execution_id = '00000000-0000-4000-8000-0000000076b2' AND step_instance_id = 'later') $$) AS at_timer;
SELECT current_steps, steps_completed, checkpoint_id, checkpoints_total, percent, percent_basis,
       waiting_on, next_due_at > now() + interval '10 min' AS due_later,
       waits->0->>'waitingOn' AS path_waits_on, (waits->0->>'dueAt')::timestamptz = next_due_at AS due_shown
  FROM allma.execution_progress WHERE execution_id = '00000000-0000-4000-8000-0000000076b2';
-- (the clean-up deletes it: a worker touches it only when the timer is due)
------------------------------------------------------------------------------
-- 3. A running fork: the fork step waits on branches, one branch runs
--    (held), the others queue behind maxConcurrency
------------------------------------------------------------------------------
SELECT allma_create_flow($$ {"id": "obs-fork", "startStepInstanceId": "fork", "steps": {
  "fork": {"stepType": "PARALLEL_FORK_MANAGER", "itemsPath": "$.items",
           "parallelBranches": [{"branchId": "w", "stepInstanceId": "work"}],
           "aggregationConfig": {"maxConcurrency": 1}, "defaultNextStepInstanceId": "after"},
  "work": {"stepType": "DATA_LOAD", "moduleIdentifier": "system/sql-query",
           "customConfig": {"sql": "SELECT true AS passed FROM pg_advisory_xact_lock_shared(7603)"}},
  "after": {"stepType": "NO_OP"}}} $$);
SELECT pg_advisory_lock(7603);
SELECT allma_start_flow('obs-fork', '{"items": [1, 2, 3]}', '{"executionId": "00000000-0000-4000-8000-0000000076c3"}');
SELECT pg_temp.lock_waited(7603) AS held;
SELECT current_steps, live_paths, running_forks, branches_done, branches_total, waiting_on
  FROM allma.execution_progress WHERE execution_id = '00000000-0000-4000-8000-0000000076c3';
-- (a path is at its step since its last attempt, else since its fork or execution started)
SELECT path_id = 0 AS main, branch_id, step_instance_id, status, waiting_on,
       step_since = CASE WHEN path_id = 0
                         THEN (SELECT started_at FROM allma.executions e WHERE e.execution_id = w.execution_id)
                         ELSE (SELECT started_at FROM allma.forks f WHERE f.execution_id = w.execution_id) END AS since_ok
  FROM allma.live_path_waits w WHERE execution_id = '00000000-0000-4000-8000-0000000076c3'
 ORDER BY path_id;
-- the tree while it runs: the execution and its three branches
SELECT node_kind, depth, branch_id, status, current_step, parent_path_id
  FROM allma.execution_tree WHERE root_execution_id = '00000000-0000-4000-8000-0000000076c3'
 ORDER BY tree_path;
SELECT pg_advisory_unlock(7603);
SELECT allma_wait('00000000-0000-4000-8000-0000000076c3');
-- and after the join: the branches from the history
SELECT node_kind, depth, branch_id, status, current_step, ended_at IS NOT NULL AS ended
  FROM allma.execution_tree WHERE root_execution_id = '00000000-0000-4000-8000-0000000076c3'
 ORDER BY tree_path;

------------------------------------------------------------------------------
-- 4. Waits 1.0 cannot make yet, as rows: a path WAITING on an event, a path
--    WAITING on a running sub-flow, a request in flight; and a tree of
--    sub-flows three levels deep
------------------------------------------------------------------------------
SELECT allma_create_flow($$ {"id": "obs-waits", "startStepInstanceId": "w",
  "steps": {"w": {"stepType": "NO_OP"}}} $$);
INSERT INTO allma.executions (execution_id, flow_id, flow_version, input, started_by, started_at,
                              parent_execution_id, parent_path_id, root_execution_id, depth)
VALUES ('00000000-0000-4000-8000-0000000076d1', 'obs-waits', 1, '{}', 'regress_allma_obs_alice', '2026-01-01 10:00', NULL, NULL, NULL, 0),
       ('00000000-0000-4000-8000-0000000076d2', 'obs-waits', 1, '{}', 'regress_allma_obs_alice', '2026-01-01 10:01',
        '00000000-0000-4000-8000-0000000076d1', 0, '00000000-0000-4000-8000-0000000076d1', 1),
       ('00000000-0000-4000-8000-0000000076d3', 'obs-waits', 1, '{}', 'regress_allma_obs_alice', '2026-01-01 10:02',
        '00000000-0000-4000-8000-0000000076d2', 0, '00000000-0000-4000-8000-0000000076d1', 2),
       ('00000000-0000-4000-8000-0000000076d4', 'obs-waits', 1, '{}', 'regress_allma_obs_alice', '2026-01-01 10:03',
        '00000000-0000-4000-8000-0000000076d1', 0, '00000000-0000-4000-8000-0000000076d1', 1),
       ('00000000-0000-4000-8000-0000000076e1', 'obs-waits', 1, '{}', 'regress_allma_obs_bob', '2026-01-01 11:00', NULL, NULL, NULL, 0);
-- d1 waits on its children, d2 on its child d3, d3 on an event, d4 on a
-- response (owned by no worker), e1 (bob's) on an event
INSERT INTO allma.execution_paths (execution_id, path_id, status, step_instance_id, context, lease_until)
VALUES ('00000000-0000-4000-8000-0000000076d1', 0, 'WAITING', 'w', '{}', NULL),
       ('00000000-0000-4000-8000-0000000076d2', 0, 'WAITING', 'w', '{}', NULL),
       ('00000000-0000-4000-8000-0000000076d3', 0, 'WAITING', 'w', '{}', NULL),
       ('00000000-0000-4000-8000-0000000076d4', 0, 'INFLIGHT', 'w', '{}', now() + interval '1 day'),
       ('00000000-0000-4000-8000-0000000076e1', 0, 'WAITING', 'w', '{}', NULL);
-- d5: a fork whose first branch is queued (no request) and whose second
-- branch was parked by its own step (a request: waits on an event)
INSERT INTO allma.executions (execution_id, flow_id, flow_version, input, started_by, started_at)
VALUES ('00000000-0000-4000-8000-0000000076d5', 'obs-waits', 1, '{}', 'regress_allma_obs_alice', '2026-01-01 10:04');
INSERT INTO allma.forks (execution_id, fork_path_id, step_instance_id, base_context, total, pending)
VALUES ('00000000-0000-4000-8000-0000000076d5', 0, 'w', '{}', 2, 2);
INSERT INTO allma.execution_paths (execution_id, path_id, parent_path_id, branch_id, status, step_instance_id, context, request)
VALUES ('00000000-0000-4000-8000-0000000076d5', 0, NULL, NULL, 'WAITING', 'w', '{}', NULL),
       ('00000000-0000-4000-8000-0000000076d5', 1, 0, 'b', 'WAITING', 'w', '{}', NULL),
       ('00000000-0000-4000-8000-0000000076d5', 2, 0, 'b', 'WAITING', 'w', '{}', '{"waitFor": "order-42"}');
SELECT path_id, waiting_on FROM allma.live_path_waits
 WHERE execution_id = '00000000-0000-4000-8000-0000000076d5' ORDER BY path_id;
SELECT right(execution_id::text, 2) AS e, waiting_on, child_execution_ids, event_keys,
       waits->0->>'leaseUntil' IS NOT NULL AS lease_shown, percent, percent_basis
  FROM allma.execution_progress WHERE flow_id = 'obs-waits' ORDER BY execution_id;
SELECT repeat('  ', depth) || right(execution_id::text, 2) AS tree, node_kind, depth,
       right(parent_execution_id::text, 2) AS parent, status
  FROM allma.execution_tree WHERE flow_id = 'obs-waits' ORDER BY root_execution_id, tree_path;
-- each role sees its own: alice her tree, bob his execution, the admin all
CREATE FUNCTION pg_temp.seen(OUT who text, OUT progress text, OUT tree text) LANGUAGE sql AS $$
  SELECT current_user::text,
         (SELECT string_agg(right(execution_id::text, 2) || ':' || array_to_string(waiting_on, ','), ' ' ORDER BY execution_id)
            FROM allma.execution_progress WHERE flow_id = 'obs-waits'),
         (SELECT string_agg(right(execution_id::text, 2) || '@' || depth, ' ' ORDER BY root_execution_id, tree_path)
            FROM allma.execution_tree WHERE flow_id = 'obs-waits') $$;
SET ROLE regress_allma_obs_alice;
SELECT * FROM pg_temp.seen();
RESET ROLE;
SET ROLE regress_allma_obs_bob;
SELECT * FROM pg_temp.seen();
RESET ROLE;
SET ROLE regress_allma_obs_admin;
SELECT * FROM pg_temp.seen();
RESET ROLE;
-- a sub-flow whose parent the caller cannot see is a root of its own
UPDATE allma.executions SET started_by = 'regress_allma_obs_bob'
 WHERE execution_id = '00000000-0000-4000-8000-0000000076d1';
SET ROLE regress_allma_obs_alice;
SELECT right(root_execution_id::text, 2) AS root, right(execution_id::text, 2) AS e, depth
  FROM allma.execution_tree WHERE flow_id = 'obs-waits' ORDER BY root_execution_id, tree_path;
RESET ROLE;

-- a role outside allma_user cannot read the views
CREATE ROLE regress_allma_obs_nobody;
SET ROLE regress_allma_obs_nobody;
SELECT count(*) FROM allma.execution_progress;
RESET ROLE;
SET ROLE regress_allma_obs_nobody;
SELECT count(*) FROM allma.execution_tree;
RESET ROLE;

-- clean up
DELETE FROM allma.step_executions WHERE execution_id IN
	(SELECT execution_id FROM allma.executions WHERE flow_id LIKE 'obs-%');
DELETE FROM allma.executions WHERE flow_id LIKE 'obs-%';
DELETE FROM allma.flows WHERE flow_id LIKE 'obs-%';
DROP ROLE regress_allma_obs_alice, regress_allma_obs_bob, regress_allma_obs_admin,
	regress_allma_obs_nobody;
