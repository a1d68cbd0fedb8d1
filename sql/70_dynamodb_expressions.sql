-- DynamoDB's expression languages as the system/dynamodb-* modules parse
-- and evaluate them: key conditions, filter and condition expressions,
-- update expressions, projections, and the substitution maps.  Good
-- expressions show their results, bad ones their SQLSTATE, message and
-- position.
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS allma;
RESET client_min_messages;

-- run a module; an error shows as "SQLSTATE: message" plus its detail
CREATE FUNCTION ddb(module text, input jsonb) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
	state text;
	msg text;
	detail text;
BEGIN
	RETURN allma_run_module(module, input)::text;
EXCEPTION WHEN OTHERS THEN
	GET STACKED DIAGNOSTICS state = RETURNED_SQLSTATE, msg = MESSAGE_TEXT, detail = PG_EXCEPTION_DETAIL;
	RETURN state || ': ' || msg || coalesce(E'\n' || nullif(detail, ''), '');
END $$;

-- the sort keys of a query's items, or its error
CREATE FUNCTION q(kce text, vals jsonb, extra jsonb DEFAULT '{}') RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
	out text := ddb('system/dynamodb-data-loader',
					jsonb_build_object('operation', 'QUERY', 'tableName', 'Expr',
									   'keyConditionExpression', kce,
									   'expressionAttributeValues', vals) || extra);
BEGIN
	IF out LIKE '{%' THEN
		RETURN (SELECT string_agg(i->>'SK', ',') FROM jsonb_array_elements(out::jsonb->'content') i);
	END IF;
	RETURN out;
END $$;

