-- Transition conditions: Allma's expression language (JavaScript value
-- semantics), allma's extensions, and PostgreSQL jsonpath predicates.
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS allma;
RESET client_min_messages;

-- C entry point without a SQL function of its own (test-only)
CREATE FUNCTION pg_temp.condition_check(cond text) RETURNS text
	AS '$libdir/allma', 'allma_test_condition_check' LANGUAGE C STRICT;

\set ctx '{"n":5,"s5":"5","s":"abc","z":0,"e":"","t":true,"f":false,"nul":null,"arr":[],"one":[1],"two":[1,2],"obj":{},"o":{"k":1},"hex":"0x10","ws":" 7 ","x":"a||b && c","m":10,"m2":10,"neg":-1.5,"big":1e300,"tags":["x","y",3],"objs":[{"k":1}],"u":"Ünïcode","apple":"apple","Banana":"Banana"}'

--
-- Truthiness: absent, null, false, 0, "" and [] are false
--
SELECT c, allma_eval_condition(c, :'ctx') AS result
  FROM (VALUES ('$.n'), ('$.s'), ('$.t'), ('$.one'), ('$.obj'), ('$.neg'),
			   ('$.missing'), ('$.nul'), ('$.f'), ('$.z'), ('$.e'), ('$.arr'),
			   ('$'), ('$.'), ('$.two[1]'), ('$.two[5]'), ('$.tags[*]'),
			   ('$.objs[?(@.k == 1)]'), ('$.objs[?(@.k == 2)]')) v(c);

--
-- Loose equality (== and =) versus strict equality (===)
--
SELECT c, allma_eval_condition(c, :'ctx') AS result
  FROM (VALUES ('$.n == 5'), ('$.n = 5'), ('$.n === 5'), ('$.n == 5.0'), ('$.n == "5"'),
			   ('$.n === "5"'), ('$.s5 == 5'), ('$.s5 === 5'), ('$.s5 == "5"'),
			   ('$.n == '' 5 '''), ('$.ws == 7'), ('$.hex == 16'), ('$.s == "abc"'),
			   ('$.s == ''abc'''), ('$.s == "ABC"'), ('$.t == true'), ('$.t == 1'),
			   ('$.t === 1'), ('$.t == "1"'), ('$.f == 0'), ('$.f == ""'), ('$.f == false'),
			   ('$.z == false'), ('$.z == ""'), ('$.e == 0'), ('$.e == false'),
			   ('$.nul == null'), ('$.nul === null'), ('$.nul == undefined'),
			   ('$.nul === undefined'), ('$.nul == 0'), ('$.nul == false'),
			   ('$.missing == null'), ('$.missing == undefined'), ('$.missing === undefined'),
			   ('$.missing === null'), ('$.missing == 0'), ('$.missing == false'),
			   ('$.one == 1'), ('$.one == "1"'), ('$.one === 1'), ('$.two == "1,2"'),
			   ('$.arr == ""'), ('$.arr == 0'), ('$.arr == false'), ('$.obj == "[object Object]"'),
			   ('$.o == $.o'), ('$.o === $.objs[0]'), ('$.s == 0')) v(c);

--
-- Inequality: != is loose, !== strict; an absent left side differs from
-- everything but null and undefined (loosely)
--
SELECT c, allma_eval_condition(c, :'ctx') AS result
  FROM (VALUES ('$.n != 5'), ('$.n != "5"'), ('$.n !== "5"'), ('$.n !== 5'), ('$.t != 1'),
			   ('$.t !== 1'), ('$.missing != 1'), ('$.missing !== 1'), ('$.missing != null'),
			   ('$.missing !== null'), ('$.missing !== undefined'), ('$.nul != undefined'),
			   ('$.nul !== undefined')) v(c);

