-- The system/s3-* modules over buckets kept in PostgreSQL: saving, loading
-- in every output format, listing, privileges, limits, and
-- allma_object_read for S3 pointers and FILE_DOWNLOAD's file pointers.
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS allma;
RESET client_min_messages;

-- run a module; an error shows as "SQLSTATE: message" plus its detail
CREATE FUNCTION s3(module text, input jsonb) RETURNS text
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
-- Buckets are tables of schema allma_s3, owned by their creator
------------------------------------------------------------------------------
SELECT allma_create_bucket('reports');
\d allma_s3.reports
SELECT allma_create_bucket('reports');
SELECT allma_create_bucket('Bad_Name');
SELECT allma_create_bucket('ab');
SELECT allma_create_bucket('-dash');
SELECT allma_drop_bucket('never-created');

------------------------------------------------------------------------------
-- system/s3-data-saver -> {s3Uri, bucket, key, eTag}
------------------------------------------------------------------------------
-- objects and arrays are saved as JSON indented by two spaces (JSON.stringify(v, null, 2))
SELECT s3('system/s3-data-saver', '{"destinationS3UriTemplate": "s3://reports/2026/q1.json",
	"contentToSave": {"total": 12.50, "rows": [{"id": 1}, []], "empty": {}, "note": "a \"quoted\" é"}}');
SELECT convert_from(content, 'UTF8') AS saved, content_type, metadata, size FROM allma_s3.reports WHERE key = '2026/q1.json';
-- text types keep strings as they are (UTF-8)
SELECT s3('system/s3-data-saver', '{"destinationS3UriTemplate": "s3://reports/notes/hello.txt", "contentType": "text/plain; charset=utf-8",
	"contentToSave": "héllo\nworld", "metadataTemplate": {"source": "flow", "run": "7"}}');
-- a string with a binary type is base64
SELECT s3('system/s3-data-saver', '{"destinationS3UriTemplate": "s3://reports/img/pixel.png", "contentType": "image/png",
	"contentToSave": "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg"}');