-- o without its top-level JSON nulls (the helpers' absent arguments)
CREATE FUNCTION present(o jsonb) RETURNS jsonb
LANGUAGE sql AS $$
	SELECT coalesce(jsonb_object_agg(key, value), '{}') FROM jsonb_each(o) WHERE value <> 'null'
$$;

-- the sort keys of the items a filter keeps, or its error
CREATE FUNCTION f(fe text, vals jsonb DEFAULT NULL, names jsonb DEFAULT NULL) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
	out text := ddb('system/dynamodb-data-loader',
					present(jsonb_build_object('operation', 'SCAN', 'tableName', 'Items',
										 'filterExpression', fe,
										 'expressionAttributeValues', vals,
										 'expressionAttributeNames', names)));
BEGIN
	IF out LIKE '{%' THEN
		RETURN coalesce((SELECT string_agg(i->>'SK', ',') FROM jsonb_array_elements(out::jsonb->'content') i), '(none)');
	END IF;
	RETURN out;
END $$;

-- the item an update expression makes of item "U" (fresh for each call), or the error
CREATE FUNCTION u(ue text, vals jsonb DEFAULT NULL, names jsonb DEFAULT NULL) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
	out text;
BEGIN
	DELETE FROM allma_dynamodb."Upd";
	INSERT INTO allma_dynamodb."Upd" (item) VALUES
		('{"PK": "U", "SK": "1", "n": 5, "s": "abc", "l": ["a", "b", "c", "d"], "tags": ["x", "y"],
		   "m": {"a": {"b": [1, 2]}, "k": "v"}}');
	out := ddb('system/dynamodb-update-item',
			   present(jsonb_build_object('tableName', 'Upd', 'key', '{"PK": "U", "SK": "1"}'::jsonb,
								   'updateExpression', ue,
								   'expressionAttributeValues', vals,
								   'expressionAttributeNames', names)));
	IF out LIKE '{%' THEN
		RETURN (SELECT (item - 'PK' - 'SK')::text FROM allma_dynamodb."Upd");
	END IF;
	RETURN out;
END $$;

-- what a projection keeps of item S/b
CREATE FUNCTION p(pe text, names jsonb DEFAULT NULL) RETURNS text
LANGUAGE sql AS $$
	SELECT ddb('system/dynamodb-data-loader',
			   present(jsonb_build_object('operation', 'GET', 'tableName', 'Items',
								   'key', '{"PK": "S", "SK": "b"}'::jsonb,
								   'projectionExpression', pe,
								   'expressionAttributeNames', names)))
$$;

SELECT allma_create_dynamodb_table('Expr', 'PK', 'SK');
SELECT allma_create_dynamodb_table('Items', 'PK', 'SK');
SELECT allma_create_dynamodb_table('Upd', 'PK', 'SK');
SELECT allma_create_dynamodb_table('Nums', 'PK', 'n', attribute_types => '{"n": "N"}');
INSERT INTO allma_dynamodb."Expr" (item) VALUES
	('{"PK": "P", "SK": "A"}'),
	('{"PK": "P", "SK": "B#1"}'),
	('{"PK": "P", "SK": "B#2"}'),
	('{"PK": "P", "SK": "B$"}'),
	('{"PK": "P", "SK": "a"}'),
	('{"PK": "P", "SK": "é"}'),
	('{"PK": "P", "SK": "z"}');
INSERT INTO allma_dynamodb."Items" (item) VALUES
	('{"PK": "S", "SK": "a", "status": "NEW", "n": 1, "s": "hello world", "tags": ["red", "blue"], "flag": true, "nil": null, "m": {"k": 1}}'),
	('{"PK": "S", "SK": "b", "status": "OLD", "n": 10, "s": "héllo", "tags": [], "m": {"a": {"b": [10, 20, 30], "c": "x"}, "k": 2}, "l": [{"x": 1}, {"x": 2}, {"x": 3}], "#odd name": "yes"}'),
	('{"PK": "S", "SK": "c", "n": "10", "s": "", "tags": ["red"], "m": {}}'),
	('{"PK": "S", "SK": "d", "n": 2.5, "s": "HELLO", "tags": {"red": true}}');
INSERT INTO allma_dynamodb."Nums" (item) VALUES
	('{"PK": "x", "n": 9}'), ('{"PK": "x", "n": 10}'), ('{"PK": "x", "n": -1.5}'), ('{"PK": "x", "n": 100}');

------------------------------------------------------------------------------
-- KeyConditionExpression: =, <, <=, >, >=, BETWEEN, begins_with; strings
-- in UTF-8 byte order ("B" < "a" < "z" < "é"), numbers numerically
------------------------------------------------------------------------------
SELECT q('PK = :pk', '{":pk": "P"}');
SELECT q('PK = :pk AND SK = :sk', '{":pk": "P", ":sk": "B#1"}');
SELECT q('PK = :pk AND SK < :sk', '{":pk": "P", ":sk": "a"}');
SELECT q('PK = :pk AND SK <= :sk', '{":pk": "P", ":sk": "a"}');
SELECT q('PK = :pk AND SK > :sk', '{":pk": "P", ":sk": "a"}');
SELECT q('PK = :pk AND SK >= :sk', '{":pk": "P", ":sk": "a"}');
SELECT q('PK = :pk AND SK BETWEEN :lo AND :hi', '{":pk": "P", ":lo": "B", ":hi": "B#9"}');
SELECT q('PK = :pk AND begins_with(SK, :p)', '{":pk": "P", ":p": "B#"}');
SELECT q('(PK = :pk) AND (begins_with(SK, :p))', '{":pk": "P", ":p": "B"}');
-- the sort key condition may come first, and operands may be swapped
SELECT q('begins_with(SK, :p) AND PK = :pk', '{":pk": "P", ":p": "B"}');
SELECT q(':sk > SK AND :pk = PK', '{":pk": "P", ":sk": "B$"}');
-- keywords are case-insensitive; whitespace is free
SELECT q(E'PK=:pk and\n\tSK between :lo and :hi', '{":pk": "P", ":lo": "a", ":hi": "z"}');
-- scanIndexForward false reverses; limit counts items read
SELECT q('PK = :pk', '{":pk": "P"}', '{"scanIndexForward": false}');
SELECT q('PK = :pk', '{":pk": "P"}', '{"limit": 2}');
SELECT q('PK = :pk', '{":pk": "nobody"}') IS NULL AS no_items;
-- names through #placeholders
SELECT q('#p = :pk AND #s >= :sk', '{":pk": "P", ":sk": "z"}', '{"expressionAttributeNames": {"#p": "PK", "#s": "SK"}}');
-- numeric sort keys order numerically
SELECT ddb('system/dynamodb-data-loader', '{"operation": "QUERY", "tableName": "Nums",
	"keyConditionExpression": "PK = :p AND n > :n", "expressionAttributeValues": {":p": "x", ":n": 9}}');
SELECT ddb('system/dynamodb-data-loader', '{"operation": "QUERY", "tableName": "Nums",
	"keyConditionExpression": "PK = :p AND n BETWEEN :a AND :b", "expressionAttributeValues": {":p": "x", ":a": -2, ":b": 9.0}}');

-- bad key conditions
SELECT q('SK = :sk', '{":sk": "A"}');
SELECT q('PK = :pk AND other = :o', '{":pk": "P", ":o": "A"}');
SELECT q('PK > :pk', '{":pk": "P"}');
SELECT q('PK = :pk AND SK <> :sk', '{":pk": "P", ":sk": "A"}');
SELECT q('PK = :pk OR SK = :sk', '{":pk": "P", ":sk": "A"}');
SELECT q('NOT PK = :pk', '{":pk": "P"}');
SELECT q('PK = :pk AND SK = :a AND SK = :b', '{":pk": "P", ":a": "A", ":b": "B"}');
SELECT q('PK = :pk AND PK = :pk', '{":pk": "P"}');
SELECT q('PK = :pk AND SK.x = :s', '{":pk": "P", ":s": "A"}');
SELECT q('PK = :pk AND contains(SK, :s)', '{":pk": "P", ":s": "A"}');
SELECT q('PK = :pk AND SK = SK', '{":pk": "P"}');
SELECT q('PK = :pk', '{":pk": 1}');
SELECT q('PK = :pk', '{":pk": ""}');
SELECT q('PK = :pk AND SK BETWEEN :hi AND :lo', '{":pk": "P", ":lo": "A", ":hi": "B"}');
SELECT ddb('system/dynamodb-data-loader', '{"operation": "QUERY", "tableName": "Nums",
	"keyConditionExpression": "PK = :p AND begins_with(n, :n)", "expressionAttributeValues": {":p": "x", ":n": "1"}}');
SELECT ddb('system/dynamodb-data-loader', '{"operation": "QUERY", "tableName": "Nums",
	"keyConditionExpression": "PK = :p AND n > :n", "expressionAttributeValues": {":p": "x", ":n": "9"}}');
SELECT q('PK = :pk AND', '{":pk": "P"}');
SELECT q('PK = :nope', '{":pk": "P"}');
SELECT q('PK = :pk', '{":pk": "P", ":unused": 1}');

------------------------------------------------------------------------------
-- FilterExpression / ConditionExpression
------------------------------------------------------------------------------
-- comparisons (only same types compare; numbers numerically)
SELECT f('n = :v', '{":v": 10}');
SELECT f('n = :v', '{":v": 10.00}');
SELECT f('n = :v', '{":v": "10"}');
SELECT f('n < :v', '{":v": 10}');
SELECT f('n >= :v', '{":v": 2.5}');
SELECT f('s > :v', '{":v": "hello"}');
SELECT f('s <= :v', '{":v": "HELLO"}');
-- <> is true when the attribute is missing or of another type; the others are false
SELECT f('#st <> :v', '{":v": "NEW"}', '{"#st": "status"}');
SELECT f('#st < :v', '{":v": "ZZZ"}', '{"#st": "status"}');
-- maps and lists compare deeply for = and <>
SELECT f('m = :v', '{":v": {"k": 1}}');
SELECT f('tags = :v', '{":v": ["red", "blue"]}');
SELECT f('tags <> :v', '{":v": ["red", "blue"]}');
-- attribute to attribute
SELECT f('m.k = n');
-- BETWEEN and IN
SELECT f('n BETWEEN :a AND :b', '{":a": 2, ":b": 10}');
SELECT f('s BETWEEN :a AND :b', '{":a": "a", ":b": "i"}');
SELECT f('SK IN (:a, :b, :c)', '{":a": "a", ":b": "d", ":c": "zz"}');
SELECT f('n IN (:a)', '{":a": 10}');
-- AND binds tighter than OR; NOT; parentheses
SELECT f('SK = :a OR SK = :b AND n = :n', '{":a": "a", ":b": "b", ":n": 1}');
SELECT f('(SK = :a OR SK = :b) AND n = :n', '{":a": "a", ":b": "b", ":n": 1}');
SELECT f('NOT SK = :a', '{":a": "a"}');
SELECT f('NOT NOT (SK = :a)', '{":a": "a"}');
SELECT f('not SK = :a and not SK = :b', '{":a": "a", ":b": "b"}');
-- functions
SELECT f('attribute_exists(#st)', NULL, '{"#st": "status"}');
SELECT f('attribute_not_exists(#st)', NULL, '{"#st": "status"}');
SELECT f('attribute_exists(nil)');
SELECT f('attribute_exists(m.a.b[2])');
SELECT f('attribute_exists(m.a.b[3])');
SELECT f('attribute_type(n, :t)', '{":t": "N"}');
SELECT f('attribute_type(n, :t)', '{":t": "S"}');
SELECT f('attribute_type(tags, :t)', '{":t": "L"}');
SELECT f('attribute_type(tags, :t)', '{":t": "M"}');
SELECT f('attribute_type(flag, :t) OR attribute_type(nil, :u)', '{":t": "BOOL", ":u": "NULL"}');
SELECT f('begins_with(s, :p)', '{":p": "hé"}');
SELECT f('begins_with(s, :p)', '{":p": ""}');
SELECT f('contains(s, :p)', '{":p": "lo w"}');
SELECT f('contains(tags, :p)', '{":p": "red"}');
SELECT f('contains(l, :p)', '{":p": {"x": 2}}');
SELECT f('size(s) = :n', '{":n": 5}');
SELECT f('size(tags) > :n', '{":n": 0}');
SELECT f('size(m) = :n', '{":n": 2}');
SELECT f('size(n) > :n', '{":n": 0}');
SELECT f(':n < size(l)', '{":n": 2}');
-- nested paths, list indexes, #names with odd characters
SELECT f('m.a.b[1] = :v', '{":v": 20}');
SELECT f('l[2].x = :v', '{":v": 3}');
SELECT f('#m.#a.c = :v', '{":v": "x"}', '{"#m": "m", "#a": "a"}');
SELECT f('#o = :v', '{":v": "yes"}', '{"#o": "#odd name"}');
-- in a ConditionExpression: false is ConditionalCheckFailedException
SELECT ddb('system/dynamodb-update-item', '{"tableName": "Items", "key": {"PK": "S", "SK": "a"},
	"updateExpression": "SET checked = :t", "conditionExpression": "#st = :new AND size(tags) = :two",
	"expressionAttributeNames": {"#st": "status"}, "expressionAttributeValues": {":t": true, ":new": "NEW", ":two": 2}}');
SELECT ddb('system/dynamodb-update-item', '{"tableName": "Items", "key": {"PK": "S", "SK": "a"},
	"updateExpression": "SET checked = :t", "conditionExpression": "#st = :old",
	"expressionAttributeNames": {"#st": "status"}, "expressionAttributeValues": {":t": false, ":old": "OLD"}}');
SELECT item->'checked' AS checked FROM allma_dynamodb."Items" WHERE pk = 'S' AND sk = 'a';
-- a condition on a missing item sees no attributes
SELECT ddb('system/dynamodb-update-item', '{"tableName": "Items", "key": {"PK": "S", "SK": "new"},
	"updateExpression": "SET n = :n", "conditionExpression": "attribute_exists(PK)", "expressionAttributeValues": {":n": 1}}');
SELECT ddb('system/dynamodb-update-item', '{"tableName": "Items", "key": {"PK": "S", "SK": "new"},
	"updateExpression": "SET n = :n", "conditionExpression": "attribute_not_exists(PK)", "expressionAttributeValues": {":n": 1}}');
DELETE FROM allma_dynamodb."Items" WHERE pk = 'S' AND sk = 'new';

-- bad conditions
SELECT f('n = ');
SELECT f('n :v', '{":v": 1}');
SELECT f('n == :v', '{":v": 1}');
SELECT f('n != :v', '{":v": 1}');
SELECT f('(n = :v', '{":v": 1}');
SELECT f('n = :v)', '{":v": 1}');
SELECT f('n = :v AND', '{":v": 1}');
SELECT f('n BETWEEN :a', '{":a": 1}');
SELECT f('n BETWEEN :b AND :a', '{":a": 1, ":b": 2}');
SELECT f('n IN :a', '{":a": 1}');
SELECT f('n IN ()', NULL);
SELECT f('size(s)', NULL);
SELECT f('size(:v) = :v', '{":v": 1}');
SELECT f('Size(s) = :v', '{":v": 1}');
SELECT f('attribute_exists(:v)', '{":v": 1}');
SELECT f('attribute_type(n, :t)', '{":t": "STRING"}');
SELECT f('attribute_type(n, s)');
SELECT f('begins_with(s, :p)', '{":p": 1}');
SELECT f('contains(s, s)');
SELECT f('if_not_exists(s, :v) = :v', '{":v": 1}');
SELECT f('n = :v', '{":w": 1}');
SELECT f('#nope = :v', '{":v": 1}');
SELECT f('#n = :v', '{":v": 1}', '{"#n": 5}');
SELECT f('AND = :v', '{":v": 1}');
SELECT f('n = :v', '{":v": 1}', '{"#unused": "x"}');
SELECT f('m.a-b = :v', '{":v": 1}');
SELECT f('n = :v ü', '{":v": 1}');
SELECT f('l[x] = :v', '{":v": 1}');
SELECT f('l[99999999999] = :v', '{":v": 1}');
SELECT f('n = :v', '{}');
SELECT f('n = :v', '{"v": 1}');
SELECT f('');
-- bounds: IN takes 100 operands, nesting 32 levels, expressions 4 KB
SELECT f('SK IN (' || string_agg(':v', ', ') || ')', '{":v": "a"}') FROM generate_series(1, 100);
SELECT f('SK IN (' || string_agg(':v', ', ') || ')', '{":v": "a"}') FROM generate_series(1, 101);
SELECT f(repeat('(', 32) || 'SK = :v' || repeat(')', 32), '{":v": "a"}');
SELECT f(repeat('(', 33) || 'SK = :v' || repeat(')', 33), '{":v": "a"}');
SELECT f(repeat('NOT ', 40) || 'SK = :v', '{":v": "a"}');
SELECT f('m' || repeat('.m', 32) || ' = :v', '{":v": "a"}');
SELECT left(f('SK = :v OR ' || repeat('SK = :v OR ', 400) || 'SK = :v', '{":v": "a"}'), 85);
SELECT f('n = :' || repeat('v', 256), jsonb_build_object(':' || repeat('v', 256), 1));

------------------------------------------------------------------------------
-- UpdateExpression (item U before: n 5, s "abc", l [a b c d], tags [x y],
-- m {a: {b: [1 2]}, k: "v"})
------------------------------------------------------------------------------
SELECT u('SET n = n + :one, s = :s', '{":one": 1, ":s": "new"}');
SELECT u('SET n = n - :v - :v', '{":v": 2}');
SELECT u('SET n = :a + :b', '{":a": 0.1, ":b": 0.2}');
SELECT u('SET c = if_not_exists(c, :zero) + :one, n = if_not_exists(n, :zero)', '{":zero": 0, ":one": 1}');
SELECT u('SET l = list_append(l, :v)', '{":v": ["e"]}');
SELECT u('SET l = list_append(:v, l)', '{":v": ["z"]}');
SELECT u('SET nl = list_append(if_not_exists(nl, :empty), :v)', '{":empty": [], ":v": [1]}');
SELECT u('SET m.a.c = :v, m.k = :w', '{":v": true, ":w": null}');
SELECT u('SET l[1] = :v, l[9] = :w, l[7] = :x', '{":v": "B", ":w": "last", ":x": "next"}');
SELECT u('SET m.a.b[0] = m.a.b[1]');
SELECT u('SET #a = :v', '{":v": {"deep": [1, {"x": null}]}}', '{"#a": "a b"}');
SELECT u('REMOVE s, m.k, nothere');
SELECT u('REMOVE l[1], l[2]');
SELECT u('REMOVE l[0] SET s = :v', '{":v": "x"}');
SELECT u('ADD n :v, newn :v', '{":v": 3}');
SELECT u('ADD tags :v, newset :v', '{":v": ["y", "z"]}');
SELECT u('DELETE tags :v', '{":v": ["x", "q"]}');
SELECT u('DELETE tags :v', '{":v": ["x", "y"]}');
SELECT u('DELETE nothere :v', '{":v": ["x"]}');
SELECT u('set s = :a remove n add c :one delete tags :x', '{":a": "A", ":one": 1, ":x": ["x"]}');
SELECT u('DELETE tags :x ADD c :one REMOVE n SET s = :a', '{":a": "A", ":one": 1, ":x": ["x"]}');
-- keywords are no attribute names: #names stand for them
SELECT u('SET set = :v', '{":v": 1}');
SELECT u('SET #set = :v', '{":v": 1}', '{"#set": "set"}');
-- UPDATED_NEW: the attributes written, as they are after the update
SELECT ddb('system/dynamodb-update-item', '{"tableName": "Upd", "key": {"PK": "U", "SK": "1"},
	"updateExpression": "SET m.a.c = :v, n = n + :v REMOVE s", "expressionAttributeValues": {":v": 1}}');
SELECT ddb('system/dynamodb-update-item', '{"tableName": "Upd", "key": {"PK": "U", "SK": "1"},
	"updateExpression": "REMOVE l"}');

-- bad updates
SELECT u('SET n = :v SET s = :v', '{":v": 1}');
SELECT u('SET n = :v, n = :w', '{":v": 1, ":w": 2}');
SELECT u('SET m = :v REMOVE m.k', '{":v": 1}');
SELECT u('SET l[1] = :v REMOVE l[1]', '{":v": 1}');
SELECT u('SET n = missing + :v', '{":v": 1}');
SELECT u('SET n = s + :v', '{":v": 1}');
SELECT u('SET l = list_append(l, :v)', '{":v": "e"}');
SELECT u('SET x.y = :v', '{":v": 1}');
SELECT u('SET n.y = :v', '{":v": 1}');
SELECT u('SET l[9].x = :v', '{":v": 1}');
SELECT u('SET s[0] = :v', '{":v": 1}');
SELECT u('SET PK = :v', '{":v": "x"}');
SELECT u('REMOVE SK');
SELECT u('ADD s :v', '{":v": 1}');
SELECT u('ADD n :v', '{":v": "x"}');
SELECT u('ADD n :v', '{":v": ["x"]}');
SELECT u('DELETE n :v', '{":v": ["x"]}');
SELECT u('DELETE tags :v', '{":v": "x"}');
SELECT u('ADD n n');
SELECT u('SET n = size(s)');
SELECT u('SET n = if_not_exists(:v, :v)', '{":v": 1}');
SELECT u('SET n += :v', '{":v": 1}');
SELECT u('UPDATE n = :v', '{":v": 1}');
SELECT u('SET n = :v,', '{":v": 1}');
SELECT u('SET n = :undefined');
SELECT u('SET n = :v', '{":v": 1, ":w": 2}');
SELECT u('SET n = :v' || repeat(' + :v', 300), '{":v": 1}');
SELECT u('SET n = :v' || repeat(' + :v', 301), '{":v": 1}');

------------------------------------------------------------------------------
-- ProjectionExpression (of item S/b)
------------------------------------------------------------------------------
SELECT p('SK, n');
SELECT p('m.a.b[2], m.a.b[0], m.k');
SELECT p('l[1].x, l[0]');
SELECT p('m.a.nothere, nothere, l[7]');
SELECT p('#o, #m.#k', '{"#o": "#odd name", "#m": "m", "#k": "k"}');
SELECT p('m, m.k');
SELECT p('l[0], l[0].x');
SELECT p('n,');
SELECT p('n s');
SELECT p('#x', '{"#y": "y"}');

-- a module that sends no values (GET) leaves none unused only when there are none
SELECT ddb('system/dynamodb-data-loader', '{"operation": "GET", "tableName": "Items",
	"key": {"PK": "S", "SK": "b"}, "projectionExpression": "n", "expressionAttributeValues": {":ignored": 1}}');
SELECT ddb('system/dynamodb-data-loader', '{"operation": "GET", "tableName": "Items",
	"key": {"PK": "S", "SK": "b"}, "expressionAttributeNames": {"#n": "n"}}');

DROP FUNCTION ddb(text, jsonb), present(jsonb), q(text, jsonb, jsonb), f(text, jsonb, jsonb),
	u(text, jsonb, jsonb), p(text, jsonb);
SELECT allma_drop_dynamodb_table(t) FROM unnest(ARRAY['Expr', 'Items', 'Upd', 'Nums']) t;
