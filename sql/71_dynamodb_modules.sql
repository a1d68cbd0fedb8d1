-- The system/dynamodb-* modules: item stores, every operation through
-- allma_run_module, paging, privileges with several roles, bound tables,
-- secondary indexes backed by PostgreSQL indexes, and the modules in flows
-- run by the workers as the execution's starter.
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

------------------------------------------------------------------------------
-- Item stores: one table per DynamoDB table, secondary indexes as partial
-- expression indexes, the catalog
------------------------------------------------------------------------------
SELECT allma_create_dynamodb_table('Graph', 'PK', 'SK',
	'[{"indexName": "GSI1", "partitionKey": "GSI1PK", "sortKey": "GSI1SK"},
	  {"indexName": "ByScore", "partitionKey": "entityType", "sortKey": "score"}]',
	'{"score": "N"}');
SELECT table_name, relation, managed, partition_key, partition_key_type, sort_key, sort_key_type,
	   indexes, owner = current_user::regrole AS owned_by_creator
  FROM allma.dynamodb_tables;
\d allma_dynamodb."Graph"
-- only a partition key, numeric
SELECT allma_create_dynamodb_table('Counters', 'id', attribute_types => '{"id": "N"}');
\d allma_dynamodb."Counters"
-- bad creations
SELECT allma_create_dynamodb_table('ab', 'PK');
SELECT allma_create_dynamodb_table('no/slash', 'PK');
SELECT allma_create_dynamodb_table(repeat('x', 64), 'PK');
SELECT allma_create_dynamodb_table('Graph', 'PK');
SELECT allma_create_dynamodb_table('Tab1', 'PK', 'PK');
SELECT allma_create_dynamodb_table('Tab1', 'PK', attribute_types => '{"PK": "B"}');
SELECT allma_create_dynamodb_table('Tab1', 'PK', attribute_types => '["PK"]');
SELECT allma_create_dynamodb_table('Tab1', 'PK', indexes => '{"indexName": "I1"}');
SELECT allma_create_dynamodb_table('Tab1', 'PK', indexes => '[{"indexName": "I1"}]');
SELECT allma_create_dynamodb_table('Tab1', 'PK', indexes => '[{"indexName": "I1", "partitionKey": "a"}, {"indexName": "I1", "partitionKey": "b"}]');
SELECT allma_create_dynamodb_table('Tab1', 'PK', indexes => '[{"indexName": "I/1", "partitionKey": "a"}]');
SELECT allma_create_dynamodb_table('Tab1', NULL);
SELECT count(*) AS no_tab1 FROM allma.dynamodb_tables WHERE table_name = 'Tab1';
-- the table checks its key attributes, whoever writes to it
INSERT INTO allma_dynamodb."Graph" (item) VALUES ('{"PK": "x"}');
INSERT INTO allma_dynamodb."Graph" (item) VALUES ('{"PK": 1, "SK": "x"}');
INSERT INTO allma_dynamodb."Graph" (item) VALUES ('{"PK": "", "SK": "x"}');
INSERT INTO allma_dynamodb."Graph" (item) VALUES ('[1]');

------------------------------------------------------------------------------
-- system/dynamodb-batch-writer: PutRequest and DeleteRequest, checked
-- before anything is written
------------------------------------------------------------------------------
SELECT ddb('system/dynamodb-batch-writer', '{"tableName": "Graph", "requests": [
	{"PutRequest": {"Item": {"PK": "PROJECT#1", "SK": "METADATA", "entityType": "PROJECT", "status": "DRAFT", "owner": "USER#7"}}},
	{"PutRequest": {"Item": {"PK": "PROJECT#1", "SK": "BOM_PART#001", "entityType": "BOM_PART", "partName": "Bracket", "material": "Steel", "quantity": 400, "score": 7}}},
	{"PutRequest": {"Item": {"PK": "PROJECT#1", "SK": "BOM_PART#002", "entityType": "BOM_PART", "partName": "Housing", "material": "Aluminium", "quantity": 150, "score": 12.5}}},
	{"PutRequest": {"Item": {"PK": "PROJECT#1", "SK": "BOM_PART#003", "entityType": "BOM_PART", "partName": "Gasket", "material": "Rubber", "quantity": 1000, "score": -1}}},
	{"putRequest": {"item": {"PK": "USER#7", "SK": "SUPPLIER#ACME", "GSI1PK": "USER#7", "GSI1SK": "SUPPLIER#ACME", "supplierName": "Acme", "contactEmail": "sales@acme.test"}}},
	{"PutRequest": {"Item": {"PK": "USER#7", "SK": "SUPPLIER#BOLT", "GSI1PK": "USER#7", "GSI1SK": "SUPPLIER#BOLT", "supplierName": "Bolt Ltd", "contactEmail": "quotes@bolt.test"}}},
	{"PutRequest": {"Item": {"PK": "USER#8", "SK": "SUPPLIER#CROWN", "GSI1PK": "USER#8", "GSI1SK": "SUPPLIER#CROWN", "supplierName": "Crown"}}},
	{"PutRequest": {"Item": {"PK": "CONFIG#MASTER_FIELD_LIST", "SK": "FIELD#price", "label": "Price", "required": true}}},
	{"PutRequest": {"Item": {"PK": "CONFIG#MASTER_FIELD_LIST", "SK": "FIELD#leadTime", "label": "Lead time", "required": false}}},
	{"PutRequest": {"Item": {"PK": "TMP", "SK": "1"}}}]}');
SELECT ddb('system/dynamodb-batch-writer', '{"tableName": "Graph", "requests": [
	{"DeleteRequest": {"Key": {"PK": "TMP", "SK": "1"}}},
	{"deleteRequest": {"key": {"PK": "TMP", "SK": "never-there"}}},
	{"PutRequest": {"Item": {"PK": "PROJECT#1", "SK": "METADATA", "entityType": "PROJECT", "status": "OPEN", "owner": "USER#7"}}}]}');
SELECT pk, sk, item - 'PK' - 'SK' AS attributes FROM allma_dynamodb."Graph" ORDER BY pk, sk;
-- nothing is written when one request is bad
SELECT ddb('system/dynamodb-batch-writer', '{"tableName": "Graph", "requests": [
	{"PutRequest": {"Item": {"PK": "NEW", "SK": "1"}}},
	{"PutRequest": {"Item": {"PK": "NEW", "SK": 2}}}]}');
