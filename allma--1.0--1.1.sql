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

