-- Allma JSONPaths (jsonpath-plus syntax) and dot paths: translation into
-- PostgreSQL jsonpath, wrap:false evaluation, assignment, errors.
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS allma;
RESET client_min_messages;

-- C entry points without a SQL function of their own (test-only)
CREATE FUNCTION pg_temp.path_set(doc jsonb, path text, value jsonb) RETURNS jsonb
	AS '$libdir/allma', 'allma_test_path_set' LANGUAGE C;
CREATE FUNCTION pg_temp.dotpath_set(doc jsonb, path text, value jsonb) RETURNS jsonb
	AS '$libdir/allma', 'allma_test_dotpath_set' LANGUAGE C;
CREATE FUNCTION pg_temp.path_check(path text, kind text) RETURNS text
	AS '$libdir/allma', 'allma_test_path_check' LANGUAGE C STRICT;

\pset null '<absent>'

--
-- Translation: every form.  Simple paths keep the plain (lax) form; the
-- others run in strict mode under ".**{0}" so that a missing key drops one
-- branch only, and wildcards and filters visit children of objects and
-- arrays alike, like jsonpath-plus.
--
SELECT p AS allma_path, allma_jsonpath(p) AS pg_jsonpath
  FROM (VALUES ('$'), ('$.'), ('$.a'), ('$.a.b.c'), ('$[''a'']'), ('$["a"]'),
			   ('$[''x y'']'), ('$.a-b'), ('$.a["it''s"]'), ('$.a[''it\''s'']'), ('$[''quote"d'']'),
			   ('$.é.日本'), ('$.expressionAttributeValues.:cat'), ('$[key]'),
			   ('$.a[0]'), ('$.a.0'), ('$[3]'), ('$.a[-1]'), ('$.a[-2]'),
			   ('$.a[*]'), ('$.a.*'), ('$.*'), ('$..x'), ('$..[''x y'']'),
			   ('$..*'), ('$..[0]'), ('$.a..b.c'),
			   ('$.a[1:3]'), ('$.a[:2]'), ('$.a[1:]'), ('$.a[-2:]'), ('$.a[:-1]'),
			   ('$.a[:]'), ('$.a[0:0]'), ('$.a[0:3:1]'), ('$.a[0,2,-1]'),
			   ('$.a[?(@.x > 1 && @.y == ''a'')]'),
			   ('$.a[?(@.x === 1 || @.y !== "b" && @.z != null)]'),
			   ('$.a[?((@.x >= 1 || @.y <= 2) && @.z < 3)]'),
			   ('$.a[?(@.x)]'), ('$.a[?(!@.x)]'), ('$.a[?(!(@.x == 1))]'),
			   ('$.a[?(@[''k k''] == -2.5e3)]'), ('$.a[?(@.b[0] == .5)]'),
			   ('$.a[?(@ > $.min)]'), ('$..[?(@.k == true)]'),
			   ('  $.trimmed  ')) v(p);

-- the translation is what the engine evaluates: same results both ways
SELECT p, allma_path_query(d, p) AS allma, jsonb_path_query_array(d, allma_jsonpath(p)) AS pg
  FROM (VALUES ('{"a":[{"x":1},{"x":5},{"y":2}],"b":{"p":{"x":7}}}'::jsonb)) d(d),
	   (VALUES ('$.a[*].x'), ('$..x'), ('$.a[?(@.x > 1)]'), ('$.b.*.x')) v(p);

--
-- Evaluation: wrap:false (no match -> NULL, one match -> the value,
-- several -> an array).
--
\set doc '{"a":{"b":[10,20,{"c":"x"}],"x y":1,"a-b":2,"0":"zero","it''s":"q","":"empty"},"list":[{"x":1,"y":"a","t":""},{"x":5,"y":"a","t":"s"},{"x":3,"y":"b","t":0},{"x":9,"t":[]}],"o":{"p":{"x":1},"q":{"x":7}},"x":"top","é":{"日本":true},"n":null,"arr":[[1,2],[3]],"idx":1,"key":"x y","keys":{"k":"p"},"len":{"length":"own"},"emoji":"日本😀"}'
SELECT p, allma_path_query(:'doc', p) AS result
  FROM (VALUES ('$.a.b'), ('$.a.b[2].c'), ('$.a.b[0]'), ('$.a.b.0'), ('$.a.b[-1]'),
			   ('$.a.b[-3]'), ('$.a.b.[1]'), ('$.a[''x y'']'), ('$.a["a-b"]'), ('$.a.a-b'),
			   ('$.a[''it\''s'']'), ('$.a[0]'), ('$.é.日本'), ('$.n'), ('$.x'),
			   ('$.a.b[1:]'), ('$.a.b[0:1]'), ('$.list[*].x'), ('$.list.*.y'),
			   ('$.o.*.x'), ('$.o[*]'), ('$..c'), ('$.list[1:3].x'), ('$.list[-2:].x'),
			   ('$.list[:-3].x'), ('$.list[0,-1].x'),
			   ('$.list[?(@.x > 1 && @.y == ''a'')]'),
			   ('$.list[?(@.x > 1 && @.y == ''a'')].x'),
			   ('$.list[?(@.y === "a" || @.x == 9)].x'),
			   ('$.list[?(@.t)].x'), ('$.list[?(!@.t)].x'), ('$.list[?(@.x > $.idx)].x'),
			   ('$.o[?(@.x > 2)]'), ('$.arr[*][0]'), ('$..[0]'),
			   ('$.list[$.idx].x'), ('$.a[$.key]'), ('$.o[$.keys.k].x'),
			   -- "length" of an array or a string, as in JavaScript
			   ('$.list.length'), ('$.a.b.length'), ('$.x.length'), ('$.emoji.length'),
			   ('$.len.length'), ('$.list[$.list.length]'), ('$.list[-1].t.length')) v(p);

-- missing paths are NULL, whatever the reason
SELECT p, allma_path_query(:'doc', p) AS result
  FROM (VALUES ('$.missing'), ('$.a.missing.deeper'), ('$.a.b[3]'), ('$.a.b[-4]'),
			   ('$.x.y'), ('$.n.y'), ('$.a.b.c'), ('$.list.x'), ('$.list[?(@.x > 100)]'),
			   ('$..nothing'), ('$.x[*]'), ('$.x[?(@ == 1)]'), ('$.o[5:]'),
			   ('$.list[$.missing]'), ('$.list[$.o]'), ('$.o.length'), ('$.idx.length'),
			   ('$.x.length.more')) v(p);

-- $ and $. are the whole document, scalars included
SELECT allma_path_query('{"a":1}', '$') AS dollar, allma_path_query('{"a":1}', '$.') AS dollar_dot,
	   allma_path_query('"s"', '$') AS scalar, allma_path_query('"s"', '$.a') AS scalar_key,
	   allma_path_query('[5,6]', '$[1]') AS root_array;

-- "$..x" sees each node once (PostgreSQL's lax ".**" would report
-- elements of arrays twice)
SELECT allma_path_query('{"a":[{"x":1},{"b":{"x":2}}],"x":0}', '$..x') AS each_once;

-- a single match of a multi-match path is the bare value; an array value
-- stays an array
SELECT allma_path_query('{"l":[{"v":[1,2]},{"w":0}]}', '$.l[*].v') AS one_array_match,
	   allma_path_query('{"l":[{"v":[1,2]},{"v":3}]}', '$.l[*].v') AS two_matches;

--
-- Assignment: settable paths are keys and non-negative indexes.
--
SELECT p, pg_temp.path_set('{"a":{"b":1},"l":[1,2]}', p, '"V"') AS result
  FROM (VALUES ('$.a.b'), ('$.a.c'), ('$.new'), ('$.x.y.z'), ('$.l[0]'), ('$.l[1]'),
			   ('$.l[4]'), ('$.m[2]'), ('$.m[0].k'), ('$.m.0.k'), ('$.a.b.c'),
			   ('$.l[0].k'), ('$.a[0]'), ('$[''x y''].z'), ('$.a["é"]'),
			   ('$.steps_output.step1')) v(p);
-- "$" replaces the whole document; a NULL document starts empty
SELECT pg_temp.path_set('{"a":1}', '$', '[1,2]') AS dollar,
	   pg_temp.path_set('{"a":1}', '$.', '{"b":2}') AS dollar_dot,
	   pg_temp.path_set(NULL, '$.a.b', '1') AS from_null,
	   pg_temp.path_set(NULL, '$[1]', '1') AS from_null_array,
	   pg_temp.path_set('{"a":1}', '$.a', NULL) AS null_value;
-- dynamic segments are resolved before assignment
SELECT pg_temp.path_set('{"k":"name","i":1,"l":[0,0]}', '$.out[$.k]', 'true') AS dyn_key,
	   pg_temp.path_set('{"k":"name","i":1,"l":[0,0]}', '$.l[$.i]', 'true') AS dyn_index;

--
-- Dot paths (inputMappings and literals keys)
--
SELECT p, pg_temp.dotpath_set('{"a":{"b":1}}', p, '"V"') AS result
  FROM (VALUES ('a.b'), ('a.c'), ('x'), ('x.y.z'), ('items[0]'), ('items[2].name'),
			   ('items.1'), ('a[''x y'']'), ('a["x.y"]'), ('first name'),
			   ('expressionAttributeValues.:cat'), ('key.PK'), ('[''$weird'']'),
			   ('a.b.c'), ('m[x]'), ('  trimmed  ')) v(p);
SELECT pg_temp.dotpath_set(NULL, 'a.b[1]', '1') AS from_null,
	   pg_temp.dotpath_set(pg_temp.dotpath_set(NULL, 'k.PK', '"p"'), 'k.SK', '"s"') AS two_writes;

--
-- Checks never throw: they return a message
--
SELECT p, pg_temp.path_check(p, 'path') AS path_error
  FROM (VALUES ('$.a.b'), ('$..x'), ('$.a[?(@.x > 1)]'), ('$.a[$.b]'), ('a.b'), (''),
			   ('$.'), ('$.a.'), ('$a'), ('$.a b'), ('$.a[0'), ('$.a[''x'), ('$.a[]'),
			   ('$.a[?(@.x > 1)'), ('$.a[?(@.x = 1)]'), ('$.a[?(@.x.match(/y/))]'),
			   ('$.a[?(@.x > foo)]'), ('$.a[?(1)]'), ('$.a[(@.length-1)]'),
			   ('$.a[0:4:2]'), ('$[''a'',''b'']'), ('$.a.@string()'), ('$.a.size()'),
			   ('$.a~'), ('$.a^'), ('$...a'), ('$.a..'), ('$.a]'),
			   ('$.a[$.b[*]]'), ('$.a[*][$.b]'), ('$.a[99999999999]')) v(p);
SELECT p, pg_temp.path_check(p, 'settable') AS settable_error
  FROM (VALUES ('$.a.b[0]'), ('$'), ('$.a[$.k]'), ('$.a[-1]'), ('$.a[*]'), ('$..a'),
			   ('$.a[0:1]'), ('$.a[?(@.x)]'), ('$.a[0,1]')) v(p);
SELECT p, pg_temp.path_check(p, 'dot') AS dot_error
  FROM (VALUES ('a.b[0].c'), ('a[''x y'']'), ('a.*'), ('$.a'), (''), ('a..b'), ('.a'),
			   ('a.'), ('a[-1]'), ('a[0'), ('a]'), ('a[''x'), ('a[$.b]')) v(p);

--
-- Invalid paths throw LM103 naming the path.  (The SQLSTATE is echoed
-- rather than shown with VERBOSITY verbose, whose LOCATION lines carry
-- source line numbers.)
--
SELECT allma_path_query('{}', 'a.b');
\echo SQLSTATE :SQLSTATE
SELECT allma_path_query('{}', '$.a[?(@.x => 1)]');
\echo SQLSTATE :SQLSTATE
SELECT allma_jsonpath('$.a[(@.length-1)]');
\echo SQLSTATE :SQLSTATE
SELECT allma_jsonpath('$.a[$.b]');
\echo SQLSTATE :SQLSTATE
SELECT pg_temp.path_set('{}', '$.a[*]', '1');
\echo SQLSTATE :SQLSTATE
SELECT pg_temp.path_set('{}', '$.a[-1]', '1');
\echo SQLSTATE :SQLSTATE
SELECT pg_temp.path_set('{"k":{}}', '$.a[$.k]', '1');
\echo SQLSTATE :SQLSTATE
SELECT pg_temp.dotpath_set('{}', 'a..b', '1');
\echo SQLSTATE :SQLSTATE

-- the path cache is bounded: many distinct paths still evaluate correctly
SELECT count(*) AS correct
  FROM generate_series(1, 700) i
 WHERE allma_path_query(jsonb_build_object('k' || i, jsonb_build_array(i)), '$.k' || i || '[0]') = to_jsonb(i)
   AND allma_path_query(jsonb_build_object('k' || i, jsonb_build_array(i, i)), '$.k' || i || '[*]') = jsonb_build_array(i, i);
