-- allma_cancel_execution: status CANCELLED, no further step, the paths,
-- branches and child executions go with it; finished executions are a
-- no-op that says so; who may cancel; nobody updates executions directly.
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
CREATE FUNCTION pg_temp.path(e uuid) RETURNS text LANGUAGE sql AS $$
  SELECT string_agg(step_instance_id || ':' || status, ' > ' ORDER BY path_id, seq)
    FROM allma.step_executions WHERE execution_id = e $$;
-- (execution ids vary: show them as "<id>")
CREATE FUNCTION pg_temp.said(msg text, e uuid) RETURNS text LANGUAGE sql AS $$
  SELECT replace(msg, e::text, '<id>') $$;

-- an error as "SQLSTATE: message", with an execution id shown as "<id>"
CREATE FUNCTION pg_temp.try(stmt text, e uuid DEFAULT NULL) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
	EXECUTE stmt;
	RETURN 'no error';
EXCEPTION WHEN OTHERS THEN
	RETURN SQLSTATE || ': ' ||
		CASE WHEN e IS NULL THEN SQLERRM ELSE replace(SQLERRM, e::text, '<id>') END;
END $$;

-- "a" runs, then "b" waits a day before it starts (864 s at timer_scale 0.01)
SELECT allma_create_flow($$
{"id": "held", "startStepInstanceId": "a",
 "steps": {
  "a": {"stepType": "NO_OP", "defaultNextStepInstanceId": "b"},
  "b": {"stepType": "NO_OP", "delay": {"milliseconds": 86400000, "position": "before"},
        "defaultNextStepInstanceId": "c"},
  "c": {"stepType": "NO_OP"}}}$$);
SELECT allma_start_flow('held') AS e \gset
SELECT pg_temp.wait_until(format($$ SELECT EXISTS (SELECT FROM allma.execution_paths
  WHERE execution_id = %L AND step_instance_id = 'b' AND status = 'READY') $$, :'e')) AS parked;

SELECT pg_temp.said(allma_cancel_execution(:'e', 'customer withdrew'), :'e') AS cancel;
SELECT status, ended_at IS NOT NULL AS ended, error->>'errorName' AS name,
       error->>'errorMessage' AS message, error->'errorDetails'->>'reason' AS reason,
       error->'errorDetails'->>'cancelledBy' = current_user AS by_me
  FROM allma.executions WHERE execution_id = :'e';
SELECT count(*) AS paths_left FROM allma.execution_paths WHERE execution_id = :'e';
SELECT pg_temp.path(:'e') AS history;
SELECT allma_wait(:'e');
-- again, and on a completed execution: no-ops that say so
SELECT pg_temp.said(allma_cancel_execution(:'e'), :'e') AS again;
SELECT allma_create_flow('{"id": "quick", "startStepInstanceId": "a", "steps": {"a": {"stepType": "NO_OP"}}}');
SELECT allma_start_flow('quick') AS q \gset
SELECT allma_wait(:'q');
SELECT pg_temp.said(allma_cancel_execution(:'q'), :'q') AS completed,
       (SELECT status FROM allma.executions WHERE execution_id = :'q') AS still;

-- an endless loop (maxTransitions 0) stops: once its path is gone, no step can run
SELECT allma_create_flow($$
{"id": "spin", "startStepInstanceId": "a",
 "steps": {"a": {"stepType": "NO_OP", "delay": {"milliseconds": 1000, "position": "after"},
                 "defaultNextStepInstanceId": "a", "defaultNextMaxTransitions": 0}}}$$);
SELECT allma_start_flow('spin') AS s \gset
SELECT pg_temp.wait_until(format($$ SELECT count(*) >= 3 FROM allma.step_executions
  WHERE execution_id = %L $$, :'s')) AS spinning;
SELECT pg_temp.said(allma_cancel_execution(:'s'), :'s') AS cancel_loop;
SELECT pg_temp.wait_until(format($$ SELECT NOT EXISTS (SELECT FROM allma.execution_paths
  WHERE execution_id = %L) $$, :'s')) AS path_gone;
SELECT status, error->>'errorName' AS name FROM allma.executions WHERE execution_id = :'s';

-- branches of a fork and their fork row go with it
SELECT allma_create_flow($$
{"id": "held-fork", "startStepInstanceId": "fork",
 "steps": {
  "fork": {"stepType": "PARALLEL_FORK_MANAGER", "itemsPath": "$.items",
           "parallelBranches": [{"branchId": "slow", "stepInstanceId": "slow"}]},
  "slow": {"stepType": "NO_OP", "delay": {"milliseconds": 86400000, "position": "before"}}}}$$);
