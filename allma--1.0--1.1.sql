/* allma--1.0--1.1.sql: upgrades an installation of allma 1.0 to 1.1 */

-- complain if script is sourced in psql, rather than via ALTER EXTENSION
\echo Use "ALTER EXTENSION allma UPDATE TO '1.1'" to load this file. \quit

/*
 * 1.0 has shipped: its install script (allma--1.0.sql) is frozen.  A fresh
 * CREATE EXTENSION allma runs allma--1.0.sql followed by this script, so
 * every schema change of 1.1 lives here, grouped by the feature it belongs
 * to.  Each section must work both on a fresh 1.0 install and on a 1.0
 * installation with executions in flight (t/020_upgrade.pl).
 */

------------------------------------------------------------------------------
-- Engine and workers
------------------------------------------------------------------------------


------------------------------------------------------------------------------
-- Security: roles, ownership, grants, row-level security
------------------------------------------------------------------------------

/*
 * The model (docs/security.md): allma_user may define flows and prompts and
 * start, inspect and cancel its own executions; allma_admin may do
 * everything and see every execution, and manages retry rules, module
 * bindings, MCP connections and secrets.  Flows, prompts, bindings and MCP
 * connections belong to the role that created them (a flow's or prompt's
 * first version); their owners grant START and EDIT on flows and USAGE on
 * the others, allma_admin grants USAGE on secrets.  The API functions
 * check these privileges (acl.c) and write as the bootstrap superuser; no
 * role but superusers and allma_admin (configuration tables only) may
 * write allma's tables, and nobody gets TRUNCATE, REFERENCES or TRIGGER on
 * them.  Row-level security, enabled and forced, shows each role what it
 * owns, was granted or started; allma_admin sees everything.
 *
 * Roles are cluster-wide: a second database that installs allma reuses
 * them (and the memberships granted in the first), and DROP EXTENSION
 * leaves them.  An existing role of either name is reused as it is.
 */
-- All the tables this section changes, locked at once in the order a worker's
-- pass takes them, so that an update under running workers waits for their
-- passes instead of deadlocking with one.
LOCK TABLE allma.execution_paths, allma.executions, allma.forks, allma.flow_versions,
	allma.flows, allma.step_executions, allma.files, allma.prompts, allma.prompt_templates,
	allma.module_bindings, allma.mcp_connections, allma.secrets, allma.retry_policies
	IN ACCESS EXCLUSIVE MODE;

DO $$
BEGIN
	IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = 'allma_user') THEN
		CREATE ROLE allma_user NOLOGIN;
		COMMENT ON ROLE allma_user IS 'allma: define flows and prompts, start and inspect own executions';
	END IF;
	IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = 'allma_admin') THEN
		CREATE ROLE allma_admin NOLOGIN;
		COMMENT ON ROLE allma_admin IS 'allma: everything, all executions, retry rules, bindings, MCP connections, secrets';
	END IF;
	IF NOT EXISTS (SELECT FROM pg_catalog.pg_auth_members
				   WHERE roleid = 'allma_user'::regrole AND member = 'allma_admin'::regrole) THEN
		GRANT allma_user TO allma_admin;
	END IF;
END $$;

-- Owners and grants live in the objects' own rows, so they go with them.
ALTER TABLE allma.flows
	ADD COLUMN owner regrole,
	ADD COLUMN start_grantees regrole[] NOT NULL DEFAULT '{}',
	ADD COLUMN edit_grantees regrole[] NOT NULL DEFAULT '{}';
ALTER TABLE allma.prompts
	ADD COLUMN owner regrole,
	ADD COLUMN usage_grantees regrole[] NOT NULL DEFAULT '{}';
-- 1.0 flows and prompts: the creator of their first version owns them
UPDATE allma.flows f SET owner = coalesce(
	(SELECT v.created_by FROM allma.flow_versions v WHERE v.flow_id = f.flow_id
	  ORDER BY v.version LIMIT 1), current_user::regrole);
UPDATE allma.prompts p SET owner = coalesce(
	(SELECT t.created_by FROM allma.prompt_templates t WHERE t.prompt_id = p.prompt_id
	  ORDER BY t.version LIMIT 1), current_user::regrole);
-- (the updates queue the checks of the deferred published_version keys, and
-- a table with pending checks cannot be altered: run them now)
SET CONSTRAINTS ALL IMMEDIATE;
ALTER TABLE allma.flows ALTER COLUMN owner SET NOT NULL;
ALTER TABLE allma.prompts ALTER COLUMN owner SET NOT NULL;

-- Bindings and MCP connections: created by allma_admin members (owner = who inserted)
ALTER TABLE allma.module_bindings
	ADD COLUMN owner regrole NOT NULL DEFAULT current_user::regrole,
	ADD COLUMN usage_grantees regrole[] NOT NULL DEFAULT '{}';
ALTER TABLE allma.mcp_connections
	ADD COLUMN owner regrole NOT NULL DEFAULT current_user::regrole,
	ADD COLUMN usage_grantees regrole[] NOT NULL DEFAULT '{}';

-- Secrets: who may use them (besides superusers) and where they may go (NULL: anywhere)
ALTER TABLE allma.secrets
	ADD COLUMN usage_grantees regrole[] NOT NULL DEFAULT '{}',
	ADD COLUMN allowed_hosts text[];

COMMENT ON COLUMN allma.flows.owner IS 'role that created the first version; manages the flow';
COMMENT ON COLUMN allma.flows.start_grantees IS 'roles granted START (allma_grant_flow)';
COMMENT ON COLUMN allma.flows.edit_grantees IS 'roles granted EDIT: new versions, publish, unpublish';
COMMENT ON COLUMN allma.prompts.owner IS 'role that created the first version';
COMMENT ON COLUMN allma.prompts.usage_grantees IS 'roles granted USAGE: read it, use it in their flows';
COMMENT ON COLUMN allma.module_bindings.usage_grantees IS 'roles whose executions may use the binding';
COMMENT ON COLUMN allma.mcp_connections.usage_grantees IS 'roles whose executions may use the connection';
COMMENT ON COLUMN allma.secrets.usage_grantees IS 'roles that may use the secret (as starter and as flow author)';
COMMENT ON COLUMN allma.secrets.allowed_hosts IS 'hosts the secret may be sent to (host or *.domain); NULL: any';

/*
 * 1.0 installations keep working: what every role could use in 1.0 stays
 * usable by allma_user -- START on existing flows, USAGE on existing
 * prompts, bindings and MCP connections -- and every role that created a
 * flow or prompt or started an execution becomes a member of allma_user.
 * Secrets are not granted: using any secret from any flow was the hole.
 * Owners narrow these grants with allma_revoke_*.
 */
UPDATE allma.flows SET start_grantees = ARRAY['allma_user'::regrole];
UPDATE allma.prompts SET usage_grantees = ARRAY['allma_user'::regrole];
UPDATE allma.module_bindings SET usage_grantees = ARRAY['allma_user'::regrole];
UPDATE allma.mcp_connections SET usage_grantees = ARRAY['allma_user'::regrole];
SET CONSTRAINTS ALL IMMEDIATE;
DO $$
DECLARE
	r regrole;
	granted text[] := '{}';
BEGIN
	FOR r IN
		SELECT DISTINCT a.oid::regrole
		  FROM (SELECT created_by FROM allma.flow_versions
				UNION SELECT created_by FROM allma.prompt_templates
				UNION SELECT started_by FROM allma.executions) AS u(role)
		  JOIN pg_catalog.pg_roles a ON a.oid = u.role
		 WHERE NOT a.rolsuper AND a.rolname NOT IN ('allma_user', 'allma_admin')
		   AND NOT pg_catalog.pg_has_role(a.oid, 'allma_user', 'MEMBER')
		 ORDER BY 1
	LOOP
		EXECUTE pg_catalog.format('GRANT allma_user TO %s', r);
		granted := granted || r::text;
	END LOOP;
	IF pg_catalog.cardinality(granted) > 0 THEN
		-- (a warning: extension scripts run with client_min_messages = warning)
		RAISE WARNING 'allma: granted allma_user to the roles that used allma 1.0: %',
			pg_catalog.array_to_string(granted, ', ')
			USING HINT = 'See the upgrade notes in docs/security.md: they keep START on existing '
				'flows and USAGE on existing prompts, bindings and MCP connections; secrets need grants.';
	END IF;
END $$;

-- Nothing for PUBLIC; allma_user reads, allma_admin also edits configuration.
REVOKE ALL ON SCHEMA allma FROM PUBLIC;
GRANT USAGE ON SCHEMA allma TO allma_user;
REVOKE ALL ON ALL TABLES IN SCHEMA allma FROM PUBLIC;
REVOKE ALL ON ALL SEQUENCES IN SCHEMA allma FROM PUBLIC;
GRANT SELECT ON allma.flows, allma.flow_versions, allma.prompts, allma.prompt_templates,
	allma.executions, allma.step_executions, allma.execution_paths, allma.forks,
	allma.files, allma.retry_policies TO allma_user;
-- header values may hold literal credentials: allma_admin only
GRANT SELECT (pattern, handler, url, owner, usage_grantees, created_at)
	ON allma.module_bindings TO allma_user;
GRANT SELECT (id, url, bearer_secret, owner, usage_grantees, created_at, updated_at)
	ON allma.mcp_connections TO allma_user;
GRANT SELECT, INSERT, UPDATE, DELETE
	ON allma.retry_policies, allma.module_bindings, allma.mcp_connections TO allma_admin;

/*
 * Row-level security on every table of allma's data, forced so that it
 * holds for the tables' owner too (superusers, like the workers and the
 * API functions, bypass it).  A table without a policy for a role shows
 * it nothing.
 */
ALTER TABLE allma.flows ENABLE ROW LEVEL SECURITY, FORCE ROW LEVEL SECURITY;
ALTER TABLE allma.flow_versions ENABLE ROW LEVEL SECURITY, FORCE ROW LEVEL SECURITY;
ALTER TABLE allma.prompts ENABLE ROW LEVEL SECURITY, FORCE ROW LEVEL SECURITY;
ALTER TABLE allma.prompt_templates ENABLE ROW LEVEL SECURITY, FORCE ROW LEVEL SECURITY;
ALTER TABLE allma.executions ENABLE ROW LEVEL SECURITY, FORCE ROW LEVEL SECURITY;
ALTER TABLE allma.step_executions ENABLE ROW LEVEL SECURITY, FORCE ROW LEVEL SECURITY;
ALTER TABLE allma.execution_paths ENABLE ROW LEVEL SECURITY, FORCE ROW LEVEL SECURITY;
ALTER TABLE allma.forks ENABLE ROW LEVEL SECURITY, FORCE ROW LEVEL SECURITY;
ALTER TABLE allma.files ENABLE ROW LEVEL SECURITY, FORCE ROW LEVEL SECURITY;
ALTER TABLE allma.module_bindings ENABLE ROW LEVEL SECURITY, FORCE ROW LEVEL SECURITY;
ALTER TABLE allma.mcp_connections ENABLE ROW LEVEL SECURITY, FORCE ROW LEVEL SECURITY;
ALTER TABLE allma.secrets ENABLE ROW LEVEL SECURITY, FORCE ROW LEVEL SECURITY;

-- allma_admin sees all rows, and edits the configuration tables
CREATE POLICY flows_admin ON allma.flows FOR SELECT TO allma_admin USING (true);
CREATE POLICY prompts_admin ON allma.prompts FOR SELECT TO allma_admin USING (true);
CREATE POLICY executions_admin ON allma.executions FOR SELECT TO allma_admin USING (true);
CREATE POLICY module_bindings_admin ON allma.module_bindings TO allma_admin
	USING (true) WITH CHECK (true);
CREATE POLICY mcp_connections_admin ON allma.mcp_connections TO allma_admin
	USING (true) WITH CHECK (true);

-- others: what they own (have the privileges of) or were granted
CREATE POLICY flows_owner_or_grantee ON allma.flows FOR SELECT TO allma_user
	USING (pg_catalog.pg_has_role(owner, 'USAGE') OR EXISTS (
		SELECT FROM pg_catalog.unnest(start_grantees || edit_grantees) g
		 WHERE pg_catalog.pg_has_role(g, 'USAGE')));
CREATE POLICY prompts_owner_or_grantee ON allma.prompts FOR SELECT TO allma_user
	USING (pg_catalog.pg_has_role(owner, 'USAGE') OR EXISTS (
		SELECT FROM pg_catalog.unnest(usage_grantees) g WHERE pg_catalog.pg_has_role(g, 'USAGE')));
CREATE POLICY module_bindings_owner_or_grantee ON allma.module_bindings FOR SELECT TO allma_user
	USING (pg_catalog.pg_has_role(owner, 'USAGE') OR EXISTS (
		SELECT FROM pg_catalog.unnest(usage_grantees) g WHERE pg_catalog.pg_has_role(g, 'USAGE')));
CREATE POLICY mcp_connections_owner_or_grantee ON allma.mcp_connections FOR SELECT TO allma_user
	USING (pg_catalog.pg_has_role(owner, 'USAGE') OR EXISTS (
		SELECT FROM pg_catalog.unnest(usage_grantees) g WHERE pg_catalog.pg_has_role(g, 'USAGE')));
-- versions: as their flow or prompt
CREATE POLICY flow_versions_as_flow ON allma.flow_versions FOR SELECT TO allma_user
	USING (EXISTS (SELECT FROM allma.flows f WHERE f.flow_id = flow_versions.flow_id));
CREATE POLICY prompt_templates_as_prompt ON allma.prompt_templates FOR SELECT TO allma_user
	USING (EXISTS (SELECT FROM allma.prompts p WHERE p.prompt_id = prompt_templates.prompt_id));

-- executions: their starter; history, current state and files: as their execution
DROP POLICY executions_starter ON allma.executions;
DROP POLICY step_executions_starter ON allma.step_executions;
DROP POLICY files_starter ON allma.files;
CREATE POLICY executions_starter ON allma.executions FOR SELECT TO allma_user
	USING (pg_catalog.pg_has_role(started_by, 'USAGE'));
CREATE POLICY step_executions_as_execution ON allma.step_executions FOR SELECT TO allma_user
	USING (EXISTS (SELECT FROM allma.executions e WHERE e.execution_id = step_executions.execution_id));
CREATE POLICY execution_paths_as_execution ON allma.execution_paths FOR SELECT TO allma_user
	USING (EXISTS (SELECT FROM allma.executions e WHERE e.execution_id = execution_paths.execution_id));
CREATE POLICY forks_as_execution ON allma.forks FOR SELECT TO allma_user
	USING (EXISTS (SELECT FROM allma.executions e WHERE e.execution_id = forks.execution_id));
CREATE POLICY files_as_execution ON allma.files FOR SELECT TO allma_user
	USING (EXISTS (SELECT FROM allma.executions e WHERE e.execution_id = files.execution_id));

-- fork progress through the invoker's row-level security
CREATE OR REPLACE VIEW allma.fork_progress WITH (security_invoker = true, security_barrier = true) AS
SELECT f.execution_id, f.fork_path_id, f.step_instance_id, f.total,
	   count(*) FILTER (WHERE p.status IN ('READY', 'INFLIGHT')) AS running,
	   count(*) FILTER (WHERE p.status = 'WAITING') AS queued,
	   f.completed, f.failed, f.started_at
  FROM allma.forks f
  LEFT JOIN allma.execution_paths p
	ON p.execution_id = f.execution_id AND p.parent_path_id = f.fork_path_id
 GROUP BY f.execution_id, f.fork_path_id, f.step_instance_id, f.total,
		  f.completed, f.failed, f.started_at;
