-- Module bindings: CUSTOM_LOGIC, CUSTOM_LAMBDA_INVOKE and non-system
-- DATA_LOAD modules run SQL functions (jsonb) RETURNS jsonb bound with
-- allma_bind_module.
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS allma;
RESET client_min_messages;

CREATE FUNCTION bindings_outcome(e uuid,
	OUT status text, OUT steps_output jsonb, OUT error_name text, OUT sqlstate text,
	OUT error_message text)
LANGUAGE sql AS $$
	SELECT status, output->'steps_output', error->>'errorName',
		   error->'errorDetails'->>'sqlstate', error->>'errorMessage'
	  FROM allma.executions WHERE execution_id = e
$$;

-- handlers: each says who it is and echoes what it was given
CREATE FUNCTION bindings_exact(input jsonb) RETURNS jsonb LANGUAGE sql
AS $$ SELECT jsonb_build_object('handler', 'exact', 'x', input->'x') $$;
CREATE FUNCTION bindings_prefix(input jsonb) RETURNS jsonb LANGUAGE sql
AS $$ SELECT jsonb_build_object('handler', 'prefix', 'x', input->'x') $$;
CREATE FUNCTION bindings_longer(input jsonb) RETURNS jsonb LANGUAGE sql
AS $$ SELECT jsonb_build_object('handler', 'longer', 'x', input->'x') $$;
CREATE FUNCTION bindings_lambda(input jsonb) RETURNS jsonb LANGUAGE sql
AS $$ SELECT jsonb_build_object('handler', 'lambda', 'size', input->'size') $$;
CREATE FUNCTION bindings_null(input jsonb) RETURNS jsonb LANGUAGE sql
AS $$ SELECT NULL::jsonb $$;
CREATE FUNCTION bindings_whoami(input jsonb) RETURNS jsonb LANGUAGE sql
AS $$ SELECT jsonb_build_object('user', current_user) $$;
CREATE TABLE bindings_audit (note text);
CREATE FUNCTION bindings_boom(input jsonb) RETURNS jsonb LANGUAGE plpgsql AS $$
BEGIN
	INSERT INTO bindings_audit VALUES ('written before the error');
	RAISE EXCEPTION 'handler failed for %', input->>'x';
END
$$;
CREATE FUNCTION bindings_content(input jsonb) RETURNS jsonb LANGUAGE plpgsql AS $$
BEGIN
	RAISE EXCEPTION 'cannot handle %', input->>'x' USING ERRCODE = 'LM203';
END
$$;

