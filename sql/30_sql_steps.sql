-- SQL steps, end to end through flows: DATA_LOAD system/sql-query and
-- DATA_SAVE system/sql-execute.
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS allma;
RESET client_min_messages;

-- The outcome of an execution: status, what its steps wrote, its error.
-- The original SQLSTATE travels in errorDetails.
CREATE FUNCTION sqlsteps_outcome(e uuid,
	OUT status text, OUT steps_output jsonb, OUT error_name text, OUT sqlstate text,
	OUT error_message text)
LANGUAGE sql AS $$
	SELECT status, output->'steps_output', error->>'errorName',
		   error->'errorDetails'->>'sqlstate', error->>'errorMessage'
	  FROM allma.executions WHERE execution_id = e
$$;

CREATE TABLE sqlsteps_items (
	id			integer PRIMARY KEY,
	name		text NOT NULL,
	price		numeric(10,2),
	in_stock	boolean,
	attrs		jsonb,
	tags		text[],
	added_on	date,
	added_at	timestamp
);
INSERT INTO sqlsteps_items VALUES
	(1, 'apple', 1.50, true, '{"color": "red", "sizes": [1, 2]}', '{fruit,red}', '2024-01-02', '2024-01-02 03:04:05'),
	(2, 'bread', 3.00, false, '"plain"', '{}', '2024-02-03', '2024-02-03 10:00:00.5'),
	(3, 'milk', NULL, NULL, NULL, NULL, NULL, NULL),
	(4, 'it''s', 0.10, true, '[1, {"a": null}]', '{quote}', '2024-03-04', '2024-03-04 00:00:00');

------------------------------------------------------------------------------
-- sql-query: a path parameter against an integer column; the JSON value may
-- be a number or a string.  Rows become objects: jsonb nests, numeric stays
-- numeric, arrays become JSON arrays, dates and timestamps strings.
------------------------------------------------------------------------------
SELECT allma_create_flow('{"id": "sqlsteps_q1", "startStepInstanceId": "q", "steps": {"q": {
	"stepType": "DATA_LOAD", "moduleIdentifier": "system/sql-query",
	"customConfig": {"sql": "SELECT * FROM sqlsteps_items WHERE id = $1", "parameters": ["$.id"]}}}}');
SELECT allma_start_flow('sqlsteps_q1', '{"id": 1}') AS e \gset
SELECT allma_wait(:'e');
SELECT * FROM sqlsteps_outcome(:'e');
SELECT allma_start_flow('sqlsteps_q1', '{"id": "4"}') AS e \gset
SELECT allma_wait(:'e');
SELECT * FROM sqlsteps_outcome(:'e');
-- SQL NULLs become JSON nulls
SELECT allma_start_flow('sqlsteps_q1', '{"id": 3}') AS e \gset
SELECT allma_wait(:'e');
SELECT * FROM sqlsteps_outcome(:'e');
-- no match: no rows; a missing path binds NULL
SELECT allma_start_flow('sqlsteps_q1', '{"id": 99}') AS e \gset
SELECT allma_wait(:'e');
SELECT * FROM sqlsteps_outcome(:'e');
SELECT allma_start_flow('sqlsteps_q1', '{"other": 1}') AS e \gset
SELECT allma_wait(:'e');
SELECT * FROM sqlsteps_outcome(:'e');
-- the step's history records the query's output
SELECT step_instance_id, step_type, status, output->'rowCount' AS row_count
  FROM allma.step_executions WHERE execution_id = :'e';

------------------------------------------------------------------------------
-- Typed parameters: literals and paths, int, numeric, text, bool, jsonb,
-- arrays, NULL; the types come from the statement.
------------------------------------------------------------------------------
SELECT allma_create_flow('{"id": "sqlsteps_types", "startStepInstanceId": "q", "steps": {"q": {
	"stepType": "DATA_LOAD", "moduleIdentifier": "system/sql-query",
	"customConfig": {
		"sql": "SELECT $1::int + 1 AS i, $2::numeric * 2 AS n, $3::text || ''!'' AS t, NOT $4::bool AS b, $5::jsonb -> ''k'' AS j, $6::int IS NULL AS isnull, $7::text AS lit, pg_typeof($8) AS obj_type, $8 AS obj, $9::text[] AS arr, $10 AS untyped",
		"parameters": ["$.i", "$.n", "$.t", "$.b", "$.j", "$.missing", "a literal", {"x": [1, "y"]}, "$.list", 42]}}}}');
