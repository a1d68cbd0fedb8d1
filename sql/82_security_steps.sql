-- What steps may do: SQL steps cannot leave their starter's role; module
-- bindings, MCP connections, prompts and secrets need grants at run time;
-- data cannot smuggle secret references into headers.  (The superuser
-- guard of SQL steps, and what reaches a server, are tested against the
-- mock in t/080_security_steps.pl; everything here fails before a request
-- would be sent.)

CREATE ROLE regress_allma_steps_bob;
CREATE ROLE regress_allma_steps_admin;
GRANT allma_user TO regress_allma_steps_bob;
GRANT allma_admin TO regress_allma_steps_admin;

CREATE FUNCTION pg_temp.try(sql text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
	EXECUTE sql;
	RETURN 'ok';
EXCEPTION WHEN OTHERS THEN
	RETURN SQLSTATE || ': ' || SQLERRM;
END $$;

CREATE FUNCTION pg_temp.outcome(e uuid,
	OUT status text, OUT error_name text, OUT sqlstate text, OUT error_message text)
LANGUAGE sql AS $$
	SELECT status, error->>'errorName', error->'errorDetails'->>'sqlstate', error->>'errorMessage'
	  FROM allma.executions WHERE execution_id = e
$$;

-- a one-step flow
CREATE FUNCTION pg_temp.one_step(id text, step jsonb) RETURNS jsonb LANGUAGE sql AS $$
	SELECT jsonb_build_object('id', id, 'startStepInstanceId', 's', 'steps', jsonb_build_object('s', step))
$$;

------------------------------------------------------------------------------
-- Role escapes from a SQL step (the step runs as bob, in a
-- security-restricted operation)
------------------------------------------------------------------------------
SET ROLE regress_allma_steps_bob;
CREATE TEMP TABLE escapes (name text, stmt text, params jsonb);
INSERT INTO escapes VALUES
	('set_role', 'SET ROLE NONE', '[]'),
	('set_role_member', 'SET ROLE allma_user', '[]'),
	('reset_role', 'RESET ROLE', '[]'),
	('session_authorization', 'SET SESSION AUTHORIZATION DEFAULT', '[]'),
	('set_local_role', 'SET LOCAL role TO DEFAULT', '[]'),
	('set_config_role', 'SELECT set_config(''role'', $1, false)', '["$.superuser"]'),
	('set_config_session', 'SELECT set_config(''session_authorization'', $1, true)', '["$.superuser"]'),
	('do_set_role', 'DO $$BEGIN EXECUTE ''SET ROLE allma_user''; END$$', '[]'),
	('alter_role', 'ALTER ROLE regress_allma_steps_bob SUPERUSER', '[]');
SELECT allma_create_flow(pg_temp.one_step('sec_escape_' || name, jsonb_build_object(
	'stepType', 'DATA_SAVE', 'moduleIdentifier', 'system/sql-execute',
	'customConfig', jsonb_build_object('sql', stmt, 'parameters', params))))
  FROM escapes ORDER BY name;
SELECT count(allma_start_flow('sec_escape_' || name, jsonb_build_object('superuser', session_user))) AS started
  FROM escapes;
RESET ROLE;
SELECT e.name, o.status, o.sqlstate, o.error_message
  FROM (SELECT name, allma_wait(execution_id) AS waited, execution_id
		  FROM escapes JOIN allma.executions ON flow_id = 'sec_escape_' || name) e,
	   pg_temp.outcome(e.execution_id) o
 ORDER BY e.name;
SELECT rolsuper FROM pg_roles WHERE rolname = 'regress_allma_steps_bob';
SET ROLE regress_allma_steps_bob;
DROP TABLE escapes;
RESET ROLE;
-- and the step really ran as bob
SET ROLE regress_allma_steps_bob;
SELECT allma_create_flow(pg_temp.one_step('sec_whoami', '{"stepType": "DATA_LOAD",
	"moduleIdentifier": "system/sql-query", "customConfig": {"sql": "SELECT current_user AS who"}}'));
SELECT allma_start_flow('sec_whoami') AS e \gset
RESET ROLE;
SELECT allma_wait(:'e');
SELECT output->'steps_output'->'s'->'rows' FROM allma.executions WHERE execution_id = :'e';

------------------------------------------------------------------------------
-- Module bindings and MCP connections need USAGE
------------------------------------------------------------------------------
CREATE FUNCTION sec_echo(input jsonb) RETURNS jsonb LANGUAGE sql AS $$ SELECT input $$;
SET ROLE regress_allma_steps_admin;
SELECT allma_bind_module('sec/echo', 'sec_echo(jsonb)');
SELECT allma_create_mcp_connection('sec_mcp', 'http://127.0.0.1:9/mcp');
SELECT pattern, owner, usage_grantees FROM allma.module_bindings WHERE pattern = 'sec/echo';
SELECT id, owner, usage_grantees FROM allma.mcp_connections WHERE id = 'sec_mcp';
RESET ROLE;
SET ROLE regress_allma_steps_bob;
SELECT pg_temp.try($$SELECT allma_grant_module_binding('sec/echo', 'regress_allma_steps_bob')$$) AS grant_binding;
SELECT pg_temp.try($$SELECT allma_bind_module('sec/echo', 'sec_echo(jsonb)')$$) AS rebind;
SELECT pg_temp.try($$UPDATE allma.module_bindings SET usage_grantees = '{regress_allma_steps_bob}'$$) AS update_bindings;
SELECT allma_create_flow(pg_temp.one_step('sec_binding', '{"stepType": "CUSTOM_LOGIC", "moduleIdentifier": "sec/echo"}'));
SELECT allma_create_flow(pg_temp.one_step('sec_mcp', '{"stepType": "MCP_CALL", "mcpConnectionId": "sec_mcp", "toolName": "echo"}'));
SELECT allma_start_flow('sec_binding') AS e_binding \gset
SELECT allma_start_flow('sec_mcp') AS e_mcp \gset
RESET ROLE;
SELECT allma_wait(:'e_binding'), allma_wait(:'e_mcp');
SELECT * FROM pg_temp.outcome(:'e_binding');
SELECT * FROM pg_temp.outcome(:'e_mcp');
SET ROLE regress_allma_steps_admin;
SELECT allma_grant_module_binding('sec/echo', 'regress_allma_steps_bob');
SELECT allma_grant_mcp_connection('sec_mcp', 'regress_allma_steps_bob');
RESET ROLE;
SET ROLE regress_allma_steps_bob;
SELECT allma_start_flow('sec_binding') AS e_binding \gset
SELECT allma_start_flow('sec_mcp') AS e_mcp \gset
RESET ROLE;
SELECT allma_wait(:'e_binding'), allma_wait(:'e_mcp');
SELECT * FROM pg_temp.outcome(:'e_binding');
-- with USAGE the request is built and goes out: here the address guard refuses it
SELECT status, error_name, error_message ~ 'refused' AS refused_at_send FROM pg_temp.outcome(:'e_mcp');

------------------------------------------------------------------------------
-- Secrets: the starter and the flow version's creator both need a grant;
-- allowed hosts
------------------------------------------------------------------------------
SELECT allma_set_secret('SEC_KEY', 'sec-key-value-1234');
SET ROLE regress_allma_steps_bob;
SELECT allma_create_flow(pg_temp.one_step('sec_header', '{"stepType": "API_CALL",
	"apiHttpMethod": "GET", "apiUrlTemplate": {"template": "http://127.0.0.1:9/hook"}, "apiStaticHeaders": {"Authorization": "Bearer {{secrets.SEC_KEY}}"}}'));
SELECT allma_create_flow(pg_temp.one_step('sec_llm', '{"stepType": "LLM_INVOCATION", "llmProvider": "OPENAI",
	"modelId": "m", "customConfig": {"prompt": "hi", "apiKeySecret": "SEC_KEY", "baseUrl": "http://127.0.0.1:9/v1"}}'));
SELECT allma_start_flow('sec_header') AS e_header \gset
SELECT allma_start_flow('sec_llm') AS e_llm \gset
RESET ROLE;
SELECT allma_wait(:'e_header'), allma_wait(:'e_llm');
SELECT * FROM pg_temp.outcome(:'e_header');
SELECT * FROM pg_temp.outcome(:'e_llm');

-- bob, granted, starts a superuser's flow: fine; the superuser starts bob's
-- flow after bob lost his grant: the creator's grant is missing
SELECT allma_create_flow(pg_temp.one_step('sec_header_root', '{"stepType": "API_CALL",
	"apiHttpMethod": "GET", "apiUrlTemplate": {"template": "http://127.0.0.1:9/hook"}, "apiStaticHeaders": {"Authorization": "Bearer {{secrets.SEC_KEY}}"}}'));
SELECT allma_grant_flow('sec_header_root', 'regress_allma_steps_bob', 'START');
SET ROLE regress_allma_steps_admin;
SELECT allma_grant_secret('SEC_KEY', 'regress_allma_steps_bob');
RESET ROLE;
SET ROLE regress_allma_steps_bob;
SELECT name, usage_grantees, allowed_hosts FROM allma.secret_info;
SELECT allma_start_flow('sec_header_root') AS e_root_flow \gset
RESET ROLE;
SELECT allma_wait(:'e_root_flow');
SELECT status, error_name, CASE WHEN error_message ~ 'refused' THEN 'refused' ELSE error_message END AS at_send FROM pg_temp.outcome(:'e_root_flow');
SET ROLE regress_allma_steps_admin;
SELECT allma_revoke_secret('SEC_KEY', 'regress_allma_steps_bob');
RESET ROLE;
SELECT allma_grant_flow('sec_header', 'regress_allma_steps_admin', 'START');
SELECT allma_start_flow('sec_header') AS e_by_root \gset
SELECT allma_wait(:'e_by_root');
SELECT * FROM pg_temp.outcome(:'e_by_root');

-- allowed hosts: the host of the request must be one of them
SELECT allma_set_secret_allowed_hosts('SEC_KEY', ARRAY['API.example.com', '*.example.org']);
SELECT name, allowed_hosts FROM allma.secret_info WHERE name = 'SEC_KEY';
SELECT allma_start_flow('sec_header_root') AS e \gset
SELECT allma_wait(:'e');
SELECT * FROM pg_temp.outcome(:'e');
SELECT pg_temp.try(format($$SELECT allma_check_secret_use('SEC_KEY', current_user::regrole, current_user::regrole, %L)$$, u)) AS check,
	   u AS url
  FROM unnest(ARRAY['https://api.example.com/v1', 'https://API.EXAMPLE.COM:8443/x', 'https://api.example.com.evil.net/',
					'https://x.example.org/', 'https://a.b.example.org/', 'https://example.org/',
					'https://evil-example.org/', 'not a url']) AS u;
SELECT pg_temp.try(format($$SELECT allma_set_secret_allowed_hosts('SEC_KEY', ARRAY[%L])$$, h)) AS bad_host, h
  FROM unnest(ARRAY['', '*', '*.', 'a..b', 'host:443/x', 'https://api.example.com', '*.::1', 'a b']) AS h;
SELECT pg_temp.try($$SELECT allma_set_secret_allowed_hosts('SEC_NONE', NULL)$$) AS unknown_secret;
SELECT allma_set_secret_allowed_hosts('SEC_KEY', NULL);
SELECT pg_temp.try($$SELECT allma_check_secret_use('SEC_KEY', 'regress_allma_steps_bob', current_user::regrole)$$) AS starter_without_grant;
SELECT pg_temp.try($$SELECT allma_check_secret_use('SEC_KEY', current_user::regrole, 'regress_allma_steps_bob')$$) AS creator_without_grant;
-- a secret that does not exist looks like one without a grant, but to superusers
SELECT pg_temp.try($$SELECT allma_check_secret_use('SEC_NONE', 'regress_allma_steps_bob', current_user::regrole)$$) AS unknown_for_bob;
SELECT pg_temp.try($$SELECT allma_check_secret_use('SEC_NONE', current_user::regrole, current_user::regrole)$$) AS unknown_for_superuser;

------------------------------------------------------------------------------
-- Data cannot make secret references: an input value, a mapped context
-- value; a reference the definition spells wrong
------------------------------------------------------------------------------
SELECT allma_create_flow(pg_temp.one_step('sec_inject_input', '{"stepType": "API_CALL",
	"apiHttpMethod": "GET", "apiUrlTemplate": {"template": "http://127.0.0.1:9/hook"}, "apiStaticHeaders": {"X-Trace": "trace {{trace}}"}}'));
SELECT allma_create_flow('{"id": "sec_inject_context", "startStepInstanceId": "map", "steps": {
	"map": {"stepType": "NO_OP", "inputMappings": {"trace": "$.trace"}, "outputMappings": {"$.saved.trace": "$.trace"}, "defaultNextStepInstanceId": "call"},
	"call": {"stepType": "API_CALL", "apiHttpMethod": "GET", "apiUrlTemplate": {"template": "http://127.0.0.1:9/hook"},
			 "apiHeadersTemplate": {"X-Trace": "$.saved.trace"}}}}');
SELECT allma_create_flow(pg_temp.one_step('sec_bad_ref', '{"stepType": "API_CALL",
	"apiHttpMethod": "GET", "apiUrlTemplate": {"template": "http://127.0.0.1:9/hook"}, "apiStaticHeaders": {"X-Key": "{{secrets.SEC-KEY!}}"}}'));
SELECT allma_start_flow('sec_inject_input', jsonb_build_object('trace', E'\u0001secret:SEC_KEY\u0001')) AS e_input \gset
SELECT allma_start_flow('sec_inject_context', jsonb_build_object('trace', E'x\u0001secret:SEC_KEY\u0001')) AS e_context \gset
SELECT allma_start_flow('sec_bad_ref') AS e_bad_ref \gset
SELECT allma_wait(:'e_input'), allma_wait(:'e_context'), allma_wait(:'e_bad_ref');
SELECT * FROM pg_temp.outcome(:'e_input');
SELECT * FROM pg_temp.outcome(:'e_context');
SELECT * FROM pg_temp.outcome(:'e_bad_ref');

------------------------------------------------------------------------------
-- Prompts: the flow version's creator needs USAGE
------------------------------------------------------------------------------
SELECT allma_create_prompt('sec_root_prompt', 'secret instructions');
SET ROLE regress_allma_steps_admin;
SELECT allma_grant_secret('SEC_KEY', 'regress_allma_steps_bob');
RESET ROLE;
SET ROLE regress_allma_steps_bob;
SELECT allma_create_flow(pg_temp.one_step('sec_prompt_use', '{"stepType": "LLM_INVOCATION", "llmProvider": "OPENAI",
	"modelId": "m", "promptTemplateId": "sec_root_prompt",
	"customConfig": {"apiKeySecret": "SEC_KEY", "baseUrl": "http://127.0.0.1:9/v1"}}'));
SELECT allma_start_flow('sec_prompt_use') AS e \gset
RESET ROLE;
SELECT allma_wait(:'e');
SELECT * FROM pg_temp.outcome(:'e');

-- clean up
DELETE FROM allma.step_executions WHERE execution_id IN
	(SELECT execution_id FROM allma.executions WHERE flow_id LIKE 'sec\_%');
DELETE FROM allma.executions WHERE flow_id LIKE 'sec\_%';
DELETE FROM allma.flows WHERE flow_id LIKE 'sec\_%';
DELETE FROM allma.prompts WHERE prompt_id LIKE 'sec\_%';
SELECT allma_unbind_module('sec/echo'), allma_drop_mcp_connection('sec_mcp'), allma_delete_secret('SEC_KEY');
DROP FUNCTION sec_echo(jsonb);
DROP ROLE regress_allma_steps_bob, regress_allma_steps_admin;