------------------------------------------------------------------------------
-- allma_bind_module: validation, upsert, privileges
------------------------------------------------------------------------------
-- errors as "SQLSTATE: message (detail) [hint]" (VERBOSITY verbose would
-- print C source line numbers)
CREATE FUNCTION bindings_try(q text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
	st text;
	msg text;
	det text;
	hint text;
BEGIN
	EXECUTE q;
	RETURN 'ok';
EXCEPTION WHEN OTHERS THEN
	GET STACKED DIAGNOSTICS st = RETURNED_SQLSTATE, msg = MESSAGE_TEXT,
		det = PG_EXCEPTION_DETAIL, hint = PG_EXCEPTION_HINT;
	RETURN st || ': ' || msg || coalesce(nullif(' (' || det || ')', ' ()'), '')
		|| coalesce(nullif(' [' || hint || ']', ' []'), '');
END $$;
SELECT bindings_try($q$SELECT allma_bind_module('acme/enrich', 'bindings_exact(jsonb)')$q$);
SELECT bindings_try($q$SELECT allma_bind_module('acme/%', 'bindings_exact(jsonb)')$q$);
-- binding a pattern again replaces its handler
SELECT bindings_try($q$SELECT allma_bind_module('acme/%', 'bindings_prefix(jsonb)')$q$);
SELECT bindings_try($q$SELECT allma_bind_module('acme/enrich-%', 'bindings_longer(jsonb)')$q$);
SELECT bindings_try($q$SELECT allma_bind_module('arn:aws:lambda:%:function:resize', 'bindings_lambda(jsonb)')$q$);
SELECT bindings_try($q$SELECT allma_bind_module('acme/null', 'bindings_null(jsonb)')$q$);
SELECT bindings_try($q$SELECT allma_bind_module('acme/whoami', 'bindings_whoami(jsonb)')$q$);
SELECT bindings_try($q$SELECT allma_bind_module('acme/boom', 'bindings_boom(jsonb)')$q$);
SELECT bindings_try($q$SELECT allma_bind_module('acme/content', 'bindings_content(jsonb)')$q$);
SELECT pattern, handler FROM allma.module_bindings ORDER BY pattern;

-- a handler takes exactly one jsonb and returns jsonb
CREATE FUNCTION bindings_bad_arg(input text) RETURNS jsonb LANGUAGE sql AS $$ SELECT NULL::jsonb $$;
CREATE FUNCTION bindings_bad_ret(input jsonb) RETURNS text LANGUAGE sql AS $$ SELECT 'x' $$;
CREATE FUNCTION bindings_bad_two(input jsonb, n int) RETURNS jsonb LANGUAGE sql AS $$ SELECT input $$;
CREATE FUNCTION bindings_bad_set(input jsonb) RETURNS SETOF jsonb LANGUAGE sql AS $$ SELECT input $$;
CREATE PROCEDURE bindings_bad_proc(input jsonb) LANGUAGE sql AS $$ SELECT 1 $$;
SELECT bindings_try($q$SELECT allma_bind_module('acme/bad', 'bindings_bad_arg(text)')$q$);
SELECT bindings_try($q$SELECT allma_bind_module('acme/bad', 'bindings_bad_ret(jsonb)')$q$);
SELECT bindings_try($q$SELECT allma_bind_module('acme/bad', 'bindings_bad_two(jsonb, integer)')$q$);
SELECT bindings_try($q$SELECT allma_bind_module('acme/bad', 'bindings_bad_set(jsonb)')$q$);
SELECT bindings_try($q$SELECT allma_bind_module('acme/bad', 'bindings_bad_proc(jsonb)')$q$);
SELECT bindings_try($q$SELECT allma_bind_module('acme/bad', 0::regprocedure)$q$);
SELECT bindings_try($q$SELECT allma_bind_module('', 'bindings_exact(jsonb)')$q$);
SELECT count(*) FROM allma.module_bindings WHERE pattern IN ('acme/bad', '');

-- only privileged roles bind modules
CREATE ROLE regress_allma_binder;
SELECT has_function_privilege('public', 'allma_bind_module(text, regprocedure)', 'EXECUTE') AS public_may_bind,
	   has_function_privilege('public', 'allma_unbind_module(text)', 'EXECUTE') AS public_may_unbind;
SET ROLE regress_allma_binder;
SELECT bindings_try($q$SELECT allma_bind_module('acme/enrich', 'bindings_prefix(jsonb)')$q$);
SELECT bindings_try($q$SELECT allma_unbind_module('acme/enrich')$q$);
SELECT bindings_try($q$SELECT allma_bind_module_http('acme/x', 'https://svc.example/x')$q$);
RESET ROLE;

-- HTTP bindings: http(s) URLs only, headers an object; binding a function
-- to the same pattern replaces the endpoint (and the other way round)
SELECT has_function_privilege('public', 'allma_bind_module_http(text, text, jsonb)', 'EXECUTE') AS public_may_bind_http;
SELECT bindings_try($q$SELECT allma_bind_module_http('acme/http', 'ftp://svc.example/x')$q$);
SELECT bindings_try($q$SELECT allma_bind_module_http('acme/http', 'https://svc.example/x', '[1]')$q$);
SELECT bindings_try($q$SELECT allma_bind_module_http('acme/http', 'https://svc.example/x', '{"X-N": 1}')$q$);
SELECT bindings_try($q$SELECT allma_bind_module_http('acme/http', 'https://svc.example/x', '{"X-Key": "{{secrets.K}}"}')$q$);
SELECT pattern, handler, url, headers FROM allma.module_bindings WHERE pattern = 'acme/http';
SELECT bindings_try($q$SELECT allma_bind_module('acme/http', 'bindings_exact(jsonb)')$q$);
SELECT pattern, handler, url, headers FROM allma.module_bindings WHERE pattern = 'acme/http';
SELECT bindings_try($q$SELECT allma_bind_module_http('acme/http', 'http://svc.example/y')$q$);
SELECT pattern, handler, url, headers FROM allma.module_bindings WHERE pattern = 'acme/http';
SELECT allma_unbind_module('acme/http');

------------------------------------------------------------------------------
-- Dispatch: exact match first, then the longest LIKE pattern
------------------------------------------------------------------------------
SELECT allma_create_flow('{"id": "bindings_dispatch", "startStepInstanceId": "a", "steps": {
	"a": {"stepType": "CUSTOM_LOGIC", "moduleIdentifier": "acme/enrich",
		  "customConfig": {"x": 1}, "defaultNextStepInstanceId": "b"},
	"b": {"stepType": "CUSTOM_LOGIC", "moduleIdentifier": "acme/enrich-more",
		  "customConfig": {"x": 2}, "defaultNextStepInstanceId": "c"},
	"c": {"stepType": "CUSTOM_LOGIC", "moduleIdentifier": "acme/other",
		  "inputMappings": {"x": "$.fromInput"}, "defaultNextStepInstanceId": "d"},
	"d": {"stepType": "DATA_LOAD", "moduleIdentifier": "acme/loader",
		  "customConfig": {"x": 4}, "defaultNextStepInstanceId": "e"},
	"e": {"stepType": "CUSTOM_LOGIC", "moduleIdentifier": "acme/null"}}}');