SELECT ddb('system/dynamodb-batch-writer', '{"tableName": "Graph", "requests": [
	{"PutRequest": {"Item": {"PK": "NEW", "SK": "1"}}},
	{"DeleteRequest": {"Key": {"PK": "NEW", "SK": "1"}}}]}');
SELECT ddb('system/dynamodb-batch-writer', '{"tableName": "Graph", "requests": [{"PutRequest": {"Item": {"PK": "NEW"}}}]}');
SELECT ddb('system/dynamodb-batch-writer', '{"tableName": "Graph", "requests": [{"DeleteRequest": {"Key": {"PK": "NEW"}}}]}');
SELECT ddb('system/dynamodb-batch-writer', '{"tableName": "Graph", "requests": [{"DeleteRequest": {"Key": {"PK": "NEW", "SK": "1", "x": 1}}}]}');
SELECT ddb('system/dynamodb-batch-writer', '{"tableName": "Graph", "requests": [{"PutRequest": {"Item": {"PK": "NEW", "SK": "1", "GSI1PK": 5}}}]}');
SELECT ddb('system/dynamodb-batch-writer', '{"tableName": "Graph", "requests": [{"PutRequest": {"Item": {"PK": "NEW", "SK": "1", "score": "high"}}}]}');
SELECT ddb('system/dynamodb-batch-writer', jsonb_build_object('tableName', 'Graph', 'requests', jsonb_build_array(
	jsonb_build_object('PutRequest', jsonb_build_object('Item', jsonb_build_object('PK', 'NEW', 'SK', repeat('s', 1025)))))));
SELECT ddb('system/dynamodb-batch-writer', '{"tableName": "Graph", "requests": [{"PutRequest": {}, "DeleteRequest": {}}]}');
SELECT ddb('system/dynamodb-batch-writer', '{"tableName": "Graph", "requests": [{"Put": {"Item": {}}}]}');
SELECT ddb('system/dynamodb-batch-writer', '{"tableName": "Graph", "requests": {"PutRequest": {}}}');
SELECT ddb('system/dynamodb-batch-writer', jsonb_build_object('tableName', 'Graph', 'requests',
	jsonb_build_array(jsonb_build_object('PutRequest', jsonb_build_object('Item',
		jsonb_build_object('PK', 'BIG', 'SK', '1', 'blob', repeat('x', 410000)))))));
SELECT ddb('system/dynamodb-batch-writer', jsonb_build_object('tableName', 'Graph', 'requests',
	(SELECT jsonb_agg(jsonb_build_object('DeleteRequest', jsonb_build_object('Key',
		jsonb_build_object('PK', 'X', 'SK', i::text)))) FROM generate_series(1, 1001) i)));
SELECT ddb('system/dynamodb-batch-writer', '{"tableName": "Nowhere", "requests": []}');
SELECT ddb('system/dynamodb-batch-writer', '{"tableName": "Graph", "requests": []}');
SELECT count(*) AS nine_items FROM allma_dynamodb."Graph";

------------------------------------------------------------------------------
-- system/dynamodb-data-loader: GET, QUERY, SCAN, QUERY_BATCH -> {content}
------------------------------------------------------------------------------
SELECT ddb('system/dynamodb-data-loader', '{"operation": "GET", "tableName": "Graph", "key": {"PK": "PROJECT#1", "SK": "METADATA"}}');
SELECT ddb('system/dynamodb-data-loader', '{"operation": "GET", "tableName": "Graph", "key": {"PK": "PROJECT#1", "SK": "METADATA"},
	"projectionExpression": "#s, entityType", "expressionAttributeNames": {"#s": "status"}}');
SELECT ddb('system/dynamodb-data-loader', '{"operation": "GET", "tableName": "Graph", "key": {"PK": "PROJECT#1", "SK": "nope"}}');
SELECT ddb('system/dynamodb-data-loader', '{"operation": "GET", "tableName": "Graph", "key": {"PK": "PROJECT#1"}}');
SELECT ddb('system/dynamodb-data-loader', '{"operation": "GET", "tableName": "Graph", "key": {"PK": "PROJECT#1", "SK": 1}}');
SELECT ddb('system/dynamodb-data-loader', '{"operation": "GET", "tableName": "Graph"}');
-- QUERY as the bundles use it: begins_with, projection, an index, a filter
SELECT ddb('system/dynamodb-data-loader', '{"operation": "QUERY", "tableName": "Graph",
	"keyConditionExpression": "PK = :pk AND begins_with(SK, :sk)",
	"expressionAttributeValues": {":pk": "PROJECT#1", ":sk": "BOM_PART#"},
	"projectionExpression": "partName, material, quantity"}');
SELECT ddb('system/dynamodb-data-loader', '{"operation": "QUERY", "tableName": "Graph", "indexName": "GSI1",
	"keyConditionExpression": "GSI1PK = :pk AND begins_with(GSI1SK, :sk)",
	"expressionAttributeValues": {":pk": "USER#7", ":sk": "SUPPLIER#"},
	"projectionExpression": "supplierName, contactEmail"}');
SELECT ddb('system/dynamodb-data-loader', '{"operation": "QUERY", "tableName": "Graph",
	"keyConditionExpression": "PK = :pk AND begins_with(SK, :sk)", "filterExpression": "quantity >= :q",
	"expressionAttributeValues": {":pk": "PROJECT#1", ":sk": "BOM_PART#", ":q": 400},
	"projectionExpression": "SK", "scanIndexForward": false}');
-- a numeric index sort key orders numerically
SELECT ddb('system/dynamodb-data-loader', '{"operation": "QUERY", "tableName": "Graph", "indexName": "ByScore",
	"keyConditionExpression": "entityType = :t AND score > :s",
	"expressionAttributeValues": {":t": "BOM_PART", ":s": 0}, "projectionExpression": "partName, score"}');
-- select COUNT counts the filtered items and the items read; limit counts items read
SELECT ddb('system/dynamodb-data-loader', '{"operation": "QUERY", "tableName": "Graph", "select": "COUNT",
	"keyConditionExpression": "PK = :pk", "filterExpression": "quantity > :q",
	"expressionAttributeValues": {":pk": "PROJECT#1", ":q": 200}}');
