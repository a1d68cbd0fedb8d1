-- MCP_CALL and FILE_DOWNLOAD: what SQL sees without a worker: definition
-- checks, MCP connections and their constraints, privileges, the files
-- table's row-level security and the size GUC.  (Runs against the mock:
-- t/013_mcp_file.pl.)
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS allma;
RESET client_min_messages;

-- check() prints "ok" or "SQLSTATE: message" (no LOCATION line)
CREATE FUNCTION pg_temp.check(sql text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
	st text; msg text;
BEGIN
	EXECUTE sql;
	RETURN 'ok';
EXCEPTION WHEN OTHERS THEN
	GET STACKED DIAGNOSTICS st = RETURNED_SQLSTATE, msg = MESSAGE_TEXT;
	RETURN st || ': ' || msg;
END $$;

-- a one-step flow whose step is "step"
CREATE FUNCTION pg_temp.step(step jsonb) RETURNS text LANGUAGE sql AS $$
	SELECT pg_temp.check(format('SELECT allma_validate_flow(%L)',
		jsonb_build_object('id', 'f', 'startStepInstanceId', 's',
						   'steps', jsonb_build_object('s', step))));
$$;

-- MCP_CALL needs mcpConnectionId and toolName
SELECT pg_temp.step('{"stepType": "MCP_CALL", "mcpConnectionId": "c", "toolName": "t"}');
SELECT pg_temp.step('{"stepType": "MCP_CALL", "mcpConnectionId": "c", "toolName": "t",
					  "inputMappings": {"q": "$.q"}, "literals": {"limit": 3},
					  "customConfig": {"timeoutMs": 5000}}');
SELECT pg_temp.step('{"stepType": "MCP_CALL", "toolName": "t"}');
SELECT pg_temp.step('{"stepType": "MCP_CALL", "mcpConnectionId": "c"}');
SELECT pg_temp.step('{"stepType": "MCP_CALL", "mcpConnectionId": "c", "toolName": ""}');
SELECT pg_temp.step('{"stepType": "MCP_CALL", "mcpConnectionId": 7, "toolName": "t"}');
SELECT pg_temp.step('{"stepType": "MCP_CALL", "mcpConnectionId": "c", "toolName": "t",
					  "customConfig": {"timeoutMs": 0}}');

-- FILE_DOWNLOAD needs sourceUrlTemplate
SELECT pg_temp.step('{"stepType": "FILE_DOWNLOAD", "sourceUrlTemplate": "https://example.com/{{name}}",
					  "method": "POST", "headersTemplate": {"Authorization": "$.token"},
					  "customConfig": {"timeoutMs": 60000}}');
SELECT pg_temp.step('{"stepType": "FILE_DOWNLOAD"}');
SELECT pg_temp.step('{"stepType": "FILE_DOWNLOAD", "sourceUrlTemplate": "https://x/{{"}');
SELECT pg_temp.step('{"stepType": "FILE_DOWNLOAD", "sourceUrlTemplate": "https://x", "method": "FETCH"}');
SELECT pg_temp.step('{"stepType": "FILE_DOWNLOAD", "sourceUrlTemplate": "https://x",
					  "customConfig": {"timeoutMs": -1}}');

-- MCP connections: created, replaced, dropped
SELECT allma_create_mcp_connection('docs', 'https://mcp.example.com/mcp');
SELECT allma_create_mcp_connection('docs', 'https://mcp2.example.com/mcp',
	'{"X-Api-Key": "{{secrets.DOCS_KEY}}"}', 'DOCS_TOKEN');
SELECT id, url, headers, bearer_secret FROM allma.mcp_connections ORDER BY id;
SELECT allma_create_mcp_connection('plain', 'http://127.0.0.1:9/mcp', NULL);
SELECT id, headers FROM allma.mcp_connections WHERE id = 'plain';
SELECT allma_drop_mcp_connection('plain'), allma_drop_mcp_connection('plain');

-- what a connection may not be
SELECT pg_temp.check($$SELECT allma_create_mcp_connection('', 'https://x/mcp')$$);
SELECT pg_temp.check($$SELECT allma_create_mcp_connection('x', 'ftp://x/mcp')$$);
SELECT pg_temp.check($$SELECT allma_create_mcp_connection('x', 'https://')$$);
SELECT pg_temp.check($$SELECT allma_create_mcp_connection('x', NULL)$$);
SELECT pg_temp.check($$SELECT allma_create_mcp_connection('x', 'https://x', '[]')$$);
SELECT pg_temp.check($$SELECT allma_create_mcp_connection('x', 'https://x', '{"A": 1}')$$);
SELECT pg_temp.check($$SELECT allma_create_mcp_connection('x', 'https://x', '{"A": "a\r\nB: b"}')$$);
SELECT pg_temp.check($$SELECT allma_create_mcp_connection('x', 'https://x', '{"A B": "a"}')$$);
SELECT count(*) FROM allma.mcp_connections WHERE id = 'x';

-- privileges: connections are admin-only; files are readable, filtered by RLS
CREATE ROLE allma_mcp_test_user;
-- (since 1.1 tables are readable by allma_user members, filtered by RLS)
GRANT allma_user TO allma_mcp_test_user;
SET ROLE allma_mcp_test_user;
SELECT pg_temp.check($$SELECT allma_create_mcp_connection('y', 'https://y')$$);
SELECT pg_temp.check($$SELECT allma_drop_mcp_connection('docs')$$);
SELECT pg_temp.check($$SELECT * FROM allma.mcp_connections$$);
SELECT count(*) FROM allma.files;
RESET ROLE;
DROP ROLE allma_mcp_test_user;
SELECT relname, relrowsecurity FROM pg_class
 WHERE oid IN ('allma.files'::regclass, 'allma.mcp_connections'::regclass) ORDER BY 1;

-- files belong to an execution: no orphan rows
SELECT pg_temp.check($$INSERT INTO allma.files (execution_id, step_id, url, content, content_length)
	VALUES ('00000000-0000-0000-0000-000000000000', 's', 'https://x', '\x00', 1)$$);

-- the size cap of FILE_DOWNLOAD
SELECT name, setting, unit, context FROM pg_settings WHERE name = 'allma.file_download_max_bytes';
SHOW allma.file_download_max_bytes;

SELECT allma_drop_mcp_connection('docs');
