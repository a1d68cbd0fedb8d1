-- Row-level security: every table of allma's data, seen by two allma_user
-- roles and an allma_admin member.  Each role runs an execution that stays
-- in a parallel fork (its branches wait on a long delay), so that paths,
-- forks and history exist while the test looks.

CREATE ROLE regress_allma_rls_alice;
CREATE ROLE regress_allma_rls_bob;
CREATE ROLE regress_allma_rls_admin;
GRANT allma_user TO regress_allma_rls_alice, regress_allma_rls_bob;
GRANT allma_admin TO regress_allma_rls_admin;

-- polls (at most 60 s) until an execution's fork exists
CREATE FUNCTION pg_temp.wait_for_fork(e uuid) RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
	FOR i IN 1..1200 LOOP
		IF EXISTS (SELECT FROM allma.forks WHERE execution_id = e) THEN
			RETURN true;
		END IF;
		PERFORM pg_sleep(0.05);
	END LOOP;
	RETURN false;
END $$;

-- the executions of this test
CREATE FUNCTION pg_temp.rls_ids() RETURNS uuid[] LANGUAGE sql AS $$
	SELECT ARRAY['00000000-0000-4000-8000-00000000a11c', '00000000-0000-4000-8000-00000000b0b0',
				 '00000000-0000-4000-8000-00000000ad00', '00000000-0000-4000-8000-00000000f000']::uuid[]
$$;

-- what the current role sees of each table: row labels (the last four
-- characters of execution ids: a11c alice, b0b0 bob, ad00 admin, f000 the
-- superuser; or the object names)
CREATE FUNCTION pg_temp.visible() RETURNS TABLE (relation text, visible text)
LANGUAGE plpgsql AS $$
DECLARE
	r record;
	v text;
BEGIN
	FOR r IN SELECT * FROM (VALUES
		('flows', $q$SELECT string_agg(flow_id, ' ' ORDER BY flow_id) FROM allma.flows WHERE flow_id LIKE 'rls\_%'$q$),
		('flow_versions', $q$SELECT string_agg(flow_id, ' ' ORDER BY flow_id) FROM allma.flow_versions WHERE flow_id LIKE 'rls\_%'$q$),
		('prompts', $q$SELECT string_agg(prompt_id, ' ' ORDER BY prompt_id) FROM allma.prompts WHERE prompt_id LIKE 'rls\_%'$q$),
		('prompt_templates', $q$SELECT string_agg(prompt_id, ' ' ORDER BY prompt_id) FROM allma.prompt_templates WHERE prompt_id LIKE 'rls\_%'$q$),
		('executions', $q$SELECT string_agg(right(execution_id::text, 4), ' ' ORDER BY right(execution_id::text, 4)) FROM allma.executions WHERE flow_id LIKE 'rls\_%'$q$),
		('step_executions', $q$SELECT string_agg(DISTINCT right(execution_id::text, 4), ' ' ORDER BY right(execution_id::text, 4)) FROM allma.step_executions WHERE execution_id = ANY (pg_temp.rls_ids())$q$),
		('execution_paths', $q$SELECT string_agg(DISTINCT right(execution_id::text, 4), ' ' ORDER BY right(execution_id::text, 4)) FROM allma.execution_paths WHERE execution_id = ANY (pg_temp.rls_ids())$q$),
		('forks', $q$SELECT string_agg(DISTINCT right(execution_id::text, 4), ' ' ORDER BY right(execution_id::text, 4)) FROM allma.forks WHERE execution_id = ANY (pg_temp.rls_ids())$q$),
		('fork_progress', $q$SELECT string_agg(right(execution_id::text, 4) || ':' || total || '/' || running, ' ' ORDER BY execution_id) FROM allma.fork_progress WHERE execution_id = ANY (pg_temp.rls_ids())$q$),
		('files', $q$SELECT string_agg(right(execution_id::text, 4), ' ' ORDER BY right(execution_id::text, 4)) FROM allma.files WHERE execution_id = ANY (pg_temp.rls_ids())$q$),
		('module_bindings', $q$SELECT string_agg(pattern, ' ' ORDER BY pattern) FROM allma.module_bindings WHERE pattern LIKE 'rls/%'$q$),
		('module_bindings.headers', $q$SELECT string_agg(headers::text, ' ' ORDER BY headers::text) FROM allma.module_bindings WHERE pattern LIKE 'rls/%'$q$),
		('mcp_connections', $q$SELECT string_agg(id, ' ' ORDER BY id) FROM allma.mcp_connections WHERE id LIKE 'rls\_%'$q$),
		('mcp_connections.headers', $q$SELECT string_agg(headers::text, ' ' ORDER BY headers::text) FROM allma.mcp_connections WHERE id LIKE 'rls\_%'$q$),
		('secret_info', $q$SELECT string_agg(name || coalesce(usage_grantees::text, ''), ' ' ORDER BY name) FROM allma.secret_info WHERE name LIKE 'RLS\_%'$q$),
		('secrets', $q$SELECT string_agg(name, ' ') FROM allma.secrets$q$),
		('retry_policies', $q$SELECT count(*)::text FROM allma.retry_policies$q$)
	) AS t(rel, q) LOOP
		BEGIN
			EXECUTE r.q INTO v;
		EXCEPTION WHEN insufficient_privilege THEN
			v := SQLERRM;
		END;
		relation := r.rel;
		visible := coalesce(v, '-');
		RETURN NEXT;
	END LOOP;
END $$;