SELECT ddb('system/dynamodb-data-loader', '{"operation": "QUERY", "tableName": "Graph", "limit": 2,
	"keyConditionExpression": "PK = :pk", "filterExpression": "attribute_exists(quantity)",
	"expressionAttributeValues": {":pk": "PROJECT#1"}, "projectionExpression": "SK"}');
SELECT ddb('system/dynamodb-data-loader', '{"operation": "QUERY", "tableName": "Graph", "indexName": "GSI1",
	"select": "ALL_PROJECTED_ATTRIBUTES", "keyConditionExpression": "GSI1PK = :pk",
	"expressionAttributeValues": {":pk": "USER#8"}}');
-- SCAN: the whole table in key order, or an index (only the items it holds)
SELECT ddb('system/dynamodb-data-loader', '{"operation": "SCAN", "tableName": "Graph",
	"filterExpression": "entityType = :e AND partName <> :n",
	"expressionAttributeValues": {":e": "BOM_PART", ":n": "Gasket"},
	"projectionExpression": "partName, material, existingPartDetails"}');
SELECT ddb('system/dynamodb-data-loader', '{"operation": "SCAN", "tableName": "Graph", "indexName": "GSI1", "projectionExpression": "SK"}');
SELECT ddb('system/dynamodb-data-loader', '{"operation": "SCAN", "tableName": "Graph", "select": "COUNT", "limit": 4}');
-- QUERY_BATCH: one result per query in content (the context writes are the engine's)
SELECT ddb('system/dynamodb-data-loader', '{"operation": "QUERY_BATCH", "queries": [
	{"tableName": "Graph", "keyConditionExpression": "PK = :pk", "expressionAttributeValues": {":pk": "CONFIG#MASTER_FIELD_LIST"},
	 "outputJsonPath": "$.steps_output.master"},
	{"tableName": "Graph", "indexName": "GSI1", "keyConditionExpression": "GSI1PK = :pk",
	 "expressionAttributeValues": {":pk": "USER#7"}, "projectionExpression": "supplierName"},
	{"keyConditionExpression": "PK = :pk", "expressionAttributeValues": {":pk": "nobody"}}], "tableName": "Graph"}');
-- bad reads
SELECT ddb('system/dynamodb-data-loader', '{"operation": "PUT", "tableName": "Graph"}');
SELECT ddb('system/dynamodb-data-loader', '{"tableName": "Graph"}');
SELECT ddb('system/dynamodb-data-loader', '{"operation": "QUERY", "tableName": "Graph"}');
SELECT ddb('system/dynamodb-data-loader', '{"operation": "QUERY", "TableName": "Graph", "KeyConditionExpression": "PK = :pk"}');
SELECT ddb('system/dynamodb-data-loader', '{"operation": "QUERY", "tableName": "Graph", "indexName": "GSI9",
	"keyConditionExpression": "PK = :pk", "expressionAttributeValues": {":pk": "x"}}');
SELECT ddb('system/dynamodb-data-loader', '{"operation": "QUERY", "tableName": "Graph", "indexName": "GSI1",
	"keyConditionExpression": "PK = :pk", "expressionAttributeValues": {":pk": "x"}}');
SELECT ddb('system/dynamodb-data-loader', '{"operation": "QUERY", "tableName": "Graph", "indexName": "ByScore",
	"keyConditionExpression": "entityType = :t AND score > :s", "expressionAttributeValues": {":t": "x", ":s": "1"}}');
SELECT ddb('system/dynamodb-data-loader', '{"operation": "QUERY", "tableName": "Graph", "select": "COUNT", "projectionExpression": "SK",
	"keyConditionExpression": "PK = :pk", "expressionAttributeValues": {":pk": "x"}}');
SELECT ddb('system/dynamodb-data-loader', '{"operation": "QUERY", "tableName": "Graph", "select": "SPECIFIC_ATTRIBUTES",
	"keyConditionExpression": "PK = :pk", "expressionAttributeValues": {":pk": "x"}}');
SELECT ddb('system/dynamodb-data-loader', '{"operation": "QUERY", "tableName": "Graph", "select": "ALL_PROJECTED_ATTRIBUTES",
	"keyConditionExpression": "PK = :pk", "expressionAttributeValues": {":pk": "x"}}');
SELECT ddb('system/dynamodb-data-loader', '{"operation": "QUERY", "tableName": "Graph", "select": "SOME",
	"keyConditionExpression": "PK = :pk", "expressionAttributeValues": {":pk": "x"}}');
SELECT ddb('system/dynamodb-data-loader', '{"operation": "QUERY", "tableName": "Graph", "limit": 0,
	"keyConditionExpression": "PK = :pk", "expressionAttributeValues": {":pk": "x"}}');
SELECT ddb('system/dynamodb-data-loader', '{"operation": "QUERY", "tableName": "Graph", "limit": 1.5,
	"keyConditionExpression": "PK = :pk", "expressionAttributeValues": {":pk": "x"}}');
SELECT ddb('system/dynamodb-data-loader', '{"operation": "QUERY", "tableName": "Graph", "scanIndexForward": "no",
	"keyConditionExpression": "PK = :pk", "expressionAttributeValues": {":pk": "x"}}');
SELECT ddb('system/dynamodb-data-loader', '{"operation": "QUERY", "tableName": "Nowhere",
	"keyConditionExpression": "PK = :pk", "expressionAttributeValues": {":pk": "x"}}');
SELECT ddb('system/dynamodb-data-loader', '{"operation": "QUERY_BATCH", "queries": []}');
SELECT ddb('system/dynamodb-data-loader', '{"operation": "QUERY_BATCH", "queries": [{"tableName": "Graph"}]}');
SELECT ddb('system/dynamodb-data-loader', '{"operation": "QUERY_BATCH", "queries": [{"tableName": "Graph",
	"keyConditionExpression": "PK = :pk", "expressionAttributeValues": {":pk": "x"}, "outputJsonPath": "$..bad"}]}');
SELECT ddb('system/dynamodb-data-loader', '[]');