SELECT allma_start_flow('sqlsteps_types',
	'{"i": 41, "n": 1.25, "t": "hi", "b": false, "j": {"k": [true, null]}, "list": ["a", null, "c"]}') AS e \gset
SELECT allma_wait(:'e');
SELECT jsonb_pretty(steps_output->'q') FROM sqlsteps_outcome(:'e');

-- jsonb keeps the JSON value (a string stays a JSON string); = ANY($1) takes
-- a JSON array
SELECT allma_create_flow('{"id": "sqlsteps_any", "startStepInstanceId": "q", "steps": {"q": {
	"stepType": "DATA_LOAD", "moduleIdentifier": "system/sql-query",
	"customConfig": {"sql": "SELECT id, name FROM sqlsteps_items WHERE id = ANY($1) OR attrs = $2 ORDER BY id",
					 "parameters": ["$.ids", "$.attrs"]}}}}');
SELECT allma_start_flow('sqlsteps_any', '{"ids": [1, 3], "attrs": "plain"}') AS e \gset
SELECT allma_wait(:'e');
SELECT * FROM sqlsteps_outcome(:'e');

------------------------------------------------------------------------------
-- Injection attempts stay values.
------------------------------------------------------------------------------
SELECT allma_create_flow('{"id": "sqlsteps_inject", "startStepInstanceId": "q", "steps": {"q": {
	"stepType": "DATA_LOAD", "moduleIdentifier": "system/sql-query",
	"customConfig": {"sql": "SELECT id FROM sqlsteps_items WHERE name = $1", "parameters": ["$.name"]}}}}');
SELECT allma_start_flow('sqlsteps_inject', '{"name": "x'' OR ''1''=''1"}') AS e \gset
SELECT allma_wait(:'e');
SELECT * FROM sqlsteps_outcome(:'e');
SELECT allma_start_flow('sqlsteps_inject', '{"name": "x''; DROP TABLE sqlsteps_items; --"}') AS e \gset
SELECT allma_wait(:'e');
SELECT * FROM sqlsteps_outcome(:'e');
SELECT allma_start_flow('sqlsteps_inject', '{"name": "it''s"}') AS e \gset
SELECT allma_wait(:'e');
SELECT * FROM sqlsteps_outcome(:'e');
SELECT count(*) FROM sqlsteps_items;

------------------------------------------------------------------------------
-- sql-execute: rows affected; jsonb values stored as JSON.  Then a
-- sql-query step reads what the first step wrote (one flow, two steps).
------------------------------------------------------------------------------
CREATE TABLE sqlsteps_log (id serial PRIMARY KEY, who text NOT NULL, payload jsonb,
						   CHECK (who <> 'forbidden'));
SELECT allma_create_flow('{"id": "sqlsteps_save", "startStepInstanceId": "ins", "steps": {
	"ins": {"stepType": "DATA_SAVE", "moduleIdentifier": "system/sql-execute",
			"customConfig": {"sql": "INSERT INTO sqlsteps_log (who, payload) SELECT $1, $2 FROM generate_series(1, $3)",
							 "parameters": ["$.who", "$.payload", "$.times"]},
			"defaultNextStepInstanceId": "upd"},
	"upd": {"stepType": "DATA_SAVE", "moduleIdentifier": "system/sql-execute",
			"customConfig": {"sql": "UPDATE sqlsteps_items SET in_stock = $1 WHERE id <= $2",
							 "parameters": [false, 2]},
			"defaultNextStepInstanceId": "read"},
	"read": {"stepType": "DATA_LOAD", "moduleIdentifier": "system/sql-query",
			 "customConfig": {"sql": "SELECT who, payload, jsonb_typeof(payload) AS kind FROM sqlsteps_log WHERE who = $1 ORDER BY id LIMIT 1",
							  "parameters": ["$.who"]}}}}');