--
-- Ordering: numbers numerically, two strings by code point, mixed by
-- numeric conversion (NaN compares false), absent is always false
--
SELECT c, allma_eval_condition(c, :'ctx') AS result
  FROM (VALUES ('$.n > 4'), ('$.n > 5'), ('$.n >= 5'), ('$.n < 5'), ('$.n <= 5'),
			   ('$.n < 10'), ('$.neg < -1'), ('$.neg > -2'), ('$.big > 1e299'),
			   ('$.s5 < 10'), ('$.s5 < "10"'), ('$.s > "abb"'), ('$.s < "abd"'),
			   ('$.apple > $.Banana'), ('$.u > "U"'), ('$.s > 1'), ('$.s < 1'), ('$.s >= 1'),
			   ('$.t > 0'), ('$.nul >= 0'), ('$.nul > -1'), ('$.missing > 1'),
			   ('$.missing < 1'), ('$.missing >= 0'), ('$.missing <= 0'), ('$.one > 0'),
			   ('$.two > 0')) v(c);

--
-- Path against path
--
SELECT c, allma_eval_condition(c, :'ctx') AS result
  FROM (VALUES ('$.m == $.m2'), ('$.m === $.m2'), ('$.n < $.m'), ('$.n > $.m'),
			   ('$.s5 == $.n'), ('$.s5 === $.n'), ('$.missing == $.other_missing'),
			   ('$.missing == $.nul'), ('$.missing === $.nul'), ('$.m >= $.missing'),
			   ('$.two[0] == $.one[0]'), ('$.tags.length > 2'), ('$.arr.length == 0'),
			   ('$.two.length === $.two[1]'), ('$.s.length == 3')) v(c);

--
-- && binds tighter than ||; "||" and "&&" inside quotes or brackets are
-- not operators
--
SELECT c, allma_eval_condition(c, :'ctx') AS result
  FROM (VALUES ('$.n > 100 || $.n > 1 && $.z'), ('$.n > 1 && $.z || $.t'),
			   ('$.t || $.f && $.f'), ('$.f && $.f || $.t'), ('$.f || $.f || $.n == 5'),
			   ('$.t && $.t && $.z'), ('$.x == ''a||b && c'''), ('$.x == "a||b && c" && $.t'),
			   ('$.x != "a||b" || $.f'), ('$.objs[?(@.k == 2 || @.k == 1)]'),
			   ('$.objs[?(@.k == 2 || @.k == 3)] || $.f')) v(c);

--
-- allma extensions: word operators and a leading "!" negating an atom
--
SELECT c, allma_eval_condition(c, :'ctx') AS result
  FROM (VALUES ('$.s endsWith ''bc'''), ('$.s endsWith "ab"'), ('$.s startsWith ''ab'''),
			   ('$.s startsWith ''bc'''), ('$.s contains "b"'), ('$.s contains "d"'),
			   ('$.s contains ""'), ('$.s5 endsWith 5'), ('$.tags contains ''x'''),
			   ('$.tags contains ''q'''), ('$.tags contains 3'), ('$.tags contains "3"'),
			   ('$.objs contains $.o'), ('$.missing contains "a"'), ('$.n contains 5'),
			   ('$.s endsWith $.missing'), ('!$.z'), ('!$.t'), ('! $.missing'),
			   ('!$.n == 5'), ('!$.n == 6'), ('!$.s endsWith ''c'' || $.f')) v(c);

--
-- Conditions of the Allma example flows (test/fixtures/allma-example-flows)
--
SELECT c, allma_eval_condition(c, x) AS result
  FROM (VALUES
		('$.isValid == false', '{"isValid":false}'::jsonb),
		('$.isValid == false', '{"isValid":true}'),
		('$.isValid == false', '{}'),
		('$.steps_output.routing.intent == ''QUOTE_SUBMISSION''',
		 '{"steps_output":{"routing":{"intent":"QUOTE_SUBMISSION"}}}'),
		('$.steps_output.routing.intent == ''GENERAL_REPLY''',
		 '{"steps_output":{"routing":{"intent":"QUOTE_SUBMISSION"}}}'),
		('$.steps_output.anomaly_results[?(@.severity==''High'')]',
		 '{"steps_output":{"anomaly_results":[{"severity":"Low"},{"severity":"High"}]}}'),
		('$.steps_output.anomaly_results[?(@.severity==''Medium'')]',
		 '{"steps_output":{"anomaly_results":[{"severity":"Low"},{"severity":"High"}]}}'),
		('$.steps_output.anomaly_results[?(@.severity==''Medium'')]', '{}'),
		('$.s3Key endsWith ''.xlsx'' || $.s3Key endsWith ''.xls'' || $.s3Key endsWith ''.xlsm''',
		 '{"s3Key":"uploads/bom.xls"}'),
		('$.s3Key endsWith ''.pptx'' || $.s3Key endsWith ''.ppt''', '{"s3Key":"uploads/bom.xls"}'),
		('$.s3Key endsWith ''.pdf'' || $.s3Key endsWith ''.png'' || $.s3Key endsWith ''.jpg'' || $.s3Key endsWith ''.jpeg''',
		 '{"s3Key":"scan.jpeg"}'),
		('$.newCommodityNames[0]', '{"newCommodityNames":["steel"]}'),
		('$.newCommodityNames[0]', '{"newCommodityNames":[]}')) v(c, x);

