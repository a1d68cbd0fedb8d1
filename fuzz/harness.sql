-- Fuzzing harness (issue 13), loaded by t/068_sanitized_fuzz.pl into a
-- server running the sanitized build (fuzz/build.sh).  fuzz_one(kind,
-- bytes) feeds one input of scripts/fuzz-parsers.py through the SQL
-- functions that parse and evaluate it and returns 'ok' or the SQLSTATE of
-- its error: any error is acceptable except an internal one (XX...); a
-- sanitizer report aborts the backend (and the test fails on it).
CREATE FUNCTION tcheck(text) RETURNS text AS '$libdir/allma', 'allma_test_template_check' LANGUAGE C STRICT;
CREATE FUNCTION ccheck(text) RETURNS text AS '$libdir/allma', 'allma_test_condition_check' LANGUAGE C STRICT;
CREATE FUNCTION pcheck(text, text) RETURNS text AS '$libdir/allma', 'allma_test_path_check' LANGUAGE C STRICT;
CREATE FUNCTION dotpath_set(jsonb, text, jsonb) RETURNS jsonb AS '$libdir/allma', 'allma_test_dotpath_set' LANGUAGE C;

-- DynamoDB tables the expressions run against
SELECT allma_create_dynamodb_table('Items', 'PK', 'SK');
SELECT allma_create_dynamodb_table('Nums', 'PK', 'n', attribute_types => '{"n": "N"}');
INSERT INTO allma_dynamodb."Items" (item) VALUES
	('{"PK": "S", "SK": "a", "status": "NEW", "n": 1, "s": "hello world", "tags": ["red", "blue"], "flag": true, "nil": null, "m": {"k": 1}}'),
	('{"PK": "S", "SK": "b", "status": "OLD", "n": 10, "s": "héllo", "tags": [], "m": {"a": {"b": [10, 20, 30], "c": "x"}, "k": 2}, "l": [{"x": 1}, {"x": 2}, {"x": 3}], "#odd name": "yes"}'),
	('{"PK": "S", "SK": "c", "n": "10", "s": "", "tags": ["red"], "m": {}}'),
	('{"PK": "U", "SK": "1", "n": 5, "s": "abc", "l": ["a", "b", "c", "d"], "tags": ["x", "y"], "m": {"a": {"b": [1, 2]}, "k": "v"}}');
INSERT INTO allma_dynamodb."Nums" (item) VALUES ('{"PK": "S", "n": 9}'), ('{"PK": "S", "n": -1.5}');

-- the placeholder maps an expression uses: "#name" -> an attribute name,
-- ":value" -> a value whose type its first letter picks
CREATE FUNCTION ddb_maps(s text, OUT names jsonb, OUT vals jsonb) LANGUAGE sql AS $$
	SELECT (SELECT coalesce(jsonb_object_agg(m, CASE substr(m, 2, 1) WHEN 'p' THEN 'PK' WHEN 's' THEN 'SK'
													WHEN 'o' THEN '#odd name' ELSE 'n' END), '{}')
			FROM (SELECT DISTINCT (regexp_matches(s, '#[A-Za-z0-9_]+', 'g'))[1] AS m) x),
		   (SELECT coalesce(jsonb_object_agg(m, CASE substr(m, 2, 1) WHEN 'n' THEN '5'::jsonb WHEN 'l' THEN '[1, "x"]'
													WHEN 'm' THEN '{"a": 1}' WHEN 'b' THEN 'true' WHEN 'z' THEN 'null'
													ELSE '"S"' END), '{}')
			FROM (SELECT DISTINCT (regexp_matches(s, ':[A-Za-z0-9_]+', 'g'))[1] AS m) x)
$$;

-- o without its top-level nulls and empty objects (absent placeholder maps)
CREATE FUNCTION present(o jsonb) RETURNS jsonb LANGUAGE sql AS $$
	SELECT coalesce(jsonb_object_agg(key, value), '{}') FROM jsonb_each(o) WHERE value NOT IN ('null', '{}')
$$;

CREATE FUNCTION fuzz_one(kind text, b bytea) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
	s text := convert_from(b, 'UTF8');
	ctx jsonb := '{"a": {"b": [1, 2, {"c": "x"}]}, "b": "s", "xs": [1, 2, 3], "items": [{"a": 1}, {"a": 2}],
	               "n": 5, "name": "N", "o": {"k": 1, "a": [true, null]}, "k": "v", "arr": [1, 5, 10], "x_1": 0}';
	maps record;
	st text;
BEGIN
	IF kind = 'template' THEN
		PERFORM tcheck(s);
		PERFORM allma_render_template(s, ctx);
	ELSIF kind = 'condition' THEN
		PERFORM ccheck(s);
		PERFORM allma_eval_condition(s, ctx);
	ELSIF kind = 'path' THEN
		PERFORM pcheck(s, 'path');
		PERFORM pcheck(s, 'settable');
		PERFORM allma_path_query(ctx, s);
	ELSIF kind = 'dotpath' THEN
		PERFORM pcheck(s, 'dot');
		PERFORM dotpath_set(ctx, s, '1');
	ELSE
		maps := ddb_maps(s);
		IF kind = 'ddbcond' THEN
			PERFORM allma_run_module('system/dynamodb-data-loader', present(jsonb_build_object('operation', 'SCAN',
				'tableName', 'Items', 'filterExpression', s, 'expressionAttributeNames', maps.names,
				'expressionAttributeValues', maps.vals)));
		ELSIF kind = 'ddbkey' THEN
			PERFORM allma_run_module('system/dynamodb-data-loader', present(jsonb_build_object('operation', 'QUERY',
				'tableName', CASE WHEN s LIKE '%n %' THEN 'Nums' ELSE 'Items' END, 'keyConditionExpression', s,
				'expressionAttributeNames', maps.names, 'expressionAttributeValues', maps.vals)));
		ELSIF kind = 'ddbproj' THEN
			PERFORM allma_run_module('system/dynamodb-data-loader', present(jsonb_build_object('operation', 'GET',
				'tableName', 'Items', 'key', '{"PK": "S", "SK": "b"}'::jsonb, 'projectionExpression', s,
				'expressionAttributeNames', maps.names)));
		ELSIF kind = 'ddbupdate' THEN
			-- the update always rolls back (FZ000), so that every input sees the same item
			BEGIN
				PERFORM allma_run_module('system/dynamodb-update-item', present(jsonb_build_object('tableName', 'Items',
					'key', '{"PK": "U", "SK": "1"}'::jsonb, 'updateExpression', s,
					'expressionAttributeNames', maps.names, 'expressionAttributeValues', maps.vals)));
				RAISE SQLSTATE 'FZ000';
			EXCEPTION WHEN SQLSTATE 'FZ000' THEN
				NULL;
			END;
		ELSE
			RAISE 'unknown kind %', kind;
		END IF;
	END IF;
	RETURN 'ok';
EXCEPTION WHEN OTHERS THEN
	GET STACKED DIAGNOSTICS st = RETURNED_SQLSTATE;
	RETURN st;
END $$;

-- a template bomb among the inputs ends quickly
ALTER DATABASE postgres SET allma.template_max_iterations = 10000;