SELECT allma_start_flow('bindings_dispatch', '{"fromInput": "three"}') AS e \gset
SELECT allma_wait(:'e');
SELECT status, error_name, jsonb_pretty(steps_output) FROM bindings_outcome(:'e');

-- CUSTOM_LAMBDA_INVOKE: the function ARN is looked up
SELECT allma_create_flow('{"id": "bindings_lambda", "startStepInstanceId": "l", "steps": {
	"l": {"stepType": "CUSTOM_LAMBDA_INVOKE",
		  "lambdaFunctionArnTemplate": "arn:aws:lambda:eu-west-1:123456789012:function:resize",
		  "payloadTemplate": {"size": "$.size"}}}}');
SELECT allma_start_flow('bindings_lambda', '{"size": 640}') AS e \gset
SELECT allma_wait(:'e');
SELECT status, error_name, steps_output->'l' FROM bindings_outcome(:'e');
SELECT allma_create_flow('{"id": "bindings_lambda_crop", "startStepInstanceId": "l", "steps": {
	"l": {"stepType": "CUSTOM_LAMBDA_INVOKE",
		  "lambdaFunctionArnTemplate": "arn:aws:lambda:eu-west-1:123456789012:function:crop",
		  "payloadTemplate": {"size": "$.size"}}}}');
SELECT allma_start_flow('bindings_lambda_crop', '{"size": 640}') AS e \gset
SELECT allma_wait(:'e');
SELECT status, error_name, sqlstate, error_message ~ 'function:crop' AS names_function FROM bindings_outcome(:'e');

-- a module nobody bound fails the step
SELECT allma_create_flow('{"id": "bindings_unbound", "startStepInstanceId": "a", "steps": {
	"a": {"stepType": "CUSTOM_LOGIC", "moduleIdentifier": "nobody/bound-this"}}}');
SELECT allma_start_flow('bindings_unbound') AS e \gset
SELECT allma_wait(:'e');
SELECT status, error_name, sqlstate, error_message ~ 'nobody/bound-this' AS names_module FROM bindings_outcome(:'e');

