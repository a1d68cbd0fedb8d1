-- Built-in DATA_TRANSFORMATION modules, run through allma_run_module().
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS allma;
RESET client_min_messages;

-- Errors are shown as "SQLSTATE: message | DETAIL: ... | HINT: ..." by this
-- wrapper rather than with \set VERBOSITY verbose, whose LOCATION lines carry
-- source line numbers.
CREATE FUNCTION pg_temp.try_module(module text, input jsonb) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
	st text;
	msg text;
	det text;
	hin text;
BEGIN
	RETURN allma_run_module(module, input)::text;
EXCEPTION WHEN OTHERS THEN
	GET STACKED DIAGNOSTICS st = RETURNED_SQLSTATE, msg = MESSAGE_TEXT,
		det = PG_EXCEPTION_DETAIL, hin = PG_EXCEPTION_HINT;
	RETURN st || ': ' || msg
		|| CASE WHEN det <> '' THEN ' | DETAIL: ' || det ELSE '' END
		|| CASE WHEN hin <> '' THEN ' | HINT: ' || hin ELSE '' END;
END
$$;

-- the rows of a join-data result, one per line
CREATE FUNCTION pg_temp.join_rows(input jsonb) RETURNS SETOF jsonb
LANGUAGE sql AS $$
	SELECT e FROM jsonb_array_elements(allma_run_module('system/join-data', input)->'result') e
$$;

----------------------------------------------------------------------------
-- module lookup
----------------------------------------------------------------------------
\pset format unaligned
\pset tuples_only on
SELECT pg_temp.try_module('system/no-such-module', '{}');
SELECT pg_temp.try_module('system/sqs-receive-messages', '{}');
SELECT pg_temp.try_module('system/compose-object-from-input', '[1, 2]');
SELECT pg_temp.try_module('system/generate-array', '"x"');
\pset format aligned
\pset tuples_only off
-- STRICT: null arguments give null
SELECT allma_run_module(NULL, '{}') IS NULL AS null_module,
       allma_run_module('system/compose-object-from-input', NULL) IS NULL AS null_input;

----------------------------------------------------------------------------
-- system/compose-object-from-input: output = input
----------------------------------------------------------------------------
SELECT allma_run_module('system/compose-object-from-input',
                        '{"a": 1, "b": {"c": [1, "x", null]}, "d": null}');
SELECT allma_run_module('system/compose-object-from-input', '{}');

----------------------------------------------------------------------------
-- system/array-aggregator
----------------------------------------------------------------------------
-- numbers count, booleans count as 1/0, everything else is skipped
SELECT op, allma_run_module('system/array-aggregator',
         jsonb_build_object('array', '[3, 1.5, "7", null, true, {"x": 1}, [9], 10, false]'::jsonb,
                            'operation', op))
  FROM unnest(ARRAY['min', 'max', 'sum', 'avg']) AS op;
-- a key path picks one field of each object element; others are skipped
SELECT op, allma_run_module('system/array-aggregator',
         jsonb_build_object('array', '[{"price": 2}, {"price": "9"}, {"other": 1}, 5, {"price": 4.25}, {"price": -1}]'::jsonb,
                            'path', 'price', 'operation', op))
  FROM unnest(ARRAY['min', 'max', 'sum', 'avg']) AS op;
-- a JSONPath is evaluated on each element
SELECT op, allma_run_module('system/array-aggregator',
         jsonb_build_object('array', '[{"item": {"price": 2}}, {"item": {"price": 3.5}}, {"item": {}}, {"item": {"price": "x"}}]'::jsonb,
                            'path', '$.item.price', 'operation', op))
  FROM unnest(ARRAY['min', 'max', 'sum', 'avg']) AS op;
-- empty array, and an array without numbers: sum is 0, the others null
SELECT op, allma_run_module('system/array-aggregator',
         jsonb_build_object('array', '[]'::jsonb, 'operation', op)) AS empty,
       allma_run_module('system/array-aggregator',
         jsonb_build_object('array', '["1", null, {}]'::jsonb, 'operation', op)) AS no_numbers
  FROM unnest(ARRAY['min', 'max', 'sum', 'avg']) AS op;