------------------------------------------------------------------------------
-- Pages: a QUERY or SCAN reads at most 1 MB, then returns lastEvaluatedKey;
-- exclusiveStartKey goes on from there
------------------------------------------------------------------------------
INSERT INTO allma_dynamodb."Graph" (item)
SELECT jsonb_build_object('PK', 'BULK', 'SK', lpad(i::text, 3, '0'), 'GSI1PK', 'BULK', 'GSI1SK', lpad((31 - i)::text, 3, '0'),
						  'blob', repeat('x', 100000))
  FROM generate_series(1, 30) i;
CREATE TEMP TABLE page1 AS
SELECT allma_run_module('system/dynamodb-data-loader', '{"operation": "QUERY", "tableName": "Graph",
	"keyConditionExpression": "PK = :pk", "expressionAttributeValues": {":pk": "BULK"}, "projectionExpression": "SK"}') AS r;
SELECT jsonb_array_length(r->'content') AS items, r->'lastEvaluatedKey' AS last_key FROM page1;
SELECT r->'content' AS page2, r ? 'lastEvaluatedKey' AS more
  FROM (SELECT allma_run_module('system/dynamodb-data-loader', jsonb_build_object('operation', 'QUERY', 'tableName', 'Graph',
	'keyConditionExpression', 'PK = :pk', 'expressionAttributeValues', '{":pk": "BULK"}'::jsonb,
	'projectionExpression', 'SK', 'exclusiveStartKey', (SELECT r->'lastEvaluatedKey' FROM page1))) AS r) s;
-- backwards, and through an index (whose start key also holds the index keys)
SELECT r->'content'->0 AS first, r->'lastEvaluatedKey' AS last_key
  FROM (SELECT allma_run_module('system/dynamodb-data-loader', '{"operation": "QUERY", "tableName": "Graph", "scanIndexForward": false,
	"keyConditionExpression": "PK = :pk", "expressionAttributeValues": {":pk": "BULK"}, "projectionExpression": "SK"}') AS r) s;
SELECT r->'content'->0 AS first, r->'lastEvaluatedKey' AS last_key
  FROM (SELECT allma_run_module('system/dynamodb-data-loader', '{"operation": "QUERY", "tableName": "Graph", "indexName": "GSI1",
	"keyConditionExpression": "GSI1PK = :pk", "expressionAttributeValues": {":pk": "BULK"}, "projectionExpression": "SK"}') AS r) s;
SELECT ddb('system/dynamodb-data-loader', '{"operation": "QUERY", "tableName": "Graph", "indexName": "GSI1",
	"keyConditionExpression": "GSI1PK = :pk", "expressionAttributeValues": {":pk": "BULK"}, "projectionExpression": "SK",
	"exclusiveStartKey": {"PK": "BULK", "SK": "021", "GSI1PK": "BULK", "GSI1SK": "010"}}');
SELECT ddb('system/dynamodb-data-loader', '{"operation": "SCAN", "tableName": "Graph", "projectionExpression": "SK",
	"exclusiveStartKey": {"PK": "PROJECT#1", "SK": "BOM_PART#003"}}');
SELECT ddb('system/dynamodb-data-loader', '{"operation": "SCAN", "tableName": "Graph", "exclusiveStartKey": {"PK": "x"}}');
SELECT ddb('system/dynamodb-data-loader', '{"operation": "QUERY_BATCH", "queries": [{"tableName": "Graph",
	"keyConditionExpression": "PK = :pk", "expressionAttributeValues": {":pk": "BULK"}}]}');
DELETE FROM allma_dynamodb."Graph" WHERE pk = 'BULK';

------------------------------------------------------------------------------
-- Secondary indexes are PostgreSQL indexes: EXPLAIN of what a load runs
------------------------------------------------------------------------------
ANALYZE allma_dynamodb."Graph";
SET enable_seqscan = off;
SET enable_bitmapscan = off;
SET enable_sort = off;
SELECT allma_dynamodb_explain('{"operation": "QUERY", "tableName": "Graph", "indexName": "GSI1",
	"keyConditionExpression": "GSI1PK = :pk AND begins_with(GSI1SK, :sk)",
	"expressionAttributeValues": {":pk": "USER#7", ":sk": "SUPPLIER#"}}');
SELECT allma_dynamodb_explain('{"operation": "QUERY", "tableName": "Graph", "indexName": "ByScore", "scanIndexForward": false,
	"keyConditionExpression": "entityType = :t AND score BETWEEN :a AND :b",
	"expressionAttributeValues": {":t": "BOM_PART", ":a": 0, ":b": 100}}');
SELECT allma_dynamodb_explain('{"operation": "QUERY", "tableName": "Graph",
	"keyConditionExpression": "PK = :pk AND SK > :sk", "expressionAttributeValues": {":pk": "PROJECT#1", ":sk": "A"}}');
SELECT allma_dynamodb_explain('{"operation": "SCAN", "tableName": "Graph", "indexName": "GSI1"}');
-- the module's own statement uses the index too: its scan count goes up
SELECT pg_stat_force_next_flush();
SELECT idx_scan AS gsi1_scans_before FROM pg_stat_user_indexes WHERE indexrelname = 'Graph/GSI1' \gset
SELECT allma_run_module('system/dynamodb-data-loader', '{"operation": "QUERY", "tableName": "Graph", "indexName": "GSI1",
	"scanIndexForward": false, "keyConditionExpression": "GSI1PK = :pk", "expressionAttributeValues": {":pk": "USER#7"},
	"projectionExpression": "SK"}');
SELECT pg_stat_force_next_flush();
SELECT idx_scan > :gsi1_scans_before AS gsi1_used FROM pg_stat_user_indexes WHERE indexrelname = 'Graph/GSI1';
RESET enable_seqscan;
RESET enable_bitmapscan;
RESET enable_sort;

------------------------------------------------------------------------------
-- system/dynamodb-update-item -> {updatedAttributes} (UPDATED_NEW)
------------------------------------------------------------------------------
SELECT ddb('system/dynamodb-update-item', '{"tableName": "Graph", "key": {"PK": "PROJECT#1", "SK": "METADATA"},
	"updateExpression": "SET #status = :status, #lastModified = :now REMOVE bomProcessingFlowId, bomProcessingStartedAt",
	"expressionAttributeNames": {"#status": "status", "#lastModified": "lastModified"},
	"expressionAttributeValues": {":status": "DRAFT_AWAITING_REVIEW", ":now": "2026-01-02T03:04:05.000Z"}}');
