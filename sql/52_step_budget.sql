-- allma.max_steps_per_execution: executions.step_count counts step
-- attempts, and an execution that would run more than the budget fails with
-- StepBudgetExceeded -- an endless loop (maxTransitions 0) ends.
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS allma;
RESET client_min_messages;

SHOW allma.max_steps_per_execution;

-- step attempts are counted: three steps, one of them tried twice
CREATE SEQUENCE public.allma_test_once_seq;
CREATE FUNCTION public.allma_test_once(input jsonb) RETURNS jsonb LANGUAGE plpgsql AS $$
BEGIN
	IF nextval('public.allma_test_once_seq') = 1 THEN
		RAISE EXCEPTION 'first attempt fails' USING ERRCODE = 'LM201';
	END IF;
	RETURN '{}';
END $$;
SELECT allma_bind_module('test/once', 'public.allma_test_once(jsonb)');
SELECT allma_create_flow($$
{"id": "counted", "startStepInstanceId": "a",
 "steps": {
  "a": {"stepType": "NO_OP", "defaultNextStepInstanceId": "b"},
  "b": {"stepType": "CUSTOM_LOGIC", "moduleIdentifier": "test/once",
        "onError": {"retries": {"count": 1, "intervalSeconds": 1}},
        "defaultNextStepInstanceId": "c"},
  "c": {"stepType": "NO_OP"}}}$$);
SELECT allma_start_flow('counted') AS c \gset
SELECT allma_wait(:'c');
SELECT status, step_count, (SELECT count(*) FROM allma.step_executions s WHERE s.execution_id = x.execution_id) AS attempts
  FROM allma.executions x WHERE execution_id = :'c';

-- an endless loop ends after the budget (10000 by default), and no catch
-- rule runs more steps
SELECT allma_create_flow($$
{"id": "endless", "startStepInstanceId": "spin", "enableExecutionLogs": false,
 "steps": {
  "spin": {"stepType": "NO_OP", "defaultNextStepInstanceId": "spin", "defaultNextMaxTransitions": 0,
           "onError": {"catch": [{"errorEquals": ["States.ALL"], "nextStepInstanceId": "handler"}]}},
  "handler": {"stepType": "NO_OP"}}}$$);
SELECT allma_start_flow('endless') AS e \gset
SELECT allma_wait(:'e', '10 min');
SELECT status, step_count, error->>'errorName' AS name, error->>'errorMessage' AS message,
       (error->'errorDetails') - 'failedStepInstanceId'::text AS details,
       error->'errorDetails'->>'failedStepInstanceId' AS step
  FROM allma.executions WHERE execution_id = :'e';
SELECT count(*) AS attempts, count(*) FILTER (WHERE step_instance_id = 'handler') AS handler_runs
  FROM allma.step_executions WHERE execution_id = :'e';
SELECT count(*) AS paths_left FROM allma.execution_paths WHERE execution_id = :'e';

-- nobody but the workers (and the API) changes step_count
CREATE ROLE regress_allma_budget IN ROLE allma_user;
SET ROLE regress_allma_budget;
UPDATE allma.executions SET step_count = 0;
RESET ROLE;
DROP ROLE regress_allma_budget;

SELECT allma_unbind_module('test/once');
DROP FUNCTION public.allma_test_once(jsonb);
DROP SEQUENCE public.allma_test_once_seq;