GRANT SELECT ON allma.fork_progress TO allma_user;

/*
 * What a role may know about secrets: names, grantees and allowed hosts,
 * never values.  allma_admin sees every secret, others those granted to
 * them (without the list of grantees).
 */
CREATE VIEW allma.secret_info WITH (security_barrier = true) AS
SELECT s.name,
	   CASE WHEN pg_catalog.pg_has_role('allma_admin', 'USAGE') THEN s.usage_grantees END
		   AS usage_grantees,
	   s.allowed_hosts, s.created_at, s.updated_at
  FROM allma.secrets s
 WHERE pg_catalog.pg_has_role('allma_admin', 'USAGE')
	OR EXISTS (SELECT FROM pg_catalog.unnest(s.usage_grantees) g
			   WHERE pg_catalog.pg_has_role(g, 'USAGE'));
COMMENT ON VIEW allma.secret_info IS
	'Secrets a role may use (all of them for allma_admin): name, grantees, allowed hosts; never values';
GRANT SELECT ON allma.secret_info TO allma_user;

-- Functions: the authoring helpers stay PUBLIC; the rest by role.
REVOKE EXECUTE ON FUNCTION allma_create_flow(jsonb, boolean), allma_publish_flow(text, integer),
	allma_start_flow(text, jsonb, jsonb), allma_wait(uuid, interval), allma_worker_status(),
	allma_create_prompt(text, text, boolean, text), allma_publish_prompt(text, integer),
	allma_get_prompt(text, integer) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION allma_create_flow(jsonb, boolean), allma_publish_flow(text, integer),
	allma_start_flow(text, jsonb, jsonb), allma_wait(uuid, interval), allma_worker_status(),
	allma_create_prompt(text, text, boolean, text), allma_publish_prompt(text, integer),
	allma_get_prompt(text, integer) TO allma_user;
GRANT EXECUTE ON FUNCTION allma_bind_module(text, regprocedure),
	allma_bind_module_http(text, text, jsonb), allma_unbind_module(text),
	allma_create_mcp_connection(text, text, jsonb, text), allma_drop_mcp_connection(text),
	allma_delete_secret(text), allma_redact_secrets(text), allma_redact_secrets(jsonb)
	TO allma_admin;

-- errors of allma_set_secret never log their statement (which holds the value)
CREATE OR REPLACE FUNCTION allma_set_secret(name text, value text)
RETURNS void
AS 'MODULE_PATHNAME', 'allma_set_secret_hiding_statement'
LANGUAGE C STRICT VOLATILE
SET search_path = pg_catalog, pg_temp;
GRANT EXECUTE ON FUNCTION allma_set_secret(text, text) TO allma_admin;

CREATE FUNCTION allma_unpublish_flow(flow_id text)
RETURNS void
AS 'MODULE_PATHNAME', 'allma_unpublish_flow'
LANGUAGE C STRICT VOLATILE
SET search_path = pg_catalog, pg_temp;
COMMENT ON FUNCTION allma_unpublish_flow(text) IS
	'Leaves the flow without a published version (needs EDIT)';

CREATE FUNCTION allma_delete_flow(flow_id text, version integer DEFAULT NULL)
RETURNS integer
AS 'MODULE_PATHNAME', 'allma_delete_flow'
LANGUAGE C VOLATILE
SET search_path = pg_catalog, pg_temp;
COMMENT ON FUNCTION allma_delete_flow(text, integer) IS
	'Deletes a version (NULL: all) no execution uses; the flow id stays its owner''s; returns how many';

CREATE FUNCTION allma_grant_flow(flow_id text, role regrole, privilege text)
RETURNS void
AS 'MODULE_PATHNAME', 'allma_grant_flow'
LANGUAGE C STRICT VOLATILE
SET search_path = pg_catalog, pg_temp;
COMMENT ON FUNCTION allma_grant_flow(text, regrole, text) IS
	'Grants START (start executions) or EDIT (new versions, publish, unpublish) on a flow';

CREATE FUNCTION allma_revoke_flow(flow_id text, role regrole, privilege text)
RETURNS boolean
AS 'MODULE_PATHNAME', 'allma_revoke_flow'
LANGUAGE C STRICT VOLATILE
SET search_path = pg_catalog, pg_temp;
COMMENT ON FUNCTION allma_revoke_flow(text, regrole, text) IS
	'Revokes START or EDIT on a flow; false when it was not granted';

CREATE FUNCTION allma_grant_prompt(prompt_id text, role regrole)
RETURNS void
AS 'MODULE_PATHNAME', 'allma_grant_prompt'
LANGUAGE C STRICT VOLATILE
SET search_path = pg_catalog, pg_temp;
COMMENT ON FUNCTION allma_grant_prompt(text, regrole) IS
	'Grants USAGE on a prompt: the role may read it and its flows'' LLM steps may use it';

CREATE FUNCTION allma_revoke_prompt(prompt_id text, role regrole)
RETURNS boolean
AS 'MODULE_PATHNAME', 'allma_revoke_prompt'
LANGUAGE C STRICT VOLATILE
SET search_path = pg_catalog, pg_temp;
COMMENT ON FUNCTION allma_revoke_prompt(text, regrole) IS
	'Revokes USAGE on a prompt; false when it was not granted';

CREATE FUNCTION allma_grant_secret(name text, role regrole)
RETURNS void
AS 'MODULE_PATHNAME', 'allma_grant_secret'
LANGUAGE C STRICT VOLATILE
SET search_path = pg_catalog, pg_temp;
COMMENT ON FUNCTION allma_grant_secret(text, regrole) IS
	'Grants USAGE on a secret: executions the role starts, and flow versions it creates, may use it';

CREATE FUNCTION allma_revoke_secret(name text, role regrole)
RETURNS boolean
AS 'MODULE_PATHNAME', 'allma_revoke_secret'
LANGUAGE C STRICT VOLATILE
SET search_path = pg_catalog, pg_temp;
COMMENT ON FUNCTION allma_revoke_secret(text, regrole) IS
	'Revokes USAGE on a secret; false when it was not granted';

CREATE FUNCTION allma_set_secret_allowed_hosts(name text, allowed_hosts text[])
RETURNS void
AS 'MODULE_PATHNAME', 'allma_set_secret_allowed_hosts'
LANGUAGE C VOLATILE
SET search_path = pg_catalog, pg_temp;
COMMENT ON FUNCTION allma_set_secret_allowed_hosts(text, text[]) IS
	'The hosts a secret may be sent to (''api.example.com'', ''*.example.com''); NULL: any';

CREATE FUNCTION allma_check_secret_use(name text, starter regrole, flow_creator regrole,
									   url text DEFAULT NULL)
RETURNS void
AS 'MODULE_PATHNAME', 'allma_check_secret_use'
LANGUAGE C VOLATILE
SET search_path = pg_catalog, pg_temp;
COMMENT ON FUNCTION allma_check_secret_use(text, regrole, regrole, text) IS
	'Raises the error a step would get for using the secret (started by starter, flow version by flow_creator, sent to url)';

CREATE FUNCTION allma_grant_module_binding(module_or_arn_pattern text, role regrole)
RETURNS void
AS 'MODULE_PATHNAME', 'allma_grant_module_binding'
LANGUAGE C STRICT VOLATILE
SET search_path = pg_catalog, pg_temp;
COMMENT ON FUNCTION allma_grant_module_binding(text, regrole) IS
	'Grants USAGE on a module binding: executions the role starts may use it';

CREATE FUNCTION allma_revoke_module_binding(module_or_arn_pattern text, role regrole)
RETURNS boolean
AS 'MODULE_PATHNAME', 'allma_revoke_module_binding'
LANGUAGE C STRICT VOLATILE
SET search_path = pg_catalog, pg_temp;
COMMENT ON FUNCTION allma_revoke_module_binding(text, regrole) IS
	'Revokes USAGE on a module binding; false when it was not granted';

CREATE FUNCTION allma_grant_mcp_connection(id text, role regrole)
RETURNS void
AS 'MODULE_PATHNAME', 'allma_grant_mcp_connection'
LANGUAGE C STRICT VOLATILE
SET search_path = pg_catalog, pg_temp;
COMMENT ON FUNCTION allma_grant_mcp_connection(text, regrole) IS
	'Grants USAGE on an MCP connection: executions the role starts may call it';

CREATE FUNCTION allma_revoke_mcp_connection(id text, role regrole)
RETURNS boolean
AS 'MODULE_PATHNAME', 'allma_revoke_mcp_connection'
LANGUAGE C STRICT VOLATILE
SET search_path = pg_catalog, pg_temp;
COMMENT ON FUNCTION allma_revoke_mcp_connection(text, regrole) IS
	'Revokes USAGE on an MCP connection; false when it was not granted';

REVOKE EXECUTE ON FUNCTION allma_unpublish_flow(text), allma_delete_flow(text, integer),
	allma_grant_flow(text, regrole, text), allma_revoke_flow(text, regrole, text),
	allma_grant_prompt(text, regrole), allma_revoke_prompt(text, regrole),
	allma_grant_secret(text, regrole), allma_revoke_secret(text, regrole),
	allma_set_secret_allowed_hosts(text, text[]), allma_check_secret_use(text, regrole, regrole, text),
	allma_grant_module_binding(text, regrole), allma_revoke_module_binding(text, regrole),
	allma_grant_mcp_connection(text, regrole), allma_revoke_mcp_connection(text, regrole)
	FROM PUBLIC;
GRANT EXECUTE ON FUNCTION allma_unpublish_flow(text), allma_delete_flow(text, integer),
	allma_grant_flow(text, regrole, text), allma_revoke_flow(text, regrole, text),
	allma_grant_prompt(text, regrole), allma_revoke_prompt(text, regrole) TO allma_user;
GRANT EXECUTE ON FUNCTION allma_grant_secret(text, regrole), allma_revoke_secret(text, regrole),
	allma_set_secret_allowed_hosts(text, text[]), allma_check_secret_use(text, regrole, regrole, text),
	allma_grant_module_binding(text, regrole), allma_revoke_module_binding(text, regrole),
	allma_grant_mcp_connection(text, regrole), allma_revoke_mcp_connection(text, regrole)
	TO allma_admin;


------------------------------------------------------------------------------
-- Execution lifecycle: waits, sub-flows, cancel, timeouts, redrive
------------------------------------------------------------------------------

-- waits and cancel

/*
 * Cancel (docs/lifecycle.md): the starter of an execution (a role with its
 * privileges) or allma_admin ends it, its running child executions, its
 * paths and its open waits.  The function checks the caller and writes as
 * the bootstrap superuser; nobody else may write allma.executions (the
 * security section grants only SELECT).
 */
CREATE INDEX executions_parent_running_idx ON allma.executions (parent_execution_id)
	WHERE parent_execution_id IS NOT NULL AND status = 'RUNNING';

CREATE FUNCTION allma_cancel_execution(execution_id uuid, reason text DEFAULT NULL)
RETURNS text
AS 'MODULE_PATHNAME', 'allma_cancel_execution'
LANGUAGE C VOLATILE
SET search_path = pg_catalog, pg_temp;
COMMENT ON FUNCTION allma_cancel_execution(uuid, text) IS
	'Cancels a running execution (status CANCELLED) with its branches, child executions and waits; says what it did';
