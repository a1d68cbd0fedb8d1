/* allma--1.0.sql: the base install script of the allma extension */

-- complain if script is sourced in psql, rather than via CREATE EXTENSION
\echo Use "CREATE EXTENSION allma" to load this file. \quit

/*
 * Layout.  The public API is a set of allma_* functions in pg_catalog, so
 * that "SELECT allma_start_flow(...)" works whatever the search_path.  All
 * data lives in schema allma.  Every table that grows with executions is
 * keyed by execution_id first, so that it can be distributed by execution.
 */
CREATE SCHEMA allma;
COMMENT ON SCHEMA allma IS 'allma: flow definitions, executions and their history';
GRANT USAGE ON SCHEMA allma TO PUBLIC;

------------------------------------------------------------------------------
-- Flow definitions
------------------------------------------------------------------------------

CREATE TABLE allma.flows (
	flow_id				text PRIMARY KEY,
	latest_version		integer NOT NULL DEFAULT 0,
	published_version	integer,
	created_at			timestamptz NOT NULL DEFAULT now(),
	updated_at			timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE allma.flows IS
	'One row per flow id: its latest and its published version';

CREATE TABLE allma.flow_versions (
	flow_id				text NOT NULL REFERENCES allma.flows (flow_id) ON DELETE CASCADE,
	version				integer NOT NULL CHECK (version > 0),
	definition			jsonb NOT NULL,
	created_at			timestamptz NOT NULL DEFAULT now(),
	created_by			regrole NOT NULL DEFAULT current_user::regrole,
	PRIMARY KEY (flow_id, version)
);
COMMENT ON TABLE allma.flow_versions IS
	'Immutable, validated versions of flow definitions (Allma''s JSON format)';

ALTER TABLE allma.flows
	ADD FOREIGN KEY (flow_id, published_version)
	REFERENCES allma.flow_versions (flow_id, version) DEFERRABLE INITIALLY DEFERRED;

------------------------------------------------------------------------------
-- Executions
------------------------------------------------------------------------------

CREATE TABLE allma.executions (
	execution_id		uuid PRIMARY KEY,
	flow_id				text NOT NULL,
	flow_version		integer NOT NULL,
	status				text NOT NULL DEFAULT 'RUNNING'
		CHECK (status IN ('RUNNING', 'COMPLETED', 'FAILED', 'TIMED_OUT', 'CANCELLED')),
	input				jsonb NOT NULL,
	output				jsonb,
	error				jsonb,
	options				jsonb NOT NULL DEFAULT '{}',
	enable_execution_logs boolean NOT NULL DEFAULT true,
	started_by			regrole NOT NULL,
	trigger_source		text,
	parent_execution_id	uuid,
	root_execution_id	uuid,
	depth				integer NOT NULL DEFAULT 0,
	step_count			integer NOT NULL DEFAULT 0,
	started_at			timestamptz NOT NULL DEFAULT clock_timestamp(),
	ended_at			timestamptz,
	FOREIGN KEY (flow_id, flow_version) REFERENCES allma.flow_versions (flow_id, version)
);
CREATE INDEX executions_flow_started_idx ON allma.executions (flow_id, started_at);
CREATE INDEX executions_running_idx ON allma.executions (started_at) WHERE status = 'RUNNING';
COMMENT ON TABLE allma.executions IS
	'One row per flow execution; output is the final context, error an Allma error object';

/*
 * The cursor of an execution: one row per path that is still going.  Path 0
 * is the main path; parallel branches are further paths of the same
 * execution.  Workers claim READY rows whose due_at has passed with
 * FOR UPDATE SKIP LOCKED.  Timers (retry backoff, step delays) are simply a
 * due_at in the future.
 */
CREATE TABLE allma.execution_paths (
	execution_id		uuid NOT NULL REFERENCES allma.executions (execution_id) ON DELETE CASCADE,
	path_id				bigint NOT NULL,
	parent_path_id		bigint,
	branch_id			text,
	branch_ordinal		integer,
	item_index			integer,
	joining				boolean NOT NULL DEFAULT false,
	status				text NOT NULL DEFAULT 'READY'
		CHECK (status IN ('READY', 'INFLIGHT', 'WAITING', 'DONE', 'FAILED')),
	step_instance_id	text,
	attempt				integer NOT NULL DEFAULT 1,
	seq					integer NOT NULL DEFAULT 0,
	due_at				timestamptz NOT NULL DEFAULT clock_timestamp(),
	lease_until			timestamptz,
	request				jsonb,
	owner_slot			integer,
	context				jsonb NOT NULL,
	transition_counts	jsonb NOT NULL DEFAULT '{}',
	result				jsonb,
	error				jsonb,
	PRIMARY KEY (execution_id, path_id)
);
CREATE INDEX execution_paths_ready_idx ON allma.execution_paths (due_at) WHERE status = 'READY';
CREATE INDEX execution_paths_inflight_idx ON allma.execution_paths (lease_until) WHERE status = 'INFLIGHT';
COMMENT ON TABLE allma.execution_paths IS
	'Work queue and cursor: one row per live path of an execution (0 = main path)';

CREATE INDEX execution_paths_parent_idx ON allma.execution_paths (execution_id, parent_path_id, status)
	WHERE parent_path_id IS NOT NULL;

CREATE SEQUENCE allma.path_id_seq;

/*
 * One row per running PARALLEL_FORK_MANAGER step.  Its branches are rows of
 * execution_paths whose parent_path_id is fork_path_id; their context holds
 * only what differs from base_context (the parent's context without the
 * item list), so a wide fork does not copy the parent's data per branch.
 * pending counts branches not finished; the transaction that brings it to
 * zero makes the parent path runnable again to join.
 */
CREATE TABLE allma.forks (
	execution_id		uuid NOT NULL REFERENCES allma.executions (execution_id) ON DELETE CASCADE,
	fork_path_id		bigint NOT NULL,
	step_instance_id	text NOT NULL,
	base_context		jsonb NOT NULL,
	total				integer NOT NULL,
	pending				integer NOT NULL,
	completed			integer NOT NULL DEFAULT 0,
	failed				integer NOT NULL DEFAULT 0,
	max_concurrency		integer NOT NULL DEFAULT 0,
	started_at			timestamptz NOT NULL DEFAULT clock_timestamp(),
	PRIMARY KEY (execution_id, fork_path_id)
);
COMMENT ON TABLE allma.forks IS
	'Running parallel forks: branch counters and the context shared by their branches';

/*
 * Execution history: one row per step attempt.  Status, attempt, timing and
 * error are always recorded; input and output only when execution logs are
 * on.  seq numbers the attempts of one path, so a step that committed twice
 * would violate the unique key.
 */
CREATE TABLE allma.step_executions (
	execution_id		uuid NOT NULL,
	path_id				bigint NOT NULL DEFAULT 0,
	seq					integer NOT NULL,
	branch_id			text,
	step_instance_id	text NOT NULL,
	step_type			text NOT NULL,
	attempt				integer NOT NULL,
	status				text NOT NULL
		CHECK (status IN ('COMPLETED', 'FAILED', 'RETRYING', 'POLLING')),
	input				jsonb,
	output				jsonb,
	error				jsonb,
	next_step_instance_id text,
	details				jsonb,
	started_at			timestamptz NOT NULL,
	ended_at			timestamptz NOT NULL,
	PRIMARY KEY (execution_id, path_id, seq)
);
COMMENT ON TABLE allma.step_executions IS
	'Execution history: one row per step attempt';

------------------------------------------------------------------------------
-- Retry rules and module bindings: data, edited with SQL
------------------------------------------------------------------------------

CREATE TABLE allma.retry_policies (
	policy_name			text PRIMARY KEY,
	error_equals		text[] NOT NULL,
	interval_seconds	double precision NOT NULL CHECK (interval_seconds >= 0),
	backoff_rate		double precision NOT NULL DEFAULT 2.0 CHECK (backoff_rate >= 1),
	max_retries			integer NOT NULL CHECK (max_retries BETWEEN 0 AND 100),
	max_delay_seconds	double precision CHECK (max_delay_seconds > 0),
	jitter				text NOT NULL DEFAULT 'NONE' CHECK (jitter IN ('NONE', 'FULL')),
	priority			integer NOT NULL DEFAULT 100
);
COMMENT ON TABLE allma.retry_policies IS
	'Default retry rules by Allma error name; a step''s own onError.retries win';

INSERT INTO allma.retry_policies
	(policy_name, error_equals, interval_seconds, backoff_rate, max_retries, priority)
VALUES
	('transient-infrastructure', ARRAY['TransientStepError'], 1, 3.0, 5, 10),
	('retryable-step', ARRAY['RetryableStepError'], 10, 2.0, 3, 20);

CREATE TABLE allma.module_bindings (
	pattern				text PRIMARY KEY,
	handler				regprocedure,
	url					text CHECK (url ~ '^[hH][tT][tT][pP][sS]?://'),
	headers				jsonb NOT NULL DEFAULT '{}'
		CHECK (jsonb_typeof(headers) = 'object'),
	created_at			timestamptz NOT NULL DEFAULT now(),
	CHECK ((handler IS NULL) <> (url IS NULL))
);
COMMENT ON TABLE allma.module_bindings IS
	'Module identifiers or Lambda ARNs (LIKE patterns) bound to SQL functions (jsonb) RETURNS jsonb, or to HTTP endpoints';

SELECT pg_catalog.pg_extension_config_dump('allma.flows', '');
SELECT pg_catalog.pg_extension_config_dump('allma.flow_versions', '');
SELECT pg_catalog.pg_extension_config_dump('allma.executions', '');
SELECT pg_catalog.pg_extension_config_dump('allma.execution_paths', '');
SELECT pg_catalog.pg_extension_config_dump('allma.step_executions', '');
SELECT pg_catalog.pg_extension_config_dump('allma.forks', '');
SELECT pg_catalog.pg_extension_config_dump('allma.module_bindings', '');
SELECT pg_catalog.pg_extension_config_dump('allma.retry_policies',
	'WHERE policy_name NOT IN (''transient-infrastructure'', ''retryable-step'')');

/* progress of running forks, visible while they run */
CREATE VIEW allma.fork_progress AS
SELECT f.execution_id, f.fork_path_id, f.step_instance_id, f.total,
	   count(*) FILTER (WHERE p.status IN ('READY', 'INFLIGHT')) AS running,
	   count(*) FILTER (WHERE p.status = 'WAITING') AS queued,
	   f.completed, f.failed, f.started_at
  FROM allma.forks f
  JOIN allma.executions e ON e.execution_id = f.execution_id
  LEFT JOIN allma.execution_paths p
	ON p.execution_id = f.execution_id AND p.parent_path_id = f.fork_path_id
 WHERE pg_catalog.pg_has_role(e.started_by, 'MEMBER')
 GROUP BY f.execution_id, f.fork_path_id, f.step_instance_id, f.total,
		  f.completed, f.failed, f.started_at;
COMMENT ON VIEW allma.fork_progress IS
	'Branches of each running parallel fork: total, running, queued (maxConcurrency), completed, failed';

------------------------------------------------------------------------------
-- Visibility: everyone may read definitions; an execution and its history
-- are visible to the role that started it (and its members).
------------------------------------------------------------------------------

GRANT SELECT ON allma.flows, allma.flow_versions, allma.retry_policies,
	allma.module_bindings TO PUBLIC;
GRANT SELECT ON allma.executions, allma.step_executions TO PUBLIC;
GRANT SELECT ON allma.fork_progress TO PUBLIC;

ALTER TABLE allma.executions ENABLE ROW LEVEL SECURITY;
CREATE POLICY executions_starter ON allma.executions FOR SELECT
	USING (pg_catalog.pg_has_role(started_by, 'MEMBER'));

ALTER TABLE allma.step_executions ENABLE ROW LEVEL SECURITY;
CREATE POLICY step_executions_starter ON allma.step_executions FOR SELECT
	USING (EXISTS (SELECT 1 FROM allma.executions e
				   WHERE e.execution_id = step_executions.execution_id));

------------------------------------------------------------------------------
-- SQL API
------------------------------------------------------------------------------

CREATE FUNCTION allma_validate_flow(definition jsonb)
RETURNS void
AS 'MODULE_PATHNAME', 'allma_validate_flow'
LANGUAGE C STRICT STABLE;
COMMENT ON FUNCTION allma_validate_flow(jsonb) IS
	'Checks a flow definition and raises the first problem found; stores nothing';

CREATE FUNCTION allma_create_flow(definition jsonb, publish boolean DEFAULT true)
RETURNS integer
AS 'MODULE_PATHNAME', 'allma_create_flow'
LANGUAGE C STRICT VOLATILE
SET search_path = pg_catalog, pg_temp;
COMMENT ON FUNCTION allma_create_flow(jsonb, boolean) IS
	'Validates and stores a new immutable version of the flow named by definition->>''id''; returns the version';

CREATE FUNCTION allma_publish_flow(flow_id text, version integer)
RETURNS void
AS 'MODULE_PATHNAME', 'allma_publish_flow'
LANGUAGE C STRICT VOLATILE
SET search_path = pg_catalog, pg_temp;
COMMENT ON FUNCTION allma_publish_flow(text, integer) IS
	'Makes a stored version the published one (the default for allma_start_flow)';

CREATE FUNCTION allma_start_flow(flow_id text, input jsonb DEFAULT '{}',
								 options jsonb DEFAULT '{}')
RETURNS uuid
AS 'MODULE_PATHNAME', 'allma_start_flow'
LANGUAGE C VOLATILE
SET search_path = pg_catalog, pg_temp;
COMMENT ON FUNCTION allma_start_flow(text, jsonb, jsonb) IS
	'Starts an execution; options: version, executionId, enableExecutionLogs, startStepInstanceId';

CREATE FUNCTION allma_wait(execution_id uuid, timeout interval DEFAULT '1 min')
RETURNS text
AS 'MODULE_PATHNAME', 'allma_wait'
LANGUAGE C STRICT VOLATILE;
COMMENT ON FUNCTION allma_wait(uuid, interval) IS
	'Blocks until the execution is terminal or the timeout passes; returns its status';

CREATE FUNCTION allma_bind_module(module_or_arn_pattern text, handler regprocedure)
RETURNS void
AS 'MODULE_PATHNAME', 'allma_bind_module'
LANGUAGE C STRICT VOLATILE
SET search_path = pg_catalog, pg_temp;
COMMENT ON FUNCTION allma_bind_module(text, regprocedure) IS
	'Routes a module identifier or Lambda ARN (LIKE pattern) to a SQL function (jsonb) RETURNS jsonb';
REVOKE ALL ON FUNCTION allma_bind_module(text, regprocedure) FROM PUBLIC;

CREATE FUNCTION allma_bind_module_http(module_or_arn_pattern text, url text,
									   headers jsonb DEFAULT '{}')
RETURNS void
LANGUAGE plpgsql STRICT VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	IF module_or_arn_pattern = '' THEN
		RAISE EXCEPTION 'module pattern must not be empty' USING ERRCODE = 'invalid_parameter_value';
	END IF;
	IF url !~* '^https?://[^/]' THEN
		RAISE EXCEPTION 'binding URL "%" is not an http or https URL', url
			USING ERRCODE = 'invalid_parameter_value';
	END IF;
	IF jsonb_typeof(headers) <> 'object' OR EXISTS (
		SELECT FROM jsonb_each(headers) h WHERE jsonb_typeof(h.value) <> 'string') THEN
		RAISE EXCEPTION 'binding headers must be an object of strings'
			USING ERRCODE = 'invalid_parameter_value',
				  DETAIL = 'For example {"Authorization": "Bearer {{secrets.NAME}}"}.';
	END IF;
	INSERT INTO allma.module_bindings AS b (pattern, handler, url, headers)
	VALUES (module_or_arn_pattern, NULL, url, headers)
	ON CONFLICT (pattern) DO UPDATE
		SET handler = NULL, url = excluded.url, headers = excluded.headers, created_at = now();
END $$;
COMMENT ON FUNCTION allma_bind_module_http(text, text, jsonb) IS
	'Routes a module identifier or Lambda ARN (LIKE pattern) to an HTTP endpoint: the step POSTs its module input there as JSON';
REVOKE ALL ON FUNCTION allma_bind_module_http(text, text, jsonb) FROM PUBLIC;

CREATE FUNCTION allma_unbind_module(module_or_arn_pattern text)
RETURNS boolean
LANGUAGE sql STRICT VOLATILE
SET search_path = pg_catalog, pg_temp
BEGIN ATOMIC
	WITH d AS (DELETE FROM allma.module_bindings WHERE pattern = module_or_arn_pattern RETURNING 1)
	SELECT count(*) > 0 FROM d;
END;
REVOKE ALL ON FUNCTION allma_unbind_module(text) FROM PUBLIC;

CREATE FUNCTION allma_worker_status(OUT worker integer, OUT pid integer,
									OUT database name, OUT state text)
RETURNS SETOF record
AS 'MODULE_PATHNAME', 'allma_worker_status'
LANGUAGE C STRICT VOLATILE;
COMMENT ON FUNCTION allma_worker_status() IS
	'The allma worker processes and what each is doing';

-- Authoring helpers: the same code the engine runs, callable from SQL.

CREATE FUNCTION allma_eval_condition(condition text, context jsonb)
RETURNS boolean
AS 'MODULE_PATHNAME', 'allma_eval_condition'
LANGUAGE C STRICT IMMUTABLE;
COMMENT ON FUNCTION allma_eval_condition(text, jsonb) IS
	'Evaluates a transition condition (Allma syntax or a jsonpath predicate) over a context';

CREATE FUNCTION allma_path_query(context jsonb, path text)
RETURNS jsonb
AS 'MODULE_PATHNAME', 'allma_path_query'
LANGUAGE C STRICT IMMUTABLE;
COMMENT ON FUNCTION allma_path_query(jsonb, text) IS
	'Evaluates an Allma (jsonpath-plus) JSONPath over a context; NULL when nothing matches';

CREATE FUNCTION allma_jsonpath(path text)
RETURNS jsonpath
AS 'MODULE_PATHNAME', 'allma_jsonpath'
LANGUAGE C STRICT IMMUTABLE;
COMMENT ON FUNCTION allma_jsonpath(text) IS
	'Translates an Allma (jsonpath-plus) JSONPath into PostgreSQL jsonpath';

CREATE FUNCTION allma_render_template(template text, context jsonb)
RETURNS text
AS 'MODULE_PATHNAME', 'allma_render_template'
LANGUAGE C STRICT IMMUTABLE;
COMMENT ON FUNCTION allma_render_template(text, jsonb) IS
	'Renders a {{ }} template (Allma''s Handlebars subset and helpers) against a context';

CREATE FUNCTION allma_run_module(module_identifier text, input jsonb)
RETURNS jsonb
AS 'MODULE_PATHNAME', 'allma_run_module'
LANGUAGE C STRICT VOLATILE;
COMMENT ON FUNCTION allma_run_module(text, jsonb) IS
	'Runs a built-in DATA_TRANSFORMATION module (system/...) on an input, as a step would';

-- HTTP client debug functions: the client the workers use for API_CALL and
-- LLM steps, run synchronously in the calling backend.  Not granted to
-- PUBLIC: they make outbound requests from the database server.

CREATE FUNCTION allma_http_request(method text, url text, headers jsonb DEFAULT '{}',
								   body text DEFAULT NULL, options jsonb DEFAULT '{}')
RETURNS jsonb
AS 'MODULE_PATHNAME', 'allma_http_request'
LANGUAGE C VOLATILE;
COMMENT ON FUNCTION allma_http_request(text, text, jsonb, text, jsonb) IS
	'Runs one HTTP request through allma''s HTTP client; returns {status, headers, body, durationMs, error, ...}';
REVOKE ALL ON FUNCTION allma_http_request(text, text, jsonb, text, jsonb) FROM PUBLIC;

CREATE FUNCTION allma_http_batch(requests jsonb, options jsonb DEFAULT '{}')
RETURNS jsonb
AS 'MODULE_PATHNAME', 'allma_http_batch'
LANGUAGE C VOLATILE;
COMMENT ON FUNCTION allma_http_batch(jsonb, jsonb) IS
	'Runs an array of HTTP requests concurrently through allma''s HTTP client; results in the same order';
REVOKE ALL ON FUNCTION allma_http_batch(jsonb, jsonb) FROM PUBLIC;

------------------------------------------------------------------------------
-- Prompt templates: versioned like flows (LLM_INVOCATION's promptTemplateId)
------------------------------------------------------------------------------

CREATE TABLE allma.prompts (
	prompt_id			text PRIMARY KEY,
	latest_version		integer NOT NULL DEFAULT 0,
	published_version	integer,
	created_at			timestamptz NOT NULL DEFAULT now(),
	updated_at			timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE allma.prompts IS
	'One row per prompt id: its latest and its published version';

CREATE TABLE allma.prompt_templates (
	prompt_id			text NOT NULL REFERENCES allma.prompts (prompt_id) ON DELETE CASCADE,
	version				integer NOT NULL CHECK (version > 0),
	content				text NOT NULL,
	description			text,
	created_at			timestamptz NOT NULL DEFAULT now(),
	created_by			regrole NOT NULL DEFAULT current_user::regrole,
	PRIMARY KEY (prompt_id, version)
);
COMMENT ON TABLE allma.prompt_templates IS
	'Immutable versions of prompt templates ({{ }} syntax, checked when stored)';

ALTER TABLE allma.prompts
	ADD FOREIGN KEY (prompt_id, published_version)
	REFERENCES allma.prompt_templates (prompt_id, version) DEFERRABLE INITIALLY DEFERRED;

GRANT SELECT ON allma.prompts, allma.prompt_templates TO PUBLIC;

SELECT pg_catalog.pg_extension_config_dump('allma.prompts', '');
SELECT pg_catalog.pg_extension_config_dump('allma.prompt_templates', '');

CREATE FUNCTION allma_create_prompt(prompt_id text, content text, publish boolean DEFAULT true,
									description text DEFAULT NULL)
RETURNS integer
AS 'MODULE_PATHNAME', 'allma_create_prompt'
LANGUAGE C VOLATILE
SET search_path = pg_catalog, pg_temp;
COMMENT ON FUNCTION allma_create_prompt(text, text, boolean, text) IS
	'Checks a prompt template and stores it as the next version of prompt_id; returns the version';

CREATE FUNCTION allma_publish_prompt(prompt_id text, version integer)
RETURNS void
AS 'MODULE_PATHNAME', 'allma_publish_prompt'
LANGUAGE C STRICT VOLATILE
SET search_path = pg_catalog, pg_temp;
COMMENT ON FUNCTION allma_publish_prompt(text, integer) IS
	'Makes a stored prompt version the published one (the one LLM steps use)';

CREATE FUNCTION allma_get_prompt(prompt_id text, version integer DEFAULT NULL)
RETURNS text
AS 'MODULE_PATHNAME', 'allma_get_prompt'
LANGUAGE C STABLE
SET search_path = pg_catalog, pg_temp;
COMMENT ON FUNCTION allma_get_prompt(text, integer) IS
	'The template text of a prompt version (NULL: the published version), as LLM steps read it';

------------------------------------------------------------------------------
-- Secrets: API keys for LLM and HTTP steps
------------------------------------------------------------------------------

/*
 * No grants: only superusers read this table; the functions below are
 * revoked from PUBLIC.  Deliberately NOT registered with
 * pg_extension_config_dump: pg_dump would then write every secret value in
 * clear text into dump files, which are routinely copied and stored with
 * far less care than the database itself.  Secrets must be set again after
 * a restore.
 */
CREATE TABLE allma.secrets (
	name				text PRIMARY KEY,
	value				text NOT NULL,
	created_at			timestamptz NOT NULL DEFAULT now(),
	updated_at			timestamptz NOT NULL DEFAULT now()
);
REVOKE ALL ON allma.secrets FROM PUBLIC;
COMMENT ON TABLE allma.secrets IS
	'Named secrets (API keys) for steps; superuser-only, not dumped, redacted from history';

CREATE FUNCTION allma_set_secret(name text, value text)
RETURNS void
AS 'MODULE_PATHNAME', 'allma_set_secret'
LANGUAGE C STRICT VOLATILE
SET search_path = pg_catalog, pg_temp;
COMMENT ON FUNCTION allma_set_secret(text, text) IS
	'Creates or replaces a named secret';
REVOKE ALL ON FUNCTION allma_set_secret(text, text) FROM PUBLIC;

CREATE FUNCTION allma_delete_secret(name text)
RETURNS boolean
AS 'MODULE_PATHNAME', 'allma_delete_secret'
LANGUAGE C STRICT VOLATILE
SET search_path = pg_catalog, pg_temp;
COMMENT ON FUNCTION allma_delete_secret(text) IS
	'Deletes a named secret; false when it did not exist';
REVOKE ALL ON FUNCTION allma_delete_secret(text) FROM PUBLIC;

CREATE FUNCTION allma_get_secret(name text)
RETURNS text
AS 'MODULE_PATHNAME', 'allma_get_secret'
LANGUAGE C STRICT STABLE
SET search_path = pg_catalog, pg_temp;
COMMENT ON FUNCTION allma_get_secret(text) IS
	'The value of a named secret, as steps read it; raises LM305 when it does not exist';
REVOKE ALL ON FUNCTION allma_get_secret(text) FROM PUBLIC;

-- Not for PUBLIC either: it would tell anyone whether a guess is a secret.
CREATE FUNCTION allma_redact_secrets(input text)
RETURNS text
AS 'MODULE_PATHNAME', 'allma_redact_secrets'
LANGUAGE C STRICT STABLE
SET search_path = pg_catalog, pg_temp;
COMMENT ON FUNCTION allma_redact_secrets(text) IS
	'Replaces every secret value (4 bytes or longer) in a text with [redacted]';
REVOKE ALL ON FUNCTION allma_redact_secrets(text) FROM PUBLIC;

CREATE FUNCTION allma_redact_secrets(input jsonb)
RETURNS jsonb
AS 'MODULE_PATHNAME', 'allma_redact_secrets_jsonb'
LANGUAGE C STRICT STABLE
SET search_path = pg_catalog, pg_temp;
COMMENT ON FUNCTION allma_redact_secrets(jsonb) IS
	'Replaces every secret value in the strings (and keys) of a jsonb value with [redacted]';
REVOKE ALL ON FUNCTION allma_redact_secrets(jsonb) FROM PUBLIC;

------------------------------------------------------------------------------
-- LLM provider adapters (no network): what an LLM step sends and reads
------------------------------------------------------------------------------

CREATE FUNCTION allma_llm_request_preview(provider text, call jsonb)
RETURNS jsonb
AS 'MODULE_PATHNAME', 'allma_llm_request_preview'
LANGUAGE C STRICT IMMUTABLE;
COMMENT ON FUNCTION allma_llm_request_preview(text, jsonb) IS
	'The HTTP request (url, method, headers with the apiKey redacted, body) an LLM call makes to OPENAI, ANTHROPIC or GEMINI';

CREATE FUNCTION allma_llm_parse(provider text, status integer, body text)
RETURNS jsonb
AS 'MODULE_PATHNAME', 'allma_llm_parse'
LANGUAGE C IMMUTABLE;
COMMENT ON FUNCTION allma_llm_parse(text, integer, text) IS
	'Reads a provider response as an LLM step does: {text, tool_calls, usage, finishReason, model} or {error: {errorName, message}}';

CREATE FUNCTION allma_llm_extract_json(reply text)
RETURNS jsonb
AS 'MODULE_PATHNAME', 'allma_llm_extract_json'
LANGUAGE C STRICT IMMUTABLE;
COMMENT ON FUNCTION allma_llm_extract_json(text) IS
	'jsonOutputMode: the JSON object in an LLM reply (other JSON values wrapped as {llm_response}); raises LM203 when there is none';

------------------------------------------------------------------------------
-- MCP connections (MCP_CALL) and downloaded files (FILE_DOWNLOAD)
------------------------------------------------------------------------------

/*
 * An MCP server that MCP_CALL steps reach through mcpConnectionId.  Header
 * values may refer to secrets as "{{secrets.NAME}}", and bearer_secret
 * names a secret sent as "Authorization: Bearer <value>": the values stay
 * in allma.secrets and are put only into the requests sent.  Not granted
 * to PUBLIC: headers could still hold literal credentials.
 */
CREATE TABLE allma.mcp_connections (
	id					text PRIMARY KEY CONSTRAINT mcp_connection_id_not_empty CHECK (id <> ''),
	url					text NOT NULL
		CONSTRAINT mcp_connection_url_is_http CHECK (url ~* '^https?://[^/?#]+'),
	headers				jsonb NOT NULL DEFAULT '{}'
		CONSTRAINT mcp_connection_headers_are_strings CHECK (
			jsonb_typeof(headers) = 'object' AND
			NOT jsonb_path_exists(headers, '$.keyvalue() ? (@.value.type() != "string" || @.value like_regex "[\\r\\n]" || !(@.key like_regex "^[!#$%&''*+.^_`|~0-9A-Za-z-]+$"))')),
	bearer_secret		text,
	session_id			text,			-- set by allma: the server's Mcp-Session-Id
	created_at			timestamptz NOT NULL DEFAULT now(),
	updated_at			timestamptz NOT NULL DEFAULT now()
);
REVOKE ALL ON allma.mcp_connections FROM PUBLIC;
COMMENT ON TABLE allma.mcp_connections IS
	'MCP servers for MCP_CALL steps: URL, static headers ({{secrets.NAME}} allowed) and an optional bearer secret name';
SELECT pg_catalog.pg_extension_config_dump('allma.mcp_connections', '');

CREATE FUNCTION allma_create_mcp_connection(id text, url text, headers jsonb DEFAULT '{}',
											bearer_secret text DEFAULT NULL)
RETURNS void
LANGUAGE sql VOLATILE
SET search_path = pg_catalog, pg_temp
BEGIN ATOMIC
	INSERT INTO allma.mcp_connections AS c (id, url, headers, bearer_secret)
	VALUES (id, url, coalesce(headers, '{}'), bearer_secret)
	ON CONFLICT ON CONSTRAINT mcp_connections_pkey DO UPDATE
		SET url = excluded.url, headers = excluded.headers, session_id = NULL,
			bearer_secret = excluded.bearer_secret, updated_at = now();
END;
COMMENT ON FUNCTION allma_create_mcp_connection(text, text, jsonb, text) IS
	'Creates or replaces an MCP connection (JSON-RPC over streamable HTTP) for MCP_CALL steps';
REVOKE ALL ON FUNCTION allma_create_mcp_connection(text, text, jsonb, text) FROM PUBLIC;

CREATE FUNCTION allma_drop_mcp_connection(id text)
RETURNS boolean
LANGUAGE sql STRICT VOLATILE
SET search_path = pg_catalog, pg_temp
BEGIN ATOMIC
	WITH d AS (DELETE FROM allma.mcp_connections c WHERE c.id = allma_drop_mcp_connection.id RETURNING 1)
	SELECT count(*) > 0 FROM d;
END;
COMMENT ON FUNCTION allma_drop_mcp_connection(text) IS
	'Deletes an MCP connection; false when it did not exist';
REVOKE ALL ON FUNCTION allma_drop_mcp_connection(text) FROM PUBLIC;

/*
 * Bodies fetched by FILE_DOWNLOAD steps, bytes as received (at most
 * allma.file_download_max_bytes each).  Keyed by execution like the
 * history, visible like it, and deleted with the execution.
 */
CREATE TABLE allma.files (
	execution_id		uuid NOT NULL REFERENCES allma.executions (execution_id) ON DELETE CASCADE,
	file_id				uuid NOT NULL DEFAULT gen_random_uuid(),
	step_id				text NOT NULL,
	url					text NOT NULL,
	content_type		text,
	content				bytea NOT NULL,
	content_length		bigint NOT NULL,
	created_at			timestamptz NOT NULL DEFAULT clock_timestamp(),
	PRIMARY KEY (execution_id, file_id)
);
CREATE INDEX files_file_id_idx ON allma.files (file_id);
COMMENT ON TABLE allma.files IS
	'Files downloaded by FILE_DOWNLOAD steps; the step output''s filePointer.fileId is file_id';
SELECT pg_catalog.pg_extension_config_dump('allma.files', '');

GRANT SELECT ON allma.files TO PUBLIC;
ALTER TABLE allma.files ENABLE ROW LEVEL SECURITY;
CREATE POLICY files_starter ON allma.files FOR SELECT
	USING (EXISTS (SELECT 1 FROM allma.executions e
				   WHERE e.execution_id = files.execution_id));
