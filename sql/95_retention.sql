-- Retention: allma_purge, the settings, and the trigger that keeps the
-- history from outliving its execution.  The executions are made by hand
-- (finished, with history), so that no worker is involved; they ended two
-- days ago or later, far inside allma.retention, which worker 0 applies.

SHOW allma.retention;
SHOW allma.purge_batch_size;
SHOW allma.purge_interval;

CREATE ROLE regress_allma_ret_alice;
CREATE ROLE regress_allma_ret_bob;
CREATE ROLE regress_allma_ret_admin;
CREATE ROLE regress_allma_ret_outsider;
GRANT allma_user TO regress_allma_ret_alice, regress_allma_ret_bob;
GRANT allma_admin TO regress_allma_ret_admin;

SELECT allma_create_flow('{"id": "ret_a", "startStepInstanceId": "s",
  "steps": {"s": {"stepType": "NO_OP"}}}') IS NOT NULL AS created;
SELECT allma_create_flow('{"id": "ret_b", "startStepInstanceId": "s",
  "steps": {"s": {"stepType": "NO_OP"}}}') IS NOT NULL AS created;

-- n executions of flow f started by role r, ended "age" ago (NULL: running),
-- each with three history rows and a file
CREATE FUNCTION pg_temp.make(f text, r regrole, age interval, n int, tag int)
RETURNS void LANGUAGE sql AS $$
	INSERT INTO allma.executions (execution_id, flow_id, flow_version, status, input,
								  started_by, started_at, ended_at)
	SELECT ('00000000-0000-4000-8000-' || lpad(to_hex(tag * 1000 + i), 12, '0'))::uuid, f, 1,
		   CASE WHEN age IS NULL THEN 'RUNNING' ELSE 'COMPLETED' END, '{}', r,
		   now() - coalesce(age, '0') - interval '1 minute', now() - age
	  FROM generate_series(1, n) i;
	INSERT INTO allma.step_executions (execution_id, path_id, seq, step_instance_id, step_type,
									   attempt, status, started_at, ended_at)
	SELECT ('00000000-0000-4000-8000-' || lpad(to_hex(tag * 1000 + i), 12, '0'))::uuid, 0, s,
		   's', 'NO_OP', 1, 'COMPLETED', now(), now()
	  FROM generate_series(1, n) i, generate_series(1, 3) s;
	INSERT INTO allma.files (execution_id, step_id, url, content, content_length)
	SELECT ('00000000-0000-4000-8000-' || lpad(to_hex(tag * 1000 + i), 12, '0'))::uuid, 's',
		   'http://127.0.0.1/x', '\x00', 1
	  FROM generate_series(1, n) i;
$$;

-- what is left of the test's executions: per flow, role and status, with
-- the history rows and files that belong to them, and orphans
CREATE FUNCTION pg_temp.left_over() RETURNS TABLE (flow text, role text, status text,
	executions bigint, history bigint, files bigint)
LANGUAGE sql AS $$
	SELECT e.flow_id, e.started_by::text, e.status, count(*),
		   sum((SELECT count(*) FROM allma.step_executions s WHERE s.execution_id = e.execution_id)),
		   sum((SELECT count(*) FROM allma.files x WHERE x.execution_id = e.execution_id))
	  FROM allma.executions e WHERE e.flow_id LIKE 'ret\_%'
	 GROUP BY 1, 2, 3 ORDER BY 1, 2, 3
$$;
CREATE FUNCTION pg_temp.orphans() RETURNS bigint LANGUAGE sql AS $$
	SELECT (SELECT count(*) FROM allma.step_executions s
			 WHERE NOT EXISTS (SELECT FROM allma.executions e WHERE e.execution_id = s.execution_id))
		 + (SELECT count(*) FROM allma.files s
			 WHERE NOT EXISTS (SELECT FROM allma.executions e WHERE e.execution_id = s.execution_id))
$$;

SELECT pg_temp.make('ret_a', 'regress_allma_ret_alice', '3 days', 5, 1);
SELECT pg_temp.make('ret_a', 'regress_allma_ret_alice', '1 hour', 2, 2);
SELECT pg_temp.make('ret_a', 'regress_allma_ret_alice', NULL, 1, 3);
SELECT pg_temp.make('ret_b', 'regress_allma_ret_bob', '3 days', 4, 4);
SELECT pg_temp.make('ret_a', 'regress_allma_ret_bob', '3 days', 3, 5);
SELECT * FROM pg_temp.left_over();

-- arguments
SELECT allma_purge(NULL);
SELECT allma_purge('-1 day');
SELECT allma_purge('1 day', 'no_such_flow');

-- alice purges what she can see: her own old executions, not bob's
SET ROLE regress_allma_ret_alice;
SELECT allma_purge('1 day');
SELECT allma_purge('1 day');
-- and cannot write the tables herself
DELETE FROM allma.executions;
RESET ROLE;
SELECT * FROM pg_temp.left_over();

-- a role outside allma may not call it
SET ROLE regress_allma_ret_outsider;
SELECT allma_purge('1 day');
RESET ROLE;
-- allma_admin purges everybody's: one flow first, then all
SET ROLE regress_allma_ret_admin;
SELECT allma_purge('1 day', 'ret_b');
SELECT allma_purge('1 day', 'ret_a');
-- the batch size is the administrator's
SET allma.purge_batch_size = 2;
RESET ROLE;
SELECT * FROM pg_temp.left_over();
SELECT pg_temp.orphans() AS orphans;

-- running executions are never purged, whatever their age
SELECT allma_purge('0', 'ret_a');
SELECT * FROM pg_temp.left_over();

-- only the engine writes history (no role but superusers may insert) ...
SELECT has_table_privilege('regress_allma_ret_admin', 'allma.step_executions', 'INSERT') AS admin_may_insert;
-- ... and deleting an execution by hand deletes its history and files
DELETE FROM allma.executions WHERE flow_id LIKE 'ret\_%';
SELECT pg_temp.orphans() AS orphans;
SELECT tgname, tgtype FROM pg_trigger
 WHERE tgrelid = 'allma.executions'::regclass AND tgname = 'executions_delete_history';

DROP ROLE regress_allma_ret_alice, regress_allma_ret_bob, regress_allma_ret_admin,
	regress_allma_ret_outsider;