REVOKE EXECUTE ON FUNCTION allma_cancel_execution(uuid, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION allma_cancel_execution(uuid, text) TO allma_user;

/*
 * Waits of WAIT_FOR_EXTERNAL_EVENT steps.  The path parks as a WAITING row
 * of allma.execution_paths whose request holds the wait ({"wait": {...}};
 * sub-flow parents keep other records there)
 * and whose due_at is the deadline: no process, no lock.  Workers look only
 * at parked paths whose deadline passed (execution_paths_waits_idx), and a
 * wait's row here says how it ended, so that a second resume, a resume of a
 * timed-out or cancelled wait and an unknown key are told apart.  Rows stay
 * with their execution (deleted with it).
 */
CREATE TABLE allma.waits (
	root_execution_id	uuid NOT NULL,
	execution_id		uuid NOT NULL REFERENCES allma.executions (execution_id) ON DELETE CASCADE,
	path_id				bigint NOT NULL,
	seq					integer NOT NULL,
	step_instance_id	text NOT NULL,
	correlation_key		text NOT NULL CHECK (octet_length(correlation_key) BETWEEN 1 AND 1024),
	status				text NOT NULL DEFAULT 'OPEN'
		CHECK (status IN ('OPEN', 'RESUMED', 'TIMED_OUT', 'CANCELLED')),
	deadline			timestamptz NOT NULL,
	payload				jsonb,
	resumed_by			regrole,
	created_at			timestamptz NOT NULL DEFAULT clock_timestamp(),
	ended_at			timestamptz,
	PRIMARY KEY (root_execution_id, execution_id, path_id, seq)
);
COMMENT ON TABLE allma.waits IS
	'Waits of WAIT_FOR_EXTERNAL_EVENT steps: correlation key, deadline, how they ended (allma_resume_flow)';
CREATE UNIQUE INDEX waits_open_key_idx ON allma.waits (correlation_key) WHERE status = 'OPEN';
CREATE INDEX waits_key_idx ON allma.waits (correlation_key);
CREATE INDEX execution_paths_waits_idx ON allma.execution_paths (due_at)
	WHERE status = 'WAITING' AND request ? 'wait';

ALTER TABLE allma.waits ENABLE ROW LEVEL SECURITY, FORCE ROW LEVEL SECURITY;
REVOKE ALL ON allma.waits FROM PUBLIC;
GRANT SELECT ON allma.waits TO allma_user;
CREATE POLICY waits_as_execution ON allma.waits FOR SELECT TO allma_user
	USING (EXISTS (SELECT FROM allma.executions e WHERE e.execution_id = waits.execution_id));

CREATE FUNCTION allma_resume_flow(correlation_key text, payload jsonb DEFAULT '{}')
RETURNS uuid
AS 'MODULE_PATHNAME', 'allma_resume_flow'
LANGUAGE C VOLATILE
SET search_path = pg_catalog, pg_temp;
COMMENT ON FUNCTION allma_resume_flow(text, jsonb) IS
	'Resumes the execution waiting on correlation_key: the payload is the wait step''s output; returns the execution id';
REVOKE EXECUTE ON FUNCTION allma_resume_flow(text, jsonb) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION allma_resume_flow(text, jsonb) TO allma_user;

/*
 * Execution timeouts: the flow's timeoutSeconds, else allma.execution_timeout,
 * fixed when the execution starts (a trigger, so that every way of starting
 * one sets it); workers end running executions past it as TIMED_OUT, found
 * through the partial index.
 */
ALTER TABLE allma.executions ADD COLUMN deadline timestamptz;
COMMENT ON COLUMN allma.executions.deadline IS
	'when the execution times out (flow timeoutSeconds, else allma.execution_timeout); NULL: never';
CREATE INDEX executions_deadline_idx ON allma.executions (deadline)
	WHERE status = 'RUNNING' AND deadline IS NOT NULL;
CREATE FUNCTION allma.execution_deadline()
RETURNS trigger
AS 'MODULE_PATHNAME', 'allma_execution_deadline'
LANGUAGE C;
REVOKE EXECUTE ON FUNCTION allma.execution_deadline() FROM PUBLIC;
CREATE TRIGGER executions_deadline BEFORE INSERT ON allma.executions
	FOR EACH ROW EXECUTE FUNCTION allma.execution_deadline();

-- sub-flows and redrive

/*
 * Step timing: started_at is when an attempt began (for HTTP, LLM, MCP and
 * mail steps when their request was committed for sending; for forks and
 * sub-flows when they started), ended_at when its result was recorded.
 */
ALTER TABLE allma.step_executions
	ADD COLUMN duration_ms double precision
		GENERATED ALWAYS AS (pg_catalog.date_part('epoch', ended_at - started_at) * 1000) STORED;
COMMENT ON COLUMN allma.step_executions.duration_ms IS
	'ended_at - started_at in milliseconds (a resumed step counts from when it first ran)';

/*
 * The execution tree: parent_execution_id, root_execution_id (the root's own
 * id for a top-level execution) and depth are 1.0's columns; a sync child
 * also names the parent's path that waits for it (parent_path_id, NULL for
 * async children), and a redriven execution the one it redrives.
 */
ALTER TABLE allma.executions
	ADD COLUMN parent_path_id bigint,
	ADD COLUMN parent_step_instance_id text,
	ADD COLUMN redrive_of uuid;
COMMENT ON COLUMN allma.executions.parent_path_id IS
	'For a sync sub-flow: the path of parent_execution_id that waits for it';
COMMENT ON COLUMN allma.executions.redrive_of IS
	'The execution this one redrives (allma_redrive_execution)';

/*
 * A sync sub-flow's end wakes the parent path that waits for it, in the
 * transaction that ends the child (whoever ends it: a worker, a cancel, a
 * timeout): the path becomes runnable to complete its step.  The path must
 * still wait for this very child (its request record names it).  The
 * function runs as the role that updates allma.executions (workers and
 * allma's functions: the bootstrap superuser); nobody may call it.
 */
CREATE FUNCTION allma.wake_sync_parent() RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	UPDATE allma.execution_paths
	   SET status = 'READY', joining = true, due_at = clock_timestamp()
	 WHERE execution_id = NEW.parent_execution_id AND path_id = NEW.parent_path_id
	   AND status = 'WAITING' AND request->>'childExecutionId' = NEW.execution_id::text;
	RETURN NULL;
END
$$;
REVOKE EXECUTE ON FUNCTION allma.wake_sync_parent() FROM PUBLIC;
CREATE TRIGGER executions_wake_sync_parent
	AFTER UPDATE OF status ON allma.executions
	FOR EACH ROW
	WHEN (NEW.parent_path_id IS NOT NULL AND OLD.status = 'RUNNING' AND NEW.status <> 'RUNNING')
	EXECUTE FUNCTION allma.wake_sync_parent();

-- a branch parked by its step (a sync sub-flow) is running, not queued
CREATE OR REPLACE VIEW allma.fork_progress WITH (security_invoker = true, security_barrier = true) AS
SELECT f.execution_id, f.fork_path_id, f.step_instance_id, f.total,
	   count(*) FILTER (WHERE p.status IN ('READY', 'INFLIGHT')
						   OR p.status = 'WAITING' AND p.request IS NOT NULL) AS running,
	   count(*) FILTER (WHERE p.status = 'WAITING' AND p.request IS NULL) AS queued,
	   f.completed, f.failed, f.started_at
  FROM allma.forks f
  LEFT JOIN allma.execution_paths p
	ON p.execution_id = f.execution_id AND p.parent_path_id = f.fork_path_id
 GROUP BY f.execution_id, f.fork_path_id, f.step_instance_id, f.total,
		  f.completed, f.failed, f.started_at;

/*
 * Redrive: the context each step of the main path started from, recorded
 * with execution logs on (allma_redrive_execution starts again from it),
 * and the execution a redrive runs again.
 */
ALTER TABLE allma.step_executions ADD COLUMN context jsonb;
COMMENT ON COLUMN allma.step_executions.context IS
	'The context the step started from (main path, execution logs on): what a redrive from this step starts with';

CREATE FUNCTION allma_redrive_execution(execution_id uuid, from_step text DEFAULT NULL,
										context jsonb DEFAULT NULL)
RETURNS uuid
AS 'MODULE_PATHNAME', 'allma_redrive_execution'
LANGUAGE C VOLATILE
SET search_path = pg_catalog, pg_temp;
COMMENT ON FUNCTION allma_redrive_execution(uuid, text, jsonb) IS
	'Starts a new execution of the same flow version from the original input, or from a step with the context recorded before it (or the one given); for the original''s starter or allma_admin, as the caller';
REVOKE EXECUTE ON FUNCTION allma_redrive_execution(uuid, text, jsonb) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION allma_redrive_execution(uuid, text, jsonb) TO allma_user;

/*
 * Flow versions are immutable: executions pin a version when they start and
 * the workers cache definitions by (flow, version), so a changed definition
 * would change running executions behind their back.  New definitions are
 * new versions (allma_create_flow).  The trigger holds for every role.
 */
CREATE FUNCTION allma.flow_versions_immutable() RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	RAISE EXCEPTION 'flow versions are immutable'
		USING ERRCODE = 'LM332',
			  DETAIL = format('Flow "%s" version %s cannot be changed; executions pin the version they started with.',
							  OLD.flow_id, OLD.version),
			  HINT = 'Create a new version with allma_create_flow() and publish it.';
END
$$;
REVOKE EXECUTE ON FUNCTION allma.flow_versions_immutable() FROM PUBLIC;
CREATE TRIGGER flow_versions_immutable
	BEFORE UPDATE OF flow_id, version, definition ON allma.flow_versions
	FOR EACH ROW EXECUTE FUNCTION allma.flow_versions_immutable();


------------------------------------------------------------------------------
-- Allma compatibility: import/export, DynamoDB and S3 modules, email triggers
------------------------------------------------------------------------------

/*
 * DynamoDB tables for the system/dynamodb-* modules.  A DynamoDB table name
 * stands for an item store (a table of schema allma_dynamodb, created by
 * allma_create_dynamodb_table and owned by its creator) or for a user's
 * own table (allma_bind_dynamodb_table).  The modules run as the step's
 * role, so each table's privileges decide who may read and write it.
 * Names nobody created or bound are DynamoDB's ResourceNotFoundException.
 */
CREATE SCHEMA allma_dynamodb;
COMMENT ON SCHEMA allma_dynamodb IS
	'allma: item stores of DynamoDB tables (GRANT CREATE on it to roles that may create them)';
GRANT USAGE ON SCHEMA allma_dynamodb TO PUBLIC;

CREATE TABLE allma.dynamodb_tables (
	table_name			text COLLATE "C" PRIMARY KEY
		CHECK (table_name ~ '^[A-Za-z0-9_.-]{3,255}$'),
	relation			regclass NOT NULL,
	managed				boolean NOT NULL,
	partition_key		text NOT NULL,
	partition_key_type	text NOT NULL CHECK (partition_key_type IN ('S', 'N')),
	sort_key			text,
	sort_key_type		text CHECK (sort_key_type IN ('S', 'N')),
	indexes				jsonb NOT NULL DEFAULT '[]' CHECK (jsonb_typeof(indexes) = 'array'),
	owner				regrole NOT NULL,
	created_at			timestamptz NOT NULL DEFAULT now(),
	CHECK ((sort_key IS NULL) = (sort_key_type IS NULL))
);
COMMENT ON TABLE allma.dynamodb_tables IS
	'DynamoDB table names of the system/dynamodb-* modules: item stores (managed) and bound tables';
SELECT pg_catalog.pg_extension_config_dump('allma.dynamodb_tables', '');
GRANT SELECT ON allma.dynamodb_tables TO PUBLIC;

CREATE FUNCTION allma_create_dynamodb_table(table_name text, partition_key text,
											sort_key text DEFAULT NULL,
											indexes jsonb DEFAULT '[]',
											attribute_types jsonb DEFAULT '{}')
RETURNS regclass
AS 'MODULE_PATHNAME', 'allma_create_dynamodb_table'
LANGUAGE C VOLATILE;
COMMENT ON FUNCTION allma_create_dynamodb_table(text, text, text, jsonb, jsonb) IS
	'Creates the item store of a DynamoDB table (needs CREATE on schema allma_dynamodb); indexes: [{indexName, partitionKey, sortKey}], attribute_types: {"attr": "S"|"N"}';

CREATE FUNCTION allma_bind_dynamodb_table(table_name text, target regclass, partition_key text,
										  sort_key text DEFAULT NULL,
										  indexes jsonb DEFAULT '[]')
RETURNS void
AS 'MODULE_PATHNAME', 'allma_bind_dynamodb_table'
LANGUAGE C VOLATILE;
COMMENT ON FUNCTION allma_bind_dynamodb_table(text, regclass, text, text, jsonb) IS
	'Makes a DynamoDB table name stand for a table of yours (rows are items, key columns are key attributes)';

CREATE FUNCTION allma_drop_dynamodb_table(table_name text)
RETURNS boolean
AS 'MODULE_PATHNAME', 'allma_drop_dynamodb_table'
LANGUAGE C STRICT VOLATILE;
COMMENT ON FUNCTION allma_drop_dynamodb_table(text) IS
	'Drops an item store with its items, or removes a binding (the bound table stays); false when unknown';

CREATE FUNCTION allma_dynamodb_explain(input jsonb)
RETURNS SETOF text
AS 'MODULE_PATHNAME', 'allma_dynamodb_explain'
LANGUAGE C STRICT VOLATILE;
COMMENT ON FUNCTION allma_dynamodb_explain(jsonb) IS
	'EXPLAIN (COSTS OFF) of the statement a system/dynamodb-data-loader QUERY or SCAN with this input runs';

/*
 * Buckets for the system/s3-* modules: a bucket is a table of schema
 * allma_s3 named like it, created by allma_create_bucket and owned by its
 * creator; its rows are the objects.  Grants on it share the bucket.
 */
CREATE SCHEMA allma_s3;
COMMENT ON SCHEMA allma_s3 IS
	'allma: buckets of the system/s3-* modules (GRANT CREATE on it to roles that may create them)';
GRANT USAGE ON SCHEMA allma_s3 TO PUBLIC;

CREATE FUNCTION allma_create_bucket(bucket text)
RETURNS regclass
AS 'MODULE_PATHNAME', 'allma_create_bucket'
LANGUAGE C STRICT VOLATILE;
COMMENT ON FUNCTION allma_create_bucket(text) IS
	'Creates a bucket (a table of schema allma_s3, owned by the caller, who needs CREATE on that schema)';

CREATE FUNCTION allma_drop_bucket(bucket text, force boolean DEFAULT false)
RETURNS boolean
AS 'MODULE_PATHNAME', 'allma_drop_bucket'
LANGUAGE C VOLATILE;
COMMENT ON FUNCTION allma_drop_bucket(text, boolean) IS
	'Drops a bucket (its owner only); one with objects needs force; false when unknown';

CREATE FUNCTION allma_object_read(pointer jsonb)
RETURNS bytea
AS 'MODULE_PATHNAME', 'allma_object_read_sql'
LANGUAGE C STRICT VOLATILE;
COMMENT ON FUNCTION allma_object_read(jsonb) IS
	'The bytes of "s3://bucket/key", {bucket, key}, {_s3_output_pointer} or FILE_DOWNLOAD''s {fileId}, read as the caller';

COMMENT ON FUNCTION allma_run_module(text, jsonb) IS
	'Runs a built-in module (DATA_TRANSFORMATION, system/dynamodb-*, system/s3-*) on an input, as a step would, as the caller';

/*
 * Who may use the AWS modules' catalog and functions: members of allma_user
 * (the functions run as their caller, so the item stores', bound tables' and
 * buckets' own privileges decide what a role reads and writes).  Table names
 * are visible to every allma_user (as DynamoDB's ListTables shows them to an
 * account); the catalog is written only by the functions above, as the
 * extension's owner.
 */
REVOKE ALL ON allma.dynamodb_tables FROM PUBLIC;
GRANT SELECT ON allma.dynamodb_tables TO allma_user;
ALTER TABLE allma.dynamodb_tables ENABLE ROW LEVEL SECURITY, FORCE ROW LEVEL SECURITY;
CREATE POLICY dynamodb_tables_names ON allma.dynamodb_tables FOR SELECT TO allma_user
	USING (true);
REVOKE EXECUTE ON FUNCTION allma_create_dynamodb_table(text, text, text, jsonb, jsonb),
	allma_bind_dynamodb_table(text, regclass, text, text, jsonb),
	allma_drop_dynamodb_table(text), allma_dynamodb_explain(jsonb),
	allma_create_bucket(text), allma_drop_bucket(text, boolean),
	allma_object_read(jsonb), allma_run_module(text, jsonb) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION allma_create_dynamodb_table(text, text, text, jsonb, jsonb),
	allma_bind_dynamodb_table(text, regclass, text, text, jsonb),
	allma_drop_dynamodb_table(text), allma_dynamodb_explain(jsonb),
	allma_create_bucket(text), allma_drop_bucket(text, boolean),
	allma_object_read(jsonb), allma_run_module(text, jsonb) TO allma_user;
-- these write the catalog as the extension's owner inside: pin search_path
ALTER FUNCTION allma_create_dynamodb_table(text, text, text, jsonb, jsonb)
	SET search_path = pg_catalog, pg_temp;
ALTER FUNCTION allma_bind_dynamodb_table(text, regclass, text, text, jsonb)
	SET search_path = pg_catalog, pg_temp;
ALTER FUNCTION allma_drop_dynamodb_table(text) SET search_path = pg_catalog, pg_temp;

-- email triggers

/*
 * Inbound email (docs/email-triggers.md): a mail gateway hands each message
 * to allma_deliver_email, which starts the published flows whose
 * EMAIL_START_POINT matches, each as the flow's owner.  allma_admin only:
 * grant allma_admin (or EXECUTE) to the gateway's role.
 */
CREATE FUNCTION allma_deliver_email(message text)
RETURNS uuid[]
AS 'MODULE_PATHNAME', 'allma_deliver_email'
LANGUAGE C STRICT VOLATILE
SET search_path = pg_catalog, pg_temp;
COMMENT ON FUNCTION allma_deliver_email(text) IS
	'Parses an RFC 5322 message and starts every published flow whose EMAIL_START_POINT matches it (as the flow''s owner); returns the execution ids';
REVOKE ALL ON FUNCTION allma_deliver_email(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION allma_deliver_email(text) TO allma_admin;

CREATE FUNCTION allma_parse_email(message text)
RETURNS jsonb
AS 'MODULE_PATHNAME', 'allma_parse_email'
LANGUAGE C STRICT IMMUTABLE;
COMMENT ON FUNCTION allma_parse_email(text) IS
	'The RFC 5322 message as allma_deliver_email gives it to flows (triggeringEmail; "to" lists the To addresses)';
REVOKE ALL ON FUNCTION allma_parse_email(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION allma_parse_email(text) TO allma_admin;

-- bundle import/export

/*
 * Allma's agents and reusable step definitions, brought by bundles
 * (allma_import; docs/from-allma.md).  An agent's flowVariables apply to
 * the executions of the flows it lists, when its owner holds EDIT on them;
 * a step definition is merged under the steps that name it (stepDefinitionId)
 * when a flow version is stored, for roles with its owner's privileges.
 * Written only by allma_import (as the bootstrap superuser); allma_user
 * reads its own rows, allma_admin all.
 */
CREATE TABLE allma.agents (
	agent_id			text PRIMARY KEY CHECK (length(agent_id) BETWEEN 1 AND 256),
	definition			jsonb NOT NULL CHECK (jsonb_typeof(definition) = 'object'),
	flow_ids			text[] NOT NULL DEFAULT '{}',
	flow_variables		jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(flow_variables) = 'object'),
	enabled				boolean NOT NULL DEFAULT true,
	owner				regrole NOT NULL,
	created_at			timestamptz NOT NULL DEFAULT now(),
	updated_at			timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX agents_flow_ids ON allma.agents USING gin (flow_ids);
COMMENT ON TABLE allma.agents IS
	'Allma agents: flowVariables applied to the executions of their flows (flow_ids)';

CREATE TABLE allma.step_definitions (
	step_definition_id	text PRIMARY KEY CHECK (length(step_definition_id) BETWEEN 1 AND 256),
	definition			jsonb NOT NULL CHECK (jsonb_typeof(definition) = 'object'),
	owner				regrole NOT NULL,
	created_at			timestamptz NOT NULL DEFAULT now(),
	updated_at			timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE allma.step_definitions IS
	'Allma reusable step definitions, merged under the steps naming them (stepDefinitionId) when a flow version is stored';

SELECT pg_catalog.pg_extension_config_dump('allma.agents', '');
SELECT pg_catalog.pg_extension_config_dump('allma.step_definitions', '');
REVOKE ALL ON allma.agents, allma.step_definitions FROM PUBLIC;
GRANT SELECT ON allma.agents, allma.step_definitions TO allma_user;
ALTER TABLE allma.agents ENABLE ROW LEVEL SECURITY, FORCE ROW LEVEL SECURITY;
ALTER TABLE allma.step_definitions ENABLE ROW LEVEL SECURITY, FORCE ROW LEVEL SECURITY;
CREATE POLICY agents_admin ON allma.agents FOR SELECT TO allma_admin USING (true);
CREATE POLICY step_definitions_admin ON allma.step_definitions FOR SELECT TO allma_admin USING (true);
CREATE POLICY agents_owner ON allma.agents FOR SELECT TO allma_user
	USING (pg_catalog.pg_has_role(owner, 'USAGE'));
CREATE POLICY step_definitions_owner ON allma.step_definitions FOR SELECT TO allma_user
	USING (pg_catalog.pg_has_role(owner, 'USAGE'));

-- a prompt version's other fields from a bundle (name, tags, timestamps), for the export
ALTER TABLE allma.prompt_templates
	ADD COLUMN bundle_attributes jsonb NOT NULL DEFAULT '{}'
		CHECK (jsonb_typeof(bundle_attributes) = 'object');
COMMENT ON COLUMN allma.prompt_templates.bundle_attributes IS
	'Fields an Allma bundle gave the version besides id, content, description, version, isPublished (allma_import/allma_export)';

CREATE FUNCTION allma_import(bundle jsonb, overwrite boolean DEFAULT false,
							 parameters jsonb DEFAULT '{}')
RETURNS jsonb
AS 'MODULE_PATHNAME', 'allma_import'
LANGUAGE C VOLATILE
SET search_path = pg_catalog, pg_temp;
COMMENT ON FUNCTION allma_import(jsonb, boolean, jsonb) IS
	'Imports an Allma export bundle (flows with versions, prompt templates, agents, step definitions) in one transaction; parameters fill deploy placeholders; returns a report';
REVOKE EXECUTE ON FUNCTION allma_import(jsonb, boolean, jsonb) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION allma_import(jsonb, boolean, jsonb) TO allma_user;

CREATE FUNCTION allma_export(flow_ids text[] DEFAULT NULL)
RETURNS jsonb
AS 'MODULE_PATHNAME', 'allma_export'
LANGUAGE C VOLATILE
SET search_path = pg_catalog, pg_temp;
COMMENT ON FUNCTION allma_export(text[]) IS
	'An Allma export bundle of the flows (NULL: all you may see) with their prompts, agents and step definitions';
REVOKE EXECUTE ON FUNCTION allma_export(text[]) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION allma_export(text[]) TO allma_user;


------------------------------------------------------------------------------
-- Operations: schedules, retention, completion actions
------------------------------------------------------------------------------

/*
 * Retention (src/retention.c).  Paths, forks, files and waits reference
 * allma.executions ON DELETE CASCADE; the history goes with its execution
 * through a statement trigger instead of a foreign key: a key makes every
 * history row check (and share-lock) its execution's row, the one row all
 * branches of a fork share and every pass updates, which made a
 * 100,000-branch fork six times slower (bench/NOTES.md).  Only the engine
 * writes history (nobody else holds INSERT), and only for executions that
 * exist, so deleting executions -- by the purge, or by hand -- is the one
 * way orphans could appear, and the trigger deletes their history in the
 * same statement.  1.0 left orphans of executions deleted by hand: they are
 * deleted here (the tables are locked by the Security section above).
 */
DELETE FROM allma.step_executions s
 WHERE NOT EXISTS (SELECT FROM allma.executions e WHERE e.execution_id = s.execution_id);
CREATE FUNCTION allma.delete_history_of_executions()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	DELETE FROM allma.step_executions s USING deleted_executions d
	 WHERE s.execution_id = d.execution_id;
	RETURN NULL;
END $$;
REVOKE ALL ON FUNCTION allma.delete_history_of_executions() FROM PUBLIC;
CREATE TRIGGER executions_delete_history AFTER DELETE ON allma.executions
	REFERENCING OLD TABLE AS deleted_executions
	FOR EACH STATEMENT EXECUTE FUNCTION allma.delete_history_of_executions();
-- finished executions in the order they expire
CREATE INDEX executions_ended_idx ON allma.executions (ended_at) WHERE ended_at IS NOT NULL;

CREATE FUNCTION allma_purge(older_than interval, flow_id text DEFAULT NULL)
RETURNS bigint
AS 'MODULE_PATHNAME', 'allma_purge'
LANGUAGE C VOLATILE
SET search_path = pg_catalog, pg_temp;
COMMENT ON FUNCTION allma_purge(interval, text) IS
	'Deletes finished executions that ended more than older_than ago (of one flow, or all), with their history; only those the caller can see; returns how many';
REVOKE EXECUTE ON FUNCTION allma_purge(interval, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION allma_purge(interval, text) TO allma_user;

/*
 * Schedules on pg_cron (src/schedule.c).  A schedule is a pg_cron job of
 * this database, named "allma:<job>" (SCHEDULE_START_POINT steps:
 * "allma:flow:<flow>:<step>"), run as the role that scheduled it (a step's:
 * the flow's owner); its command starts the flow with the execution id
 * allma_schedule_tick_id gives for the job and the minute, so that a tick
 * starts at most one execution.  Without pg_cron the functions say so.
 */
-- (salt: random per job and kept in its command, which pg_cron's row-level
-- security shows only to the job's role: nobody else can compute the ids of
-- its ticks and take them first)
CREATE FUNCTION allma_schedule_tick_id(job_name text, at timestamptz DEFAULT now(),
									   salt text DEFAULT '')
RETURNS uuid
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
	SELECT md5(current_user || '/' || job_name || '/' || salt || '/' ||
			   to_char(date_trunc('minute', at AT TIME ZONE 'UTC'), 'YYYY-MM-DD"T"HH24:MI'))::uuid
$$;
COMMENT ON FUNCTION allma_schedule_tick_id(text, timestamptz, text) IS
	'The execution id of a schedule''s tick: the same for the same role, job, salt and minute (UTC)';

CREATE FUNCTION allma_schedule_flow(job_name text, schedule text, flow_id text,
									input jsonb DEFAULT '{}')
RETURNS bigint
AS 'MODULE_PATHNAME', 'allma_schedule_flow'
LANGUAGE C VOLATILE
SET search_path = pg_catalog, pg_temp;
COMMENT ON FUNCTION allma_schedule_flow(text, text, text, jsonb) IS
	'Starts the flow on a pg_cron schedule (cron fields, or Allma''s cron(...)/rate(...)) as the caller, one execution per tick; needs START; returns the pg_cron job id';

CREATE FUNCTION allma_unschedule_flow(job_name text)
RETURNS boolean
AS 'MODULE_PATHNAME', 'allma_unschedule_flow'
LANGUAGE C VOLATILE
SET search_path = pg_catalog, pg_temp;
COMMENT ON FUNCTION allma_unschedule_flow(text) IS
	'Removes the caller''s schedule of that name; false when there is none';

CREATE FUNCTION allma_schedule_expression(expression text, timezone text DEFAULT 'UTC')
RETURNS text
AS 'MODULE_PATHNAME', 'allma_schedule_expression'
LANGUAGE C STABLE
SET search_path = pg_catalog, pg_temp;
COMMENT ON FUNCTION allma_schedule_expression(text, text) IS
	'The pg_cron schedule of an Allma scheduleExpression (cron(...), rate(...)) in a time zone; an error when pg_cron 1.4 cannot express it';

-- SCHEDULE_START_POINT steps follow the published version
CREATE FUNCTION allma_sync_schedules()
RETURNS trigger
AS 'MODULE_PATHNAME', 'allma_sync_schedules'
LANGUAGE C
SET search_path = pg_catalog, pg_temp;
CREATE TRIGGER flows_sync_schedules
	AFTER INSERT OR UPDATE OF published_version ON allma.flows
	FOR EACH ROW EXECUTE FUNCTION allma_sync_schedules();

REVOKE EXECUTE ON FUNCTION allma_schedule_tick_id(text, timestamptz, text),
	allma_schedule_flow(text, text, text, jsonb), allma_unschedule_flow(text),
	allma_schedule_expression(text, text), allma_sync_schedules() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION allma_schedule_tick_id(text, timestamptz, text),
	allma_schedule_flow(text, text, text, jsonb), allma_unschedule_flow(text),
	allma_schedule_expression(text, text) TO allma_user;


------------------------------------------------------------------------------
-- Faults and limits
------------------------------------------------------------------------------

-- engine faults
-- Failed worker passes per path (src/pathfail.c, docs/engine-faults.md): a path
-- whose pass failed allma.max_path_failures times alone is quarantined.
CREATE TABLE allma.path_failures (
	execution_id	uuid NOT NULL REFERENCES allma.executions (execution_id) ON DELETE CASCADE,
	path_id			bigint NOT NULL,
	failures		integer NOT NULL,
	crashes			integer NOT NULL DEFAULT 0,
	crash_seq		integer,
	last_error		text,
	last_failed_at	timestamptz NOT NULL DEFAULT clock_timestamp(),
	PRIMARY KEY (execution_id, path_id)
);
COMMENT ON TABLE allma.path_failures IS
	'Failed worker passes of execution paths, counted to quarantine a poison path (written by the workers)';
ALTER TABLE allma.path_failures ENABLE ROW LEVEL SECURITY;
ALTER TABLE allma.path_failures FORCE ROW LEVEL SECURITY;
REVOKE ALL ON allma.path_failures FROM PUBLIC;
GRANT SELECT ON allma.path_failures TO allma_user;
CREATE POLICY path_failures_admin ON allma.path_failures FOR SELECT TO allma_admin USING (true);
CREATE POLICY path_failures_as_execution ON allma.path_failures FOR SELECT TO allma_user
	USING (EXISTS (SELECT FROM allma.executions e WHERE e.execution_id = path_failures.execution_id));


------------------------------------------------------------------------------
-- Observability: graphs, timelines, progress, statistics
------------------------------------------------------------------------------

/*
 * Pictures of flows and executions.  None of them is SECURITY DEFINER: they
 * read allma.flow_versions, allma.executions and allma.step_executions as
 * the calling role, so row-level security decides which executions a role
 * can draw; an execution it cannot see is reported as unknown.
 */
CREATE FUNCTION allma_flow_graph(flow_id text, version integer DEFAULT NULL,
								 format text DEFAULT 'mermaid')
RETURNS text
AS 'MODULE_PATHNAME', 'allma_flow_graph'
LANGUAGE C STABLE;
COMMENT ON FUNCTION allma_flow_graph(text, integer, text) IS
	'The graph of a flow version (NULL: the published one, else the latest) as Mermaid (format ''mermaid'') or Graphviz DOT (''dot'')';

CREATE FUNCTION allma_execution_graph(execution_id uuid, format text DEFAULT 'mermaid')
RETURNS text
AS 'MODULE_PATHNAME', 'allma_execution_graph'
LANGUAGE C STABLE;
COMMENT ON FUNCTION allma_execution_graph(uuid, text) IS
	'The graph of the flow version an execution runs, with the path taken, failures, retries, durations and branch counts; Mermaid or DOT';

CREATE FUNCTION allma_execution_timeline(execution_id uuid)
RETURNS text
AS 'MODULE_PATHNAME', 'allma_execution_timeline'
LANGUAGE C STRICT STABLE;
COMMENT ON FUNCTION allma_execution_timeline(uuid) IS
	'A self-contained SVG waterfall of an execution: one bar per step attempt and branch, coloured by outcome, with waits and retry delays';

-- drawn as the caller, for members of allma_user
REVOKE EXECUTE ON FUNCTION allma_flow_graph(text, integer, text),
	allma_execution_graph(uuid, text), allma_execution_timeline(uuid) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION allma_flow_graph(text, integer, text),
	allma_execution_graph(uuid, text), allma_execution_timeline(uuid) TO allma_user;

/*
 * Progress of running executions.  Every view below is security_invoker:
 * it reads allma's tables as the querying role, so row-level security
 * shows allma_user members the executions they started (and their paths,
 * forks and history) and allma_admin every execution.  security_barrier
 * keeps a caller's own functions in WHERE from seeing rows it may not.
 *
 * allma.live_path_waits: one row per live path (a path with a current
 * step, READY, INFLIGHT or WAITING), classified by what it waits on:
 *   runnable     READY and due: a worker takes it on its next pass
 *   timer        READY, due later (a delay, a retry backoff, a poll)
 *   http         INFLIGHT: a request was sent, the response is awaited
 *   branches     WAITING fork step: its branches are running
 *   concurrency  WAITING branch queued behind the fork's maxConcurrency
 *                (no request: a branch whose own step parked it is not queued)
 *   child        WAITING while a sub-flow (an execution whose
 *                parent_execution_id is this one) runs
 *   event        any other WAITING path: an external event or task token
 */
-- the children of an execution (sub-flows), for the views below and the tree
CREATE INDEX executions_parent_idx ON allma.executions (parent_execution_id, parent_path_id)
	WHERE parent_execution_id IS NOT NULL;

CREATE VIEW allma.live_path_waits WITH (security_invoker = true, security_barrier = true) AS
SELECT p.execution_id, p.path_id, p.parent_path_id, p.branch_id, p.step_instance_id,
	   p.status, p.attempt,
	   coalesce((SELECT pg_catalog.max(h.ended_at) FROM allma.step_executions h
				  WHERE h.execution_id = p.execution_id AND h.path_id = p.path_id),
				(SELECT f.started_at FROM allma.forks f
				  WHERE f.execution_id = p.execution_id AND f.fork_path_id = p.parent_path_id),
				(SELECT e.started_at FROM allma.executions e
				  WHERE e.execution_id = p.execution_id)) AS step_since,
	   CASE
		   WHEN p.status = 'READY' AND p.due_at <= pg_catalog.now() THEN 'runnable'
		   WHEN p.status = 'READY' THEN 'timer'
		   WHEN p.status = 'INFLIGHT' THEN 'http'
		   WHEN fork.fork_path_id IS NOT NULL THEN 'branches'
		   WHEN parent_fork.fork_path_id IS NOT NULL THEN 'concurrency'
		   WHEN child.execution_id IS NOT NULL THEN 'child'
		   ELSE 'event'
	   END AS waiting_on,
	   CASE WHEN p.status = 'READY' THEN p.due_at END AS due_at,
	   CASE WHEN p.status = 'INFLIGHT' THEN p.lease_until END AS lease_until,
	   child.execution_id AS child_execution_id,
	   -- the correlation key and deadline of the event a path parked by
	   -- WAIT_FOR_EXTERNAL_EVENT waits for (its request holds its wait)
	   CASE WHEN p.status = 'WAITING' AND p.request ? 'wait'
			THEN p.request->'wait'->>'correlationKey' END AS event_key,
	   CASE WHEN p.status = 'WAITING' AND p.request ? 'wait' THEN p.due_at END AS event_deadline
  FROM allma.execution_paths p
  LEFT JOIN allma.forks fork
	ON fork.execution_id = p.execution_id AND fork.fork_path_id = p.path_id
  LEFT JOIN allma.forks parent_fork
	ON p.status = 'WAITING' AND p.request IS NULL AND parent_fork.execution_id = p.execution_id
   AND parent_fork.fork_path_id = p.parent_path_id
  LEFT JOIN LATERAL (
	SELECT c.execution_id FROM allma.executions c
	 WHERE p.status = 'WAITING' AND fork.fork_path_id IS NULL AND parent_fork.fork_path_id IS NULL
	   AND c.parent_execution_id = p.execution_id AND c.parent_path_id = p.path_id
	   AND c.status = 'RUNNING'
	 ORDER BY c.started_at, c.execution_id LIMIT 1) child ON true
 WHERE p.status IN ('READY', 'INFLIGHT', 'WAITING') AND p.step_instance_id IS NOT NULL;
COMMENT ON VIEW allma.live_path_waits IS
	'Live paths of executions and what each waits on: runnable, timer, http, branches, concurrency, child, event';

/*
 * allma.execution_progress: one row per RUNNING execution.  Progress
 * follows Allma's two levels: when the flow version declares checkpoints
 * ({"checkpoint": {"id", "label", "order"}} on steps), the furthest one
 * whose step has completed, its ordinal among the declared checkpoints
 * (ordered by order, then id) and percent = ordinal / total; otherwise
 * percent = distinct steps completed / steps defined, at most 99 while
 * the execution runs.
 */
CREATE VIEW allma.execution_progress WITH (security_invoker = true, security_barrier = true) AS
WITH checkpoints AS (
	SELECT v.flow_id, v.version, s.key AS step_instance_id,
		   s.value->'checkpoint'->>'id' AS checkpoint_id,
		   s.value->'checkpoint'->>'label' AS checkpoint_label,
		   pg_catalog.row_number() OVER (
			   PARTITION BY v.flow_id, v.version
			   ORDER BY CASE WHEN pg_catalog.jsonb_typeof(s.value->'checkpoint'->'order') = 'number'
						THEN (s.value->'checkpoint'->>'order')::numeric END NULLS LAST,
						s.value->'checkpoint'->>'id', s.key) AS ordinal,
		   pg_catalog.count(*) OVER (PARTITION BY v.flow_id, v.version) AS total
	  FROM allma.flow_versions v
	  CROSS JOIN LATERAL pg_catalog.jsonb_each(v.definition->'steps') s
	 WHERE pg_catalog.jsonb_typeof(s.value->'checkpoint') = 'object'
	   AND EXISTS (SELECT FROM allma.executions r
				   WHERE r.status = 'RUNNING' AND r.flow_id = v.flow_id AND r.flow_version = v.version)
)
SELECT e.execution_id, e.flow_id, e.flow_version, e.started_by, e.parent_execution_id,
	   coalesce(e.root_execution_id, e.execution_id) AS root_execution_id, e.depth,
	   e.started_at, pg_catalog.now() - e.started_at AS running_for,
	   live.current_steps, live.current_step_since, coalesce(live.live_paths, 0) AS live_paths,
	   hist.steps_completed, hist.last_step_ended_at,
	   cp.checkpoint_id, cp.checkpoint_label, cp.ordinal AS checkpoint_ordinal,
	   coalesce(cp.total, cpt.total) AS checkpoints_total,
	   CASE
		   WHEN cpt.total IS NOT NULL
			   THEN pg_catalog.round(100.0 * coalesce(cp.ordinal, 0) / cpt.total, 1)
		   WHEN defn.steps_defined > 0
			   THEN least(99.0, pg_catalog.round(100.0 * hist.distinct_steps_completed
														   / defn.steps_defined, 1))
	   END AS percent,
	   CASE WHEN cpt.total IS NOT NULL THEN 'checkpoints'
			WHEN defn.steps_defined > 0 THEN 'steps' END AS percent_basis,
	   forks.running_forks, forks.branches_done, forks.branches_total,
	   live.waiting_on, live.next_due_at, live.child_execution_ids, live.event_keys, live.waits
  FROM allma.executions e
  LEFT JOIN LATERAL (
	SELECT pg_catalog.count(*) FILTER (WHERE h.status = 'COMPLETED') AS steps_completed,
		   pg_catalog.count(DISTINCT h.step_instance_id) FILTER (WHERE h.status = 'COMPLETED')
			   AS distinct_steps_completed,
		   pg_catalog.max(h.ended_at) AS last_step_ended_at
	  FROM allma.step_executions h WHERE h.execution_id = e.execution_id) hist ON true
  LEFT JOIN LATERAL (
	SELECT (SELECT pg_catalog.count(*) FROM pg_catalog.jsonb_object_keys(v.definition->'steps'))
			   AS steps_defined
	  FROM allma.flow_versions v
	 WHERE v.flow_id = e.flow_id AND v.version = e.flow_version
	   AND pg_catalog.jsonb_typeof(v.definition->'steps') = 'object') defn ON true
  LEFT JOIN LATERAL (
	SELECT c.total FROM checkpoints c
	 WHERE c.flow_id = e.flow_id AND c.version = e.flow_version LIMIT 1) cpt ON true
  LEFT JOIN LATERAL (
	SELECT c.checkpoint_id, c.checkpoint_label, c.ordinal, c.total FROM checkpoints c
	 WHERE c.flow_id = e.flow_id AND c.version = e.flow_version
	   AND EXISTS (SELECT FROM allma.step_executions h
				   WHERE h.execution_id = e.execution_id AND h.status = 'COMPLETED'
					 AND h.step_instance_id = c.step_instance_id)
	 ORDER BY c.ordinal DESC LIMIT 1) cp ON true
  LEFT JOIN LATERAL (
	SELECT pg_catalog.count(*) AS running_forks,
		   pg_catalog.sum(f.completed + f.failed)::bigint AS branches_done,
		   pg_catalog.sum(f.total)::bigint AS branches_total
	  FROM allma.forks f WHERE f.execution_id = e.execution_id) forks ON true
  LEFT JOIN LATERAL (
	SELECT pg_catalog.array_agg(DISTINCT w.step_instance_id ORDER BY w.step_instance_id) AS current_steps,
		   pg_catalog.min(w.step_since) AS current_step_since,
		   pg_catalog.count(*) AS live_paths,
		   pg_catalog.array_agg(DISTINCT w.waiting_on ORDER BY w.waiting_on) AS waiting_on,
		   pg_catalog.min(w.due_at) FILTER (WHERE w.waiting_on = 'timer') AS next_due_at,
		   pg_catalog.array_agg(DISTINCT w.child_execution_id ORDER BY w.child_execution_id)
			   FILTER (WHERE w.child_execution_id IS NOT NULL) AS child_execution_ids,
		   pg_catalog.array_agg(DISTINCT w.event_key ORDER BY w.event_key)
			   FILTER (WHERE w.event_key IS NOT NULL) AS event_keys,
		   pg_catalog.jsonb_agg(pg_catalog.jsonb_strip_nulls(pg_catalog.jsonb_build_object(
			   'pathId', w.path_id, 'branchId', w.branch_id, 'step', w.step_instance_id,
			   'attempt', w.attempt, 'since', w.step_since, 'waitingOn', w.waiting_on, 'dueAt', w.due_at,
			   'leaseUntil', w.lease_until, 'childExecutionId', w.child_execution_id,
			   'eventKey', w.event_key, 'eventDeadline', w.event_deadline))
			   ORDER BY w.path_id) AS waits
	  FROM allma.live_path_waits w WHERE w.execution_id = e.execution_id) live ON true
 WHERE e.status = 'RUNNING';
COMMENT ON VIEW allma.execution_progress IS
	'Running executions: current steps, steps completed, checkpoint reached, percent, fork branches done/total, what they wait on';

GRANT SELECT ON allma.live_path_waits, allma.execution_progress TO allma_user;

/*
 * allma.execution_tree: every execution with its sub-flows (executions
 * whose parent_execution_id is it, recursively) and its parallel branches
 * (paths other than 0: the live ones from allma.execution_paths, the
 * finished ones from the history), one row per node.  A sub-flow's parent
 * is its parent execution; a branch's is the branch it was forked from
 * (nested forks, while they run) or else its execution.  tree_path sorts
 * the rows depth-first (ORDER BY root_execution_id, tree_path draws the
 * tree): under a node its branches in path order, then its sub-flows by
 * start time.  depth counts levels from the root.  An execution whose
 * parent the caller cannot see is a root of its own.
 *
 * Only the executions are walked recursively; the branches of each are
 * read from its own paths and history rows (by primary key), so a filter
 * on root_execution_id reads the history of that tree only.
 */
CREATE VIEW allma.execution_tree WITH (security_invoker = true, security_barrier = true) AS
WITH RECURSIVE tree AS (
	SELECT e.execution_id AS root_execution_id, e.execution_id, 0 AS depth,
		   ARRAY[pg_catalog.to_char(e.started_at AT TIME ZONE 'UTC', 'YYYYMMDDHH24MISSUS')
				 || '/' || e.execution_id::text] AS tree_path
	  FROM allma.executions e
	 WHERE NOT EXISTS (SELECT FROM allma.executions pe WHERE pe.execution_id = e.parent_execution_id)
	UNION ALL
	SELECT t.root_execution_id, e.execution_id, t.depth + 1,
		   t.tree_path || (pg_catalog.to_char(e.started_at AT TIME ZONE 'UTC', 'YYYYMMDDHH24MISSUS')
						   || '/' || e.execution_id::text)
	  FROM tree t JOIN allma.executions e ON e.parent_execution_id = t.execution_id
)
SELECT t.root_execution_id, e.execution_id, NULL::bigint AS path_id, 'execution'::text AS node_kind,
	   t.depth, e.parent_execution_id, NULL::bigint AS parent_path_id, NULL::text AS branch_id,
	   e.flow_id, e.flow_version, e.status,
	   (SELECT p.step_instance_id FROM allma.execution_paths p
		 WHERE p.execution_id = e.execution_id AND p.path_id = 0) AS current_step,
	   e.started_at, e.ended_at, e.ended_at - e.started_at AS duration, t.tree_path
  FROM tree t JOIN allma.executions e ON e.execution_id = t.execution_id
UNION ALL
SELECT t.root_execution_id, t.execution_id, b.path_id, 'branch', t.depth + b.level, NULL,
	   b.parent_path_id, b.branch_id, e.flow_id, e.flow_version, b.status, b.current_step,
	   b.started_at, b.ended_at, b.ended_at - b.started_at, t.tree_path || b.key
  FROM tree t JOIN allma.executions e ON e.execution_id = t.execution_id
 CROSS JOIN LATERAL (
	WITH RECURSIVE live AS (
		SELECT p.path_id, NULLIF(p.parent_path_id, 0) AS parent_path_id, p.branch_id, p.status,
			   p.step_instance_id
		  FROM allma.execution_paths p
		 WHERE p.execution_id = t.execution_id AND p.path_id <> 0
	), nest AS (
		SELECT l.path_id, 1 AS level, ARRAY[pg_catalog.lpad(l.path_id::text, 20, '0')] AS key
		  FROM live l
		 WHERE NOT EXISTS (SELECT FROM live x WHERE x.path_id = l.parent_path_id)
		UNION ALL
		SELECT l.path_id, n.level + 1, n.key || pg_catalog.lpad(l.path_id::text, 20, '0')
		  FROM nest n JOIN live l ON l.parent_path_id = n.path_id
	), hist AS (
		SELECT h.path_id, pg_catalog.max(h.branch_id) AS branch_id,
			   pg_catalog.min(h.started_at) AS started_at, pg_catalog.max(h.ended_at) AS ended_at,
			   (pg_catalog.array_agg(h.status ORDER BY h.seq DESC))[1] = 'FAILED' AS failed
		  FROM allma.step_executions h
		 WHERE h.execution_id = t.execution_id AND h.path_id <> 0
		 GROUP BY h.path_id
	)
	SELECT coalesce(l.path_id, h.path_id) AS path_id, l.parent_path_id,
		   coalesce(l.branch_id, h.branch_id) AS branch_id,
		   CASE WHEN l.status IN ('READY', 'INFLIGHT', 'WAITING') THEN 'RUNNING'
				WHEN l.status = 'FAILED' OR h.failed THEN 'FAILED'
				ELSE 'COMPLETED' END AS status,
		   CASE WHEN l.status IN ('READY', 'INFLIGHT', 'WAITING') THEN l.step_instance_id END
			   AS current_step,
		   h.started_at,
		   CASE WHEN l.status IS NULL OR l.status IN ('DONE', 'FAILED') THEN h.ended_at END AS ended_at,
		   coalesce(n.level, 1) AS level,
		   coalesce(n.key, ARRAY[pg_catalog.lpad(h.path_id::text, 20, '0')]) AS key
	  FROM live l
	  FULL JOIN hist h ON h.path_id = l.path_id
	  LEFT JOIN nest n ON n.path_id = l.path_id) b;
COMMENT ON VIEW allma.execution_tree IS
	'Executions with their sub-flows and parallel branches, one row per node; ORDER BY root_execution_id, tree_path for a depth-first tree';

GRANT SELECT ON allma.execution_tree TO allma_user;

/*
 * Statistics of step attempts per flow and step type over a window of
 * start times, computed as the caller (SECURITY INVOKER): row-level
 * security limits them to the executions the caller may see.  POLLING
 * rows (a poll that found the work unfinished) are counted apart from
 * attempts.  Durations are ended_at - started_at of each attempt, in
 * milliseconds (percentile_cont: interpolated).  LLM tokens are those the
 * provider reported, recorded by LLM_INVOCATION steps in
 * details.tokenUsage; by_model keys them by details.modelId (the model
 * the flow asked for and that answered) or else details.model.
 */
CREATE FUNCTION allma_flow_statistics(since timestamptz, until timestamptz DEFAULT now())
RETURNS TABLE (flow_id text, step_type text, executions bigint, attempts bigint,
			   completed bigint, failures bigint, retries bigint, polls bigint,
			   p50_ms double precision, p95_ms double precision, p99_ms double precision,
			   mean_ms double precision, max_ms double precision,
			   llm_calls bigint, input_tokens numeric, output_tokens numeric, by_model jsonb,
			   first_started_at timestamptz, last_started_at timestamptz)
LANGUAGE sql STABLE SECURITY INVOKER PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
BEGIN ATOMIC
	WITH h AS (
		SELECT e.flow_id, s.step_type, s.execution_id, s.status, s.attempt, s.started_at,
			   EXTRACT(EPOCH FROM s.ended_at - s.started_at)::double precision * 1000 AS ms,
			   CASE WHEN jsonb_typeof(s.details->'tokenUsage') = 'object' THEN
					coalesce(s.details->>'modelId', s.details->>'model', 'unknown') END AS model,
			   CASE WHEN jsonb_typeof(s.details->'tokenUsage'->'inputTokens') = 'number'
					THEN (s.details->'tokenUsage'->>'inputTokens')::numeric END AS tin,
			   CASE WHEN jsonb_typeof(s.details->'tokenUsage'->'outputTokens') = 'number'
					THEN (s.details->'tokenUsage'->>'outputTokens')::numeric END AS tout
		  FROM allma.step_executions s
		  JOIN allma.executions e ON e.execution_id = s.execution_id
		 WHERE s.started_at >= allma_flow_statistics.since
		   AND s.started_at < allma_flow_statistics.until
	), per_model AS (
		SELECT h.flow_id, h.step_type,
			   jsonb_object_agg(h.model, jsonb_build_object(
				   'calls', h.calls, 'inputTokens', h.tin, 'outputTokens', h.tout)
				   ORDER BY h.model) AS by_model
		  FROM (SELECT h.flow_id, h.step_type, h.model, count(*) AS calls,
					   coalesce(sum(h.tin), 0) AS tin, coalesce(sum(h.tout), 0) AS tout
				  FROM h WHERE h.model IS NOT NULL
				 GROUP BY h.flow_id, h.step_type, h.model) h
		 GROUP BY h.flow_id, h.step_type
	), agg AS (
		SELECT h.flow_id, h.step_type, count(DISTINCT h.execution_id) AS executions,
			   count(*) FILTER (WHERE h.status <> 'POLLING') AS attempts,
			   count(*) FILTER (WHERE h.status = 'COMPLETED') AS completed,
			   count(*) FILTER (WHERE h.status = 'FAILED') AS failures,
			   count(*) FILTER (WHERE h.status <> 'POLLING' AND h.attempt > 1) AS retries,
			   count(*) FILTER (WHERE h.status = 'POLLING') AS polls,
			   percentile_cont(0.5) WITHIN GROUP (ORDER BY h.ms)
				   FILTER (WHERE h.status <> 'POLLING') AS p50_ms,
			   percentile_cont(0.95) WITHIN GROUP (ORDER BY h.ms)
				   FILTER (WHERE h.status <> 'POLLING') AS p95_ms,
			   percentile_cont(0.99) WITHIN GROUP (ORDER BY h.ms)
				   FILTER (WHERE h.status <> 'POLLING') AS p99_ms,
			   avg(h.ms) FILTER (WHERE h.status <> 'POLLING') AS mean_ms,
			   max(h.ms) FILTER (WHERE h.status <> 'POLLING') AS max_ms,
			   count(h.model) AS llm_calls, sum(h.tin) AS input_tokens, sum(h.tout) AS output_tokens,
			   min(h.started_at) AS first_started_at, max(h.started_at) AS last_started_at
		  FROM h GROUP BY h.flow_id, h.step_type
	)
	SELECT a.flow_id, a.step_type, a.executions, a.attempts, a.completed, a.failures, a.retries,
		   a.polls, a.p50_ms, a.p95_ms, a.p99_ms, a.mean_ms, a.max_ms, a.llm_calls,
		   a.input_tokens, a.output_tokens, m.by_model, a.first_started_at, a.last_started_at
	  FROM agg a LEFT JOIN per_model m ON m.flow_id = a.flow_id AND m.step_type = a.step_type
	 ORDER BY a.flow_id, a.step_type;
END;
COMMENT ON FUNCTION allma_flow_statistics(timestamptz, timestamptz) IS
	'Per flow and step type, over step attempts started in [since, until) that the caller may see: counts, failures, retries, p50/p95/p99 duration, LLM tokens overall and per model';

CREATE VIEW allma.flow_statistics WITH (security_invoker = true, security_barrier = true) AS
SELECT * FROM allma_flow_statistics('-infinity', 'infinity');
COMMENT ON VIEW allma.flow_statistics IS
	'allma_flow_statistics over all the history the caller may see';

REVOKE EXECUTE ON FUNCTION allma_flow_statistics(timestamptz, timestamptz) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION allma_flow_statistics(timestamptz, timestamptz) TO allma_user;
GRANT SELECT ON allma.flow_statistics TO allma_user;

/*
 * Worker status.  allma.worker_slots() is what shared memory knows of
 * each running worker (read without a lock on any table); 1.1's
 * allma_worker_status() keeps 1.0's four columns first and adds the steps
 * each worker ran, the requests in flight it owns (INFLIGHT paths whose
 * owner_slot is the worker) and the queue of its database: paths runnable
 * now, waiting on timers, on events, on sub-flows, on rate limits (none
 * yet), and the age of the oldest runnable path (how late the workers
 * are).  The counts are taken from allma.live_path_waits as the caller,
 * so a member of allma_user counts its own executions and allma_admin
 * all of them; workers connected to another database show NULL counts.
 */
CREATE FUNCTION allma.worker_slots(OUT worker integer, OUT pid integer, OUT database_oid oid,
								   OUT state text, OUT steps_run bigint)
RETURNS SETOF record
AS 'MODULE_PATHNAME', 'allma_worker_slots'
LANGUAGE C STRICT VOLATILE
SET search_path = pg_catalog, pg_temp;
COMMENT ON FUNCTION allma.worker_slots() IS
	'The running allma workers as shared memory shows them: slot, PID, database, state, steps run';

DROP FUNCTION allma_worker_status();
CREATE FUNCTION allma_worker_status(OUT worker integer, OUT pid integer, OUT database name,
									OUT state text, OUT steps_run bigint,
									OUT inflight_requests bigint, OUT runnable bigint,
									OUT waiting_timers bigint, OUT waiting_events bigint,
									OUT waiting_children bigint, OUT waiting_rate_limits bigint,
									OUT oldest_runnable_age interval)
RETURNS SETOF record
LANGUAGE sql VOLATILE SECURITY INVOKER
SET search_path = pg_catalog, pg_temp
BEGIN ATOMIC
	WITH queue AS (
		SELECT count(*) FILTER (WHERE w.waiting_on = 'runnable') AS runnable,
			   count(*) FILTER (WHERE w.waiting_on = 'timer') AS timers,
			   count(*) FILTER (WHERE w.waiting_on = 'event') AS events,
			   count(*) FILTER (WHERE w.waiting_on = 'child') AS children,
			   now() - min(w.due_at) FILTER (WHERE w.waiting_on = 'runnable') AS oldest
		  FROM allma.live_path_waits w
	), inflight AS (
		SELECT p.owner_slot, count(*) AS n
		  FROM allma.execution_paths p
		 WHERE p.status = 'INFLIGHT' AND p.owner_slot IS NOT NULL
		 GROUP BY p.owner_slot
	)
	SELECT s.worker, s.pid, d.datname, s.state, s.steps_run,
		   CASE WHEN here THEN coalesce(i.n, 0) END,
		   CASE WHEN here THEN q.runnable END,
		   CASE WHEN here THEN q.timers END,
		   CASE WHEN here THEN q.events END,
		   CASE WHEN here THEN q.children END,
		   CASE WHEN here THEN 0::bigint END,
		   CASE WHEN here THEN q.oldest END
	  FROM allma.worker_slots() s
	  LEFT JOIN pg_database d ON d.oid = s.database_oid
	  CROSS JOIN LATERAL (SELECT d.datname = current_database() AS here) h
	  CROSS JOIN queue q
	  LEFT JOIN inflight i ON i.owner_slot = s.worker
	 ORDER BY s.worker;
END;
COMMENT ON FUNCTION allma_worker_status() IS
	'The allma worker processes, what each is doing, its requests in flight and its database''s queue (counted over the executions the caller may see)';

CREATE VIEW allma.worker_status WITH (security_invoker = true) AS
SELECT * FROM allma_worker_status();
COMMENT ON VIEW allma.worker_status IS
	'allma_worker_status() as a view: workers, in-flight requests, queue depth, oldest runnable age';

REVOKE EXECUTE ON FUNCTION allma.worker_slots(), allma_worker_status() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION allma.worker_slots(), allma_worker_status() TO allma_user;
GRANT SELECT ON allma.worker_status TO allma_user;


------------------------------------------------------------------------------
-- Rate limits, concurrency keys, priorities
------------------------------------------------------------------------------


------------------------------------------------------------------------------
-- Scale: out-of-line values
------------------------------------------------------------------------------

-- ==== scale: large values out of line ====
/*
 * Large values (src/large_value.c).  A step output, a context value or a
 * fork aggregate above allma.out_of_line_threshold is stored here once and
 * the context and history hold a pointer {"$allma_ref": "<value_id>",
 * "bytes": n} instead; paths, mappings and templates walk through it.  A
 * value is one row (first_element NULL), or an array split in parts of at
 * most 10,000 elements (part 0, 1, ...; first_element is the index of the
 * part's first element), which is how a wide fork's COLLECT_ARRAY lands.
 * Keyed by the root execution: a worker looks a pointer up only within the
 * tree of the execution it runs, so a pointer copied (or forged) into
 * another execution's input reads nothing.  The rows go with the root
 * execution (purge, retention: ON DELETE CASCADE; a cancelled execution
 * keeps them until it is purged, as it keeps its history).  Only workers
 * write (as the bootstrap superuser); allma_user reads the values of the
 * executions it can see, allma_admin all.
 */
CREATE TABLE allma.large_values (
	root_execution_id	uuid NOT NULL REFERENCES allma.executions (execution_id) ON DELETE CASCADE,
	value_id			uuid NOT NULL,
	part				integer NOT NULL DEFAULT 0 CHECK (part >= 0),
	first_element		bigint CHECK (first_element >= 0),
	execution_id		uuid NOT NULL,
	value				jsonb NOT NULL,
	bytes				bigint NOT NULL,
	created_at			timestamptz NOT NULL DEFAULT clock_timestamp(),
	PRIMARY KEY (root_execution_id, value_id, part)
);
COMMENT ON TABLE allma.large_values IS
	'Values above allma.out_of_line_threshold, referenced from contexts and history by {"$allma_ref": value_id, "bytes": n}';
CREATE INDEX large_values_value_idx ON allma.large_values (value_id, part);
ALTER TABLE allma.large_values ENABLE ROW LEVEL SECURITY;
ALTER TABLE allma.large_values FORCE ROW LEVEL SECURITY;
REVOKE ALL ON allma.large_values FROM PUBLIC;
GRANT SELECT ON allma.large_values TO allma_user;
CREATE POLICY large_values_admin ON allma.large_values FOR SELECT TO allma_admin USING (true);
CREATE POLICY large_values_as_execution ON allma.large_values FOR SELECT TO allma_user
	USING (EXISTS (SELECT FROM allma.executions e WHERE e.execution_id = large_values.root_execution_id));

-- read as the caller: row-level security decides whose values it sees
CREATE FUNCTION allma_value(ref jsonb)
RETURNS jsonb
AS 'MODULE_PATHNAME', 'allma_value'
LANGUAGE C STRICT STABLE
SET search_path = pg_catalog, pg_temp;
COMMENT ON FUNCTION allma_value(jsonb) IS
	'The full value a pointer {"$allma_ref": ...} refers to (an out-of-line value of an execution the caller can see)';
CREATE FUNCTION allma_hydrate(doc jsonb)
RETURNS jsonb
AS 'MODULE_PATHNAME', 'allma_hydrate'
LANGUAGE C STRICT STABLE
SET search_path = pg_catalog, pg_temp;
COMMENT ON FUNCTION allma_hydrate(jsonb) IS
	'doc with every pointer to an out-of-line value replaced by the value, at any depth';
REVOKE EXECUTE ON FUNCTION allma_value(jsonb), allma_hydrate(jsonb) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION allma_value(jsonb), allma_hydrate(jsonb) TO allma_user;


-- ==== concurrency: concurrency keys (at most N executions per key run at once) ====

/*
 * Concurrency keys (src/concurrency.c, docs/concurrency.md).  An execution
 * started with {"concurrencyKey": k, "maxConcurrent": n} in its options, or
 * of a flow whose definition has "concurrency": {"keyTemplate", "limit"}
 * (the template rendered against the input), runs only while fewer than n
 * executions of key k run; the others wait with status QUEUED, in arrival
 * order, without a path (nothing to claim).  allma.concurrency_slots holds
 * one row per key in use: its limit (the latest start's) and how many run.
 * A transaction that starts or ends keyed executions locks the rows of
 * its keys when it commits (in key order), counts what runs and admits
 * what the limits allow, so two sessions never admit over the limit.  An
 * end of any kind (completed, failed, cancelled, timed out, deleted) thus
 * admits the next queued executions of its key in the same transaction.
 *
 * executions.status gains QUEUED; a QUEUED execution's started_at is when
 * it arrived until it is admitted, then the admission time (queued_at
 * keeps the arrival), and its deadline moves with it: the flow's timeout
 * counts running time.
 */
ALTER TABLE allma.executions
	DROP CONSTRAINT executions_status_check,
	ADD CONSTRAINT executions_status_check
		CHECK (status IN ('QUEUED', 'RUNNING', 'COMPLETED', 'FAILED', 'TIMED_OUT', 'CANCELLED')),
	ADD COLUMN concurrency_key text
		CONSTRAINT executions_concurrency_key_check CHECK (octet_length(concurrency_key) BETWEEN 1 AND 256),
	ADD COLUMN concurrency_limit integer
		CONSTRAINT executions_concurrency_limit_check CHECK (concurrency_limit BETWEEN 1 AND 10000),
	ADD COLUMN queued_at timestamptz;
COMMENT ON COLUMN allma.executions.concurrency_key IS
	'The concurrency key (option concurrencyKey, or the flow''s concurrency.keyTemplate rendered); NULL: none';
COMMENT ON COLUMN allma.executions.concurrency_limit IS
	'How many executions of its key may run at once, as this execution''s start asked (maxConcurrent or concurrency.limit)';
COMMENT ON COLUMN allma.executions.queued_at IS
	'For a keyed execution: when it arrived (it waited started_at - queued_at for a slot)';
-- counts per key (allma.concurrency_keys)
CREATE INDEX executions_concurrency_idx ON allma.executions (concurrency_key, status)
	WHERE concurrency_key IS NOT NULL AND status IN ('QUEUED', 'RUNNING');

-- one row per key in use: deleted when nothing of the key runs or waits
CREATE TABLE allma.concurrency_slots (
	concurrency_key		text PRIMARY KEY
		CHECK (octet_length(concurrency_key) BETWEEN 1 AND 256),
	max_concurrent		integer NOT NULL CHECK (max_concurrent BETWEEN 1 AND 10000),
	running				integer NOT NULL DEFAULT 0 CHECK (running >= 0),
	updated_at			timestamptz NOT NULL DEFAULT clock_timestamp()
);
COMMENT ON TABLE allma.concurrency_slots IS
	'Concurrency keys in use: the limit and how many executions of the key run (locked at commit by every transaction that starts or ends one)';

-- the queued executions, keyed by their tree; what their main path starts with
CREATE SEQUENCE allma.concurrency_queue_seq;
CREATE TABLE allma.concurrency_queue (
	root_execution_id	uuid NOT NULL,
	execution_id		uuid NOT NULL REFERENCES allma.executions (execution_id) ON DELETE CASCADE,
	concurrency_key		text NOT NULL,
	seq					bigint NOT NULL,
	step_instance_id	text NOT NULL,
	context				jsonb NOT NULL,
	delay_ms			bigint NOT NULL DEFAULT 0,
	queued_at			timestamptz NOT NULL DEFAULT clock_timestamp(),
	PRIMARY KEY (root_execution_id, execution_id)
);
COMMENT ON TABLE allma.concurrency_queue IS
	'Executions waiting for a slot of their concurrency key, in arrival order (seq), with the path they start with';
CREATE INDEX concurrency_queue_order_idx ON allma.concurrency_queue (concurrency_key, seq);
CREATE INDEX concurrency_queue_execution_idx ON allma.concurrency_queue (execution_id);

-- dumped with the executions they count and queue (pg_dump, then restore)
SELECT pg_catalog.pg_extension_config_dump('allma.concurrency_slots', '');
SELECT pg_catalog.pg_extension_config_dump('allma.concurrency_queue', '');
SELECT pg_catalog.pg_extension_config_dump('allma.concurrency_queue_seq', '');

/*
 * Only the engine writes them (as the bootstrap superuser); allma_admin
 * reads both; a member of allma_user reads the queue rows of the
 * executions it may see and no slot: the keys of other roles' executions
 * stay hidden (allma.concurrency_keys counts over visible executions).
 */
ALTER TABLE allma.concurrency_slots ENABLE ROW LEVEL SECURITY, FORCE ROW LEVEL SECURITY;
ALTER TABLE allma.concurrency_queue ENABLE ROW LEVEL SECURITY, FORCE ROW LEVEL SECURITY;
REVOKE ALL ON allma.concurrency_slots, allma.concurrency_queue FROM PUBLIC;
REVOKE ALL ON SEQUENCE allma.concurrency_queue_seq FROM PUBLIC;
GRANT SELECT ON allma.concurrency_slots TO allma_admin;
GRANT SELECT ON allma.concurrency_queue TO allma_user;
CREATE POLICY concurrency_slots_admin ON allma.concurrency_slots FOR SELECT TO allma_admin
	USING (true);
CREATE POLICY concurrency_queue_as_execution ON allma.concurrency_queue FOR SELECT TO allma_user
	USING (EXISTS (SELECT FROM allma.executions e WHERE e.execution_id = concurrency_queue.execution_id));

/*
 * An execution deleted while it runs (by hand: the purge deletes only
 * finished ones) frees its slot; a queued one leaves the queue with its
 * row (the foreign key).  Runs as the role that deletes; nobody may call it.
 */
CREATE FUNCTION allma.concurrency_release_deleted()
RETURNS trigger
AS 'MODULE_PATHNAME', 'allma_concurrency_release_deleted'
LANGUAGE C
SET search_path = pg_catalog, pg_temp;
REVOKE EXECUTE ON FUNCTION allma.concurrency_release_deleted() FROM PUBLIC;
CREATE TRIGGER executions_concurrency_release AFTER DELETE ON allma.executions
	REFERENCING OLD TABLE AS deleted_executions
	FOR EACH STATEMENT EXECUTE FUNCTION allma.concurrency_release_deleted();

-- a sync sub-flow that ends while queued (cancelled) wakes its parent too
DROP TRIGGER executions_wake_sync_parent ON allma.executions;
CREATE TRIGGER executions_wake_sync_parent
	AFTER UPDATE OF status ON allma.executions
	FOR EACH ROW
	WHEN (NEW.parent_path_id IS NOT NULL AND OLD.status IN ('RUNNING', 'QUEUED')
		  AND NEW.status NOT IN ('RUNNING', 'QUEUED'))
	EXECUTE FUNCTION allma.wake_sync_parent();

/*
 * Per key, over the executions the caller may see (security invoker): how
 * many run and wait, the limit the latest of them asked for, since when
 * the oldest waits.
 */
CREATE VIEW allma.concurrency_keys WITH (security_invoker = true, security_barrier = true) AS
SELECT e.concurrency_key,
	   (pg_catalog.array_agg(e.concurrency_limit ORDER BY e.queued_at DESC, e.execution_id))[1]
		   AS max_concurrent,
	   pg_catalog.count(*) FILTER (WHERE e.status = 'RUNNING') AS running,
	   pg_catalog.count(*) FILTER (WHERE e.status = 'QUEUED') AS queued,
	   pg_catalog.min(e.queued_at) FILTER (WHERE e.status = 'QUEUED') AS oldest_queued_at
  FROM allma.executions e
 WHERE e.concurrency_key IS NOT NULL AND e.status IN ('QUEUED', 'RUNNING')
 GROUP BY e.concurrency_key;
COMMENT ON VIEW allma.concurrency_keys IS
	'Concurrency keys of the executions the caller may see: limit, running, queued, oldest queued';
GRANT SELECT ON allma.concurrency_keys TO allma_user;

/*
 * allma.execution_progress shows queued executions too: status QUEUED,
 * waiting_on {concurrency_key}, their key and place in its queue (among
 * the queued executions the caller may see).  The view is replaced once,
 * together with the rate-limit key of its waits, in the ratelimit section.
 */

COMMENT ON FUNCTION allma_start_flow(text, jsonb, jsonb) IS
	'Starts an execution; options: version, executionId, enableExecutionLogs, startStepInstanceId, triggerSource, concurrencyKey, maxConcurrent';

COMMENT ON VIEW allma.execution_progress IS
	'Running and queued executions: current steps, steps completed, checkpoint reached, percent, fork branches done/total, what they wait on, concurrency key and queue position';


-- ==== ratelimit: rate limits ====

/*
 * Rate limits of outgoing requests (src/ratelimit.c).  One row per key:
 * requests per minute, tokens per minute (LLM steps), requests in flight.
 * A row governs the steps whose key equals it or starts with it and ":"
 * (the rest is the step's subkey; a group's budget is shared round robin
 * over its subkeys).  Admins (allma_admin) edit it with SQL or with
 * allma_set_rate_limit / allma_drop_rate_limit; members of allma_user may
 * read it.  The workers read it again every second.  The table does not
 * grow with executions: no execution key.
 */
CREATE TABLE allma.rate_limits (
	key					text PRIMARY KEY
		CHECK (pg_catalog.octet_length(key) BETWEEN 1 AND 200 AND key !~ '[[:cntrl:]]'),
	requests_per_minute	integer CHECK (requests_per_minute > 0),
	tokens_per_minute	integer CHECK (tokens_per_minute > 0),
	max_concurrent		integer CHECK (max_concurrent > 0),
	updated_at			timestamptz NOT NULL DEFAULT pg_catalog.now(),
	updated_by			name NOT NULL DEFAULT CURRENT_USER,
	CHECK (pg_catalog.num_nonnulls(requests_per_minute, tokens_per_minute, max_concurrent) > 0)
);
COMMENT ON TABLE allma.rate_limits IS
	'Rate limits by key: requests and tokens per minute, requests in flight; steps over budget park until it returns';
ALTER TABLE allma.rate_limits ENABLE ROW LEVEL SECURITY, FORCE ROW LEVEL SECURITY;
REVOKE ALL ON allma.rate_limits FROM PUBLIC;
GRANT SELECT ON allma.rate_limits TO allma_user;
GRANT SELECT, INSERT, UPDATE, DELETE ON allma.rate_limits TO allma_admin;
CREATE POLICY rate_limits_read ON allma.rate_limits FOR SELECT TO allma_user USING (true);
CREATE POLICY rate_limits_admin ON allma.rate_limits TO allma_admin USING (true) WITH CHECK (true);

/* the steps parked on a rate limit, in arrival order per key (the workers' release) */
CREATE INDEX execution_paths_rate_limit_idx
	ON allma.execution_paths ((request->'rateLimit'->>'group'), due_at)
	WHERE status = 'WAITING' AND request ? 'rateLimit';

/*
 * allma_set_rate_limit creates or replaces the row of a key; NULL means no
 * limit of that kind, at least one must be set.  allma_drop_rate_limit
 * removes it (true when there was one); steps parked on it are released
 * by the workers' next sweep (within a second).  SECURITY INVOKER: only
 * members of allma_admin may run them (and write the table).
 */
CREATE FUNCTION allma_set_rate_limit(key text, requests_per_minute integer DEFAULT NULL,
									 tokens_per_minute integer DEFAULT NULL,
									 max_concurrent integer DEFAULT NULL)
RETURNS allma.rate_limits
LANGUAGE plpgsql VOLATILE SECURITY INVOKER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	r allma.rate_limits;
BEGIN
	IF $1 IS NULL OR octet_length($1) NOT BETWEEN 1 AND 200 OR $1 ~ '[[:cntrl:]]' THEN
		RAISE EXCEPTION 'rate limit key must be 1 to 200 bytes of text without control characters'
			USING ERRCODE = 'invalid_parameter_value',
				  HINT = 'A step''s key is its rateLimitKey, or PROVIDER:modelId:SECRET_NAME for LLM steps, or host[:port] for HTTP steps.';
	END IF;
	IF num_nonnulls($2, $3, $4) = 0 THEN
		RAISE EXCEPTION 'rate limit "%" sets no limit', $1
			USING ERRCODE = 'invalid_parameter_value',
				  HINT = 'Give requests_per_minute, tokens_per_minute or max_concurrent, or drop the limit with allma_drop_rate_limit.';
	END IF;
	IF $2 <= 0 OR $3 <= 0 OR $4 <= 0 THEN
		RAISE EXCEPTION 'rate limit "%" has a limit that is not positive', $1
			USING ERRCODE = 'invalid_parameter_value',
				  DETAIL = format('requests_per_minute %s, tokens_per_minute %s, max_concurrent %s',
								  coalesce($2::text, 'NULL'), coalesce($3::text, 'NULL'),
								  coalesce($4::text, 'NULL'));
	END IF;
	INSERT INTO allma.rate_limits AS t (key, requests_per_minute, tokens_per_minute, max_concurrent)
	VALUES ($1, $2, $3, $4)
	ON CONFLICT ON CONSTRAINT rate_limits_pkey DO UPDATE
		SET requests_per_minute = excluded.requests_per_minute,
			tokens_per_minute = excluded.tokens_per_minute,
			max_concurrent = excluded.max_concurrent,
			updated_at = now(), updated_by = CURRENT_USER
	RETURNING * INTO r;
	RETURN r;
END
$$;
COMMENT ON FUNCTION allma_set_rate_limit(text, integer, integer, integer) IS
	'Sets the rate limit of a key (requests/min, tokens/min, in flight); allma_admin only';

CREATE FUNCTION allma_drop_rate_limit(key text)
RETURNS boolean
LANGUAGE sql VOLATILE SECURITY INVOKER
SET search_path = pg_catalog, pg_temp
BEGIN ATOMIC
	WITH d AS (DELETE FROM allma.rate_limits r WHERE r.key = allma_drop_rate_limit.key RETURNING 1)
	SELECT count(*) > 0 FROM d;
END;
COMMENT ON FUNCTION allma_drop_rate_limit(text) IS
	'Removes the rate limit of a key; true when there was one; allma_admin only';

REVOKE EXECUTE ON FUNCTION allma_set_rate_limit(text, integer, integer, integer),
	allma_drop_rate_limit(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION allma_set_rate_limit(text, integer, integer, integer),
	allma_drop_rate_limit(text) TO allma_admin;

/*
 * allma_rate_limit_status(): what the workers hold in shared memory for
 * each limit of this database (a row appears within a second of its
 * insert): requests in flight, whether steps may be parked on it, when
 * the next request and the next tokens may go (theoretical arrival
 * times), and until when a 429 paused it.  Members of allma_user may read
 * it: it shows keys and times, no execution.  SECURITY INVOKER.
 */
CREATE FUNCTION allma_rate_limit_status(OUT key text, OUT requests_per_minute integer,
										OUT tokens_per_minute integer, OUT max_concurrent integer,
										OUT in_flight integer, OUT parked boolean,
										OUT next_request_at timestamptz, OUT next_tokens_at timestamptz,
										OUT paused_until timestamptz)
RETURNS SETOF record
AS 'MODULE_PATHNAME', 'allma_rate_limit_status'
LANGUAGE C STRICT VOLATILE
SET search_path = pg_catalog, pg_temp;
COMMENT ON FUNCTION allma_rate_limit_status() IS
	'The rate limits as the workers hold them: in flight, parked steps, next slots, pause';
REVOKE EXECUTE ON FUNCTION allma_rate_limit_status() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION allma_rate_limit_status() TO allma_user;

/*
 * The status views learn of parked steps: allma.live_path_waits says
 * waiting_on 'rate_limit' (a WAITING path parked by the gate, or a
 * released one due at its slot) with its key in rate_limit_key ("waiting
 * on rate limit <key>"); allma.execution_progress's waits carry it as
 * rateLimitKey; allma_worker_status() counts them in waiting_rate_limits.
 */
CREATE OR REPLACE VIEW allma.live_path_waits WITH (security_invoker = true, security_barrier = true) AS
SELECT p.execution_id, p.path_id, p.parent_path_id, p.branch_id, p.step_instance_id,
	   p.status, p.attempt,
	   coalesce((SELECT pg_catalog.max(h.ended_at) FROM allma.step_executions h
				  WHERE h.execution_id = p.execution_id AND h.path_id = p.path_id),
				(SELECT f.started_at FROM allma.forks f
				  WHERE f.execution_id = p.execution_id AND f.fork_path_id = p.parent_path_id),
				(SELECT e.started_at FROM allma.executions e
				  WHERE e.execution_id = p.execution_id)) AS step_since,
	   CASE
		   WHEN p.status = 'WAITING' AND p.request ? 'rateLimit' THEN 'rate_limit'
		   WHEN p.status = 'READY' AND p.due_at > pg_catalog.now() AND p.request ? 'rateLimit'
			   THEN 'rate_limit'
		   WHEN p.status = 'READY' AND p.due_at <= pg_catalog.now() THEN 'runnable'
		   WHEN p.status = 'READY' THEN 'timer'
		   WHEN p.status = 'INFLIGHT' THEN 'http'
		   WHEN fork.fork_path_id IS NOT NULL THEN 'branches'
		   WHEN parent_fork.fork_path_id IS NOT NULL THEN 'concurrency'
		   WHEN child.execution_id IS NOT NULL THEN 'child'
		   ELSE 'event'
	   END AS waiting_on,
	   CASE WHEN p.status = 'READY' THEN p.due_at END AS due_at,
	   CASE WHEN p.status = 'INFLIGHT' THEN p.lease_until END AS lease_until,
	   child.execution_id AS child_execution_id,
	   -- the correlation key and deadline of the event a path parked by
	   -- WAIT_FOR_EXTERNAL_EVENT waits for (its request holds its wait)
	   CASE WHEN p.status = 'WAITING' AND p.request ? 'wait'
			THEN p.request->'wait'->>'correlationKey' END AS event_key,
	   CASE WHEN p.status = 'WAITING' AND p.request ? 'wait' THEN p.due_at END AS event_deadline,
	   -- the rate limit a parked step waits on (its step's key; its place: since)
	   CASE WHEN p.status IN ('WAITING', 'READY') AND p.request ? 'rateLimit'
			THEN p.request->'rateLimit'->>'key' END AS rate_limit_key
  FROM allma.execution_paths p
  LEFT JOIN allma.forks fork
	ON fork.execution_id = p.execution_id AND fork.fork_path_id = p.path_id
  LEFT JOIN allma.forks parent_fork
	ON p.status = 'WAITING' AND p.request IS NULL AND parent_fork.execution_id = p.execution_id
   AND parent_fork.fork_path_id = p.parent_path_id
  LEFT JOIN LATERAL (
	SELECT c.execution_id FROM allma.executions c
	 WHERE p.status = 'WAITING' AND fork.fork_path_id IS NULL AND parent_fork.fork_path_id IS NULL
	   AND c.parent_execution_id = p.execution_id AND c.parent_path_id = p.path_id
	   AND c.status = 'RUNNING'
	 ORDER BY c.started_at, c.execution_id LIMIT 1) child ON true
 WHERE p.status IN ('READY', 'INFLIGHT', 'WAITING') AND p.step_instance_id IS NOT NULL;
COMMENT ON VIEW allma.live_path_waits IS
	'Live paths of executions and what each waits on: runnable, timer, http, rate_limit, branches, concurrency, child, event';

CREATE OR REPLACE VIEW allma.execution_progress WITH (security_invoker = true, security_barrier = true) AS
WITH checkpoints AS (
	SELECT v.flow_id, v.version, s.key AS step_instance_id,
		   s.value->'checkpoint'->>'id' AS checkpoint_id,
		   s.value->'checkpoint'->>'label' AS checkpoint_label,
		   pg_catalog.row_number() OVER (
			   PARTITION BY v.flow_id, v.version
			   ORDER BY CASE WHEN pg_catalog.jsonb_typeof(s.value->'checkpoint'->'order') = 'number'
						THEN (s.value->'checkpoint'->>'order')::numeric END NULLS LAST,
						s.value->'checkpoint'->>'id', s.key) AS ordinal,
		   pg_catalog.count(*) OVER (PARTITION BY v.flow_id, v.version) AS total
	  FROM allma.flow_versions v
	  CROSS JOIN LATERAL pg_catalog.jsonb_each(v.definition->'steps') s
	 WHERE pg_catalog.jsonb_typeof(s.value->'checkpoint') = 'object'
	   AND EXISTS (SELECT FROM allma.executions r
				   WHERE r.status IN ('RUNNING', 'QUEUED') AND r.flow_id = v.flow_id AND r.flow_version = v.version)
)
SELECT e.execution_id, e.flow_id, e.flow_version, e.started_by, e.parent_execution_id,
	   coalesce(e.root_execution_id, e.execution_id) AS root_execution_id, e.depth,
	   e.started_at, pg_catalog.now() - e.started_at AS running_for,
	   live.current_steps, live.current_step_since, coalesce(live.live_paths, 0) AS live_paths,
	   hist.steps_completed, hist.last_step_ended_at,
	   cp.checkpoint_id, cp.checkpoint_label, cp.ordinal AS checkpoint_ordinal,
	   coalesce(cp.total, cpt.total) AS checkpoints_total,
	   CASE
		   WHEN cpt.total IS NOT NULL
			   THEN pg_catalog.round(100.0 * coalesce(cp.ordinal, 0) / cpt.total, 1)
		   WHEN defn.steps_defined > 0
			   THEN least(99.0, pg_catalog.round(100.0 * hist.distinct_steps_completed
														   / defn.steps_defined, 1))
	   END AS percent,
	   CASE WHEN cpt.total IS NOT NULL THEN 'checkpoints'
			WHEN defn.steps_defined > 0 THEN 'steps' END AS percent_basis,
	   forks.running_forks, forks.branches_done, forks.branches_total,
	   CASE WHEN e.status = 'QUEUED' THEN ARRAY['concurrency_key'] ELSE live.waiting_on END
		   AS waiting_on,
	   live.next_due_at, live.child_execution_ids, live.event_keys,
	   CASE WHEN e.status = 'QUEUED'
			THEN pg_catalog.jsonb_build_array(pg_catalog.jsonb_build_object(
					'waitingOn', 'concurrency_key', 'concurrencyKey', e.concurrency_key,
					'since', e.queued_at))
			ELSE live.waits END AS waits,
	   e.status, e.concurrency_key, e.concurrency_limit, e.queued_at,
	   CASE WHEN e.status = 'QUEUED' THEN
	   (SELECT pg_catalog.count(*) FROM allma.concurrency_queue me
		  JOIN allma.concurrency_queue o
			ON o.concurrency_key = me.concurrency_key AND o.seq <= me.seq
		 WHERE me.root_execution_id = coalesce(e.root_execution_id, e.execution_id)
		   AND me.execution_id = e.execution_id) END AS queue_position
  FROM allma.executions e
  LEFT JOIN LATERAL (
	SELECT pg_catalog.count(*) FILTER (WHERE h.status = 'COMPLETED') AS steps_completed,
		   pg_catalog.count(DISTINCT h.step_instance_id) FILTER (WHERE h.status = 'COMPLETED')
			   AS distinct_steps_completed,
		   pg_catalog.max(h.ended_at) AS last_step_ended_at
	  FROM allma.step_executions h WHERE h.execution_id = e.execution_id) hist ON true
  LEFT JOIN LATERAL (
	SELECT (SELECT pg_catalog.count(*) FROM pg_catalog.jsonb_object_keys(v.definition->'steps'))
			   AS steps_defined
	  FROM allma.flow_versions v
	 WHERE v.flow_id = e.flow_id AND v.version = e.flow_version
	   AND pg_catalog.jsonb_typeof(v.definition->'steps') = 'object') defn ON true
  LEFT JOIN LATERAL (
	SELECT c.total FROM checkpoints c
	 WHERE c.flow_id = e.flow_id AND c.version = e.flow_version LIMIT 1) cpt ON true
  LEFT JOIN LATERAL (
	SELECT c.checkpoint_id, c.checkpoint_label, c.ordinal, c.total FROM checkpoints c
	 WHERE c.flow_id = e.flow_id AND c.version = e.flow_version
	   AND EXISTS (SELECT FROM allma.step_executions h
				   WHERE h.execution_id = e.execution_id AND h.status = 'COMPLETED'
					 AND h.step_instance_id = c.step_instance_id)
	 ORDER BY c.ordinal DESC LIMIT 1) cp ON true
  LEFT JOIN LATERAL (
	SELECT pg_catalog.count(*) AS running_forks,
		   pg_catalog.sum(f.completed + f.failed)::bigint AS branches_done,
		   pg_catalog.sum(f.total)::bigint AS branches_total
	  FROM allma.forks f WHERE f.execution_id = e.execution_id) forks ON true
  LEFT JOIN LATERAL (
	SELECT pg_catalog.array_agg(DISTINCT w.step_instance_id ORDER BY w.step_instance_id) AS current_steps,
		   pg_catalog.min(w.step_since) AS current_step_since,
		   pg_catalog.count(*) AS live_paths,
		   pg_catalog.array_agg(DISTINCT w.waiting_on ORDER BY w.waiting_on) AS waiting_on,
		   pg_catalog.min(w.due_at) FILTER (WHERE w.waiting_on = 'timer') AS next_due_at,
		   pg_catalog.array_agg(DISTINCT w.child_execution_id ORDER BY w.child_execution_id)
			   FILTER (WHERE w.child_execution_id IS NOT NULL) AS child_execution_ids,
		   pg_catalog.array_agg(DISTINCT w.event_key ORDER BY w.event_key)
			   FILTER (WHERE w.event_key IS NOT NULL) AS event_keys,
		   pg_catalog.jsonb_agg(pg_catalog.jsonb_strip_nulls(pg_catalog.jsonb_build_object(
			   'pathId', w.path_id, 'branchId', w.branch_id, 'step', w.step_instance_id,
			   'attempt', w.attempt, 'since', w.step_since, 'waitingOn', w.waiting_on, 'dueAt', w.due_at,
			   'leaseUntil', w.lease_until, 'childExecutionId', w.child_execution_id,
			   'eventKey', w.event_key, 'eventDeadline', w.event_deadline,
			   'rateLimitKey', w.rate_limit_key))
			   ORDER BY w.path_id) AS waits
	  FROM allma.live_path_waits w WHERE w.execution_id = e.execution_id) live ON true
 WHERE e.status IN ('RUNNING', 'QUEUED');

CREATE OR REPLACE FUNCTION allma_worker_status(OUT worker integer, OUT pid integer, OUT database name,
									OUT state text, OUT steps_run bigint,
									OUT inflight_requests bigint, OUT runnable bigint,
									OUT waiting_timers bigint, OUT waiting_events bigint,
									OUT waiting_children bigint, OUT waiting_rate_limits bigint,
									OUT oldest_runnable_age interval)
RETURNS SETOF record
LANGUAGE sql VOLATILE SECURITY INVOKER
SET search_path = pg_catalog, pg_temp
BEGIN ATOMIC
	WITH queue AS (
		SELECT count(*) FILTER (WHERE w.waiting_on = 'runnable') AS runnable,
			   count(*) FILTER (WHERE w.waiting_on = 'timer') AS timers,
			   count(*) FILTER (WHERE w.waiting_on = 'event') AS events,
			   count(*) FILTER (WHERE w.waiting_on = 'child') AS children,
			   count(*) FILTER (WHERE w.waiting_on = 'rate_limit') AS rate_limits,
			   now() - min(w.due_at) FILTER (WHERE w.waiting_on = 'runnable') AS oldest
		  FROM allma.live_path_waits w
	), inflight AS (
		SELECT p.owner_slot, count(*) AS n
		  FROM allma.execution_paths p
		 WHERE p.status = 'INFLIGHT' AND p.owner_slot IS NOT NULL
		 GROUP BY p.owner_slot
	)
	SELECT s.worker, s.pid, d.datname, s.state, s.steps_run,
		   CASE WHEN here THEN coalesce(i.n, 0) END,
		   CASE WHEN here THEN q.runnable END,
		   CASE WHEN here THEN q.timers END,
		   CASE WHEN here THEN q.events END,
		   CASE WHEN here THEN q.children END,
		   CASE WHEN here THEN q.rate_limits END,
		   CASE WHEN here THEN q.oldest END
	  FROM allma.worker_slots() s
	  LEFT JOIN pg_database d ON d.oid = s.database_oid
	  CROSS JOIN LATERAL (SELECT d.datname = current_database() AS here) h
	  CROSS JOIN queue q
	  LEFT JOIN inflight i ON i.owner_slot = s.worker
	 ORDER BY s.worker;
END;



-- ==== claims: priorities ====
/*
 * options.priority of allma_start_flow: a path of priority p is claimed as
 * if it had become due p seconds earlier (src/priority.c).  Bounded, which
 * is the aging rule: no path waits more than the difference of two
 * priorities behind work that became due after it.  Branches and
 * sub-flows inherit their parent path's priority.  The claim reads
 * execution_paths_claim_idx in that order; execution_paths_ready_idx stays
 * for the earliest due time (the workers' sleep).  The column's default
 * makes the ALTER a catalog change only, and the CHECK a scan.
 */
LOCK TABLE allma.execution_paths IN ACCESS EXCLUSIVE MODE;

ALTER TABLE allma.execution_paths ADD COLUMN priority integer NOT NULL DEFAULT 0
	CONSTRAINT execution_paths_priority_check CHECK (priority BETWEEN -3600 AND 3600);
COMMENT ON COLUMN allma.execution_paths.priority IS
	'Seconds of head start in the claim order (options.priority, -3600 to 3600; inherited by branches and sub-flows)';

CREATE FUNCTION allma.claim_order(due_at timestamptz, priority integer)
RETURNS timestamptz
AS 'MODULE_PATHNAME', 'allma_claim_order'
LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE
SET search_path = pg_catalog, pg_temp;
COMMENT ON FUNCTION allma.claim_order(timestamptz, integer) IS
	'The claim order of a runnable path: due_at minus priority seconds (priority bounded to -3600..3600)';
-- index expressions are evaluated as the writing role: whoever may write paths may run it
REVOKE EXECUTE ON FUNCTION allma.claim_order(timestamptz, integer) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION allma.claim_order(timestamptz, integer) TO allma_user;

CREATE INDEX execution_paths_claim_idx ON allma.execution_paths
	(allma.claim_order(due_at, priority)) WHERE status = 'READY';
COMMENT ON INDEX allma.execution_paths_claim_idx IS
	'The workers'' claim: runnable paths in claim order (due time moved by priority)';


-- ==== soak: table maintenance under sustained load ====
/*
 * Storage parameters of the three tables every execution writes, for
 * months of sustained load with retention purging (bench/RESULTS.md, "The
 * soak after table maintenance"; docs/operations.md).  Autovacuum visits a
 * database once per autovacuum_naptime (1 min by default) and vacuums the
 * tables past their thresholds; these decide which tables qualify.
 *
 * allma.executions: inserted at the start, updated by the passes that run
 * its steps and when it ends, deleted by the purge.  Vacuumed once 5 % of
 * its rows are dead rather than 20 %: with a long retention the table is
 * large, and the purge deletes from it in batches all day.  (A fillfactor
 * of 85 for HOT updates was measured in the soak and not kept: the table
 * grew by a tenth while only a fifth of the updates became HOT, since a
 * page's inserts are updated within milliseconds, all together.)
 *
 * allma.execution_paths is a queue: a row is inserted, updated with a new
 * due time (never HOT: due_at is indexed) and deleted within seconds, so
 * the table holds few live rows and many dead ones, whose entries every
 * claim walks in the claim index until vacuum removes them.  Vacuumed once
 * 1,000 rows are dead, whatever its size (a scale factor would let a queue
 * with many waiting paths collect dead rows in proportion).
 *
 * allma.step_executions: inserted, never updated, deleted by the purge:
 * vacuumed after 5 % dead or 5 % newly inserted rows (the insert threshold
 * keeps its visibility map current and freezes history in small steps).
 */
ALTER TABLE allma.executions SET (autovacuum_vacuum_scale_factor = 0.05);
ALTER TABLE allma.execution_paths SET (autovacuum_vacuum_scale_factor = 0,
									   autovacuum_vacuum_threshold = 1000);
ALTER TABLE allma.step_executions SET (autovacuum_vacuum_scale_factor = 0.05,
									   autovacuum_vacuum_insert_scale_factor = 0.05);


------------------------------------------------------------------------------
-- ==== lead: waits found by their execution ====
-- Deleting an execution (retention, allma_purge, a test's cleanup) cascades
-- to its waits by execution_id, which the primary key (root first) cannot
-- look up: without this index every deleted execution scanned the waits.
CREATE INDEX waits_execution_idx ON allma.waits (execution_id);

-- Last: check that every section applied the security model
------------------------------------------------------------------------------

/*
 * Fails the update (and so every test that installs 1.1) when a table of
 * schema allma lacks forced row-level security, or when PUBLIC may execute
 * a function other than the authoring helpers, which read no table.  A new
 * object states its privileges in its own section; this is the net.
 */
DO $$
DECLARE
	open_tables text;
	open_functions text;
BEGIN
	SELECT pg_catalog.string_agg(c.relname, ', ' ORDER BY c.relname) INTO open_tables
	  FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
	 WHERE n.nspname = 'allma' AND c.relkind IN ('r', 'p')
	   AND c.relname <> 'retry_policies'
	   AND NOT (c.relrowsecurity AND c.relforcerowsecurity);
	IF open_tables IS NOT NULL THEN
		RAISE EXCEPTION 'allma 1.1: tables without forced row-level security: %', open_tables;
	END IF;

	SELECT pg_catalog.string_agg(p.oid::pg_catalog.regprocedure::text, ', '
							  ORDER BY p.oid::pg_catalog.regprocedure::text)
	  INTO open_functions
	  FROM pg_catalog.pg_proc p
	  JOIN pg_catalog.pg_depend d ON d.classid = 'pg_catalog.pg_proc'::pg_catalog.regclass
		   AND d.objid = p.oid AND d.deptype = 'e'
	  JOIN pg_catalog.pg_extension e ON e.oid = d.refobjid AND e.extname = 'allma'
	 WHERE p.proname NOT IN ('allma_eval_condition', 'allma_jsonpath', 'allma_path_query',
							 'allma_render_template', 'allma_validate_flow',
							 'allma_llm_extract_json', 'allma_llm_parse',
							 'allma_llm_request_preview')
	   AND pg_catalog.has_function_privilege('public', p.oid, 'EXECUTE');
	IF open_functions IS NOT NULL THEN
		RAISE EXCEPTION 'allma 1.1: functions PUBLIC may execute: %', open_functions;
	END IF;
END $$;
