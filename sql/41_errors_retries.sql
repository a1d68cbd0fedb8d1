-- Errors, retries, catch rules, fallback, continueOnFailure, content retries.
-- The test server runs with allma.timer_scale = 0.01: 1 s of backoff is 10 ms.
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS allma;
RESET client_min_messages;

CREATE FUNCTION pg_temp.attempts(e uuid) RETURNS text LANGUAGE sql AS $$
  SELECT string_agg(step_instance_id || '#' || attempt || ':' || status
                    || coalesce('(' || (error->>'errorName') || ')', ''), ' > ' ORDER BY seq)
    FROM allma.step_executions WHERE execution_id = e $$;
-- gaps between consecutive attempts, in ms, compared with the expected backoff
CREATE FUNCTION pg_temp.gaps_at_least(e uuid, VARIADIC ms int[]) RETURNS boolean LANGUAGE sql AS $$
  WITH a AS (SELECT seq, started_at, lag(ended_at) OVER (ORDER BY seq) AS prev_end
               FROM allma.step_executions WHERE execution_id = e)
  SELECT bool_and(started_at - prev_end >= make_interval(secs => ms[rn] / 1000.0))
    FROM (SELECT *, row_number() OVER (ORDER BY seq) AS rn FROM a WHERE prev_end IS NOT NULL) g $$;

-- a function that fails the first N calls per key with a chosen SQLSTATE
-- (a sequence per key, created by pg_temp.run, counts calls: nextval is not
-- rolled back with a failed attempt)
CREATE TABLE public.allma_test_failures (key text PRIMARY KEY, fail_times int, sqlstate text, detail text);
CREATE FUNCTION public.allma_test_flaky(input jsonb) RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
	f public.allma_test_failures;
	n bigint;
BEGIN
	SELECT * INTO f FROM public.allma_test_failures WHERE key = input->>'key';
	n := nextval(format('public.%I', 'allma_test_seq_' || f.key));
	IF n <= f.fail_times THEN
		IF f.detail IS NOT NULL THEN
			RAISE EXCEPTION 'call % failed', n USING ERRCODE = f.sqlstate, DETAIL = f.detail;
		END IF;
		RAISE EXCEPTION 'call % failed', n USING ERRCODE = f.sqlstate;
	END IF;
	RETURN jsonb_build_object('call', n, 'key', f.key);
END $$;
GRANT ALL ON public.allma_test_failures TO PUBLIC;
SELECT allma_bind_module('test/flaky', 'public.allma_test_flaky(jsonb)');

-- one-step flows around the flaky function, differing in onError
CREATE FUNCTION pg_temp.flow(id text, on_error jsonb, extra jsonb DEFAULT '{}') RETURNS int
LANGUAGE sql AS $$
  SELECT allma_create_flow(jsonb_build_object('id', id, 'startStepInstanceId', 'call',
    'steps', jsonb_build_object(
      'call', jsonb_build_object('stepType', 'CUSTOM_LOGIC', 'moduleIdentifier', 'test/flaky',
                                 'inputMappings', jsonb_build_object('key', '$.key'),
                                 'onError', on_error, 'defaultNextStepInstanceId', 'after') || extra,
      'after', jsonb_build_object('stepType', 'NO_OP'),
      'handler', jsonb_build_object('stepType', 'NO_OP', 'inputMappings', jsonb_build_object('err', '$.errorInfo')),
      'fallback', jsonb_build_object('stepType', 'NO_OP')))) $$;
CREATE FUNCTION pg_temp.run(flow text, key text, fail_times int, sqlstate text, detail text DEFAULT NULL)
RETURNS uuid LANGUAGE plpgsql AS $$
BEGIN
	INSERT INTO public.allma_test_failures VALUES (key, fail_times, sqlstate, detail);
	EXECUTE format('CREATE SEQUENCE public.%I', 'allma_test_seq_' || key);
	RETURN allma_start_flow(flow, jsonb_build_object('key', key));
END $$;

