-- Format papercuts met running real Allma flows: apiHttpMethod defaults to
-- GET; aggregationConfig fields on a PARALLEL_FORK_MANAGER step and a
-- single "=" in a condition are WARNINGs naming the step and the field;
-- templateContextMappings errors say which object they expect;
-- {{#with_json_path}} without "as |v|" is a clear error.

CREATE FUNCTION pg_temp.try(sql text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
	EXECUTE sql;
	RETURN 'ok';
EXCEPTION WHEN OTHERS THEN
	RETURN SQLSTATE || ': ' || SQLERRM;
END $$;

CREATE FUNCTION pg_temp.hint(sql text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
	msg text;
	hint text;
BEGIN
	EXECUTE sql;
	RETURN 'ok';
EXCEPTION WHEN OTHERS THEN
	GET STACKED DIAGNOSTICS msg = MESSAGE_TEXT, hint = PG_EXCEPTION_HINT;
	RETURN SQLSTATE || ': ' || msg || E'\nHINT: ' || hint;
END $$;

-- a one-step flow
CREATE FUNCTION pg_temp.one_step(id text, step jsonb) RETURNS jsonb LANGUAGE sql AS $$
	SELECT jsonb_build_object('id', id, 'startStepInstanceId', 's', 'steps', jsonb_build_object('s', step))
$$;

------------------------------------------------------------------------------
-- apiHttpMethod defaults to GET (as the README says); still checked when given
------------------------------------------------------------------------------
SELECT allma_validate_flow(pg_temp.one_step('pc_get', '{"stepType": "API_CALL",
	"apiUrlTemplate": {"template": "http://127.0.0.1:9/x"}}'));
SELECT allma_validate_flow(pg_temp.one_step('pc_poll', '{"stepType": "POLL_EXTERNAL_API",
	"apiCallDefinition": {"apiUrlTemplate": {"template": "http://127.0.0.1:9/x"}},
	"pollingConfig": {"intervalSeconds": 1, "maxAttempts": 2},
	"exitConditions": {"successCondition": "$.done"}}'));
SELECT pg_temp.try($$SELECT allma_validate_flow(pg_temp.one_step('pc_bad', '{"stepType": "API_CALL",
	"apiUrlTemplate": {"template": "http://127.0.0.1:9/x"}, "apiHttpMethod": "FETCH"}'))$$);
-- such a step runs (here up to the allow-list, which refuses loopback; that
-- it sends a GET is tested against the mock in t/041_compat_runtime.pl)
SELECT allma_create_flow(pg_temp.one_step('pc_get', '{"stepType": "API_CALL",
	"apiUrlTemplate": {"template": "http://127.0.0.1:9/x"}}'));
SELECT allma_start_flow('pc_get') AS e \gset
SELECT allma_wait(:'e');
SELECT error->>'errorName' AS error, error->>'errorMessage' AS message FROM allma.executions WHERE execution_id = :'e';

------------------------------------------------------------------------------
-- aggregationConfig's fields on the step: a WARNING each (they are ignored)
------------------------------------------------------------------------------
SELECT allma_validate_flow('{"id": "pc_fork", "startStepInstanceId": "fork", "steps": {
  "fork": {"stepType": "PARALLEL_FORK_MANAGER", "itemsPath": "$.items", "maxConcurrency": 5,
           "failOnBranchError": false,
           "parallelBranches": [{"branchId": "b", "stepInstanceId": "work"}]},
  "work": {"stepType": "NO_OP"}}}');
-- in aggregationConfig: no warning
SELECT allma_validate_flow('{"id": "pc_fork", "startStepInstanceId": "fork", "steps": {
  "fork": {"stepType": "PARALLEL_FORK_MANAGER", "itemsPath": "$.items", "aggregationConfig": {"maxConcurrency": 5},
           "parallelBranches": [{"branchId": "b", "stepInstanceId": "work"}]},
  "work": {"stepType": "NO_OP"}}}');

------------------------------------------------------------------------------
-- a single "=" in a condition: a WARNING (it is loose equality, as in Allma)
------------------------------------------------------------------------------
SELECT allma_validate_flow('{"id": "pc_cond", "startStepInstanceId": "s", "steps": {
  "s": {"stepType": "NO_OP", "transitions": [
         {"condition": "$.status = ''done''", "nextStepInstanceId": "t"},
         {"condition": "$.a == 1 && $.b = $.c", "nextStepInstanceId": "t"}]},
  "t": {"stepType": "NO_OP"}}}');
-- ==, ===, !=, <=, >= and "=" inside quotes or filters: no warning
SELECT allma_validate_flow('{"id": "pc_cond", "startStepInstanceId": "s", "steps": {
  "s": {"stepType": "NO_OP", "transitions": [
         {"condition": "$.a == 1 || $.b === 2 || $.c != 3 || $.d <= 4 || $.e >= 5 || $.f !== 6", "nextStepInstanceId": "t"},
         {"condition": "$.s == ''a=b'' && $.items[?(@.k==1)]", "nextStepInstanceId": "t"}]},
  "t": {"stepType": "NO_OP"}}}');
-- it still compares, like ==
SELECT allma_eval_condition('$.status = ''done''', '{"status": "done"}') AS eq,
	   allma_eval_condition('$.status = ''done''', '{"status": "open"}') AS ne;

------------------------------------------------------------------------------
-- templateContextMappings: the error says which object is expected
------------------------------------------------------------------------------
SELECT pg_temp.hint($$SELECT allma_validate_flow(pg_temp.one_step('pc_tcm', '{"stepType": "LLM_INVOCATION",
	"llmProvider": "OPENAI", "modelId": "m", "customConfig": {"prompt": "{{customer}}"},
	"templateContextMappings": {"customer": "$.order.customer"}}'))$$);
SELECT pg_temp.hint($$SELECT allma_validate_flow(pg_temp.one_step('pc_tcm', '{"stepType": "LLM_INVOCATION",
	"llmProvider": "OPENAI", "modelId": "m", "customConfig": {"prompt": "{{customer}}"},
	"templateContextMappings": [{"customer": "$.order.customer"}]}'))$$);
SELECT allma_validate_flow(pg_temp.one_step('pc_tcm', '{"stepType": "LLM_INVOCATION",
	"llmProvider": "OPENAI", "modelId": "m", "customConfig": {"prompt": "{{customer}}"},
	"templateContextMappings": {"customer": {"sourceJsonPath": "$.order.customer", "formatAs": "JSON"}}}'));

------------------------------------------------------------------------------
-- {{#with_json_path}} needs "as |v|": a clear error, at definition time too
------------------------------------------------------------------------------
SELECT pg_temp.try($$SELECT allma_render_template('{{#with_json_path "$.items[*].name"}}{{this}}{{/with_json_path}}',
	'{"items": [{"name": "a"}]}')$$);
SELECT allma_render_template('{{#with_json_path "$.items[*].name" as |names|}}{{#each names}}{{this}};{{/each}}{{/with_json_path}}',
	'{"items": [{"name": "a"}, {"name": "b"}]}');
SELECT pg_temp.try($$SELECT allma_validate_flow(pg_temp.one_step('pc_wjp', '{"stepType": "EMAIL",
	"from": "a@example.test", "to": "b@example.test", "subject": "s",
	"body": "{{#with_json_path \"$.x\"}}{{this}}{{/with_json_path}}"}'))$$);

-- clean up
DELETE FROM allma.step_executions WHERE execution_id IN
	(SELECT execution_id FROM allma.executions WHERE flow_id LIKE 'pc\_%');
DELETE FROM allma.executions WHERE flow_id LIKE 'pc\_%';
DELETE FROM allma.flows WHERE flow_id LIKE 'pc\_%';