-- a missing item is created from its key
SELECT ddb('system/dynamodb-update-item', '{"tableName": "Graph", "key": {"PK": "RFQ#9", "SK": "COMMENT#1"},
	"updateExpression": "SET entityType = :type, commentSource = :source, commentText = :text",
	"expressionAttributeValues": {":type": "COMMENT", ":source": "email", ":text": "Subject: hi\n\nbody"}}');
SELECT item FROM allma_dynamodb."Graph" WHERE pk IN ('PROJECT#1', 'RFQ#9') AND sk IN ('METADATA', 'COMMENT#1') ORDER BY pk;
-- numbers: counters in a table keyed by a number
SELECT ddb('system/dynamodb-update-item', '{"tableName": "Counters", "key": {"id": 1},
	"updateExpression": "SET hits = if_not_exists(hits, :zero) + :one", "expressionAttributeValues": {":zero": 0, ":one": 1}}');
SELECT ddb('system/dynamodb-update-item', '{"tableName": "Counters", "key": {"id": 1.0},
	"updateExpression": "ADD hits :one", "expressionAttributeValues": {":one": 1}}');
SELECT pk, item FROM allma_dynamodb."Counters";
-- a failed condition is ConditionalCheckFailedException (LM210) and writes nothing
SELECT ddb('system/dynamodb-update-item', '{"tableName": "Graph", "key": {"PK": "PROJECT#1", "SK": "METADATA"},
	"updateExpression": "SET #s = :new", "conditionExpression": "#s = :old",
	"expressionAttributeNames": {"#s": "status"}, "expressionAttributeValues": {":new": "LOCKED", ":old": "OPEN"}}');
SELECT item->>'status' AS status FROM allma_dynamodb."Graph" WHERE pk = 'PROJECT#1' AND sk = 'METADATA';
-- bad updates
SELECT ddb('system/dynamodb-update-item', '{"tableName": "Graph", "key": {"PK": "PROJECT#1", "SK": "METADATA"}}');
SELECT ddb('system/dynamodb-update-item', '{"tableName": "Graph", "key": {"PK": "PROJECT#1"}, "updateExpression": "REMOVE x"}');
SELECT ddb('system/dynamodb-update-item', '{"tableName": "Graph", "key": {"PK": "PROJECT#1", "SK": "METADATA"},
	"updateExpression": "SET GSI1PK = :v", "expressionAttributeValues": {":v": 1}}');
SELECT ddb('system/dynamodb-update-item', jsonb_build_object('tableName', 'Graph', 'key', '{"PK": "PROJECT#1", "SK": "METADATA"}'::jsonb,
	'updateExpression', 'SET a = :v, b = :v, c = :v, d = :v, e = :v', 'expressionAttributeValues', jsonb_build_object(':v', repeat('x', 90000))));
SELECT ddb('system/dynamodb-update-item', '{"tableName": "Graph", "key": {"PK": "PROJECT#1", "SK": "METADATA"}, "UpdateExpression": "REMOVE x"}');

------------------------------------------------------------------------------
-- system/dynamodb-query-and-update: claim jobs
------------------------------------------------------------------------------
SELECT allma_create_dynamodb_table('Jobs', 'queue', 'jobId',
	'[{"indexName": "ByStatus", "partitionKey": "status", "sortKey": "jobId"}]');
INSERT INTO allma_dynamodb."Jobs" (item)
SELECT jsonb_build_object('queue', 'q1', 'jobId', 'job-' || i, 'status', CASE WHEN i % 3 = 0 THEN 'DONE' ELSE 'PENDING' END)
  FROM generate_series(1, 8) i;
-- claim at most 3 (limit counts the items read, filtered or not)
SELECT ddb('system/dynamodb-query-and-update', '{
	"query": {"tableName": "Jobs", "keyConditionExpression": "queue = :q", "filterExpression": "#s = :pending",
			  "expressionAttributeNames": {"#s": "status"}, "expressionAttributeValues": {":q": "q1", ":pending": "PENDING"},
			  "limit": 3},
	"update": {"updateExpression": "SET #s = :claimed, claimedBy = :w", "conditionExpression": "#s = :pending",
			   "expressionAttributeNames": {"#s": "status"},
			   "expressionAttributeValues": {":claimed": "CLAIMED", ":w": "worker-1", ":pending": "PENDING"}}}');
-- through the index, with the key attributes named: the rest of the pending ones
SELECT ddb('system/dynamodb-query-and-update', '{
	"query": {"tableName": "Jobs", "indexName": "ByStatus", "keyAttributes": ["queue", "jobId"],
			  "keyConditionExpression": "#s = :pending", "expressionAttributeNames": {"#s": "status"},
			  "expressionAttributeValues": {":pending": "PENDING"}},
	"update": {"updateExpression": "SET #s = :claimed, claimedBy = :w", "conditionExpression": "#s = :pending",
			   "expressionAttributeNames": {"#s": "status"},
			   "expressionAttributeValues": {":claimed": "CLAIMED", ":w": "worker-2", ":pending": "PENDING"}}}');
-- nothing left to claim
SELECT ddb('system/dynamodb-query-and-update', '{
	"query": {"tableName": "Jobs", "indexName": "ByStatus", "keyConditionExpression": "#s = :pending",
			  "expressionAttributeNames": {"#s": "status"}, "expressionAttributeValues": {":pending": "PENDING"}},
	"update": {"updateExpression": "SET claimedBy = :w", "expressionAttributeValues": {":w": "worker-3"}}}');
-- a condition that fails skips the item instead of failing the step
SELECT ddb('system/dynamodb-query-and-update', '{
	"query": {"tableName": "Jobs", "keyConditionExpression": "queue = :q", "expressionAttributeValues": {":q": "q1"}},
	"update": {"updateExpression": "SET checked = :t", "conditionExpression": "claimedBy = :w",
			   "expressionAttributeValues": {":t": true, ":w": "worker-2"}}}');