-- 1. the step's own retries: count 3, 1 s x 2.0 -> waits of 10 ms and 20 ms
SELECT pg_temp.flow('retry-own', '{"retries": {"count": 3, "intervalSeconds": 1, "backoffRate": 2}}');
SELECT pg_temp.run('retry-own', 'own', 2, 'LM201') AS e \gset
SELECT allma_wait(:'e');
SELECT pg_temp.attempts(:'e');
SELECT pg_temp.gaps_at_least(:'e', 10, 20) AS backoff_respected;
SELECT attempt, details FROM allma.step_executions WHERE execution_id = :'e' AND status = 'RETRYING' ORDER BY seq;

-- 2. retries exhausted: count 1 -> two attempts, then FAILED
SELECT pg_temp.flow('retry-exhausted', '{"retries": {"count": 1, "intervalSeconds": 1}}');
SELECT pg_temp.run('retry-exhausted', 'exhausted', 5, 'LM201') AS e \gset
SELECT allma_wait(:'e'), pg_temp.attempts(:'e');
SELECT error->>'errorName' AS name, error->>'errorMessage' AS message, error->'isRetryable' AS retryable,
       error->'errorDetails'->>'sqlstate' AS sqlstate, error->'errorDetails'->>'failedStepInstanceId' AS step
  FROM allma.executions WHERE execution_id = :'e';

-- 3. errorEquals that does not list the error: the default policies apply.
--    A permanent error has none: one attempt.
SELECT pg_temp.flow('retry-filtered', '{"retries": {"count": 3, "errorEquals": ["TransientStepError"]}}');
SELECT pg_temp.run('retry-filtered', 'filtered', 1, 'P0001') AS e \gset
SELECT allma_wait(:'e'), pg_temp.attempts(:'e');

-- 4. the default policy for TransientStepError: 1 s x 3.0, 5 retries
--    (10, 30, 90, 270, 810 ms here); the sixth failure is final
SELECT pg_temp.flow('retry-default', '{}');
SELECT pg_temp.run('retry-default', 'default', 10, 'LM201') AS e \gset
SELECT allma_wait(:'e'), pg_temp.attempts(:'e');
SELECT pg_temp.gaps_at_least(:'e', 10, 30, 90, 270, 810) AS backoff_respected;
SELECT array_agg((details->>'retryInMs')::int ORDER BY seq) AS planned_ms
  FROM allma.step_executions WHERE execution_id = :'e' AND status = 'RETRYING';

-- 5. deadlocks and other transient SQLSTATEs are TransientStepError
SELECT pg_temp.flow('deadlock', '{}');
SELECT pg_temp.run('deadlock', 'deadlock', 1, '40P01') AS e \gset
SELECT allma_wait(:'e'), pg_temp.attempts(:'e');

-- 6. maxDelaySeconds caps and FULL jitter stays within the cap
SELECT pg_temp.flow('retry-capped', '{"retries": {"count": 3, "intervalSeconds": 10, "backoffRate": 5, "maxDelaySeconds": 12}}');
SELECT pg_temp.run('retry-capped', 'capped', 3, 'LM201') AS e \gset
SELECT allma_wait(:'e');
SELECT array_agg((details->>'retryInMs')::int ORDER BY seq) AS planned_ms
  FROM allma.step_executions WHERE execution_id = :'e' AND status = 'RETRYING';
-- FULL jitter draws each wait from [0, 100 ms] (10 s scaled, backoffRate 1):
-- 200 draws (20 executions of 10 retries) all stay within the cap, most fall
-- below it (without jitter every one would be exactly 100), they spread out
-- and average near the middle.  None of these can fail by chance with a
-- working uniform draw: 200 draws of 101 values give about 87 distinct ones
-- and a mean of 50 +- 2.
SELECT pg_temp.flow('retry-jitter', '{"retries": {"count": 10, "intervalSeconds": 10, "backoffRate": 1, "jitterStrategy": "FULL"}}');
CREATE TEMP TABLE jitter_runs AS
  SELECT pg_temp.run('retry-jitter', 'jitter' || g, 10, 'LM201') AS e FROM generate_series(1, 20) g;