SELECT allma_start_flow('sqlsteps_save', '{"who": "ann", "payload": {"n": 1, "s": ["x"]}, "times": 3}') AS e \gset
SELECT allma_wait(:'e');
SELECT * FROM sqlsteps_outcome(:'e');
SELECT who, payload FROM sqlsteps_log ORDER BY id;
SELECT id, in_stock FROM sqlsteps_items ORDER BY id;

-- DML ... RETURNING through sql-query
SELECT allma_create_flow('{"id": "sqlsteps_returning", "startStepInstanceId": "q", "steps": {"q": {
	"stepType": "DATA_LOAD", "moduleIdentifier": "system/sql-query",
	"customConfig": {"sql": "UPDATE sqlsteps_items SET price = price + $1 WHERE id IN (1, 2) RETURNING id, price",
					 "parameters": [1]}}}}');
SELECT allma_start_flow('sqlsteps_returning') AS e \gset
SELECT allma_wait(:'e');
SELECT * FROM sqlsteps_outcome(:'e');

-- a JSON string compared with a numeric column
SELECT allma_create_flow('{"id": "sqlsteps_count", "startStepInstanceId": "q", "steps": {"q": {
	"stepType": "DATA_LOAD", "moduleIdentifier": "system/sql-query",
	"customConfig": {"sql": "SELECT count(*) AS n FROM sqlsteps_items WHERE price > $1",
					 "parameters": ["$.min"]}}}}');
SELECT allma_start_flow('sqlsteps_count', '{"min": "1"}') AS e \gset
SELECT allma_wait(:'e');
SELECT * FROM sqlsteps_outcome(:'e');

------------------------------------------------------------------------------
-- Errors fail the step with an Allma error, and the step's effects are
-- rolled back.
------------------------------------------------------------------------------
-- syntax error
SELECT allma_create_flow('{"id": "sqlsteps_err_syntax", "startStepInstanceId": "q", "steps": {"q": {
	"stepType": "DATA_LOAD", "moduleIdentifier": "system/sql-query",
	"customConfig": {"sql": "SELEC id FROM sqlsteps_items"}}}}');
SELECT allma_start_flow('sqlsteps_err_syntax') AS e \gset
SELECT allma_wait(:'e');
SELECT status, error_name, sqlstate, error_message ~ 'syntax error' AS says_syntax FROM sqlsteps_outcome(:'e');
SELECT status, error->>'errorName' AS error_name FROM allma.step_executions WHERE execution_id = :'e';

-- a constraint violation in the middle of a multi-row insert: no row stays
SELECT allma_create_flow('{"id": "sqlsteps_err_check", "startStepInstanceId": "q", "steps": {"q": {
	"stepType": "DATA_SAVE", "moduleIdentifier": "system/sql-execute",
	"customConfig": {"sql": "INSERT INTO sqlsteps_log (who) VALUES ($1), ($2), ($3)",
					 "parameters": ["bob", "forbidden", "carl"]}}}}');
SELECT allma_start_flow('sqlsteps_err_check') AS e \gset
SELECT allma_wait(:'e');
SELECT status, error_name, sqlstate, error_message ~ 'check constraint' AS says_check FROM sqlsteps_outcome(:'e');
SELECT count(*) FROM sqlsteps_log WHERE who IN ('bob', 'carl');

-- a value that does not fit the inferred type
SELECT allma_start_flow('sqlsteps_q1', '{"id": "abc"}') AS e \gset
SELECT allma_wait(:'e');
SELECT status, error_name, sqlstate, error_message ~ 'invalid input syntax for type integer' AS says_type
  FROM sqlsteps_outcome(:'e');

