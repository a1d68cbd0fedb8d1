-- allma_flow_statistics(since, until) and allma.flow_statistics: per flow
-- and step type counts, failures, retries, polls, exact percentiles over a
-- controlled history (rows inserted as the superuser with chosen times),
-- LLM tokens overall and per model, the time window, and what each role
-- may see (its own executions; allma_admin all).
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS allma;
RESET client_min_messages;

CREATE ROLE regress_allma_stats_alice;
CREATE ROLE regress_allma_stats_bob;
CREATE ROLE regress_allma_stats_admin;
GRANT allma_user TO regress_allma_stats_alice, regress_allma_stats_bob;
GRANT allma_admin TO regress_allma_stats_admin;

-- (the history rows below are what API_CALL and LLM_INVOCATION steps record;
-- the definitions only need to exist)
SELECT allma_create_flow($$ {"id": "stats-a", "startStepInstanceId": "call", "steps": {
  "call": {"stepType": "NO_OP", "defaultNextStepInstanceId": "ask"}, "ask": {"stepType": "NO_OP"}}} $$);
SELECT allma_create_flow($$ {"id": "stats-b", "startStepInstanceId": "n",
  "steps": {"n": {"stepType": "NO_OP"}}} $$);

-- alice: two executions of stats-a, bob: one of stats-b (all on 2026-03-01)
INSERT INTO allma.executions (execution_id, flow_id, flow_version, status, input, started_by, started_at, ended_at)
VALUES ('00000000-0000-4000-8000-0000000077a1', 'stats-a', 1, 'COMPLETED', '{}', 'regress_allma_stats_alice',
        '2026-03-01 10:00', '2026-03-01 10:10'),
       ('00000000-0000-4000-8000-0000000077a2', 'stats-a', 1, 'FAILED', '{}', 'regress_allma_stats_alice',
        '2026-03-01 11:00', '2026-03-01 11:10'),
       ('00000000-0000-4000-8000-0000000077b1', 'stats-b', 1, 'COMPLETED', '{}', 'regress_allma_stats_bob',
        '2026-03-01 12:00', '2026-03-01 12:10');

-- API_CALL attempts lasting 10, 20, ..., 100 ms: in a1 five completed on
-- the first attempt; in a2 a retried call (RETRYING then COMPLETED), two
-- more, then a call that fails twice (RETRYING, FAILED); and two polls
-- that are not attempts
INSERT INTO allma.step_executions (execution_id, path_id, seq, step_instance_id, step_type, attempt,
                                   status, started_at, ended_at, details)
SELECT e, 0, seq, 'call', 'API_CALL', attempt, status,
       '2026-03-01 10:00'::timestamptz + seq * interval '1 min' + (e = '00000000-0000-4000-8000-0000000077a2'::uuid)::int * interval '1 hour',
       '2026-03-01 10:00'::timestamptz + seq * interval '1 min' + (e = '00000000-0000-4000-8000-0000000077a2'::uuid)::int * interval '1 hour'
           + ms * interval '1 ms', NULL
  FROM (VALUES ('00000000-0000-4000-8000-0000000077a1'::uuid, 1, 1, 'COMPLETED', 10),
               ('00000000-0000-4000-8000-0000000077a1', 2, 1, 'COMPLETED', 20),
               ('00000000-0000-4000-8000-0000000077a1', 3, 1, 'COMPLETED', 30),
               ('00000000-0000-4000-8000-0000000077a1', 4, 1, 'COMPLETED', 40),
               ('00000000-0000-4000-8000-0000000077a1', 5, 1, 'COMPLETED', 50),
               ('00000000-0000-4000-8000-0000000077a2', 1, 1, 'RETRYING', 60),
               ('00000000-0000-4000-8000-0000000077a2', 2, 2, 'COMPLETED', 70),
               ('00000000-0000-4000-8000-0000000077a2', 3, 1, 'COMPLETED', 80),
               ('00000000-0000-4000-8000-0000000077a2', 4, 1, 'RETRYING', 90),
               ('00000000-0000-4000-8000-0000000077a2', 5, 2, 'FAILED', 100),
               ('00000000-0000-4000-8000-0000000077a2', 6, 1, 'POLLING', 5000),
               ('00000000-0000-4000-8000-0000000077a2', 7, 1, 'POLLING', 7000)) AS v(e, seq, attempt, status, ms);
-- LLM_INVOCATION attempts: token usage as the step records it
-- (details.tokenUsage, details.modelId), on two models; one without usage
INSERT INTO allma.step_executions (execution_id, path_id, seq, step_instance_id, step_type, attempt,
                                   status, started_at, ended_at, details)