-- exact decimal arithmetic; trailing fractional zeros are dropped
SELECT allma_run_module('system/array-aggregator', '{"array": [0.1, 0.2], "operation": "sum"}') AS sum,
       allma_run_module('system/array-aggregator', '{"array": [1.50, 2.50], "operation": "sum"}') AS trimmed,
       allma_run_module('system/array-aggregator', '{"array": [1, 2, 2], "operation": "avg"}') AS avg,
       allma_run_module('system/array-aggregator', '{"array": [1e20, 1], "operation": "sum"}') AS big,
       allma_run_module('system/array-aggregator', '{"array": [-5, -7.25], "operation": "min"}') AS neg;
-- a large input (100000 elements)
SELECT allma_run_module('system/array-aggregator',
         jsonb_build_object('array', allma_run_module('system/generate-array', '{"count": 100000}')->'array',
                            'operation', 'sum'));
\pset format unaligned
\pset tuples_only on
SELECT pg_temp.try_module('system/array-aggregator', '{"operation": "sum"}');
SELECT pg_temp.try_module('system/array-aggregator', '{"array": null, "operation": "sum"}');
SELECT pg_temp.try_module('system/array-aggregator', '{"array": {"a": 1}, "operation": "sum"}');
SELECT pg_temp.try_module('system/array-aggregator', '{"array": [1]}');
SELECT pg_temp.try_module('system/array-aggregator', '{"array": [1], "operation": "median"}');
SELECT pg_temp.try_module('system/array-aggregator', '{"array": [1], "operation": 1}');
SELECT pg_temp.try_module('system/array-aggregator', '{"array": [1], "operation": "sum", "path": 3}');
SELECT pg_temp.try_module('system/array-aggregator', '{"array": [1], "operation": "sum", "path": ""}');
\pset format aligned
\pset tuples_only off

----------------------------------------------------------------------------
-- system/flatten-array
----------------------------------------------------------------------------
-- one level: nested arrays are spliced in, other elements (null too) kept
SELECT allma_run_module('system/flatten-array', '{"array": [[1, 2], [3, [4]], 5, null, "a", [], {"k": [6]}]}');
SELECT allma_run_module('system/flatten-array', '{"array": []}');
-- a key path (as in Allma flows: "path": "anomalies"): extracted arrays are
-- spliced in, single values kept, missing and null values and non-objects dropped
SELECT allma_run_module('system/flatten-array',
  '{"array": [{"anomalies": [1, 2]}, {"anomalies": 3}, {"anomalies": null}, {"x": 1}, 7, {"anomalies": []}, {"anomalies": [[8]]}],
    "path": "anomalies"}');
-- a JSONPath
SELECT allma_run_module('system/flatten-array',
  '{"array": [{"a": {"b": [1, 2]}}, {"a": {"b": 3}}, {"a": {}}], "path": "$.a.b"}');
-- the step input merged over the customConfig: extra keys are ignored
SELECT allma_run_module('system/flatten-array', '{"array": [[1], [2]], "unrelated": true}');
\pset format unaligned
\pset tuples_only on
SELECT pg_temp.try_module('system/flatten-array', '{}');
SELECT pg_temp.try_module('system/flatten-array', '{"array": "1,2"}');
SELECT pg_temp.try_module('system/flatten-array', '{"array": [], "path": ["a"]}');
\pset format aligned
\pset tuples_only off

----------------------------------------------------------------------------
-- system/generate-array
----------------------------------------------------------------------------
SELECT allma_run_module('system/generate-array', '{"count": 5}');
SELECT allma_run_module('system/generate-array', '{"count": 0}');
SELECT allma_run_module('system/generate-array', '{"count": 3.0}');
SELECT jsonb_array_length(a->'array') AS len, a->'array'->0 AS first, a->'array'->-1 AS last
  FROM allma_run_module('system/generate-array', '{"count": 100000}') AS a;
\pset format unaligned
\pset tuples_only on
SELECT pg_temp.try_module('system/generate-array', '{}');
SELECT pg_temp.try_module('system/generate-array', '{"count": "5"}');
SELECT pg_temp.try_module('system/generate-array', '{"count": -1}');
SELECT pg_temp.try_module('system/generate-array', '{"count": 2.5}');
SELECT pg_temp.try_module('system/generate-array', '{"count": 100001}');
\pset format aligned
\pset tuples_only off