-- a failure after an earlier step: that step's effects stay, the failing one's go
SELECT allma_create_flow('{"id": "sqlsteps_err_second", "startStepInstanceId": "a", "steps": {
	"a": {"stepType": "DATA_SAVE", "moduleIdentifier": "system/sql-execute",
		  "customConfig": {"sql": "INSERT INTO sqlsteps_log (who) VALUES (''first'')"},
		  "defaultNextStepInstanceId": "b"},
	"b": {"stepType": "DATA_LOAD", "moduleIdentifier": "system/sql-query",
		  "customConfig": {"sql": "INSERT INTO sqlsteps_log (who) VALUES (''second'') RETURNING 1 / 0 AS boom"}}}}');
SELECT allma_start_flow('sqlsteps_err_second') AS e \gset
SELECT allma_wait(:'e');
SELECT status, error_name, sqlstate, error_message ~ 'division by zero' AS says_div FROM sqlsteps_outcome(:'e');
SELECT who FROM sqlsteps_log WHERE who IN ('first', 'second');
SELECT step_instance_id, status FROM allma.step_executions WHERE execution_id = :'e' ORDER BY seq;

------------------------------------------------------------------------------
-- Limits and misuse: the row cap (default 10000, or maxRows), one statement
-- only, sql-query needs rows, a $n without a value, transaction control.
------------------------------------------------------------------------------
SELECT allma_create_flow('{"id": "sqlsteps_cap_default", "startStepInstanceId": "q", "steps": {"q": {
	"stepType": "DATA_LOAD", "moduleIdentifier": "system/sql-query",
	"customConfig": {"sql": "SELECT g FROM generate_series(1, $1) g", "parameters": ["$.n"]}}}}');
SELECT allma_start_flow('sqlsteps_cap_default', '{"n": 10000}') AS e \gset
SELECT allma_wait(:'e');
SELECT status, steps_output->'q'->'rowCount' AS row_count,
	   jsonb_array_length(steps_output->'q'->'rows') AS rows FROM sqlsteps_outcome(:'e');
SELECT allma_start_flow('sqlsteps_cap_default', '{"n": 10001}') AS e \gset
SELECT allma_wait(:'e');
SELECT status, error_name, sqlstate, error_message FROM sqlsteps_outcome(:'e');

-- maxRows, and the cap on DML ... RETURNING rolls the DML back
SELECT allma_create_flow('{"id": "sqlsteps_cap", "startStepInstanceId": "q", "steps": {"q": {
	"stepType": "DATA_LOAD", "moduleIdentifier": "system/sql-query",
	"customConfig": {"sql": "INSERT INTO sqlsteps_log (who) SELECT ''capped'' FROM generate_series(1, $1) RETURNING id",
					 "parameters": ["$.n"], "maxRows": 3}}}}');
SELECT allma_start_flow('sqlsteps_cap', '{"n": 3}') AS e \gset
SELECT allma_wait(:'e');
SELECT status, steps_output->'q'->'rowCount' AS row_count FROM sqlsteps_outcome(:'e');
SELECT allma_start_flow('sqlsteps_cap', '{"n": 4}') AS e \gset
SELECT allma_wait(:'e');
SELECT status, error_name, sqlstate, error_message FROM sqlsteps_outcome(:'e');
-- only the first run's three rows are there
SELECT count(*) AS capped_rows FROM sqlsteps_log WHERE who = 'capped';

SELECT allma_create_flow('{"id": "sqlsteps_multi", "startStepInstanceId": "q", "steps": {"q": {
	"stepType": "DATA_SAVE", "moduleIdentifier": "system/sql-execute",
	"customConfig": {"sql": "DELETE FROM sqlsteps_log; DELETE FROM sqlsteps_items"}}}}');
SELECT allma_start_flow('sqlsteps_multi') AS e \gset
SELECT allma_wait(:'e');
SELECT status, error_name, sqlstate, error_message FROM sqlsteps_outcome(:'e');
SELECT (SELECT count(*) FROM sqlsteps_log) > 0 AS log_kept, (SELECT count(*) FROM sqlsteps_items) AS items;

SELECT allma_create_flow('{"id": "sqlsteps_norows", "startStepInstanceId": "q", "steps": {"q": {
	"stepType": "DATA_LOAD", "moduleIdentifier": "system/sql-query",
	"customConfig": {"sql": "DELETE FROM sqlsteps_log"}}}}');