SELECT allma_start_flow('held-fork', '{"items": [1, 2, 3]}') AS f \gset
SELECT pg_temp.wait_until(format($$ SELECT count(*) = 3 FROM allma.execution_paths
  WHERE execution_id = %L AND parent_path_id IS NOT NULL $$, :'f')) AS branches_parked;
SELECT pg_temp.said(allma_cancel_execution(:'f'), :'f') AS cancel_fork;
SELECT (SELECT count(*) FROM allma.execution_paths WHERE execution_id = :'f') AS paths,
       (SELECT count(*) FROM allma.forks WHERE execution_id = :'f') AS forks,
       (SELECT status FROM allma.executions WHERE execution_id = :'f') AS status;

-- child executions (parent_execution_id) are cancelled with their parent;
-- finished children keep their status
SELECT allma_start_flow('held') AS parent \gset
SELECT allma_start_flow('held') AS child \gset
SELECT allma_start_flow('held') AS grandchild \gset
SELECT allma_start_flow('quick') AS done_child \gset
SELECT allma_wait(:'done_child');
UPDATE allma.executions SET parent_execution_id = :'parent'
 WHERE execution_id IN (:'child', :'done_child');
UPDATE allma.executions SET parent_execution_id = :'child' WHERE execution_id = :'grandchild';
SELECT pg_temp.said(allma_cancel_execution(:'parent'), :'parent') AS cancel_tree;
SELECT CASE execution_id WHEN :'parent' THEN 'parent' WHEN :'child' THEN 'child'
            WHEN :'grandchild' THEN 'grandchild' ELSE 'done_child' END AS who,
       status, replace(error->>'errorMessage', :'parent', '<parent>') AS message
  FROM allma.executions x
 WHERE execution_id IN (:'parent', :'child', :'grandchild', :'done_child') ORDER BY 1;
-- (their paths are deleted by the cancel, or -- when a held worker has one
-- locked at that moment -- when a worker next claims it: not counted here)

-- errors
SELECT pg_temp.try('SELECT allma_cancel_execution(NULL)') AS null_id,
       pg_temp.try($$SELECT allma_cancel_execution('00000000-0000-0000-0000-000000000000')$$) AS unknown,
       pg_temp.try(format('SELECT allma_cancel_execution(%L, repeat(''x'', 1001))', :'e')) AS long_reason;

-- who may cancel: the starter (and roles with its privileges) and allma_admin
CREATE ROLE regress_allma_cx_alice IN ROLE allma_user;
CREATE ROLE regress_allma_cx_bob IN ROLE allma_user;
CREATE ROLE regress_allma_cx_admin IN ROLE allma_admin;
SELECT allma_grant_flow('held', 'regress_allma_cx_alice', 'START');
SELECT allma_grant_flow('held', 'regress_allma_cx_bob', 'START');
SET ROLE regress_allma_cx_alice;
SELECT allma_start_flow('held') AS a1 \gset
SELECT allma_start_flow('held') AS a2 \gset
-- nobody writes allma.executions directly, not even its starter
UPDATE allma.executions SET status = 'CANCELLED' WHERE execution_id = :'a1';
DELETE FROM allma.execution_paths WHERE execution_id = :'a1';
SET ROLE regress_allma_cx_bob;
SELECT pg_temp.try(format('SELECT allma_cancel_execution(%L)', :'a1'), :'a1') AS bob_cancels;
UPDATE allma.executions SET status = 'CANCELLED' WHERE execution_id = :'a1';
SET ROLE regress_allma_cx_alice;
SELECT pg_temp.said(allma_cancel_execution(:'a1', 'mine'), :'a1') AS alice_cancels;
SET ROLE regress_allma_cx_admin;
SELECT pg_temp.said(allma_cancel_execution(:'a2'), :'a2') AS admin_cancels;
RESET ROLE;
SELECT status, error->'errorDetails'->>'cancelledBy' AS by
  FROM allma.executions WHERE execution_id IN (:'a1', :'a2') ORDER BY by;
-- PUBLIC may not call it
SELECT has_function_privilege('public', 'allma_cancel_execution(uuid, text)', 'EXECUTE') AS public_may,
       has_function_privilege('allma_user', 'allma_cancel_execution(uuid, text)', 'EXECUTE') AS users_may;

-- (the cancelled executions stay: deleting them could meet a worker that is
-- dropping their paths at that moment)
DROP ROLE regress_allma_cx_alice, regress_allma_cx_bob, regress_allma_cx_admin;
