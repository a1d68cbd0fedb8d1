-- onCompletionActions: their validation (errors name the action and the
-- field), and what LOG_ONLY, NOTIFY and unsupported types leave in the
-- history when an execution ends.  Webhooks (API_CALL) are tested against
-- the mock server in t/091_completion_webhooks.pl.

-- the definition of a flow with the given actions
CREATE FUNCTION pg_temp.flow(id text, actions jsonb, steps jsonb DEFAULT NULL) RETURNS jsonb
LANGUAGE sql AS $$
	SELECT jsonb_build_object('id', id, 'startStepInstanceId', 's',
		'steps', coalesce(steps, '{"s": {"stepType": "NO_OP"}}'),
		'onCompletionActions', actions)
$$;

-- validation
SELECT allma_validate_flow(pg_temp.flow('ca', '[{"actionType": "NOTIFY", "target": "Bad-Channel"}]'));
SELECT allma_validate_flow(pg_temp.flow('ca', '[{"actionType": "NOTIFY"}]'));
SELECT allma_validate_flow(pg_temp.flow('ca', '[{"actionType": "NOTIFY", "target": "1abc"}]'));
SELECT allma_validate_flow(pg_temp.flow('ca', '[{"actionType": "API_CALL", "target": "ftp://example.com/x", "apiHttpMethod": "POST"}]'));
SELECT allma_validate_flow(pg_temp.flow('ca', '[{"actionType": "API_CALL", "target": "http://127.0.0.1/x"}]'));
SELECT allma_validate_flow(pg_temp.flow('ca', '[{"actionType": "API_CALL", "target": "http://127.0.0.1/x", "apiHttpMethod": "POST", "signingSecret": ""}]'));
SELECT allma_validate_flow(pg_temp.flow('ca', '[{"actionType": "LOG_ONLY"}, {"actionType": "API_CALL", "target": "http://127.0.0.1/x", "apiHttpMethod": "POST", "retries": {"count": -1}}]'));
SELECT allma_validate_flow(pg_temp.flow('ca', '[{"actionType": "API_CALL", "target": "http://127.0.0.1/x", "apiHttpMethod": "POST", "retries": {"count": 2, "jitterStrategy": "SOME"}}]'));
SELECT allma_validate_flow(pg_temp.flow('ca', '[{"actionType": "EMAIL", "target": "x"}]'));
SELECT allma_validate_flow(pg_temp.flow('ca', '[{"actionType": "LOG_ONLY", "executeOnStatus": "SOMETIMES"}]'));
SELECT allma_validate_flow(pg_temp.flow('ca', '[{"actionType": "LOG_ONLY", "condition": "not a path"}]'));
SELECT allma_validate_flow(pg_temp.flow('ca', '[{"actionType": "LOG_ONLY", "payloadTemplate": {"a": "no dollar"}}]'));
-- valid: a templated target is checked when it is rendered
SELECT allma_validate_flow(pg_temp.flow('ca', '[{"actionType": "API_CALL", "target": "{{flow_variables.hook}}", "apiHttpMethod": "PUT", "signingSecret": "HOOK", "retries": {"count": 3, "intervalSeconds": 2}}, {"actionType": "NOTIFY", "target": "flow_done_2"}]'));

-- running: a flow that completes, and one that fails
SELECT allma_create_flow(pg_temp.flow('ca_ok', $$[
	{"actionType": "LOG_ONLY", "executeOnStatus": "ANY",
	 "payloadTemplate": {"who": "$.name", "st": "$.status", "nested.id": "$.flowExecutionId"}},
	{"actionType": "NOTIFY", "target": "regress_ca_done"},
	{"actionType": "LOG_ONLY", "executeOnStatus": "FAILED"},
	{"actionType": "LOG_ONLY", "condition": "$.name == 'nobody'"},
	{"actionType": "LOG_ONLY", "condition": "$.name == 'ada'"},
	{"actionType": "SQS_SEND", "target": "https://sqs.example.com/q"}
]$$)) IS NOT NULL AS created;
SELECT allma_create_flow(pg_temp.flow('ca_fail', $$[
	{"actionType": "LOG_ONLY", "executeOnStatus": "FAILED",
	 "payloadTemplate": {"error": "$.errorInfo.errorName", "st": "$.status"}},
	{"actionType": "LOG_ONLY"}
]$$, '{"s": {"stepType": "DATA_TRANSFORMATION", "moduleIdentifier": "system/no-such-module"}}')) IS NOT NULL AS created;

SELECT allma_start_flow('ca_ok', '{"name": "ada"}', '{"executionId": "00000000-0000-4000-8000-0000000ca001"}');
SELECT allma_wait('00000000-0000-4000-8000-0000000ca001', '60 s');
SELECT allma_start_flow('ca_fail', '{}', '{"executionId": "00000000-0000-4000-8000-0000000ca002"}');
SELECT allma_wait('00000000-0000-4000-8000-0000000ca002', '60 s');

-- the actions' rows: they are written in the transaction that ends the
-- execution, so they are there once allma_wait returns
SELECT right(execution_id::text, 4) AS e, path_id, step_instance_id, step_type, status,
	   output, error->>'errorMessage' AS error, details
  FROM allma.step_executions
 WHERE execution_id IN ('00000000-0000-4000-8000-0000000ca001', '00000000-0000-4000-8000-0000000ca002')
   AND path_id < 0
 ORDER BY 1, path_id DESC;
-- the outcome is the flow's, whatever the actions did
SELECT right(execution_id::text, 4) AS e, status FROM allma.executions
 WHERE execution_id IN ('00000000-0000-4000-8000-0000000ca001', '00000000-0000-4000-8000-0000000ca002')
 ORDER BY 1;
-- no path is left behind
SELECT count(*) FROM allma.execution_paths
 WHERE execution_id IN ('00000000-0000-4000-8000-0000000ca001', '00000000-0000-4000-8000-0000000ca002');