-- one flow per role: a step, then a fork whose two branches wait
CREATE FUNCTION pg_temp.fork_flow(id text) RETURNS jsonb LANGUAGE sql AS $$
	SELECT jsonb_build_object('id', id, 'startStepInstanceId', 'a', 'steps', jsonb_build_object(
		'a', jsonb_build_object('stepType', 'NO_OP', 'defaultNextStepInstanceId', 'fork'),
		'fork', jsonb_build_object('stepType', 'PARALLEL_FORK_MANAGER', 'itemsPath', '$.items',
			'parallelBranches', jsonb_build_array(jsonb_build_object('branchId', 'b', 'stepInstanceId', 'wait'))),
		'wait', jsonb_build_object('stepType', 'NO_OP',
			'delay', jsonb_build_object('milliseconds', 86400000, 'position', 'before'))))
$$;

SET ROLE regress_allma_rls_alice;
SELECT allma_create_flow(pg_temp.fork_flow('rls_alice'));
SELECT allma_create_prompt('rls_alice_prompt', 'for alice');
SELECT allma_start_flow('rls_alice', '{"items": [1, 2]}', '{"executionId": "00000000-0000-4000-8000-00000000a11c"}');
RESET ROLE;
SET ROLE regress_allma_rls_bob;
SELECT allma_create_flow(pg_temp.fork_flow('rls_bob'));
SELECT allma_create_prompt('rls_bob_prompt', 'for bob');
SELECT allma_start_flow('rls_bob', '{"items": [1, 2]}', '{"executionId": "00000000-0000-4000-8000-00000000b0b0"}');
RESET ROLE;
SET ROLE regress_allma_rls_admin;
SELECT allma_create_flow(pg_temp.fork_flow('rls_admin'));
SELECT allma_start_flow('rls_admin', '{"items": [1, 2]}', '{"executionId": "00000000-0000-4000-8000-00000000ad00"}');
RESET ROLE;
SELECT allma_create_flow(pg_temp.fork_flow('rls_root'));
SELECT allma_start_flow('rls_root', '{"items": [1, 2]}', '{"executionId": "00000000-0000-4000-8000-00000000f000"}');
SELECT pg_temp.wait_for_fork(e) FROM unnest(pg_temp.rls_ids()) AS e;
-- a downloaded file for each execution
INSERT INTO allma.files (execution_id, step_id, url, content, content_length)
SELECT execution_id, 'a', 'https://files.example/x', '\x00', 1
  FROM allma.executions WHERE flow_id LIKE 'rls\_%';

-- bindings, MCP connections and secrets: alice may use the *_alice ones
SELECT allma_bind_module_http('rls/alice', 'https://alice.example/run', '{"X-Key": "literal-credential"}');
SELECT allma_bind_module_http('rls/nobody', 'https://nobody.example/run');
SELECT allma_grant_module_binding('rls/alice', 'regress_allma_rls_alice');
SELECT allma_create_mcp_connection('rls_alice', 'https://alice.example/mcp', '{"X-Key": "literal-credential"}');
SELECT allma_create_mcp_connection('rls_nobody', 'https://nobody.example/mcp');
SELECT allma_grant_mcp_connection('rls_alice', 'regress_allma_rls_alice');
SELECT allma_set_secret('RLS_ALICE', 'rls-secret-alice');
SELECT allma_set_secret('RLS_NOBODY', 'rls-secret-nobody');
SELECT allma_grant_secret('RLS_ALICE', 'regress_allma_rls_alice');

-- what each role sees
SET ROLE regress_allma_rls_alice;
SELECT * FROM pg_temp.visible();
RESET ROLE;
SET ROLE regress_allma_rls_bob;
SELECT * FROM pg_temp.visible();
RESET ROLE;
SET ROLE regress_allma_rls_admin;
SELECT * FROM pg_temp.visible();
RESET ROLE;

-- the starter sees its execution's current state
SET ROLE regress_allma_rls_alice;
SELECT path_id > 0 AS branch, status, step_instance_id, item_index
  FROM allma.execution_paths WHERE execution_id = '00000000-0000-4000-8000-00000000a11c'
 ORDER BY path_id;
SELECT step_instance_id, total, pending FROM allma.forks;
RESET ROLE;

-- nobody but superusers gets more than SELECT on allma's data, and row-level
-- security is enabled and forced on every table but retry_policies
SELECT c.relname, c.relrowsecurity, c.relforcerowsecurity
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE n.nspname = 'allma' AND c.relkind = 'r' ORDER BY 1;
SELECT c.relname, p.polname, p.polcmd, array(SELECT rolname FROM pg_roles WHERE oid = ANY (p.polroles) ORDER BY 1) AS roles
  FROM pg_policy p JOIN pg_class c ON c.oid = p.polrelid ORDER BY 1, 2;
SELECT c.relname, c.reloptions FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE n.nspname = 'allma' AND c.relkind = 'v' ORDER BY 1;

-- clean up
DELETE FROM allma.step_executions WHERE execution_id IN
	(SELECT execution_id FROM allma.executions WHERE flow_id LIKE 'rls\_%');
DELETE FROM allma.executions WHERE flow_id LIKE 'rls\_%';
DELETE FROM allma.flows WHERE flow_id LIKE 'rls\_%';
DELETE FROM allma.prompts WHERE prompt_id LIKE 'rls\_%';
SELECT allma_unbind_module('rls/alice'), allma_unbind_module('rls/nobody');
SELECT allma_drop_mcp_connection('rls_alice'), allma_drop_mcp_connection('rls_nobody');
SELECT allma_delete_secret('RLS_ALICE'), allma_delete_secret('RLS_NOBODY');
DROP ROLE regress_allma_rls_alice, regress_allma_rls_bob, regress_allma_rls_admin;