SELECT s3('system/s3-data-saver', '{"destinationS3UriTemplate": "s3://reports/data.xlsx",
	"contentType": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet", "contentToSave": "UEsDBA=="}');
SELECT s3('system/s3-data-saver', '{"destinationS3UriTemplate": "s3://reports/feed.xml", "contentType": "application/atom+xml",
	"contentToSave": "<feed/>"}');
-- numbers and booleans are JSON too; saving again replaces the object
SELECT s3('system/s3-data-saver', '{"destinationS3UriTemplate": "s3://reports/n", "contentToSave": 42}');
SELECT s3('system/s3-data-saver', '{"destinationS3UriTemplate": "s3://reports/n", "contentToSave": true}');
SELECT key, encode(content, 'escape') AS content, content_type, metadata, etag = '"' || md5(content) || '"' AS md5_etag,
	   size, written_by
  FROM allma_s3.reports ORDER BY key;
-- bad saves
SELECT s3('system/s3-data-saver', '{"destinationS3UriTemplate": "s3://reports/x"}');
SELECT s3('system/s3-data-saver', '{"destinationS3UriTemplate": "https://reports/x", "contentToSave": 1}');
SELECT s3('system/s3-data-saver', '{"destinationS3UriTemplate": "s3://reports", "contentToSave": 1}');
SELECT s3('system/s3-data-saver', '{"destinationS3UriTemplate": "s3://reports/", "contentToSave": 1}');
SELECT s3('system/s3-data-saver', '{"destinationS3UriTemplate": "s3://nobucket/x", "contentToSave": 1}');
SELECT s3('system/s3-data-saver', '{"destinationS3UriTemplate": "s3://reports/x", "contentType": "image/png", "contentToSave": "not base64!"}');
SELECT s3('system/s3-data-saver', '{"destinationS3UriTemplate": "s3://reports/x", "contentToSave": 1, "metadataTemplate": {"n": 1}}');
SELECT s3('system/s3-data-saver', '{"destinationS3UriTemplate": "s3://reports/x", "contentToSave": 1, "metadataTemplate": "m"}');
SELECT s3('system/s3-data-saver', jsonb_build_object('destinationS3UriTemplate', 's3://reports/' || repeat('k', 1025), 'contentToSave', 1));
SELECT s3('system/s3-data-saver', jsonb_build_object('destinationS3UriTemplate', 's3://reports/x', 'contentToSave', 1,
	'metadataTemplate', jsonb_build_object('big', repeat('m', 3000))));
-- objects are at most allma.object_max_bytes (a superuser setting)
SET allma.object_max_bytes = 1024;
SELECT s3('system/s3-data-saver', jsonb_build_object('destinationS3UriTemplate', 's3://reports/big.txt',
	'contentType', 'text/plain', 'contentToSave', repeat('x', 1025)));
SELECT s3('system/s3-data-loader', '{"sourceS3Uri": "s3://reports/2026/q1.json"}') LIKE '{%' AS small_reads;
RESET allma.object_max_bytes;

------------------------------------------------------------------------------
-- system/s3-data-loader -> {content, _meta}
------------------------------------------------------------------------------
SELECT s3('system/s3-data-loader', '{"sourceS3Uri": "s3://reports/2026/q1.json", "outputFormat": "JSON"}');
SELECT s3('system/s3-data-loader', '{"sourceS3Uri": "s3://reports/notes/hello.txt"}');
SELECT s3('system/s3-data-loader', '{"sourceS3Uri": "s3://reports/notes/hello.txt", "outputFormat": "TEXT", "encoding": "latin1"}');
SELECT s3('system/s3-data-loader', '{"sourceS3Uri": "s3://reports/notes/hello.txt", "encoding": "ascii"}')::jsonb->'content';
SELECT s3('system/s3-data-loader', '{"sourceS3Uri": "s3://reports/notes/hello.txt", "encoding": "hex"}')::jsonb->'content';
SELECT s3('system/s3-data-loader', '{"sourceS3Uri": "s3://reports/notes/hello.txt", "encoding": "base64"}')::jsonb->'content';
SELECT s3('system/s3-data-loader', '{"sourceS3Uri": "s3://reports/img/pixel.png", "outputFormat": "RAW_BUFFER"}');
SELECT s3('system/s3-data-loader', '{"sourceS3Uri": "s3://reports/data.xlsx", "outputFormat": "TEXT"}')::jsonb->'content' AS control_characters;
-- missing objects: FAIL (NoSuchKey) or IGNORE
SELECT s3('system/s3-data-loader', '{"sourceS3Uri": "s3://reports/none.json"}');
SELECT s3('system/s3-data-loader', '{"sourceS3Uri": "s3://reports/none.json", "onMissing": "IGNORE", "region": "eu-west-1"}');
SELECT s3('system/s3-data-loader', '{"sourceS3Uri": "s3://nobucket/none.json", "onMissing": "IGNORE"}');
-- bad loads
SELECT s3('system/s3-data-loader', '{"sourceS3Uri": "s3://reports/notes/hello.txt", "outputFormat": "JSON"}');
SELECT s3('system/s3-data-loader', '{"sourceS3Uri": "s3://reports/img/pixel.png"}');
SELECT s3('system/s3-data-loader', '{"sourceS3Uri": "s3://reports/n", "outputFormat": "XML"}');
SELECT s3('system/s3-data-loader', '{"sourceS3Uri": "s3://reports/n", "onMissing": "SKIP"}');
SELECT s3('system/s3-data-loader', '{"sourceS3Uri": "s3://reports/n", "encoding": "utf-16"}');
SELECT s3('system/s3-data-loader', '{"sourceS3Uri": 5}');
SELECT s3('system/s3-data-loader', '{}');

------------------------------------------------------------------------------
-- system/s3-list-files -> {files, fileCount}
------------------------------------------------------------------------------
SELECT s3('system/s3-data-saver', '{"destinationS3UriTemplate": "s3://reports/notes/", "contentType": "text/plain", "contentToSave": ""}');
SELECT jsonb_pretty(r #- '{files,0,lastModified}' #- '{files,1,lastModified}') AS listing,
	   (r->'files'->0->>'lastModified') ~ '^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$' AS iso_time
  FROM (SELECT allma_run_module('system/s3-list-files', '{"bucket": "reports", "prefix": "notes/"}') AS r) s;
SELECT (SELECT jsonb_agg(f->'key') FROM jsonb_array_elements(r->'files') f) AS keys, r->'fileCount' AS n
  FROM (SELECT allma_run_module('system/s3-list-files', '{"bucket": "reports"}') AS r) s;
SELECT (SELECT jsonb_agg(f->'key') FROM jsonb_array_elements(r->'files') f) AS keys, r->'fileCount' AS n
  FROM (SELECT allma_run_module('system/s3-list-files', '{"bucket": "reports", "maxKeys": 2}') AS r) s;
SELECT s3('system/s3-list-files', '{"bucket": "reports", "prefix": "zzz"}');
SELECT s3('system/s3-list-files', '{"bucket": "reports", "maxKeys": 0}');
SELECT s3('system/s3-list-files', '{"bucket": "nobucket"}');
SELECT s3('system/s3-list-files', '{"prefix": "x"}');

------------------------------------------------------------------------------
-- Privileges: buckets are shared with grants on their tables
------------------------------------------------------------------------------
CREATE ROLE regress_s3_owner;
CREATE ROLE regress_s3_reader;
CREATE ROLE regress_s3_stranger;
GRANT allma_user TO regress_s3_owner, regress_s3_reader, regress_s3_stranger;
SET ROLE regress_s3_owner;
SELECT allma_create_bucket('team-docs');
RESET ROLE;
GRANT CREATE ON SCHEMA allma_s3 TO regress_s3_owner;
SET ROLE regress_s3_owner;
SELECT allma_create_bucket('team-docs');
SELECT s3('system/s3-data-saver', '{"destinationS3UriTemplate": "s3://team-docs/plan.txt", "contentType": "text/plain", "contentToSave": "v1"}');
GRANT SELECT ON allma_s3."team-docs" TO regress_s3_reader;
RESET ROLE;
SET ROLE regress_s3_reader;
SELECT s3('system/s3-data-loader', '{"sourceS3Uri": "s3://team-docs/plan.txt"}')::jsonb->'content' AS reader_reads;
SELECT s3('system/s3-data-saver', '{"destinationS3UriTemplate": "s3://team-docs/plan.txt", "contentType": "text/plain", "contentToSave": "v2"}');
SELECT allma_drop_bucket('team-docs');
RESET ROLE;
SET ROLE regress_s3_stranger;
SELECT s3('system/s3-data-loader', '{"sourceS3Uri": "s3://team-docs/plan.txt"}');
SELECT s3('system/s3-list-files', '{"bucket": "team-docs"}');
SELECT allma_object_read('"s3://team-docs/plan.txt"');
RESET ROLE;
SELECT written_by FROM allma_s3."team-docs";

------------------------------------------------------------------------------
-- allma_object_read: S3 pointers in every form, and FILE_DOWNLOAD's files
------------------------------------------------------------------------------
SELECT convert_from(allma_object_read('"s3://reports/notes/hello.txt"'), 'UTF8') AS uri,
	   convert_from(allma_object_read('{"bucket": "reports", "key": "notes/hello.txt"}'), 'UTF8') AS pointer,
	   convert_from(allma_object_read('{"_s3_output_pointer": {"bucket": "reports", "key": "notes/hello.txt"}}'), 'UTF8') AS wrapper,
	   convert_from(allma_object_read('{"s3Pointer": "s3://reports/notes/hello.txt"}'), 'UTF8') AS attachment;
SELECT allma_object_read('"s3://reports/missing"');
SELECT allma_object_read('{"key": "x"}');
SELECT allma_object_read('"https://example.com/x"');
-- a file stored by FILE_DOWNLOAD is read by its fileId, within what the caller may see
SELECT allma_create_flow('{"id": "s3_noop", "startStepInstanceId": "a", "steps": {"a": {"stepType": "NO_OP"}}}');
SELECT allma_grant_flow('s3_noop', 'regress_s3_reader', 'START');
SET ROLE regress_s3_reader;
SELECT allma_start_flow('s3_noop') AS e \gset
RESET ROLE;
SELECT allma_wait(:'e');
INSERT INTO allma.files (execution_id, file_id, step_id, url, content_type, content, content_length)
VALUES (:'e', 'b4a4f5c2-0d2b-4c53-9d1e-2f6ac1f0e001', 'download', 'http://example.test/f', 'text/csv', convert_to(E'a,b\n1,2', 'UTF8'), 7);
SELECT encode(allma_object_read('{"filePointer": {"fileId": "b4a4f5c2-0d2b-4c53-9d1e-2f6ac1f0e001"}}'), 'escape') AS as_superuser;
SET ROLE regress_s3_reader;
SELECT encode(allma_object_read('{"fileId": "b4a4f5c2-0d2b-4c53-9d1e-2f6ac1f0e001"}'), 'escape') AS as_starter;
RESET ROLE;
SET ROLE regress_s3_stranger;
SELECT allma_object_read('{"fileId": "b4a4f5c2-0d2b-4c53-9d1e-2f6ac1f0e001"}');
RESET ROLE;

------------------------------------------------------------------------------
-- In a flow: save then load through the workers, as the starter
------------------------------------------------------------------------------
SELECT allma_create_flow('{"id": "s3_roundtrip", "startStepInstanceId": "save", "steps": {
	"save": {"stepType": "DATA_SAVE", "moduleIdentifier": "system/s3-data-saver",
		"customConfig": {"destinationS3UriTemplate": "s3://reports/runs/{{runId}}.json"},
		"inputMappings": {"contentToSave": "$.payload"},
		"outputMappings": {"$.saved": "$"}, "defaultNextStepInstanceId": "load"},
	"load": {"stepType": "DATA_LOAD", "moduleIdentifier": "system/s3-data-loader",
		"customConfig": {"sourceS3Uri": "{{saved.s3Uri}}", "outputFormat": "JSON"},
		"outputMappings": {"$.loaded": "$.content", "$.found": "$._meta.found"}, "defaultNextStepInstanceId": "missing"},
	"missing": {"stepType": "DATA_LOAD", "moduleIdentifier": "system/s3-data-loader",
		"customConfig": {"sourceS3Uri": "s3://reports/runs/none.json"},
		"onError": {"catch": [{"errorEquals": ["NoSuchKey"], "nextStepInstanceId": "caught"}]}},
	"caught": {"stepType": "NO_OP"}}}');
SELECT allma_grant_flow('s3_roundtrip', 'regress_s3_stranger', 'START');
SELECT allma_start_flow('s3_roundtrip', '{"runId": "r1", "payload": {"ok": [1, 2]}}') AS e \gset
SELECT allma_wait(:'e');
SELECT status, output->'saved'->>'s3Uri' AS uri, output->'loaded' AS loaded, output->'found' AS found,
	   output->'errorInfo'->>'errorName' AS caught_error
  FROM allma.executions WHERE execution_id = :'e';
-- the starter needs the bucket's privileges
SET ROLE regress_s3_stranger;
SELECT allma_start_flow('s3_roundtrip', '{"runId": "r2", "payload": 1}') AS e \gset
RESET ROLE;
SELECT allma_wait(:'e');
SELECT status, error->>'errorName' AS error_name, error->>'errorMessage' AS message
  FROM allma.executions WHERE execution_id = :'e';

-- clean up
SELECT allma_drop_bucket('reports');
SELECT allma_drop_bucket('reports', force => true);
SET ROLE regress_s3_owner;
SELECT allma_drop_bucket('team-docs', true);
RESET ROLE;
REVOKE CREATE ON SCHEMA allma_s3 FROM regress_s3_owner;
DELETE FROM allma.files WHERE file_id = 'b4a4f5c2-0d2b-4c53-9d1e-2f6ac1f0e001';
DROP ROLE regress_s3_owner, regress_s3_reader, regress_s3_stranger;
DROP FUNCTION s3(text, jsonb);