SELECT item->>'jobId' AS job, item->>'status' AS status, item->>'claimedBy' AS by, item->'checked' AS checked
  FROM allma_dynamodb."Jobs" ORDER BY sk;
-- bad claims
SELECT ddb('system/dynamodb-query-and-update', '{"query": {"tableName": "Jobs", "keyConditionExpression": "queue = :q"},
	"update": {"updateExpression": "SET a = :v", "expressionAttributeValues": {":v": 1}}}');
SELECT ddb('system/dynamodb-query-and-update', '{"query": {"tableName": "Jobs", "keyConditionExpression": "queue = :q",
	"expressionAttributeValues": {":q": "q1"}}}');
SELECT ddb('system/dynamodb-query-and-update', '{"query": {"tableName": "Jobs", "keyConditionExpression": "queue = :q",
	"expressionAttributeValues": {":q": "q1"}, "keyAttributes": ["queue"]}, "update": {"updateExpression": "REMOVE x"}}');
SELECT ddb('system/dynamodb-query-and-update', '{"query": {"tableName": "Jobs", "keyConditionExpression": "queue = :q",
	"expressionAttributeValues": {":q": "q1"}}, "update": {"updateExpression": "SET jobId = :v", "expressionAttributeValues": {":v": "x"}}}');
SELECT ddb('system/dynamodb-query-and-update', '{"query": {"tableName": "Jobs", "keyConditionExpression": "queue = :q",
	"expressionAttributeValues": {":q": "q1"}, "limit": 1000001}, "update": {"updateExpression": "REMOVE x"}}');

------------------------------------------------------------------------------
-- Privileges: the modules run as the current user (a step: the execution's
-- starter), so the tables' own privileges decide
------------------------------------------------------------------------------
CREATE ROLE regress_ddb_owner;
CREATE ROLE regress_ddb_reader;
CREATE ROLE regress_ddb_stranger;
GRANT allma_user TO regress_ddb_owner, regress_ddb_reader, regress_ddb_stranger;
GRANT CREATE ON SCHEMA allma_dynamodb TO regress_ddb_owner;
SET ROLE regress_ddb_owner;
SELECT allma_create_dynamodb_table('Private', 'PK', 'SK');
SELECT ddb('system/dynamodb-update-item', '{"tableName": "Private", "key": {"PK": "a", "SK": "1"},
	"updateExpression": "SET secret = :s", "expressionAttributeValues": {":s": "42"}}');
GRANT SELECT ON allma_dynamodb."Private" TO regress_ddb_reader;
RESET ROLE;
SELECT tableowner FROM pg_tables WHERE schemaname = 'allma_dynamodb' AND tablename = 'Private';
SET ROLE regress_ddb_reader;
SELECT ddb('system/dynamodb-data-loader', '{"operation": "GET", "tableName": "Private", "key": {"PK": "a", "SK": "1"}}');
SELECT ddb('system/dynamodb-update-item', '{"tableName": "Private", "key": {"PK": "a", "SK": "1"},
	"updateExpression": "SET secret = :s", "expressionAttributeValues": {":s": "0"}}');
SELECT allma_create_dynamodb_table('Mine', 'PK');
SELECT allma_drop_dynamodb_table('Private');
RESET ROLE;
SET ROLE regress_ddb_stranger;
SELECT ddb('system/dynamodb-data-loader', '{"operation": "SCAN", "tableName": "Private"}');
SELECT ddb('system/dynamodb-batch-writer', '{"tableName": "Private", "requests": [{"DeleteRequest": {"Key": {"PK": "a", "SK": "1"}}}]}');
-- the names are visible to all, the items are not
SELECT table_name, owner FROM allma.dynamodb_tables WHERE table_name = 'Private';
SELECT count(*) FROM allma_dynamodb."Private";
RESET ROLE;
-- in flows: the step runs as the role that started the execution
SELECT allma_create_flow('{"id": "ddb_private", "startStepInstanceId": "load", "steps": {
	"load": {"stepType": "DATA_LOAD", "moduleIdentifier": "system/dynamodb-data-loader",
			 "customConfig": {"operation": "GET", "tableName": "Private", "key": {"PK": "a", "SK": "1"}}}}}');
SELECT allma_grant_flow('ddb_private', 'regress_ddb_reader', 'START'),
       allma_grant_flow('ddb_private', 'regress_ddb_stranger', 'START');
SET ROLE regress_ddb_reader;
SELECT allma_start_flow('ddb_private') AS e \gset
RESET ROLE;
SELECT allma_wait(:'e');
SELECT status, output->'steps_output'->'load' AS loaded FROM allma.executions WHERE execution_id = :'e';
SET ROLE regress_ddb_stranger;
SELECT allma_start_flow('ddb_private') AS e \gset
RESET ROLE;
SELECT allma_wait(:'e');
SELECT status, error->>'errorName' AS error_name, error->'errorDetails'->>'sqlstate' AS sqlstate,
	   error->>'errorMessage' AS message, error->'errorDetails'->>'context' LIKE '%system/dynamodb-data-loader, DynamoDB table "Private"' AS names_table
  FROM allma.executions WHERE execution_id = :'e';

------------------------------------------------------------------------------
-- Bound tables: a user's own table stands for a DynamoDB table; its rows
-- are items (NULL is absent), its key columns the key attributes
------------------------------------------------------------------------------
CREATE TABLE ddb_orders (
	customer	text COLLATE "C",
	order_no	integer,
	total		numeric,
	status		text COLLATE "C",
	placed_at	date DEFAULT '2026-01-01',
	details		jsonb,
	PRIMARY KEY (customer, order_no)
);
-- the index of ByStatus, ordered like its queries: index keys, then table keys
CREATE INDEX ddb_orders_status ON ddb_orders (status, total, customer, order_no);
SELECT allma_bind_dynamodb_table('Orders', 'ddb_orders', 'customer', 'order_no',
	'[{"indexName": "ByStatus", "partitionKey": "status", "sortKey": "total"}]');
SELECT table_name, relation, managed, partition_key, partition_key_type, sort_key, sort_key_type, indexes
  FROM allma.dynamodb_tables WHERE table_name = 'Orders';
