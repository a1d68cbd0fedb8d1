-- allma_import: Allma export bundles (docs/from-allma.md).  Reports,
-- deploy parameters, overwrite, all or nothing, permissions, errors.
-- Roles are cluster-wide: every role made here is named regress_allma_imp_*
-- and dropped at the end.
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS allma;
RESET client_min_messages;

CREATE FUNCTION pg_temp.try(sql text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
	EXECUTE sql;
	RETURN 'ok';
EXCEPTION WHEN OTHERS THEN
	RETURN SQLSTATE || ': ' || SQLERRM;
END $$;

CREATE ROLE regress_allma_imp_alice;
CREATE ROLE regress_allma_imp_bob;
CREATE ROLE regress_allma_imp_outsider;
GRANT allma_user TO regress_allma_imp_alice, regress_allma_imp_bob;

-- the real bundle of five Optiroq flows, as Allma exported it
\set optiroq `cat test/fixtures/allma-example-flows/optiroq_allma_flows.json`

------------------------------------------------------------------------------
-- Import with parameters: what was stored, and what will not run as it is
------------------------------------------------------------------------------
SET ROLE regress_allma_imp_alice;
SET client_min_messages = error;	-- the validator's warnings on the flows
SELECT allma_import(:'optiroq', parameters => '{"stage": "test", "region": "eu-west-1"}') AS r \gset
RESET client_min_messages;
SELECT jsonb_pretty(jsonb_build_object('flows', :'r'::jsonb->'flows',
	'placeholdersReplaced', :'r'::jsonb->'placeholdersReplaced'));
-- {{accountId}} was not given, {{optiroqApiDomain}} is the customer's own
SELECT p->>'flowId' AS flow, p->>'field' AS field, p->>'placeholder' AS placeholder
  FROM jsonb_array_elements(:'r'::jsonb->'unresolvedPlaceholders') p ORDER BY 1, 2, 3;
-- the customers' Lambdas: nothing is bound to them yet
SELECT u->>'flowId' AS flow, u->>'stepId' AS step, u->>'module' AS module, u->>'reason' AS reason
  FROM jsonb_array_elements(:'r'::jsonb->'unboundModules') u ORDER BY 1, 2;
SELECT u->>'flowId' AS flow, u->>'stepId' AS step, u->>'stepType' AS type
  FROM jsonb_array_elements(:'r'::jsonb->'unsupportedSteps') u ORDER BY 1, 2;
-- the Liquid filter in a mapping, with the real reason
SELECT d->>'flowId' AS flow, d->>'stepId' AS step, d->>'field' AS field, d->>'path' AS path
  FROM jsonb_array_elements(:'r'::jsonb->'deadMappings') d ORDER BY 1, 2, 3;
SELECT DISTINCT d->>'reason' AS reason FROM jsonb_array_elements(:'r'::jsonb->'deadMappings') d
 WHERE d->>'path' LIKE '%default:%';
-- the stored flows: the importer owns them, published as in the bundle,
-- placeholders filled where parameters were given, runtime templates intact
SELECT flow_id, owner, latest_version, published_version FROM allma.flows ORDER BY 1;
SELECT definition->'flowVariables'->>'GenerateComparisonBoardLambdaArn' AS arn,
	   definition->'flowVariables'->>'OptiroqEntityGraphTable' AS table_name,
	   definition->'steps'->'load_approved_quotes'->'customConfig'->>'tableName' AS runtime_template
  FROM allma.flow_versions WHERE flow_id = 'optiroq-generate-and-email-comparison-board';
RESET ROLE;

------------------------------------------------------------------------------
-- The placeholder rule: bare names that are parameters, anywhere in strings;
-- runtime templates untouched; a single flow file; bindings the importer may
-- not use are reported
------------------------------------------------------------------------------
RESET ROLE;
CREATE FUNCTION imp_handler(jsonb) RETURNS jsonb LANGUAGE sql AS 'SELECT $1';
SELECT allma_bind_module('imp/admins-only', 'imp_handler(jsonb)');
SET ROLE regress_allma_imp_alice;
SELECT jsonb_pretty(allma_import('{"id": "imp_rule", "startStepInstanceId": "a",
	"flowVariables": {"Url": "https://{{ apiHost }}/v1/{{{stage}}}", "Later": "{{flow_variables.Url}}",
					  "Team": "{{team}}"},
	"steps": {"a": {"stepType": "CUSTOM_LOGIC", "moduleIdentifier": "imp/admins-only",
					"customConfig": {"table": "T-{{stage}}", "who": "{{steps_output.x.stage}}",
									 "each": "{{#each items}}{{this}}{{/each}}", "region": "{{region}}"},
					"defaultNextStepInstanceId": "b"},
			  "b": {"stepType": "CUSTOM_LAMBDA_INVOKE",
					"lambdaFunctionArnTemplate": "arn:aws:lambda:{{steps_output.a.region}}:1:function:f",
					"defaultNextStepInstanceId": "c"},
			  "c": {"stepType": "DATA_LOAD", "moduleIdentifier": "system/no-such-loader"}}}',
	parameters => '{"apiHost": "api.example.test", "stage": "prod"}') - 'flows');