----------------------------------------------------------------------------
-- system/date-time-calculator
----------------------------------------------------------------------------
SELECT allma_run_module('system/date-time-calculator',
  '{"baseTime": "2026-01-02T03:04:05Z", "offsetSeconds": 3600, "operation": "add"}') AS add_hour,
       allma_run_module('system/date-time-calculator',
  '{"baseTime": "2026-01-02T03:04:05Z", "offsetSeconds": 86400, "operation": "subtract"}') AS sub_day;
-- operation defaults to add; negative and fractional offsets
SELECT allma_run_module('system/date-time-calculator',
  '{"baseTime": "2026-01-02T03:04:05.250Z", "offsetSeconds": 1.5}') AS fraction,
       allma_run_module('system/date-time-calculator',
  '{"baseTime": "2026-01-02T03:04:05Z", "offsetSeconds": -65}') AS negative,
       allma_run_module('system/date-time-calculator',
  '{"baseTime": "2024-02-28T23:59:59Z", "offsetSeconds": 1}') AS leap_day;
-- offsets are converted to UTC; a time without one is UTC whatever TimeZone
-- says; sub-millisecond digits are truncated as in JavaScript
SET TimeZone = 'America/New_York';
SELECT allma_run_module('system/date-time-calculator',
  '{"baseTime": "2026-01-02T03:04:05+02:00", "offsetSeconds": 0}') AS with_offset,
       allma_run_module('system/date-time-calculator',
  '{"baseTime": "2026-07-02T03:04:05", "offsetSeconds": 0}') AS no_offset,
       allma_run_module('system/date-time-calculator',
  '{"baseTime": "2026-01-02T03:04:05.123999Z", "offsetSeconds": 0}') AS micros;
SHOW TimeZone;
RESET TimeZone;
-- years outside 0..9999 are written as JavaScript does (year 0 is 1 BC)
SELECT allma_run_module('system/date-time-calculator',
  '{"baseTime": "9999-12-31T23:59:59Z", "offsetSeconds": 1}') AS far_future,
       allma_run_module('system/date-time-calculator',
  '{"baseTime": "0001-01-01T00:00:00Z", "offsetSeconds": 86400, "operation": "subtract"}') AS year_zero,
       allma_run_module('system/date-time-calculator',
  '{"baseTime": "0001-01-01T00:00:00Z", "offsetSeconds": 31708800, "operation": "subtract"}') AS year_minus_one;
-- no baseTime: now (checked without printing it)
SELECT r ~ '^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$' AS iso_format,
       abs(extract(epoch FROM (r::timestamptz - now())) - 3600) < 60 AS about_an_hour_from_now
  FROM (SELECT allma_run_module('system/date-time-calculator', '{"offsetSeconds": 3600}')->>'result' AS r) s;
\pset format unaligned
\pset tuples_only on
SELECT pg_temp.try_module('system/date-time-calculator', '{"baseTime": "2026-01-02T03:04:05Z"}');
SELECT pg_temp.try_module('system/date-time-calculator', '{"baseTime": "2026-01-02T03:04:05Z", "offsetSeconds": "60"}');
SELECT pg_temp.try_module('system/date-time-calculator', '{"baseTime": "next tuesday", "offsetSeconds": 60}');
SELECT pg_temp.try_module('system/date-time-calculator', '{"baseTime": "2026-13-02T03:04:05Z", "offsetSeconds": 60}');
SELECT pg_temp.try_module('system/date-time-calculator', '{"baseTime": 1767322800000, "offsetSeconds": 60}');
SELECT pg_temp.try_module('system/date-time-calculator', '{"baseTime": "infinity", "offsetSeconds": 60}');
SELECT pg_temp.try_module('system/date-time-calculator', '{"baseTime": "2026-01-02T03:04:05Z", "offsetSeconds": 60, "operation": "multiply"}');
SELECT pg_temp.try_module('system/date-time-calculator', '{"baseTime": "2026-01-02T03:04:05Z", "offsetSeconds": 1e13}');
SELECT pg_temp.try_module('system/date-time-calculator', '{"baseTime": "2026-01-02T03:04:05Z", "offsetSeconds": 9e12, "operation": "subtract"}');
SELECT pg_temp.try_module('system/date-time-calculator', '{"baseTime": "294276-12-31T23:59:59Z", "offsetSeconds": 1}');
-- TimeZone is restored after an error too
SET TimeZone = 'Asia/Tokyo';
SELECT pg_temp.try_module('system/date-time-calculator', '{"baseTime": "2026-02-30T00:00:00", "offsetSeconds": 1}');
SHOW TimeZone;
RESET TimeZone;
\pset format aligned
\pset tuples_only off