--
-- PostgreSQL jsonpath: what does not fit Allma's grammar is evaluated as
-- written (lax mode unless it says strict); a predicate must yield true,
-- any other path must yield a truthy first value
--
SELECT c, allma_eval_condition(c, :'ctx') AS result
  FROM (VALUES ('$.n > 4 && exists($.tags ? (@ == "x"))'),
			   ('$.n > 4 && exists($.tags ? (@ == "q"))'),
			   ('$.s like_regex "^a.c$"'), ('$.s like_regex "^A" flag "i"'),
			   ('$.s starts with "ab"'), ('$.tags.size() == 3'), ('exists($.tags[*] ? (@ == 3))'),
			   ('strict $.n > 4'), ('!($.n > 4)'), ('($.n > 4) is unknown'),
			   ('$.n + 1'), ('$.z + 0'), ('$.tags ? (@ == "y")'),
			   ('$.tags ? (@ == "q")'), ('$.n.type() == "number"'), ('$.n == 5 || $.x like_regex "z"'),
			   ('"x" == "x"')) v(c);

-- when a condition fits both languages, Allma's meaning wins: here the
-- array of all tags is loosely compared with 3 ("x,y,3" == 3 is false),
-- where PostgreSQL would test whether some tag equals 3
SELECT allma_eval_condition('$.tags[*] == 3', :'ctx') AS allma_meaning,
	   jsonb_path_match(:'ctx', '$.tags[*] == 3') AS pg_meaning;

--
-- Checks never throw: NULL means valid, else the reason
--
\pset null '(valid)'
SELECT c, pg_temp.condition_check(c) AS error
  FROM (VALUES ('$.n == 5'), ('$.a[?(@.x > 1 && @.y)] || $.b'), ('$.s like_regex "a"'),
			   (''), ('   '), ('foo'), ('$.a => 1'), ('$.a =='), ('$.a == bar'),
			   ('$.a === 1 2'), ('$.a == ''x'), ('$.a && '), ('|| $.a'), ('$.a.b.'),
			   ('$.a[?(@.x ~ 1)]'), ('$.a == $b'), ('$.a == $.b c'), ('$.a ==== 1'),
			   ('$.a endswith ''x'''), ('$.a includes ''x''')) v(c);

\pset null ''

-- invalid conditions throw LM104 naming the condition
\set ctx2 '{"a":1}'
SELECT allma_eval_condition('$.a => 1', :'ctx2');
\echo SQLSTATE :SQLSTATE
SELECT allma_eval_condition('', :'ctx2');
\echo SQLSTATE :SQLSTATE
SELECT allma_eval_condition('$.status == done', :'ctx2');
\echo SQLSTATE :SQLSTATE
SELECT allma_eval_condition('$.a[$i] > 1', :'ctx2');
\echo SQLSTATE :SQLSTATE

-- the condition cache is bounded: many distinct conditions stay correct
SELECT count(*) AS correct
  FROM generate_series(1, 700) i
 WHERE allma_eval_condition('$.v == ' || i, jsonb_build_object('v', i))
   AND NOT allma_eval_condition('$.v > ' || i || ' || $.v === "' || i || '"', jsonb_build_object('v', i));