SELECT ddb('system/dynamodb-batch-writer', '{"tableName": "Orders", "requests": [
	{"PutRequest": {"Item": {"customer": "c1", "order_no": 1, "total": 10.5, "status": "NEW", "details": {"rush": true}}}},
	{"PutRequest": {"Item": {"customer": "c1", "order_no": 2, "total": 20, "status": "NEW"}}},
	{"PutRequest": {"Item": {"customer": "c2", "order_no": 1, "total": 7, "status": "PAID"}}}]}');
-- a put replaces the item: attributes it lacks become NULL (the defaulted column too)
SELECT ddb('system/dynamodb-batch-writer', '{"tableName": "Orders", "requests": [
	{"PutRequest": {"Item": {"customer": "c1", "order_no": 1, "total": 11, "status": "PAID"}}}]}');
SELECT ddb('system/dynamodb-update-item', '{"tableName": "Orders", "key": {"customer": "c1", "order_no": 2},
	"updateExpression": "SET total = total + :d REMOVE status", "expressionAttributeValues": {":d": 5}}');
SELECT ddb('system/dynamodb-update-item', '{"tableName": "Orders", "key": {"customer": "c3", "order_no": 1},
	"updateExpression": "SET total = :t, status = :s, details = :d",
	"expressionAttributeValues": {":t": 1, ":s": "NEW", ":d": {"gift": [1, 2]}}}');
SELECT * FROM ddb_orders ORDER BY customer, order_no;
SELECT ddb('system/dynamodb-data-loader', '{"operation": "QUERY", "tableName": "Orders",
	"keyConditionExpression": "customer = :c AND order_no BETWEEN :a AND :b",
	"expressionAttributeValues": {":c": "c1", ":a": 1, ":b": 2}}');
SELECT ddb('system/dynamodb-data-loader', '{"operation": "QUERY", "tableName": "Orders", "indexName": "ByStatus",
	"keyConditionExpression": "#s = :s AND total > :t", "expressionAttributeNames": {"#s": "status"},
	"expressionAttributeValues": {":s": "PAID", ":t": 0}, "projectionExpression": "customer, order_no, total"}');
SELECT ddb('system/dynamodb-data-loader', '{"operation": "GET", "tableName": "Orders", "key": {"customer": "c3", "order_no": 1}}');
SET enable_seqscan = off;
SET enable_bitmapscan = off;
SET enable_sort = off;
SELECT allma_dynamodb_explain('{"operation": "QUERY", "tableName": "Orders", "indexName": "ByStatus",
	"keyConditionExpression": "#s = :s", "expressionAttributeNames": {"#s": "status"}, "expressionAttributeValues": {":s": "PAID"}}');
SELECT allma_dynamodb_explain('{"operation": "QUERY", "tableName": "Orders",
	"keyConditionExpression": "customer = :c AND order_no > :n", "expressionAttributeValues": {":c": "c1", ":n": 1}}');
RESET enable_seqscan;
RESET enable_bitmapscan;
RESET enable_sort;
-- writes name only the table's columns
SELECT ddb('system/dynamodb-update-item', '{"tableName": "Orders", "key": {"customer": "c1", "order_no": 2},
	"updateExpression": "SET note = :n", "expressionAttributeValues": {":n": "x"}}');
SELECT ddb('system/dynamodb-update-item', '{"tableName": "Orders", "key": {"customer": "c1", "order_no": "two"},
	"updateExpression": "SET total = :n", "expressionAttributeValues": {":n": 1}}');
-- binding needs ownership, the key columns, and a unique index on them
CREATE TABLE ddb_nokey (a text, b int);
SELECT allma_bind_dynamodb_table('NoKey', 'ddb_nokey', 'a');
SELECT allma_bind_dynamodb_table('NoKey', 'ddb_nokey', 'nope');
SELECT allma_bind_dynamodb_table('Orders', 'ddb_orders', 'customer', 'order_no');
CREATE VIEW ddb_view AS SELECT * FROM ddb_orders;
SELECT allma_bind_dynamodb_table('View', 'ddb_view', 'customer', 'order_no');
SET ROLE regress_ddb_stranger;
SELECT allma_bind_dynamodb_table('Stolen', 'ddb_orders', 'customer', 'order_no');
SELECT allma_drop_dynamodb_table('Orders');
RESET ROLE;
-- dropping a binding leaves the table
SELECT allma_drop_dynamodb_table('Orders'), allma_drop_dynamodb_table('Orders');
SELECT count(*) AS orders_kept FROM ddb_orders;

------------------------------------------------------------------------------
-- In flows: QUERY_BATCH writes each result at its outputJsonPath; errors
-- carry DynamoDB's names for onError.catch
------------------------------------------------------------------------------
SELECT allma_create_flow('{"id": "ddb_flow", "startStepInstanceId": "load", "steps": {
	"load": {"stepType": "DATA_LOAD", "moduleIdentifier": "system/dynamodb-data-loader",
		"customConfig": {"operation": "QUERY_BATCH", "queries": [
			{"tableName": "Graph", "keyConditionExpression": "PK = :pk AND begins_with(SK, :sk)",
			 "expressionAttributeValues": {":pk": "PROJECT#{{projectId}}", ":sk": "BOM_PART#"},
			 "projectionExpression": "partName, quantity", "outputJsonPath": "$.steps_output.project_context.bomParts"},
			{"tableName": "Graph", "indexName": "GSI1", "keyConditionExpression": "GSI1PK = :pk AND begins_with(GSI1SK, :sk)",
			 "expressionAttributeValues": {":pk": "USER#{{userId}}", ":sk": "SUPPLIER#"},
			 "projectionExpression": "supplierName", "outputJsonPath": "$.steps_output.project_context.suppliers"}]},
		"outputMappings": {"$.steps_output.loaded": "$.content[1]"},
		"defaultNextStepInstanceId": "claim"},
	"claim": {"stepType": "DATA_SAVE", "moduleIdentifier": "system/dynamodb-update-item",
		"customConfig": {"tableName": "Graph", "key": {"PK": "PROJECT#{{projectId}}", "SK": "METADATA"},
			"updateExpression": "SET #s = :new", "conditionExpression": "#s = :old",
			"expressionAttributeNames": {"#s": "status"}, "expressionAttributeValues": {":new": "PROCESSING", ":old": "OPEN"}},
		"onError": {"catch": [{"errorEquals": ["ConditionalCheckFailedException"], "nextStepInstanceId": "already"}]},
		"defaultNextStepInstanceId": "check"},
	"already": {"stepType": "NO_OP"},
	"check": {"stepType": "DATA_LOAD", "moduleIdentifier": "system/dynamodb-data-loader",
		"customConfig": {"operation": "GET", "tableName": "Graph", "key": {"PK": "PROJECT#{{projectId}}", "SK": "METADATA"}},
		"outputMappings": {"$.status_after_claim": "$.content.status"}}}}');
