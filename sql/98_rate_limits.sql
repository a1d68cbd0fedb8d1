-- Rate limits (issue #15): allma_set_rate_limit / allma_drop_rate_limit
-- over allma.rate_limits, their validation and privileges, the step field
-- rateLimitKey, and steps parked by the gate as the status views show
-- them.  The parked steps name 127.0.0.1:9 (discard: nothing listens) and
-- a limit of one request a minute, whose first slot is a minute after the
-- workers read it (a limit read anew starts as if a request had just
-- gone), so every step parks and none is sent while the test looks.
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS allma;
RESET client_min_messages;

CREATE FUNCTION pg_temp.wait_until(condition text, timeout interval DEFAULT '120 s') RETURNS boolean
LANGUAGE plpgsql AS $$
DECLARE
	ok boolean;
	deadline timestamptz := clock_timestamp() + timeout;
BEGIN
	LOOP
		EXECUTE condition INTO ok;
		IF ok THEN RETURN true; END IF;
		IF clock_timestamp() > deadline THEN RETURN false; END IF;
		PERFORM pg_sleep(0.02);
	END LOOP;
END $$;

-- the functions: set creates and replaces, drop says whether there was one
SELECT key, requests_per_minute, tokens_per_minute, max_concurrent, updated_by = current_user AS by_me
  FROM allma_set_rate_limit('openai', 6000);
SELECT key, requests_per_minute, tokens_per_minute, max_concurrent
  FROM allma_set_rate_limit('openai', requests_per_minute => 600, tokens_per_minute => 90000);
SELECT key, requests_per_minute, tokens_per_minute, max_concurrent
  FROM allma_set_rate_limit('api.example.com', max_concurrent => 4);
SELECT key, requests_per_minute, tokens_per_minute, max_concurrent FROM allma.rate_limits ORDER BY key;
SELECT allma_drop_rate_limit('api.example.com') AS dropped, allma_drop_rate_limit('api.example.com') AS again;

-- validation: a key, at least one limit, positive limits
SELECT allma_set_rate_limit('', 10);
SELECT allma_set_rate_limit(NULL, 10);
SELECT allma_set_rate_limit(repeat('k', 201), 10);
SELECT allma_set_rate_limit(E'a\nb', 10);
SELECT allma_set_rate_limit('openai');
SELECT allma_set_rate_limit('openai', 0);
SELECT allma_set_rate_limit('openai', 10, -5);
-- the table checks the same when admins write it directly
\set VERBOSITY terse
INSERT INTO allma.rate_limits (key) VALUES ('none');
INSERT INTO allma.rate_limits (key, max_concurrent) VALUES ('zero', 0);
\set VERBOSITY default

-- privileges: allma_admin sets and drops (and writes the table), allma_user reads
CREATE ROLE regress_allma_rl_user;
CREATE ROLE regress_allma_rl_admin;
GRANT allma_user TO regress_allma_rl_user;
GRANT allma_admin TO regress_allma_rl_admin;
SET ROLE regress_allma_rl_user;
SELECT key FROM allma.rate_limits ORDER BY key;
SELECT allma_set_rate_limit('mine', 10);
SELECT allma_drop_rate_limit('openai');
INSERT INTO allma.rate_limits (key, requests_per_minute) VALUES ('mine', 10);
UPDATE allma.rate_limits SET requests_per_minute = 1;
RESET ROLE;
SET ROLE regress_allma_rl_admin;
SELECT key, requests_per_minute FROM allma_set_rate_limit('admin-key', 10);
UPDATE allma.rate_limits SET requests_per_minute = 20 WHERE key = 'admin-key';
SELECT allma_drop_rate_limit('admin-key');
RESET ROLE;
SELECT has_function_privilege('public', 'allma_set_rate_limit(text, integer, integer, integer)', 'EXECUTE') AS public_set,
       has_function_privilege('allma_user', 'allma_drop_rate_limit(text)', 'EXECUTE') AS user_drop,
       has_function_privilege('allma_admin', 'allma_set_rate_limit(text, integer, integer, integer)', 'EXECUTE') AS admin_set;

-- rateLimitKey: a template string, checked when the flow is defined
SELECT allma_validate_flow($$ {"id": "rl-bad1", "startStepInstanceId": "a", "steps": {
  "a": {"stepType": "API_CALL", "rateLimitKey": 42,
        "apiUrlTemplate": {"template": "http://127.0.0.1:9/x"}, "apiHttpMethod": "GET"}}} $$);
SELECT allma_validate_flow($$ {"id": "rl-bad2", "startStepInstanceId": "a", "steps": {
  "a": {"stepType": "API_CALL", "rateLimitKey": "",
        "apiUrlTemplate": {"template": "http://127.0.0.1:9/x"}, "apiHttpMethod": "GET"}}} $$);
SELECT allma_validate_flow($$ {"id": "rl-bad3", "startStepInstanceId": "a", "steps": {
  "a": {"stepType": "API_CALL", "rateLimitKey": "t:{{ tenant",
        "apiUrlTemplate": {"template": "http://127.0.0.1:9/x"}, "apiHttpMethod": "GET"}}} $$);
SELECT allma_create_flow($$ {"id": "rl-host", "startStepInstanceId": "a", "steps": {
  "a": {"stepType": "API_CALL", "apiUrlTemplate": {"template": "http://127.0.0.1:9/x"}, "apiHttpMethod": "GET"}}} $$);
SELECT allma_create_flow($$ {"id": "rl-tenant", "startStepInstanceId": "a", "steps": {
  "a": {"stepType": "API_CALL", "rateLimitKey": "rl-test:{{tenant}}",
        "apiUrlTemplate": {"template": "http://127.0.0.1:9/x"}, "apiHttpMethod": "GET"}}} $$);

-- parked steps: by host, and by a rateLimitKey under a group's row
SELECT key FROM allma_set_rate_limit('127.0.0.1:9', 1);
SELECT key FROM allma_set_rate_limit('rl-test', 1);
-- the workers read the limits within a second: allma_rate_limit_status() shows them
SELECT pg_temp.wait_until($$ SELECT count(*) = 3 FROM allma_rate_limit_status() $$) AS loaded;
SELECT key, requests_per_minute, tokens_per_minute, max_concurrent, in_flight,
       next_request_at > now() + interval '30 s' AS first_slot_later,
       next_tokens_at IS NOT NULL AS token_budget, paused_until
  FROM allma_rate_limit_status() ORDER BY key;
SELECT count(*) AS started FROM (
  SELECT allma_start_flow('rl-host', '{}', format('{"executionId": "00000000-0000-4000-8000-0000000098a%s"}', i)::jsonb)
    FROM generate_series(1, 3) i) s;
SELECT count(*) AS started FROM (
  SELECT allma_start_flow('rl-tenant', format('{"tenant": "t%s"}', i)::jsonb,
                          format('{"executionId": "00000000-0000-4000-8000-0000000098b%s"}', i)::jsonb)
    FROM generate_series(1, 2) i) s;
SELECT pg_temp.wait_until($$ SELECT count(*) = 5 FROM allma.live_path_waits
                             WHERE waiting_on = 'rate_limit'
                               AND execution_id::text LIKE '00000000-0000-4000-8000-0000000098%' $$) AS parked;
SELECT execution_id, status, waiting_on, rate_limit_key
  FROM allma.live_path_waits
 WHERE execution_id::text LIKE '00000000-0000-4000-8000-0000000098%' ORDER BY execution_id;
SELECT p.request->'rateLimit'->>'group' AS "group", p.request->'rateLimit'->>'subkey' AS subkey,
       p.request->'rateLimit' ? 'since' AS has_since, p.status
  FROM allma.execution_paths p
 WHERE p.execution_id::text LIKE '00000000-0000-4000-8000-0000000098%' ORDER BY p.execution_id;
SELECT execution_id, waiting_on, waits->0->>'waitingOn' AS w, waits->0->>'rateLimitKey' AS key
  FROM allma.execution_progress
 WHERE execution_id::text LIKE '00000000-0000-4000-8000-0000000098%' ORDER BY execution_id;
SELECT waiting_rate_limits FROM allma.worker_status LIMIT 1;
SELECT key, parked FROM allma_rate_limit_status() ORDER BY key;
SET ROLE regress_allma_rl_user;
SELECT count(*) > 0 AS user_reads_status FROM allma_rate_limit_status();
RESET ROLE;
SELECT count(*) AS sent FROM allma.step_executions
 WHERE execution_id::text LIKE '00000000-0000-4000-8000-0000000098%';

-- dropping a limit lets its parked steps run (here: to the closed port)
SELECT allma_drop_rate_limit('rl-test');
SELECT pg_temp.wait_until($$ SELECT count(*) = 0 FROM allma.execution_paths
                             WHERE execution_id::text LIKE '00000000-0000-4000-8000-0000000098b%'
                               AND status = 'WAITING' $$) AS released;
SELECT allma_cancel_execution(('00000000-0000-4000-8000-0000000098a' || i)::uuid) IS NOT NULL AS cancelled
  FROM generate_series(1, 3) i;
SELECT allma_drop_rate_limit('127.0.0.1:9'), allma_drop_rate_limit('openai');
DROP ROLE regress_allma_rl_user, regress_allma_rl_admin;