SELECT count(*) FILTER (WHERE allma_wait(e) = 'COMPLETED') AS completed FROM jitter_runs;
SELECT count(*) AS draws,
       bool_and(ms BETWEEN 0 AND 100) AS within_cap,
       count(*) FILTER (WHERE ms < 100) >= 150 AS mostly_below_cap,
       count(DISTINCT ms) >= 30 AS spread,
       avg(ms) BETWEEN 35 AND 65 AS centered
  FROM (SELECT (details->>'retryInMs')::int AS ms
          FROM allma.step_executions
         WHERE execution_id IN (SELECT e FROM jitter_runs) AND status = 'RETRYING') d;

-- 7. catch rules by error name route to a handler with the error in the context
SELECT pg_temp.flow('catching', '{"catch": [
   {"errorEquals": ["OutOfStock"], "nextStepInstanceId": "handler", "resultPath": "$.problem"},
   {"errorEquals": ["States.ALL"], "nextStepInstanceId": "fallback"}]}');
SELECT pg_temp.run('catching', 'custom-name', 1, 'P0001',
                   '{"errorName": "OutOfStock", "errorDetails": {"sku": "A-1"}}') AS e1 \gset
SELECT pg_temp.run('catching', 'other-name', 1, 'P0001') AS e2 \gset
SELECT allma_wait(:'e1'), allma_wait(:'e2');
SELECT pg_temp.attempts(:'e1') AS by_name, pg_temp.attempts(:'e2') AS by_states_all;
SELECT output->'problem'->>'errorName' AS name, output->'problem'->'errorDetails'->'sku' AS sku,
       output->'problem'->>'errorMessage' AS message
  FROM allma.executions WHERE execution_id = :'e1';
-- default resultPath is $.errorInfo
SELECT pg_temp.flow('catching-default', '{"catch": [{"errorEquals": ["PermanentStepError"], "nextStepInstanceId": "handler"}]}');
SELECT pg_temp.run('catching-default', 'catch-default', 1, 'P0001') AS e \gset
SELECT allma_wait(:'e');
SELECT output->'errorInfo'->>'errorName' AS name,
       output->'steps_output'->'handler'->'err'->>'errorName' AS handler_saw
  FROM allma.executions WHERE execution_id = :'e';
-- retries run before catch rules
SELECT pg_temp.flow('retry-then-catch', '{"retries": {"count": 1, "intervalSeconds": 1},
   "catch": [{"errorEquals": ["TransientStepError"], "nextStepInstanceId": "handler"}]}');
SELECT pg_temp.run('retry-then-catch', 'retry-catch', 9, 'LM201') AS e \gset
SELECT allma_wait(:'e'), pg_temp.attempts(:'e');

-- 8. fallbackStepInstanceId: the flow continues there
SELECT pg_temp.flow('falling-back', '{"fallbackStepInstanceId": "fallback"}');
SELECT pg_temp.run('falling-back', 'fallback', 1, 'P0001') AS e \gset
SELECT allma_wait(:'e'), pg_temp.attempts(:'e');
SELECT output ? 'errorInfo' AS error_in_context FROM allma.executions WHERE execution_id = :'e';

-- 9. continueOnFailure: the error object is the output, transitions run on it
SELECT pg_temp.flow('continuing', '{"continueOnFailure": true}',
  '{"outputMappings": {"$.failure": "$"},
    "transitions": [{"condition": "$.failure.errorName == ''PermanentStepError''", "nextStepInstanceId": "handler"}]}');
SELECT pg_temp.run('continuing', 'continue', 1, 'P0001') AS e \gset
SELECT allma_wait(:'e'), pg_temp.attempts(:'e');
SELECT output->'failure'->>'errorName' AS name, output->'failure'->'isRetryable' AS retryable
  FROM allma.executions WHERE execution_id = :'e';
SELECT status, output->>'errorName' AS output_name, details
  FROM allma.step_executions WHERE execution_id = :'e' AND step_instance_id = 'call';