----------------------------------------------------------------------------
-- system/generate-uuid (random: checked by shape, never printed)
----------------------------------------------------------------------------
SELECT u ~ '^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$' AS v4_uuid,
       length(u) AS len, jsonb_object_keys(r) AS keys
  FROM (SELECT r, r->>'uuid' AS u
          FROM allma_run_module('system/generate-uuid', '{}') AS r) s;
SELECT u ~ '^job-[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}\.json$' AS shape,
       length(u) AS len
  FROM (SELECT allma_run_module('system/generate-uuid', '{"prefix": "job-", "suffix": ".json"}')->>'uuid' AS u) s;
-- null prefix/suffix count as absent
SELECT length(allma_run_module('system/generate-uuid', '{"prefix": null, "suffix": null}')->>'uuid') AS len;
-- every call gives a new value
SELECT count(DISTINCT allma_run_module('system/generate-uuid', '{}')) AS distinct_values
  FROM generate_series(1, 1000);
\pset format unaligned
\pset tuples_only on
SELECT pg_temp.try_module('system/generate-uuid', '{"prefix": 5}');
SELECT pg_temp.try_module('system/generate-uuid', '{"suffix": {"a": 1}}');
\pset format aligned
\pset tuples_only off

----------------------------------------------------------------------------
-- system/join-data
----------------------------------------------------------------------------
CREATE TEMP TABLE people AS SELECT '[
  {"id": 1, "name": "Ann", "city": "Oslo"},
  {"id": 2, "name": "Bob", "city": "Rome"},
  {"id": 3, "name": "Cy"},
  {"id": null, "name": "Nul"}
]'::jsonb AS j;
CREATE TEMP TABLE scores AS SELECT '[
  {"id": 1, "score": 10, "city": "Bergen"},
  {"id": 1, "score": 11},
  {"id": 4, "score": 40, "city": "Paris"},
  {"id": null, "score": 0}
]'::jsonb AS j;

-- every join type; right columns win except the key, missing ones are null,
-- null keys never match
SELECT jt, r
  FROM unnest(ARRAY['inner', 'left', 'right', 'outer']) AS jt,
       LATERAL pg_temp.join_rows(jsonb_build_object(
         'left_source', (SELECT j FROM people), 'right_source', (SELECT j FROM scores),
         'join_keys', '["id"]'::jsonb, 'join_type', jt)) AS r;
SELECT jt, allma_run_module('system/join-data', jsonb_build_object(
         'left_source', (SELECT j FROM people), 'right_source', (SELECT j FROM scores),
         'join_keys', '["id"]'::jsonb, 'join_type', jt))->'rowCount' AS row_count
  FROM unnest(ARRAY['inner', 'left', 'right', 'outer']) AS jt;
-- join_type defaults to inner
SELECT allma_run_module('system/join-data', jsonb_build_object(
         'left_source', (SELECT j FROM people), 'right_source', (SELECT j FROM scores),
         'join_keys', '["id"]'::jsonb))->'rowCount' AS inner_by_default;

-- right_select_columns: only these right columns are merged in (the key is
-- never taken from the right, an unknown column comes out null, [] adds none)
SELECT r FROM pg_temp.join_rows(jsonb_build_object(
  'left_source', (SELECT j FROM people), 'right_source', (SELECT j FROM scores),
  'join_keys', '["id"]'::jsonb, 'join_type', 'left',
  'right_select_columns', '["score", "id", "nope"]'::jsonb)) AS r;
SELECT r FROM pg_temp.join_rows(jsonb_build_object(
  'left_source', (SELECT j FROM people), 'right_source', (SELECT j FROM scores),
  'join_keys', '["id"]'::jsonb, 'right_select_columns', '[]'::jsonb)) AS r;

