-- onCompletionActions of executions that end from outside their steps:
-- allma_cancel_execution (CANCELLED, in the cancelling session) and the
-- execution timeout (TIMED_OUT, in the worker that times it out), for the
-- execution and for each child execution the cascade ends.  The document
-- the actions see carries the final status and the cancel's or timeout's
-- error as errorInfo, over the context the execution had reached.
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
CREATE FUNCTION pg_temp.parked(e uuid) RETURNS boolean LANGUAGE sql AS $$
  SELECT pg_temp.wait_until(format($q$ SELECT EXISTS (SELECT FROM allma.execution_paths
    WHERE execution_id = %L AND status = 'WAITING' AND request ? 'wait') $q$, e)) $$;
-- the completion actions' history rows of an execution
CREATE FUNCTION pg_temp.actions(e uuid) RETURNS TABLE (step text, status text, output jsonb, details jsonb)
LANGUAGE sql AS $$
  SELECT step_instance_id, status, output, details FROM allma.step_executions
   WHERE execution_id = e AND path_id < 0 ORDER BY path_id DESC, seq $$;

-- the statuses an action may be for
SELECT allma_validate_flow('{"id": "v", "startStepInstanceId": "s", "steps": {"s": {"stepType": "NO_OP"}},
  "onCompletionActions": [{"actionType": "LOG_ONLY", "executeOnStatus": "CANCELLED"},
                          {"actionType": "LOG_ONLY", "executeOnStatus": "TIMED_OUT"}]}') AS valid;
SELECT allma_validate_flow('{"id": "v", "startStepInstanceId": "s", "steps": {"s": {"stepType": "NO_OP"}},
  "onCompletionActions": [{"actionType": "LOG_ONLY", "executeOnStatus": "RUNNING"}]}');

-- a flow that sets a variable and then waits; its actions: one for any end
-- (with the status, the error and the context), one per status
SELECT allma_create_flow($$
{"id": "cl_wait", "startStepInstanceId": "set",
 "steps": {
  "set": {"stepType": "DATA_TRANSFORMATION", "moduleIdentifier": "system/compose-object-from-input",
          "inputMappings": {"v": "$.name"}, "outputMappings": {"$.reached": "$.v"},
          "defaultNextStepInstanceId": "wait"},
  "wait": {"stepType": "WAIT_FOR_EXTERNAL_EVENT", "correlationKeyTemplate": "cl-{{name}}",
           "maxWaitTimeSeconds": 86400}},
 "onCompletionActions": [
  {"actionType": "LOG_ONLY", "executeOnStatus": "ANY",
   "payloadTemplate": {"st": "$.status", "err": "$.errorInfo.errorName", "reached": "$.reached"}},
  {"actionType": "LOG_ONLY", "executeOnStatus": "CANCELLED", "payloadTemplate": {"why": "$.errorInfo.errorMessage"}},
  {"actionType": "LOG_ONLY", "executeOnStatus": "TIMED_OUT",
   "payloadTemplate": {"st": "$.status", "err": "$.errorInfo.errorName", "id": "$.flowDefinitionId"}},
  {"actionType": "LOG_ONLY", "executeOnStatus": "FAILED"},
  {"actionType": "LOG_ONLY"},
  {"actionType": "NOTIFY", "target": "regress_cl_ended", "executeOnStatus": "ANY"},
  {"actionType": "LOG_ONLY", "executeOnStatus": "ANY", "condition": "$.reached == 'nobody'"}]}$$) IS NOT NULL AS created;

-- cancel: the actions for CANCELLED and ANY run, in the cancel's transaction
SELECT allma_start_flow('cl_wait', '{"name": "ada"}', '{"executionId": "00000000-0000-4000-8000-0000000c1001"}');
SELECT pg_temp.parked('00000000-0000-4000-8000-0000000c1001') AS parked;
SELECT allma_cancel_execution('00000000-0000-4000-8000-0000000c1001', 'no longer needed');
SELECT status FROM allma.executions WHERE execution_id = '00000000-0000-4000-8000-0000000c1001';
SELECT * FROM pg_temp.actions('00000000-0000-4000-8000-0000000c1001');
-- a second cancel is a no-op: the actions do not run again
SELECT allma_cancel_execution('00000000-0000-4000-8000-0000000c1001');
SELECT count(*) AS action_rows FROM pg_temp.actions('00000000-0000-4000-8000-0000000c1001');