VALUES ('00000000-0000-4000-8000-0000000077a1', 0, 10, 'ask', 'LLM_INVOCATION', 1, 'COMPLETED',
        '2026-03-01 10:30', '2026-03-01 10:30:01.5',
        '{"provider": "openai", "modelId": "gpt-4o-mini", "model": "gpt-4o-mini-2024-07-18", "tokenUsage": {"inputTokens": 100, "outputTokens": 20, "totalTokens": 120}}'),
       ('00000000-0000-4000-8000-0000000077a1', 0, 11, 'ask', 'LLM_INVOCATION', 1, 'COMPLETED',
        '2026-03-01 10:31', '2026-03-01 10:31:02.5',
        '{"provider": "openai", "modelId": "gpt-4o-mini", "tokenUsage": {"inputTokens": 300, "outputTokens": 40}}'),
       ('00000000-0000-4000-8000-0000000077a2', 0, 10, 'ask', 'LLM_INVOCATION', 1, 'COMPLETED',
        '2026-03-01 11:30', '2026-03-01 11:30:00.5',
        '{"provider": "anthropic", "modelId": "claude-3-5-haiku", "tokenUsage": {"inputTokens": 7, "outputTokens": 3}}'),
       ('00000000-0000-4000-8000-0000000077a2', 0, 11, 'ask', 'LLM_INVOCATION', 1, 'FAILED',
        '2026-03-01 11:31', '2026-03-01 11:31:03', NULL),
       ('00000000-0000-4000-8000-0000000077b1', 0, 1, 'n', 'NO_OP', 1, 'COMPLETED',
        '2026-03-01 12:00', '2026-03-01 12:00:00.001', NULL);

-- everything (the view), as the superuser
SELECT flow_id, step_type, executions, attempts, completed, failures, retries, polls,
       p50_ms, round(p95_ms::numeric, 6) AS p95_ms, round(p99_ms::numeric, 6) AS p99_ms,
       mean_ms, max_ms, llm_calls, input_tokens, output_tokens, by_model,
       first_started_at, last_started_at
  FROM allma.flow_statistics WHERE flow_id LIKE 'stats-%';
-- the same numbers from percentile_cont over the durations directly
SELECT percentile_cont(ARRAY[0.5, 0.95, 0.99]) WITHIN GROUP (ORDER BY ms) AS check_percentiles
  FROM generate_series(10, 100, 10) AS ms;

-- a window: a1's hour only (since inclusive, until exclusive)
SELECT flow_id, step_type, executions, attempts, failures, retries, p50_ms, input_tokens, output_tokens
  FROM allma_flow_statistics('2026-03-01 10:00', '2026-03-01 11:00') WHERE flow_id LIKE 'stats-%';
SELECT count(*) AS empty_window FROM allma_flow_statistics('2026-03-02', '2026-03-03')
 WHERE flow_id LIKE 'stats-%';
-- until defaults to now()
SELECT count(*) AS since_only FROM allma_flow_statistics('2026-03-01') WHERE flow_id LIKE 'stats-%';

-- each role counts the executions it may see
SET ROLE regress_allma_stats_alice;
SELECT flow_id, step_type, attempts FROM allma.flow_statistics WHERE flow_id LIKE 'stats-%';
RESET ROLE;
SET ROLE regress_allma_stats_bob;
SELECT flow_id, step_type, attempts FROM allma_flow_statistics('-infinity') WHERE flow_id LIKE 'stats-%';
RESET ROLE;
SET ROLE regress_allma_stats_admin;
SELECT flow_id, step_type, attempts FROM allma.flow_statistics WHERE flow_id LIKE 'stats-%';
RESET ROLE;
-- roles outside allma_user may not run it
CREATE ROLE regress_allma_stats_nobody;
SET ROLE regress_allma_stats_nobody;
SELECT count(*) FROM allma_flow_statistics('-infinity');
RESET ROLE;

-- clean up
DELETE FROM allma.step_executions WHERE execution_id IN
	(SELECT execution_id FROM allma.executions WHERE flow_id LIKE 'stats-%');
DELETE FROM allma.executions WHERE flow_id LIKE 'stats-%';
DELETE FROM allma.flows WHERE flow_id LIKE 'stats-%';
DROP ROLE regress_allma_stats_alice, regress_allma_stats_bob, regress_allma_stats_admin,
	regress_allma_stats_nobody;