-- key_mappings: differently named keys; the output keeps the left name, and
-- unmatched right rows get their key under it
SELECT r FROM pg_temp.join_rows('{
  "left_source": [{"emp": "e1", "mgr_id": 7}, {"emp": "e2", "mgr_id": 8}, {"emp": "e3", "mgr_id": 7}],
  "right_source": [{"id": 7, "mgr_name": "Mia"}, {"id": 9, "mgr_name": "Noa"}],
  "key_mappings": [{"left": "mgr_id", "right": "id"}],
  "join_type": "outer"}') AS r;

-- composite keys; parts cannot run into each other ("1"+"23" is not "12"+"3")
SELECT r FROM pg_temp.join_rows('{
  "left_source": [{"a": "1", "b": "23", "x": "L1"}, {"a": "12", "b": "3", "x": "L2"}],
  "right_source": [{"a": "12", "b": "3", "y": "R1"}, {"a": 1, "b": 23, "y": "R2"}],
  "join_keys": ["a", "b"]}') AS r;

-- keys compare by display text: the number 1 matches the number 1.0 but not the
-- string "1.0"; 2.50 matches "2.5"; true matches "true"; objects compare as JSON text
SELECT r FROM pg_temp.join_rows('{
  "left_source": [{"k": 1, "l": "num"}, {"k": true, "l": "bool"}, {"k": {"a": 1}, "l": "obj"}, {"k": 2.50, "l": "dec"}],
  "right_source": [{"k": "1.0", "r": "str 1.0"}, {"k": 1.0, "r": "num 1.0"}, {"k": "true", "r": "str true"},
                   {"k": {"a": 1}, "r": "obj"}, {"k": "2.5", "r": "str 2.5"}],
  "join_keys": ["k"]}') AS r;

-- CSV sources: quoted fields with commas, doubled quotes and line breaks, CRLF
-- line ends, blank lines, an empty last field, a byte order mark, text after a
-- closing quote, quotes inside unquoted fields
SELECT r FROM pg_temp.join_rows(jsonb_build_object(
  'left_source', E'\uFEFFid,name,note\r\n1,"Smith, Ann","said ""hi"""\r\n\r\n2,Bob,"multi\nline"\n   \n3,Cy,\n4,"Di"x,5" tall\n',
  'right_source', '[{"id": 1, "score": 10}, {"id": "2", "score": 20}, {"id": 3.0, "score": 30}]'::jsonb,
  'join_keys', '["id"]'::jsonb, 'join_type', 'left')) AS r;
-- CSV on both sides, explicit formats, header-only and empty sources
SELECT allma_run_module('system/join-data', jsonb_build_object(
  'left_source', E'id,a\n1,x\n2,y', 'left_format', 'csv',
  'right_source', E'id,b\n2,z\n2,w\n3,v', 'right_format', 'csv',
  'join_keys', '["id"]'::jsonb, 'join_type', 'outer'));
SELECT allma_run_module('system/join-data', jsonb_build_object(
  'left_source', E'id,a\n', 'right_source', E'id,b\n2,z',
  'join_keys', '["id"]'::jsonb, 'join_type', 'right'));
SELECT allma_run_module('system/join-data', jsonb_build_object(
  'left_source', '', 'right_source', '[]'::jsonb, 'join_keys', '["id"]'::jsonb, 'join_type', 'outer'));

-- CSV output: header then rows, fields quoted when needed, null as empty
SELECT r->>'result' AS csv, r->'rowCount' AS row_count
  FROM allma_run_module('system/join-data', '{
  "left_source": [{"id": 1, "name": "Smith, Ann", "note": "said \"hi\""}, {"id": 2, "name": "Bob", "note": "two\nlines"}],
  "right_source": [{"id": 1, "tags": ["a", "b"], "ok": true}],
  "join_keys": ["id"], "join_type": "left", "output_format": "csv"}') AS r;
-- no rows: an empty string
SELECT allma_run_module('system/join-data', '{
  "left_source": [{"id": 1}], "right_source": [{"id": 2}],
  "join_keys": ["id"], "output_format": "csv"}');

-- the hash join handles big inputs: 20000 x 20000 rows
SELECT allma_run_module('system/join-data', jsonb_build_object(
  'left_source', (SELECT jsonb_agg(jsonb_build_object('id', i, 'l', i * 2)) FROM generate_series(1, 20000) i),
  'right_source', (SELECT jsonb_agg(jsonb_build_object('id', i::text, 'r', i * 3)) FROM generate_series(10001, 30000) i),
  'join_keys', '["id"]'::jsonb, 'join_type', 'outer'))->'rowCount' AS row_count;