-- unbinding takes effect for the next step
SELECT allma_unbind_module('acme/enrich');
SELECT allma_unbind_module('acme/enrich');
SELECT allma_start_flow('bindings_dispatch', '{"fromInput": "three"}') AS e \gset
SELECT allma_wait(:'e');
SELECT status, steps_output->'a' AS a FROM bindings_outcome(:'e');
SELECT allma_bind_module('acme/enrich', 'bindings_exact(jsonb)');

------------------------------------------------------------------------------
-- Handler errors become step errors; the handler's writes are rolled back
------------------------------------------------------------------------------
SELECT allma_create_flow('{"id": "bindings_boom", "startStepInstanceId": "a", "steps": {
	"a": {"stepType": "CUSTOM_LOGIC", "moduleIdentifier": "acme/boom", "customConfig": {"x": "item-7"}}}}');
SELECT allma_start_flow('bindings_boom') AS e \gset
SELECT allma_wait(:'e');
SELECT status, error_name, sqlstate, error_message FROM bindings_outcome(:'e');
SELECT status, error->>'errorName' AS error_name FROM allma.step_executions WHERE execution_id = :'e';
SELECT count(*) AS audit_rows FROM bindings_audit;

-- a handler picks the Allma error with an LM2xx SQLSTATE
SELECT allma_create_flow('{"id": "bindings_content", "startStepInstanceId": "a", "steps": {
	"a": {"stepType": "CUSTOM_LOGIC", "moduleIdentifier": "acme/content", "customConfig": {"x": "item-8"}}}}');
SELECT allma_start_flow('bindings_content') AS e \gset
SELECT allma_wait(:'e');
SELECT status, error_name, sqlstate, error_message FROM bindings_outcome(:'e');

------------------------------------------------------------------------------
-- Handlers run as the role that started the execution, which needs EXECUTE
------------------------------------------------------------------------------
CREATE ROLE regress_allma_runner;
-- (since 1.1 the starter needs allma_user, START on the flow and USAGE on
-- the binding: docs/security.md)
GRANT allma_user TO regress_allma_runner;
SELECT allma_create_flow('{"id": "bindings_whoami", "startStepInstanceId": "a", "steps": {
	"a": {"stepType": "CUSTOM_LOGIC", "moduleIdentifier": "acme/whoami"}}}');
SELECT allma_grant_flow('bindings_whoami', 'regress_allma_runner', 'START');
SELECT allma_grant_module_binding('acme/whoami', 'regress_allma_runner');
SET ROLE regress_allma_runner;
SELECT allma_start_flow('bindings_whoami') AS e \gset
RESET ROLE;
SELECT allma_wait(:'e');
SELECT * FROM bindings_outcome(:'e');
REVOKE EXECUTE ON FUNCTION bindings_whoami(jsonb) FROM PUBLIC;
SET ROLE regress_allma_runner;
SELECT allma_start_flow('bindings_whoami') AS e \gset
RESET ROLE;
SELECT allma_wait(:'e');
SELECT status, error_name, sqlstate, error_message FROM bindings_outcome(:'e');
GRANT EXECUTE ON FUNCTION bindings_whoami(jsonb) TO regress_allma_runner;
SET ROLE regress_allma_runner;
SELECT allma_start_flow('bindings_whoami') AS e \gset
RESET ROLE;
SELECT allma_wait(:'e');
SELECT status, steps_output FROM bindings_outcome(:'e');

-- a dropped handler: the binding dangles and the step fails
DROP FUNCTION bindings_null(jsonb);
SELECT allma_create_flow('{"id": "bindings_dropped", "startStepInstanceId": "a", "steps": {
	"a": {"stepType": "CUSTOM_LOGIC", "moduleIdentifier": "acme/null"}}}');
SELECT allma_start_flow('bindings_dropped') AS e \gset
SELECT allma_wait(:'e');
SELECT status, error_name, sqlstate, error_message ~ 'does not exist' AS says_missing FROM bindings_outcome(:'e');

-- clean up
DROP OWNED BY regress_allma_runner;
DROP ROLE regress_allma_runner;
DROP ROLE regress_allma_binder;
