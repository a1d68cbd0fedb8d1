-- HTTP client checks that need no server: destinations refused before any
-- connection is made, URL / method / header validation, option checks and
-- privileges.  (t/010_http_client.pl covers real requests.)
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS allma;
RESET client_min_messages;

-- errors as "SQLSTATE: message (detail)" (VERBOSITY verbose would print
-- C source line numbers)
CREATE FUNCTION http_try(q text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
	st text;
	msg text;
	det text;
BEGIN
	EXECUTE q;
	RETURN 'no error';
EXCEPTION WHEN OTHERS THEN
	GET STACKED DIAGNOSTICS st = RETURNED_SQLSTATE, msg = MESSAGE_TEXT, det = PG_EXCEPTION_DETAIL;
	RETURN st || ': ' || msg || coalesce(nullif(' (' || det || ')', ' ()'), '');
END $$;

-- only the fields that do not depend on timing
CREATE FUNCTION http_outcome(r jsonb) RETURNS jsonb LANGUAGE sql AS
$$ SELECT jsonb_build_object('status', r->'status', 'body', r->'body', 'error', r->'error') $$;

-- Without an allow-list, non-public destinations are refused before connecting.
SELECT u, http_outcome(allma_http_request('GET', u))
  FROM unnest(ARRAY[
	'http://127.0.0.1:9/x',
	'http://127.1.2.3/',
	'http://[::1]:9/x',
	'http://10.1.2.3/',
	'http://172.16.0.1/',
	'http://172.31.255.255/',
	'http://192.168.1.1/',
	'http://169.254.169.254/latest/meta-data/',
	'http://100.100.100.200/',
	'http://0.0.0.0:9/',
	'http://224.0.0.1/',
	'http://[fc00::1]/',
	'http://[fd00:ec2::254]/',
	'http://[fe80::1]/',
	'http://[::ffff:127.0.0.1]/',
	'http://[::ffff:10.0.0.1]/',
	'http://[64:ff9b::a9fe:a9fe]/',
	'http://[2002:c0a8:0101::1]/',
	'https://127.0.0.1:9/'
  ]) AS u;

-- a name that resolves to loopback is refused too (its address is checked)
SELECT http_outcome(allma_http_request('GET', 'http://localhost:9/'))->'error'->'refused' AS refused;

-- an allow-list entry lets it through: the connection is attempted (and
-- fails, nothing listens on port 1), it is not refused
SELECT r->'error'->>'code' AS curl_code, r->'error'->'refused' AS refused
  FROM allma_http_request('GET', 'http://127.0.0.1:1/', options => '{"allow": "127.0.0.1"}') r;
SELECT r->'error'->'refused' AS refused
  FROM allma_http_request('GET', 'http://127.0.0.1:1/', options => '{"allow": "10.0.0.0/8, 127.0.0.0/30"}') r;
SELECT r->'error'->'refused' AS refused
  FROM allma_http_request('GET', 'http://127.0.0.1:1/', options => '{"allow": "127.0.0.0/31"}') r;
-- a range that does not cover the address does not help
SELECT http_outcome(allma_http_request('GET', 'http://127.0.0.9:1/', options => '{"allow": "127.0.0.0/29, ::1"}'));
-- IPv4 entries also cover IPv4-mapped IPv6 addresses
SELECT r->'error'->'refused' AS refused
  FROM allma_http_request('GET', 'http://[::ffff:127.0.0.1]:1/', options => '{"allow": "127.0.0.1"}') r;
-- host name entries match the URL's host
SELECT r->'error'->'refused' AS refused
  FROM allma_http_request('GET', 'http://localhost:1/', options => '{"allow": "LocalHost"}') r;
SELECT r->'error'->'refused' AS refused
  FROM allma_http_request('GET', 'http://localhost:1/', options => '{"allow": "*.localhost"}') r;

-- invalid allow-lists
SELECT http_try($q$ SELECT allma_http_request('GET', 'http://127.0.0.1:1/', options => '{"allow": "10.0.0.0/33"}') $q$);
SELECT http_try($q$ SELECT allma_http_request('GET', 'http://127.0.0.1:1/', options => '{"allow": "::1/129"}') $q$);
SELECT http_try($q$ SELECT allma_http_request('GET', 'http://127.0.0.1:1/', options => '{"allow": "10.0.0.0/"}') $q$);
SELECT http_try($q$ SELECT allma_http_request('GET', 'http://127.0.0.1:1/', options => '{"allow": "bad host!"}') $q$);
SELECT http_try($q$ SELECT allma_http_request('GET', 'http://127.0.0.1:1/', options => '{"allow": 5}') $q$);

-- bad URLs and schemes
SELECT http_try($q$ SELECT allma_http_request('GET', 'not a url') $q$);
SELECT http_try($q$ SELECT allma_http_request('GET', 'ftp://example.com/x') $q$);
SELECT http_try($q$ SELECT allma_http_request('GET', 'file:///etc/passwd') $q$);
SELECT http_try($q$ SELECT allma_http_request('GET', 'gopher://127.0.0.1:70/') $q$);
SELECT http_try($q$ SELECT allma_http_request('GET', '') $q$);
SELECT http_try($q$ SELECT allma_http_request('GET', 'http://') $q$);
SELECT http_try($q$ SELECT allma_http_request('GET', NULL) $q$);
SELECT http_try($q$ SELECT allma_http_request('GET', 'http://exa mple.com/') $q$);

-- bad methods and headers (no header injection)
SELECT http_try($q$ SELECT allma_http_request('GE T', 'http://127.0.0.1:9/') $q$);
SELECT http_try($q$ SELECT allma_http_request('', 'http://127.0.0.1:9/') $q$);
SELECT http_try($q$ SELECT allma_http_request('GET', 'http://127.0.0.1:9/', '{"X-A": "1\r\nX-Injected: 1"}') $q$);
SELECT http_try($q$ SELECT allma_http_request('GET', 'http://127.0.0.1:9/', '{"Bad Name": "1"}') $q$);
SELECT http_try($q$ SELECT allma_http_request('GET', 'http://127.0.0.1:9/', '{"X-A": null}') $q$);
SELECT http_try($q$ SELECT allma_http_request('GET', 'http://127.0.0.1:9/', '["X-A"]') $q$);
SELECT http_try($q$ SELECT allma_http_request('GET', 'http://127.0.0.1:9/', options => '{"idempotencyKey": "a\nb"}') $q$);

-- options
SELECT http_try($q$ SELECT allma_http_request('GET', 'http://127.0.0.1:9/', options => '{"timeout": 5}') $q$);
SELECT http_try($q$ SELECT allma_http_request('GET', 'http://127.0.0.1:9/', options => '{"timeoutMs": 0}') $q$);
SELECT http_try($q$ SELECT allma_http_request('GET', 'http://127.0.0.1:9/', options => '{"timeoutMs": 1.5}') $q$);
SELECT http_try($q$ SELECT allma_http_request('GET', 'http://127.0.0.1:9/', options => '{"maxBytes": "big"}') $q$);
SELECT http_try($q$ SELECT allma_http_request('GET', 'http://127.0.0.1:9/', options => '[]') $q$);

-- batch: results in request order; validation errors name the request
SELECT i, r->'error'->>'message' AS message
  FROM jsonb_array_elements(allma_http_batch('[
	{"url": "http://10.0.0.1/"},
	{"url": "http://127.0.0.1:9/", "method": "POST", "body": "x"},
	{"url": "http://[::1]/", "options": {"timeoutMs": 100}}
  ]')) WITH ORDINALITY AS t(r, i);
SELECT allma_http_batch('[]');
SELECT http_try($q$ SELECT allma_http_batch('{}') $q$);
SELECT http_try($q$ SELECT allma_http_batch('[{"url": "http://127.0.0.1:9/"}, {"method": "GET"}]') $q$);
SELECT http_try($q$ SELECT allma_http_batch('[{"url": "http://127.0.0.1:9/", "timeoutMs": 5}]') $q$);
SELECT http_try($q$ SELECT allma_http_batch('[{"url": "http://127.0.0.1:9/", "options": {"allow": "127.0.0.1"}}]') $q$);
SELECT http_try($q$ SELECT allma_http_batch('[{"url": "ftp://127.0.0.1:9/"}]') $q$);
SELECT http_try($q$ SELECT allma_http_batch('[]', '{"maxInFlight": 0}') $q$);

-- privileges: not granted to PUBLIC; "allow" needs a superuser
CREATE ROLE regress_http_user;
SET ROLE regress_http_user;
SELECT http_try($q$ SELECT allma_http_request('GET', 'http://127.0.0.1:9/') $q$);
RESET ROLE;
GRANT EXECUTE ON FUNCTION allma_http_request(text, text, jsonb, text, jsonb),
	allma_http_batch(jsonb, jsonb) TO regress_http_user;
SET ROLE regress_http_user;
SELECT http_outcome(allma_http_request('GET', 'http://127.0.0.1:9/'));
SELECT http_try($q$ SELECT allma_http_request('GET', 'http://127.0.0.1:9/', options => '{"allow": "127.0.0.1"}') $q$);
SELECT http_try($q$ SELECT allma_http_batch('[{"url": "http://127.0.0.1:9/"}]', '{"allow": "127.0.0.1"}') $q$);
RESET ROLE;
REVOKE EXECUTE ON FUNCTION allma_http_request(text, text, jsonb, text, jsonb),
	allma_http_batch(jsonb, jsonb) FROM regress_http_user;
DROP ROLE regress_http_user;
DROP FUNCTION http_outcome(jsonb);
DROP FUNCTION http_try(text);

-- allma.smtp_url (EMAIL steps) takes only smtp:// and smtps:// URLs
\set VERBOSITY sqlstate
ALTER SYSTEM SET allma.smtp_url = 'http://mail.example.test';
\set VERBOSITY default
ALTER SYSTEM SET allma.smtp_url = 'ftp://mail.example.test';
ALTER SYSTEM SET allma.smtp_url = 'smtp://mail.example.test:25';
ALTER SYSTEM RESET allma.smtp_url;