\pset format unaligned
\pset tuples_only on
-- parameters
SELECT pg_temp.try_module('system/join-data', '{"right_source": [], "join_keys": ["id"]}');
SELECT pg_temp.try_module('system/join-data', '{"left_source": [], "join_keys": ["id"]}');
SELECT pg_temp.try_module('system/join-data', '{"left_source": 5, "right_source": [], "join_keys": ["id"]}');
SELECT pg_temp.try_module('system/join-data', '{"left_source": {"id": 1}, "right_source": [], "join_keys": ["id"]}');
SELECT pg_temp.try_module('system/join-data', '{"left_source": [], "right_source": [], "join_keys": ["id"], "left_format": "csv"}');
SELECT pg_temp.try_module('system/join-data', '{"left_source": [], "right_source": "id", "join_keys": ["id"], "right_format": "json"}');
SELECT pg_temp.try_module('system/join-data', '{"left_source": [], "right_source": [], "join_keys": ["id"], "left_format": "xml"}');
SELECT pg_temp.try_module('system/join-data', '{"left_source": [], "right_source": []}');
SELECT pg_temp.try_module('system/join-data', '{"left_source": [], "right_source": [], "join_keys": ["id"], "key_mappings": [{"left": "id", "right": "id"}]}');
SELECT pg_temp.try_module('system/join-data', '{"left_source": [], "right_source": [], "join_keys": []}');
SELECT pg_temp.try_module('system/join-data', '{"left_source": [], "right_source": [], "join_keys": "id"}');
SELECT pg_temp.try_module('system/join-data', '{"left_source": [], "right_source": [], "join_keys": ["id", ""]}');
SELECT pg_temp.try_module('system/join-data', '{"left_source": [], "right_source": [], "key_mappings": []}');
SELECT pg_temp.try_module('system/join-data', '{"left_source": [], "right_source": [], "key_mappings": [{"left": "a"}]}');
SELECT pg_temp.try_module('system/join-data', '{"left_source": [], "right_source": [], "key_mappings": ["a"]}');
SELECT pg_temp.try_module('system/join-data', '{"left_source": [], "right_source": [], "join_keys": ["id"], "join_type": "cross"}');
SELECT pg_temp.try_module('system/join-data', '{"left_source": [], "right_source": [], "join_keys": ["id"], "output_format": "xlsx"}');
SELECT pg_temp.try_module('system/join-data', '{"left_source": [], "right_source": [], "join_keys": ["id"], "right_select_columns": "a"}');
SELECT pg_temp.try_module('system/join-data', '{"left_source": [], "right_source": [], "join_keys": ["id"], "right_select_columns": [1]}');
-- data
SELECT pg_temp.try_module('system/join-data', '{"left_source": [{"id": 1}, 2], "right_source": [], "join_keys": ["id"]}');
SELECT pg_temp.try_module('system/join-data', '{"left_source": [{"id": 1}], "right_source": [{"key": 1}], "join_keys": ["id"]}');
SELECT pg_temp.try_module('system/join-data', '{"left_source": [{"x": 1}], "right_source": [{"id": 1}], "join_keys": ["id"]}');
SELECT pg_temp.try_module('system/join-data', '{"left_source": "id,a\n1,\"open", "right_source": [], "join_keys": ["id"]}');
SELECT pg_temp.try_module('system/join-data', '{"left_source": "id,a\n1,x\n2", "right_source": [], "join_keys": ["id"]}');
SELECT pg_temp.try_module('system/join-data', '{"left_source": "id,a\n1,x,y", "right_source": [], "join_keys": ["id"]}');
SELECT pg_temp.try_module('system/join-data', '{"left_source": "id,a,id\n1,x,2", "right_source": [], "join_keys": ["id"]}');
-- a join result past the row limit (a 1001 x 1001 cross product on one key)
SELECT pg_temp.try_module('system/join-data', jsonb_build_object(
  'left_source', (SELECT jsonb_agg(jsonb_build_object('k', 1)) FROM generate_series(1, 1001)),
  'right_source', (SELECT jsonb_agg(jsonb_build_object('k', 1)) FROM generate_series(1, 1001)),
  'join_keys', '["k"]'::jsonb));
\pset format aligned
\pset tuples_only off
