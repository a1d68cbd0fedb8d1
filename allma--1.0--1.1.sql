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


------------------------------------------------------------------------------
-- Operations: schedules, retention, completion actions
------------------------------------------------------------------------------


------------------------------------------------------------------------------
-- Faults and limits
------------------------------------------------------------------------------


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


------------------------------------------------------------------------------
-- Rate limits, concurrency keys, priorities
------------------------------------------------------------------------------


------------------------------------------------------------------------------
-- Scale: out-of-line values
------------------------------------------------------------------------------

