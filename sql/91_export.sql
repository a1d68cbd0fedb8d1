-- allma_export: bundles Allma (and allma_import) read.  Every real bundle
-- round-trips: import -> export gives the bundle's definitions back, and
-- importing the export again changes nothing.  Visibility, dependencies,
-- agents and step definitions, errors.
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

CREATE ROLE regress_allma_exp_alice;
CREATE ROLE regress_allma_exp_bob;
GRANT allma_user TO regress_allma_exp_alice, regress_allma_exp_bob;

-- the 7 real bundles (14 flows), as Allma exported them
CREATE TEMP TABLE bundles (file text PRIMARY KEY, bundle jsonb);
GRANT SELECT ON bundles TO PUBLIC;
\set b1 `cat test/fixtures/allma-example-flows/optiroq-communication.flows.json`
\set b2 `cat test/fixtures/allma-example-flows/optiroq-process-bom-upload.flow.json`
\set b3 `cat test/fixtures/allma-example-flows/optiroq-process-rfq-upload.flow.json`
\set b4 `cat test/fixtures/allma-example-flows/optiroq-process-supplier-import.flow.json`
\set b5 `cat test/fixtures/allma-example-flows/optiroq-process-supplier-quote.flow.json`
\set b6 `cat test/fixtures/allma-example-flows/optiroq-send-rfq-emails.flow.json`
\set b7 `cat test/fixtures/allma-example-flows/optiroq_allma_flows.json`
INSERT INTO bundles VALUES ('communication', :'b1'), ('bom-upload', :'b2'), ('rfq-upload', :'b3'),
	('supplier-import', :'b4'), ('supplier-quote', :'b5'), ('send-rfq-emails', :'b6'),
	('optiroq_allma_flows', :'b7');

------------------------------------------------------------------------------
-- Round trip of every real bundle
------------------------------------------------------------------------------
SET ROLE regress_allma_exp_alice;
SET client_min_messages = error;	-- the validator's warnings on the flows
SELECT file, jsonb_array_length(r->'flows') AS flows, jsonb_array_length(r->'promptTemplates') AS prompts
  FROM bundles, allma_import(bundle) r ORDER BY file;
RESET client_min_messages;

-- each bundle's export has exactly the bundle's flow definitions and prompt
-- templates (name, tags and timestamps included)
CREATE TEMP TABLE exports AS
SELECT file, allma_export(ARRAY(SELECT f->>'id' FROM jsonb_array_elements(bundle->'flows') f)) AS export
  FROM bundles;
SELECT b.file,
	   (SELECT count(*) FROM jsonb_array_elements(b.bundle->'flows')) AS bundle_flows,
	   (SELECT count(*) FROM jsonb_array_elements(b.bundle->'flows') f
		 WHERE f IN (SELECT jsonb_array_elements(e.export->'flows'))) AS identical_in_export,
	   (SELECT count(*) FROM jsonb_array_elements(b.bundle->'promptTemplates') p
		 WHERE p IN (SELECT jsonb_array_elements(e.export->'promptTemplates')))
		 || '/' || coalesce(jsonb_array_length(b.bundle->'promptTemplates'), 0) AS identical_prompts,
	   e.export->>'formatVersion' AS format,
	   jsonb_array_length(e.export->'flows') AS exported_flows
  FROM bundles b JOIN exports e USING (file) ORDER BY 1;
-- the communication router starts three flows named by its variables: exported with it
SELECT f->>'id' AS flow FROM exports, jsonb_array_elements(export->'flows') f
 WHERE file = 'communication' ORDER BY 1;

-- importing every export again (overwrite) stores no new version
SET client_min_messages = error;
SELECT file, jsonb_path_query_array(r, '$.flows[*] ? (@.created == true).id') AS new_flow_versions,
	   jsonb_path_query_array(r, '$.promptTemplates[*] ? (@.created == true).id') AS new_prompt_versions
  FROM exports, allma_import(export, true) r ORDER BY file;
RESET client_min_messages;
SELECT count(*) AS flows, sum(latest_version) AS versions FROM allma.flows;

-- the export of everything alice may see is a bundle of the 14 flows
SELECT jsonb_array_length(allma_export()->'flows') AS all_flows;
RESET ROLE;

------------------------------------------------------------------------------
-- Only what the caller may see
------------------------------------------------------------------------------
SET ROLE regress_allma_exp_bob;
SELECT allma_export() - 'exportedAt' AS bob_sees;
SELECT pg_temp.try($$SELECT allma_export(ARRAY['optiroq-initiate-follow-up'])$$);
RESET ROLE;
SET ROLE regress_allma_exp_alice;
SELECT allma_grant_flow('optiroq-process-rfq-upload', 'regress_allma_exp_bob', 'START');
RESET ROLE;
-- bob may export the flow now; its prompt is alice's and not his to read
SET ROLE regress_allma_exp_bob;
SELECT jsonb_path_query_array(e, '$.flows[*].id') AS flows,
	   jsonb_array_length(e->'promptTemplates') AS prompts
  FROM allma_export(ARRAY['optiroq-process-rfq-upload']) e;
RESET ROLE;

------------------------------------------------------------------------------
-- Versions, agents and step definitions
------------------------------------------------------------------------------
SET ROLE regress_allma_exp_bob;
SELECT allma_import('{"stepDefinitions": [{"id": "exp_upper", "stepType": "NO_OP",
	"literals": {"x": 1}}],
  "agents": [{"id": "exp_agent", "name": "A", "enabled": false, "flowIds": ["exp_flow"],
	"flowVariables": {"tone": "dry"}}],
  "flows": [{"id": "exp_flow", "version": 1, "startStepInstanceId": "a",
			 "steps": {"a": {"stepType": "NO_OP", "stepDefinitionId": "exp_upper"}}},
			{"id": "exp_flow", "version": 2, "isPublished": true, "startStepInstanceId": "a",
			 "steps": {"a": {"stepType": "NO_OP", "stepDefinitionId": "exp_upper",
							 "literals": {"y": 2}}}}]}')->'flows';
-- its only agent is disabled: the flow is inactive and does not start, as in Allma
SELECT pg_temp.try($$SELECT allma_start_flow('exp_flow')$$);
SELECT jsonb_pretty(allma_export(ARRAY['exp_flow']) - 'exportedAt');
-- and it imports again as it is
SELECT jsonb_path_query_array(allma_import(allma_export(ARRAY['exp_flow']), true),
	'$.flows[*].created') AS created;
RESET ROLE;

------------------------------------------------------------------------------
-- Errors and permissions
------------------------------------------------------------------------------
SET ROLE regress_allma_exp_bob;
\set VERBOSITY sqlstate
SELECT allma_export(ARRAY['no_such_flow']);
SELECT allma_export(ARRAY[NULL]::text[]);
SELECT allma_export(ARRAY[['a'], ['b']]);
SELECT allma_export(ARRAY(SELECT 'f' || i FROM generate_series(1, 1001) i));
\set VERBOSITY default
SELECT allma_export(ARRAY['no_such_flow']);
RESET ROLE;
SELECT has_function_privilege('allma_user', 'allma_export(text[])', 'EXECUTE') AS allma_user_may,
	   has_function_privilege('public', 'allma_export(text[])', 'EXECUTE') AS public_may;

-- clean up
SET client_min_messages = warning;
DELETE FROM allma.agents;
DELETE FROM allma.step_definitions;
DELETE FROM allma.flows;
DELETE FROM allma.prompts;
DROP TABLE bundles, exports;
DROP ROLE regress_allma_exp_alice, regress_allma_exp_bob;