SELECT definition->'flowVariables' AS flow_variables, definition->'steps'->'a'->'customConfig' AS custom_config
  FROM allma.flow_versions WHERE flow_id = 'imp_rule';

------------------------------------------------------------------------------
-- Overwrite: refused by default, naming what exists; all or nothing
------------------------------------------------------------------------------
SET ROLE regress_allma_imp_alice;
SELECT pg_temp.try($$SELECT allma_import('{"formatVersion": "1.0", "flows": [
	{"id": "imp_new", "version": 1, "startStepInstanceId": "a", "steps": {"a": {"stepType": "NO_OP"}}},
	{"id": "optiroq-initiate-follow-up", "version": 1, "startStepInstanceId": "a", "steps": {"a": {"stepType": "NO_OP"}}}],
	"promptTemplates": [{"id": "imp_p", "content": "hi"}]}')$$);
SELECT count(*) AS nothing_stored FROM allma.flows WHERE flow_id = 'imp_new';
-- a bundle whose second flow is invalid stores nothing either
SELECT pg_temp.try($$SELECT allma_import('{"flows": [
	{"id": "imp_a", "startStepInstanceId": "a", "steps": {"a": {"stepType": "NO_OP"}}},
	{"id": "imp_b", "startStepInstanceId": "zz", "steps": {"a": {"stepType": "NO_OP"}}}],
	"promptTemplates": [{"id": "imp_p", "content": "hi"}]}')$$);
SELECT (SELECT count(*) FROM allma.flows WHERE flow_id LIKE 'imp\_%') AS flows,
	   (SELECT count(*) FROM allma.prompts WHERE prompt_id = 'imp_p') AS prompts;
-- overwrite by the owner: the same definitions add no version; a changed one does
SET client_min_messages = error;
SELECT r->'flows' FROM allma_import(:'optiroq', true, '{"stage": "test", "region": "eu-west-1"}') r;
SELECT jsonb_path_query_array(allma_import(:'optiroq', true, '{"stage": "prod", "region": "eu-west-1"}'),
	'$.flows[*] ? (@.created == true).id') AS new_versions;
RESET client_min_messages;
SELECT flow_id, latest_version, published_version FROM allma.flows ORDER BY 1;
-- version numbers: the bundle's where they are free, else the next one
SELECT r->'flows' FROM allma_import('{"flows": [
	{"id": "imp_v", "version": 5, "isPublished": true, "startStepInstanceId": "a", "steps": {"a": {"stepType": "NO_OP"}}},
	{"id": "imp_v", "version": 2, "startStepInstanceId": "b", "steps": {"b": {"stepType": "NO_OP"}}}]}') r;
SELECT r->'flows' FROM allma_import('{"flows": [
	{"id": "imp_v", "version": 4, "startStepInstanceId": "c", "steps": {"c": {"stepType": "NO_OP"}}}]}', true) r;
SELECT version FROM allma.flow_versions WHERE flow_id = 'imp_v' ORDER BY 1;
RESET ROLE;

-- bob may not overwrite alice's flows
SET ROLE regress_allma_imp_bob;
SELECT pg_temp.try($$SELECT allma_import('{"id": "optiroq-initiate-follow-up", "startStepInstanceId": "a",
	"steps": {"a": {"stepType": "NO_OP"}}}', true)$$);
RESET ROLE;

------------------------------------------------------------------------------
-- Agents and step definitions
------------------------------------------------------------------------------
SET ROLE regress_allma_imp_bob;
SELECT jsonb_pretty(allma_import('{"formatVersion": "1.0",
  "stepDefinitions": [{"id": "greeter", "name": "Greeter", "stepType": "DATA_TRANSFORMATION",
	"moduleIdentifier": "system/compose-object-from-input",
	"literals": {"greeting": "Hello {{flow_variables.who}} from {{stage}}"},
	"outputMappings": {"$.greeting": "$.greeting"}}],
  "agents": [{"id": "imp_agent", "name": "Support agent", "enabled": true,
	"flowIds": ["imp_agent_flow"], "flowVariables": {"who": "agents", "tier": "{{tier}}", "color": "the agent"}}],
  "flows": [{"id": "imp_agent_flow", "version": 1, "isPublished": true, "startStepInstanceId": "greet",
	"flowVariables": {"color": "the flow"},
	"steps": {"greet": {"stepType": "DATA_TRANSFORMATION", "stepDefinitionId": "greeter",
						"defaultNextStepInstanceId": "done"},
			  "done": {"stepType": "END_FLOW"},
			  "other": {"stepType": "NO_OP", "stepDefinitionId": "nowhere"}}}]}',
  parameters => '{"stage": "qa"}'));
