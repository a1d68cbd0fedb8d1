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


------------------------------------------------------------------------------
-- Operations: schedules, retention, completion actions
------------------------------------------------------------------------------


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


------------------------------------------------------------------------------
-- Rate limits, concurrency keys, priorities
------------------------------------------------------------------------------


------------------------------------------------------------------------------
-- Scale: out-of-line values
------------------------------------------------------------------------------


------------------------------------------------------------------------------
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