UPDATE allma_dynamodb."Graph" SET item = item || '{"status": "OPEN"}' WHERE pk = 'PROJECT#1' AND sk = 'METADATA';
SELECT allma_start_flow('ddb_flow', '{"projectId": "1", "userId": "7"}') AS e \gset
SELECT allma_wait(:'e');
-- (the check step sees what the claim wrote, even within one worker pass)
SELECT status, output->'steps_output'->'project_context' AS project_context,
	   output->'steps_output'->'loaded' AS loaded, output->'status_after_claim' AS status_after_claim
  FROM allma.executions WHERE execution_id = :'e';
SELECT item->>'status' AS status FROM allma_dynamodb."Graph" WHERE pk = 'PROJECT#1' AND sk = 'METADATA';
-- the second run finds the project claimed and takes the catch
SELECT allma_start_flow('ddb_flow', '{"projectId": "1", "userId": "7"}') AS e \gset
SELECT allma_wait(:'e');
SELECT status, output->'steps_output' ? 'already' AS caught, output->'errorInfo'->>'errorName' AS error_name,
	   output->'errorInfo'->'errorDetails'->>'sqlstate' AS sqlstate
  FROM allma.executions WHERE execution_id = :'e';
-- a table nobody created: ResourceNotFoundException; a step's failure rolls back its writes
SELECT allma_create_flow('{"id": "ddb_missing", "startStepInstanceId": "save", "steps": {
	"save": {"stepType": "DATA_SAVE", "moduleIdentifier": "system/dynamodb-update-item",
		"customConfig": {"tableName": "OptiroqEntityGraph-{{stage}}", "key": {"PK": "x", "SK": "y"},
			"updateExpression": "SET a = :a", "expressionAttributeValues": {":a": 1}}}}}');
SELECT allma_start_flow('ddb_missing') AS e \gset
SELECT allma_wait(:'e');
SELECT status, error->>'errorName' AS error_name, error->>'errorMessage' AS message
  FROM allma.executions WHERE execution_id = :'e';

------------------------------------------------------------------------------
-- Bindings: a module bound with allma_bind_module keeps its handler (as in
-- 1.0); modules allma does not build in stay bindable
------------------------------------------------------------------------------
CREATE FUNCTION ddb_fake_update(input jsonb) RETURNS jsonb LANGUAGE sql
AS $$ SELECT jsonb_build_object('fake', true, 'table', input->'tableName') $$;
CREATE FUNCTION ddb_fake_sqs(input jsonb) RETURNS jsonb LANGUAGE sql
AS $$ SELECT jsonb_build_object('messages', jsonb_build_array(input->'queueUrl'), 'messageCount', 1) $$;
CREATE FUNCTION ddb_fake_jsonata(input jsonb) RETURNS jsonb LANGUAGE sql
AS $$ SELECT jsonb_build_object('result', input->'expression') $$;
SELECT allma_bind_module('system/dynamodb-update-item', 'ddb_fake_update(jsonb)');
SELECT allma_bind_module('system/sqs-receive-messages', 'ddb_fake_sqs(jsonb)');
SELECT allma_bind_module('system/jsonata-transformer', 'ddb_fake_jsonata(jsonb)');
SELECT allma_create_flow('{"id": "ddb_bound", "startStepInstanceId": "save", "steps": {
	"save": {"stepType": "DATA_SAVE", "moduleIdentifier": "system/dynamodb-update-item",
		"customConfig": {"tableName": "Anything"}, "defaultNextStepInstanceId": "receive"},
	"receive": {"stepType": "DATA_LOAD", "moduleIdentifier": "system/sqs-receive-messages",
		"customConfig": {"queueUrl": "https://sqs.example/q"}, "defaultNextStepInstanceId": "shape"},
	"shape": {"stepType": "DATA_TRANSFORMATION", "moduleIdentifier": "system/jsonata-transformer",
		"customConfig": {"expression": "items.name"}, "defaultNextStepInstanceId": "publish"},
	"publish": {"stepType": "DATA_SAVE", "moduleIdentifier": "system/sns-publisher",
		"customConfig": {"topicArn": "arn:aws:sns:x"}}}}');
SELECT allma_start_flow('ddb_bound') AS e \gset
SELECT allma_wait(:'e');
SELECT status, output->'steps_output'->'save' AS save, output->'steps_output'->'receive' AS receive,
	   output->'steps_output'->'shape' AS shape, error->>'errorMessage' AS error
  FROM allma.executions WHERE execution_id = :'e';
SELECT allma_unbind_module('system/dynamodb-update-item'), allma_unbind_module('system/sqs-receive-messages'),
	   allma_unbind_module('system/jsonata-transformer');

-- clean up
SELECT allma_drop_dynamodb_table(t) FROM unnest(ARRAY['Graph', 'Counters', 'Jobs']) t;
SET ROLE regress_ddb_owner;
SELECT allma_drop_dynamodb_table('Private');
RESET ROLE;
SELECT count(*) AS tables_left FROM allma.dynamodb_tables;
SELECT count(*) AS item_stores_left FROM pg_tables WHERE schemaname = 'allma_dynamodb';
REVOKE CREATE ON SCHEMA allma_dynamodb FROM regress_ddb_owner;
DROP ROLE regress_ddb_owner, regress_ddb_reader, regress_ddb_stranger;
DROP VIEW ddb_view;
DROP TABLE ddb_orders, ddb_nokey;
DROP FUNCTION ddb(text, jsonb), ddb_fake_update(jsonb), ddb_fake_sqs(jsonb), ddb_fake_jsonata(jsonb);