SELECT allma_start_flow('sqlsteps_norows') AS e \gset
SELECT allma_wait(:'e');
SELECT status, error_name, sqlstate, error_message FROM sqlsteps_outcome(:'e');
SELECT count(*) > 0 AS log_kept FROM sqlsteps_log;

SELECT allma_create_flow('{"id": "sqlsteps_noparam", "startStepInstanceId": "q", "steps": {"q": {
	"stepType": "DATA_LOAD", "moduleIdentifier": "system/sql-query",
	"customConfig": {"sql": "SELECT $1::int AS a, $2::int AS b", "parameters": [1]}}}}');
SELECT allma_start_flow('sqlsteps_noparam') AS e \gset
SELECT allma_wait(:'e');
SELECT status, error_name, sqlstate, error_message FROM sqlsteps_outcome(:'e');

SELECT allma_create_flow('{"id": "sqlsteps_commit", "startStepInstanceId": "q", "steps": {"q": {
	"stepType": "DATA_SAVE", "moduleIdentifier": "system/sql-execute",
	"customConfig": {"sql": "COMMIT"}}}}');
SELECT allma_start_flow('sqlsteps_commit') AS e \gset
SELECT allma_wait(:'e');
SELECT status, error_name, sqlstate, error_message FROM sqlsteps_outcome(:'e');

------------------------------------------------------------------------------
-- SQL runs with the privileges of the role that started the execution.
------------------------------------------------------------------------------
CREATE ROLE regress_allma_sql_reader;
-- (since 1.1 a role starts flows as a member of allma_user, with START on
-- the flow: docs/security.md)
GRANT allma_user TO regress_allma_sql_reader;
CREATE TABLE sqlsteps_secret (v text);
INSERT INTO sqlsteps_secret VALUES ('hidden');
SELECT allma_create_flow('{"id": "sqlsteps_secret", "startStepInstanceId": "q", "steps": {"q": {
	"stepType": "DATA_LOAD", "moduleIdentifier": "system/sql-query",
	"customConfig": {"sql": "SELECT current_user AS who, v FROM sqlsteps_secret"}}}}');
SELECT allma_grant_flow('sqlsteps_secret', 'regress_allma_sql_reader', 'START');
SET ROLE regress_allma_sql_reader;
SELECT allma_start_flow('sqlsteps_secret') AS e \gset
RESET ROLE;
SELECT allma_wait(:'e');
SELECT status, error_name, sqlstate, error_message FROM sqlsteps_outcome(:'e');
GRANT SELECT ON sqlsteps_secret TO regress_allma_sql_reader;
SET ROLE regress_allma_sql_reader;
SELECT allma_start_flow('sqlsteps_secret') AS e \gset
RESET ROLE;
SELECT allma_wait(:'e');
SELECT * FROM sqlsteps_outcome(:'e');
-- started by the superuser running the test, the step runs as that role
SELECT allma_start_flow('sqlsteps_secret') AS e \gset
SELECT allma_wait(:'e');
SELECT status, steps_output->'q'->'rows'->0->>'who' = current_user AS ran_as_starter
  FROM sqlsteps_outcome(:'e');

-- the starter cannot escape its role from inside a step
SELECT allma_create_flow('{"id": "sqlsteps_setrole", "startStepInstanceId": "q", "steps": {"q": {
	"stepType": "DATA_LOAD", "moduleIdentifier": "system/sql-query",
	"customConfig": {"sql": "SELECT set_config(''role'', $1, false) AS r", "parameters": ["$.role"]}}}}');
SELECT allma_grant_flow('sqlsteps_setrole', 'regress_allma_sql_reader', 'START');
SET ROLE regress_allma_sql_reader;
SELECT allma_start_flow('sqlsteps_setrole', jsonb_build_object('role', session_user)) AS e \gset
RESET ROLE;
SELECT allma_wait(:'e');
SELECT status, error_name, sqlstate, error_message FROM sqlsteps_outcome(:'e');

-- clean up
DROP TABLE sqlsteps_secret;
DROP OWNED BY regress_allma_sql_reader;
DROP ROLE regress_allma_sql_reader;