-- 10. content errors: retryOnContentError (immediate by default), outputValidation
SELECT pg_temp.flow('content', '{"retryOnContentError": {"count": 2}}');
SELECT pg_temp.run('content', 'content', 2, 'LM203') AS e1 \gset
SELECT pg_temp.run('content', 'content-fails', 5, 'LM203') AS e2 \gset
SELECT allma_wait(:'e1'), allma_wait(:'e2');
SELECT pg_temp.attempts(:'e1') AS recovered, pg_temp.attempts(:'e2') AS exhausted;
SELECT array_agg(details->>'retryPolicy' ORDER BY seq) FROM allma.step_executions
 WHERE execution_id = :'e1' AND status = 'RETRYING';
-- without retryOnContentError a content error is final
SELECT pg_temp.flow('content-final', '{}');
SELECT pg_temp.run('content-final', 'content-final', 1, 'LM203') AS e \gset
SELECT allma_wait(:'e'), pg_temp.attempts(:'e');
-- outputValidation.requiredFields raises ContentBasedRetryableError
SELECT pg_temp.flow('validated', '{"retryOnContentError": {"count": 1}}',
  '{"outputValidation": {"requiredFields": ["$.call", "$.nothing"]}}');
SELECT pg_temp.run('validated', 'validated', 0, 'LM203') AS e \gset
SELECT allma_wait(:'e'), pg_temp.attempts(:'e');
SELECT error->>'errorMessage' FROM allma.executions WHERE execution_id = :'e';

-- 11. RetryableStepError uses the default 10 s x 2.0, 3 retries policy
SELECT pg_temp.flow('retryable', '{}');
SELECT pg_temp.run('retryable', 'retryable', 1, 'LM202') AS e \gset
SELECT allma_wait(:'e'), pg_temp.attempts(:'e');
SELECT array_agg((details->>'retryInMs')::int ORDER BY seq) AS planned_ms
  FROM allma.step_executions WHERE execution_id = :'e' AND status = 'RETRYING';

-- 12. retry policies are data: a new row retries a custom error name
INSERT INTO allma.retry_policies (policy_name, error_equals, interval_seconds, backoff_rate, max_retries)
VALUES ('test-custom', ARRAY['OutOfStock'], 1, 1, 2);
SELECT pg_temp.flow('policy-row', '{}');
SELECT pg_temp.run('policy-row', 'policy-row', 2, 'P0001', '{"errorName": "OutOfStock"}') AS e \gset
SELECT allma_wait(:'e'), pg_temp.attempts(:'e');
DELETE FROM allma.retry_policies WHERE policy_name = 'test-custom';

-- 13. a failed attempt's SQL effects are rolled back; the successful one's stay
CREATE TABLE public.allma_test_effects (key text, call int);
GRANT ALL ON public.allma_test_effects TO PUBLIC;
CREATE FUNCTION public.allma_test_write_then_fail(input jsonb) RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE r jsonb;
BEGIN
	INSERT INTO public.allma_test_effects VALUES (input->>'key', -1);
	r := public.allma_test_flaky(input);
	INSERT INTO public.allma_test_effects VALUES (input->>'key', (r->>'call')::int);
	RETURN r;
END $$;
SELECT allma_bind_module('test/write-then-fail', 'public.allma_test_write_then_fail(jsonb)');
SELECT allma_create_flow('{"id": "effects", "startStepInstanceId": "w", "steps": {"w": {
  "stepType": "CUSTOM_LOGIC", "moduleIdentifier": "test/write-then-fail", "inputMappings": {"key": "$.key"},
  "onError": {"retries": {"count": 3, "intervalSeconds": 1}}}}}');
SELECT pg_temp.run('effects', 'effects', 2, 'LM201') AS e \gset
SELECT allma_wait(:'e'), pg_temp.attempts(:'e');
SELECT key, call FROM public.allma_test_effects ORDER BY call;

DO $$ DECLARE k text; BEGIN
  FOR k IN SELECT key FROM public.allma_test_failures LOOP
    EXECUTE format('DROP SEQUENCE public.%I', 'allma_test_seq_' || k);
  END LOOP; END $$;
DROP TABLE public.allma_test_failures, public.allma_test_effects;
DROP FUNCTION public.allma_test_flaky(jsonb), public.allma_test_write_then_fail(jsonb);