-- the step got the definition's fields (placeholders filled), its own win
SELECT definition->'steps'->'greet' FROM allma.flow_versions WHERE flow_id = 'imp_agent_flow';
SELECT agent_id, flow_ids, flow_variables, enabled, owner FROM allma.agents;
-- agent variables under the flow's own, at start (allma_agent_flow_variables);
-- read before commit, so that no worker runs the execution meanwhile
BEGIN;
SELECT allma_start_flow('imp_agent_flow', '{"flow_variables": {"who": "the input"}}') AS e \gset
SELECT (context->'flow_variables') - 'flowExecutionId' AS flow_variables
  FROM allma.execution_paths WHERE execution_id = :'e';
ROLLBACK;
RESET ROLE;
-- alice sees neither bob's agents nor his step definitions
SET ROLE regress_allma_imp_alice;
SELECT (SELECT count(*) FROM allma.agents) AS agents, (SELECT count(*) FROM allma.step_definitions) AS step_definitions;
-- an agent of alice cannot bring variables into bob's flow
SELECT pg_temp.try($$SELECT allma_import('{"agents": [{"id": "imp_evil", "flowIds": ["imp_agent_flow"],
	"flowVariables": {"who": "alice"}}]}')$$);
-- and cannot replace bob's agent
SELECT pg_temp.try($$SELECT allma_import('{"agents": [{"id": "imp_agent", "flowIds": []}]}', true)$$);
RESET ROLE;

------------------------------------------------------------------------------
-- Permissions and bounds
------------------------------------------------------------------------------
SET ROLE regress_allma_imp_outsider;
SELECT pg_temp.try($$SELECT allma_import('{"flows": []}')$$);
RESET ROLE;
SELECT has_function_privilege('allma_user', 'allma_import(jsonb, boolean, jsonb)', 'EXECUTE') AS allma_user_may,
	   has_function_privilege('public', 'allma_import(jsonb, boolean, jsonb)', 'EXECUTE') AS public_may;

SET ROLE regress_allma_imp_alice;
\set VERBOSITY sqlstate
SELECT allma_import(NULL);
SELECT allma_import('[1]');
SELECT allma_import('{"formatVersion": "2.0", "flows": []}');
SELECT allma_import('{"name": "nothing"}');
SELECT allma_import('{"flows": {"id": "x"}}');
SELECT allma_import('{"flows": [{"steps": {}}]}');
SELECT allma_import('{"flows": [{"id": "x", "version": 0}]}');
SELECT allma_import('{"flows": []}', false, '{"bad name": "x"}');
SELECT allma_import('{"flows": []}', false, '{"stage": {"a": 1}}');
SELECT allma_import('{"flows": []}', false, '{"stage": "{{evil}}"}');
SELECT allma_import('{"flows": []}', false, '[]');
SELECT allma_import('{"flows": []}', false, jsonb_build_object('stage', repeat('x', 5000)));
SELECT allma_import(jsonb_build_object('flows', (SELECT jsonb_agg(jsonb_build_object('id', 'f' || i))
	FROM generate_series(1, 1001) i)));
SELECT allma_import(jsonb_build_object('flows', '[]'::jsonb, 'pad', repeat('x', 17 * 1024 * 1024)));
\set VERBOSITY default
SELECT allma_import('{"formatVersion": "2.0", "flows": []}');
SELECT allma_import('{"flows": [{"steps": {}}]}');
SELECT allma_import('{"flows": []}', false, '{"stage": "{{evil}}"}');
RESET ROLE;

-- clean up
SET client_min_messages = warning;
DELETE FROM allma.execution_paths;
DELETE FROM allma.executions;
DELETE FROM allma.agents;
DELETE FROM allma.step_definitions;
DELETE FROM allma.flows;
DELETE FROM allma.prompts;
SELECT allma_unbind_module('imp/admins-only');
DROP FUNCTION imp_handler(jsonb);
DROP ROLE regress_allma_imp_alice, regress_allma_imp_bob, regress_allma_imp_outsider;