-- a cancel that rolls back leaves no action behind
BEGIN;
SELECT allma_start_flow('cl_wait', '{"name": "bob"}', '{"executionId": "00000000-0000-4000-8000-0000000c1002"}');
COMMIT;
SELECT pg_temp.parked('00000000-0000-4000-8000-0000000c1002') AS parked;
BEGIN;
SELECT allma_cancel_execution('00000000-0000-4000-8000-0000000c1002');
ROLLBACK;
SELECT status, (SELECT count(*) FROM pg_temp.actions(execution_id)) AS action_rows
  FROM allma.executions WHERE execution_id = '00000000-0000-4000-8000-0000000c1002';
SELECT allma_resume_flow('cl-bob') = '00000000-0000-4000-8000-0000000c1002' AS resumed;
SELECT allma_wait('00000000-0000-4000-8000-0000000c1002', '60 s');
-- completed: the actions for COMPLETED and ANY (as before this change)
SELECT * FROM pg_temp.actions('00000000-0000-4000-8000-0000000c1002');

-- execution timeout: the same flow with a timeout; once it is parked, its
-- deadline is brought forward to now (no race with its first step)
SELECT allma_create_flow((SELECT definition || '{"id": "cl_slow", "timeoutSeconds": 86400}'
                            FROM allma.flow_versions WHERE flow_id = 'cl_wait')) IS NOT NULL AS created;
SELECT allma_start_flow('cl_slow', '{"name": "cy"}', '{"executionId": "00000000-0000-4000-8000-0000000c1003"}');
SELECT pg_temp.parked('00000000-0000-4000-8000-0000000c1003') AS parked;
UPDATE allma.executions SET deadline = clock_timestamp()
 WHERE execution_id = '00000000-0000-4000-8000-0000000c1003';
SELECT allma_wait('00000000-0000-4000-8000-0000000c1003', '60 s');
SELECT status, error->>'errorName' AS error FROM allma.executions
 WHERE execution_id = '00000000-0000-4000-8000-0000000c1003';
SELECT * FROM pg_temp.actions('00000000-0000-4000-8000-0000000c1003');

-- a cancel that cascades: the child execution's own actions run too
SELECT allma_create_flow($$
{"id": "cl_parent", "startStepInstanceId": "child",
 "steps": {"child": {"stepType": "START_SUB_FLOW", "subFlowDefinitionId": "cl_wait",
                     "inputMappingsToSubFlow": {"name": "$.name"}}},
 "onCompletionActions": [{"actionType": "LOG_ONLY", "executeOnStatus": "CANCELLED",
                          "payloadTemplate": {"st": "$.status"}}]}$$) IS NOT NULL AS created;
SELECT allma_start_flow('cl_parent', '{"name": "dee"}', '{"executionId": "00000000-0000-4000-8000-0000000c1004"}');
SELECT pg_temp.wait_until($$ SELECT EXISTS (SELECT FROM allma.waits WHERE correlation_key = 'cl-dee' AND status = 'OPEN') $$) AS child_parked;
SELECT allma_cancel_execution('00000000-0000-4000-8000-0000000c1004');
SELECT x.parent_execution_id IS NOT NULL AS child, x.status, a.step, a.status AS action, a.output
  FROM allma.executions x, pg_temp.actions(x.execution_id) a
 WHERE x.execution_id = '00000000-0000-4000-8000-0000000c1004'
    OR x.parent_execution_id = '00000000-0000-4000-8000-0000000c1004'
 ORDER BY 1, 3;

-- the execution's outcome is the cancel's, whatever an action does: a
-- webhook with a URL that does not render fails on its own
SELECT allma_create_flow($$
{"id": "cl_badhook", "startStepInstanceId": "wait",
 "steps": {"wait": {"stepType": "WAIT_FOR_EXTERNAL_EVENT", "correlationKeyTemplate": "cl-hook"}},
 "onCompletionActions": [{"actionType": "API_CALL", "executeOnStatus": "ANY", "apiHttpMethod": "POST",
                          "target": "{{nothing}}"}]}$$) IS NOT NULL AS created;
SELECT allma_start_flow('cl_badhook', '{}', '{"executionId": "00000000-0000-4000-8000-0000000c1005"}');
SELECT pg_temp.parked('00000000-0000-4000-8000-0000000c1005') AS parked;
SELECT allma_cancel_execution('00000000-0000-4000-8000-0000000c1005');
SELECT x.status, a.step, a.status AS action, s.error->>'errorMessage' AS error
  FROM allma.executions x, pg_temp.actions(x.execution_id) a, allma.step_executions s
 WHERE x.execution_id = '00000000-0000-4000-8000-0000000c1005'
   AND s.execution_id = x.execution_id AND s.path_id < 0;
