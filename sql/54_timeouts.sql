-- Execution timeouts: a flow's timeoutSeconds, else allma.execution_timeout,
-- end a running execution as TIMED_OUT with the same cascade as a cancel
-- (paths, branches, waits, child executions).  timer_scale is 0.01 in the
-- test server: 2 s become 20 ms.
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

SHOW allma.execution_timeout;

-- a step a day away, in a flow allowed 2 s
SELECT allma_create_flow($$
{"id": "too-slow", "startStepInstanceId": "a", "timeoutSeconds": 2,
 "steps": {
  "a": {"stepType": "NO_OP", "defaultNextStepInstanceId": "b"},
  "b": {"stepType": "NO_OP", "delay": {"milliseconds": 86400000, "position": "before"}}}}$$);
SELECT allma_start_flow('too-slow') AS e \gset
SELECT deadline - started_at AS timeout_scaled FROM allma.executions WHERE execution_id = :'e';
SELECT allma_wait(:'e');
SELECT status, ended_at >= deadline AS after_deadline, error->>'errorName' AS name,
       error->>'errorMessage' AS message, error->'errorDetails' AS details
  FROM allma.executions WHERE execution_id = :'e';
SELECT count(*) AS paths_left FROM allma.execution_paths WHERE execution_id = :'e';
SELECT string_agg(step_instance_id || ':' || status, ' > ' ORDER BY seq) AS history
  FROM allma.step_executions WHERE execution_id = :'e';

-- a flow that finishes in time is not touched
SELECT allma_create_flow($$
{"id": "in-time", "startStepInstanceId": "a", "timeoutSeconds": 3600,
 "steps": {"a": {"stepType": "NO_OP"}}}$$);
SELECT allma_start_flow('in-time') AS ok \gset
SELECT allma_wait(:'ok'), (SELECT deadline > started_at FROM allma.executions WHERE execution_id = :'ok') AS had_deadline;

-- waits, branches and child executions end with it
SELECT allma_create_flow($$
{"id": "waits-too-long", "startStepInstanceId": "fork", "timeoutSeconds": 86400,
 "steps": {
  "fork": {"stepType": "PARALLEL_FORK_MANAGER", "itemsPath": "$.items",
           "parallelBranches": [{"branchId": "w", "stepInstanceId": "wait"}]},
  "wait": {"stepType": "WAIT_FOR_EXTERNAL_EVENT", "correlationKeyTemplate": "timeout-{{currentItem}}"}}}$$);
SELECT allma_create_flow($$
{"id": "lc-child", "startStepInstanceId": "b",
 "steps": {"b": {"stepType": "NO_OP", "delay": {"milliseconds": 86400000, "position": "before"}}}}$$);
SELECT allma_start_flow('lc-child') AS child \gset
UPDATE allma.executions SET parent_execution_id = '00000000-0000-4000-8000-000000005401'
 WHERE execution_id = :'child';
SELECT allma_start_flow('waits-too-long', '{"items": [1, 2]}',
                        '{"executionId": "00000000-0000-4000-8000-000000005401"}') AS p \gset
-- once both branches wait, its deadline is brought forward to now
SELECT pg_temp.wait_until(format($$ SELECT count(*) = 2 FROM allma.waits
  WHERE execution_id = %L AND status = 'OPEN' $$, :'p')) AS branches_wait;
UPDATE allma.executions SET deadline = clock_timestamp() WHERE execution_id = :'p';
SELECT allma_wait(:'p');
SELECT x.status, x.error->>'errorName' AS name,
       regexp_replace(replace(x.error->>'errorMessage', :'p', '<parent>'), '[0-9.]+ s$', 'N s') AS message
  FROM allma.executions x WHERE execution_id IN (:'p', :'child') ORDER BY x.parent_execution_id NULLS FIRST;
SELECT correlation_key, status FROM allma.waits WHERE execution_id = :'p' ORDER BY 1;
SELECT (SELECT count(*) FROM allma.execution_paths WHERE execution_id IN (:'p', :'child')) AS paths,
       (SELECT count(*) FROM allma.forks WHERE execution_id = :'p') AS forks;
SELECT pg_temp.try($$ SELECT allma_resume_flow('timeout-1') $$) AS resume_after;
SELECT allma_cancel_execution(:'p') LIKE '%already ended with status TIMED_OUT%' AS cancel_is_noop;

-- (allma.execution_timeout, the default for flows without timeoutSeconds:
-- t/052_execution_timeout.pl, which can reload the configuration)

-- definitions
SELECT pg_temp.try($$ SELECT allma_validate_flow('{"id": "t", "startStepInstanceId": "a",
  "timeoutSeconds": 0, "steps": {"a": {"stepType": "NO_OP"}}}') $$) AS zero;
SELECT pg_temp.try($$ SELECT allma_validate_flow('{"id": "t", "startStepInstanceId": "a",
  "timeoutSeconds": "soon", "steps": {"a": {"stepType": "NO_OP"}}}') $$) AS not_a_number;
