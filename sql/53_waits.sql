-- WAIT_FOR_EXTERNAL_EVENT and allma_resume_flow: the path parks (a row,
-- no process), a resume applies the step's outputMappings to the payload,
-- a key resumes once, deadlines fail the step with StepTimeoutError (which
-- catch rules handle), cancel ends waits, who may resume.
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
CREATE FUNCTION pg_temp.parked(e uuid) RETURNS boolean LANGUAGE sql AS $$
  SELECT pg_temp.wait_until(format($q$ SELECT EXISTS (SELECT FROM allma.execution_paths
    WHERE execution_id = %L AND status = 'WAITING' AND request ? 'wait') $q$, e)) $$;
CREATE FUNCTION pg_temp.path(e uuid) RETURNS text LANGUAGE sql AS $$
  SELECT string_agg(step_instance_id || ':' || status, ' > ' ORDER BY path_id, seq)
    FROM allma.step_executions WHERE execution_id = e $$;
CREATE FUNCTION pg_temp.try(stmt text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
	EXECUTE stmt;
	RETURN 'no error';
EXCEPTION WHEN OTHERS THEN
	RETURN SQLSTATE || ': ' || SQLERRM;
END $$;

-- an approval: the path waits a day (864 s at timer_scale 0.01) for "order-<id>"
SELECT allma_create_flow($$
{"id": "approval", "startStepInstanceId": "ask",
 "steps": {
  "ask": {"stepType": "NO_OP", "defaultNextStepInstanceId": "wait"},
  "wait": {"stepType": "WAIT_FOR_EXTERNAL_EVENT", "correlationKeyTemplate": "order-{{orderId}}",
           "maxWaitTimeSeconds": 86400,
           "outputMappings": {"$.decision": "$.approved", "$.approver": "$.by"},
           "transitions": [{"condition": "$.decision == true", "nextStepInstanceId": "approved"}],
           "defaultNextStepInstanceId": "rejected"},
  "approved": {"stepType": "NO_OP"},
  "rejected": {"stepType": "NO_OP"}}}$$);
SELECT allma_start_flow('approval', '{"orderId": 42}') AS e \gset
SELECT pg_temp.parked(:'e') AS parked;
-- parked: a WAITING row due at the deadline, and an open wait
SELECT p.status, p.step_instance_id, p.request->'wait'->>'correlationKey' AS key,
       p.due_at = w.deadline AS due_at_deadline,
       w.deadline BETWEEN now() + interval '800 s' AND now() + interval '900 s' AS deadline_in_a_day,
       w.status AS wait_status, w.root_execution_id = w.execution_id AS own_root
  FROM allma.execution_paths p JOIN allma.waits w USING (execution_id, path_id)
 WHERE p.execution_id = :'e';
SELECT pg_temp.path(:'e') AS before_resume;
SELECT waiting_on, event_key, event_deadline = (SELECT deadline FROM allma.waits w WHERE w.execution_id = :'e')
       AS deadline_matches
  FROM allma.live_path_waits WHERE execution_id = :'e';

SELECT clock_timestamp() AS resumed_at \gset
SELECT allma_resume_flow('order-42', '{"approved": true, "by": "ada", "note": "ok"}') = :'e' AS resumed_it;
SELECT allma_wait(:'e');
-- the wait's history row spans the wait: from when it parked to when it was resumed
SELECT started_at < :'resumed_at' AS started_when_parked, ended_at > :'resumed_at' AS ended_after_resume
  FROM allma.step_executions WHERE execution_id = :'e' AND step_instance_id = 'wait';
SELECT status, output->'decision' AS decision, output->>'approver' AS approver,
       output ? 'note' AS unmapped_kept, pg_temp.path(:'e') AS history
  FROM allma.executions WHERE execution_id = :'e';
SELECT status, payload->>'by' AS payload_by, resumed_by = current_user::regrole AS by_me,
       ended_at IS NOT NULL AS ended
  FROM allma.waits WHERE execution_id = :'e';

-- a key resumes once; unknown keys; bad arguments
SELECT pg_temp.try($$ SELECT allma_resume_flow('order-42') $$) AS second_resume;
SELECT pg_temp.try($$ SELECT allma_resume_flow('no-such-key') $$) AS unknown_key;
SELECT pg_temp.try($$ SELECT allma_resume_flow(NULL) $$) AS null_key,
       pg_temp.try($$ SELECT allma_resume_flow('') $$) AS empty_key,
       pg_temp.try($$ SELECT allma_resume_flow(repeat('k', 1025)) $$) AS long_key;

-- rejected, with the default payload
SELECT allma_start_flow('approval', '{"orderId": 43}') AS r \gset
SELECT pg_temp.parked(:'r') AS parked;
SELECT allma_resume_flow('order-43') = :'r' AS resumed_it;
SELECT allma_wait(:'r'), pg_temp.path(:'r') AS history;

-- the deadline: StepTimeoutError fails the execution; resuming later is an error
SELECT allma_create_flow($$
{"id": "short-wait", "startStepInstanceId": "wait",
 "steps": {"wait": {"stepType": "WAIT_FOR_EXTERNAL_EVENT", "correlationKeyTemplate": "short-{{n}}",
                    "maxWaitTimeSeconds": 2}}}$$);
SELECT allma_start_flow('short-wait', '{"n": 1}') AS t \gset
SELECT allma_wait(:'t');
SELECT status, error->>'errorName' AS name, error->>'errorMessage' AS message,
       error->'errorDetails'->>'correlationKey' AS key
  FROM allma.executions WHERE execution_id = :'t';
SELECT status FROM allma.waits WHERE execution_id = :'t';
SELECT pg_temp.try($$ SELECT allma_resume_flow('short-1') $$) AS after_timeout;

-- ... which onError.catch handles like any error
SELECT allma_create_flow($$
{"id": "caught-wait", "startStepInstanceId": "wait",
 "steps": {"wait": {"stepType": "WAIT_FOR_EXTERNAL_EVENT", "correlationKeyTemplate": "caught-{{n}}",
                    "maxWaitTimeSeconds": 2, "defaultNextStepInstanceId": "go",
                    "onError": {"catch": [{"errorEquals": ["StepTimeoutError"], "nextStepInstanceId": "remind"}]}},
           "go": {"stepType": "NO_OP"},
           "remind": {"stepType": "NO_OP"}}}$$);
SELECT allma_start_flow('caught-wait', '{"n": 1}') AS c \gset
SELECT allma_wait(:'c');
SELECT status, output->'errorInfo'->>'errorName' AS caught, pg_temp.path(:'c') AS history
  FROM allma.executions WHERE execution_id = :'c';

-- a key open in one execution cannot be waited on by another; a key that
-- renders empty or incomplete (ending with ':') fails the step
SELECT allma_start_flow('approval', '{"orderId": 44}') AS d1 \gset
SELECT pg_temp.parked(:'d1') AS parked;
SELECT allma_start_flow('approval', '{"orderId": 44}') AS d2 \gset
SELECT allma_wait(:'d2');
SELECT error->>'errorName' AS name, error->>'errorMessage' AS message
  FROM allma.executions WHERE execution_id = :'d2';
SELECT allma_create_flow($$
{"id": "ticket-wait", "startStepInstanceId": "wait",
 "steps": {"wait": {"stepType": "WAIT_FOR_EXTERNAL_EVENT", "correlationKeyTemplate": "{{prefix}}{{id}}"}}}$$);
SELECT allma_start_flow('ticket-wait', '{"prefix": "ticket:"}') AS d3 \gset
SELECT allma_start_flow('ticket-wait', '{}') AS d4 \gset
SELECT allma_wait(:'d3'), allma_wait(:'d4');
SELECT error->>'errorName' AS name, error->>'errorMessage' AS message
  FROM allma.executions WHERE execution_id IN (:'d3', :'d4') ORDER BY 2;

-- cancel releases the wait: its key is no longer resumable
SELECT allma_cancel_execution(:'d1') IS NOT NULL AS cancelled;
SELECT status FROM allma.waits WHERE execution_id = :'d1';
SELECT pg_temp.try($$ SELECT allma_resume_flow('order-44') $$) AS after_cancel;

-- a resume's payload is bounded like a context
SELECT allma_start_flow('approval', '{"orderId": 45}') AS big \gset
SELECT pg_temp.parked(:'big') AS parked;
SELECT pg_temp.try($$ SELECT allma_resume_flow('order-45', jsonb_build_object('pad', repeat('x', 600000))) $$)
       AS too_big;
SELECT allma_cancel_execution(:'big') IS NOT NULL AS cleaned_up;

-- definitions: the key template is required and parsed, maxWaitTimeSeconds bounded
SELECT pg_temp.try($$ SELECT allma_validate_flow('{"id": "w", "startStepInstanceId": "w",
  "steps": {"w": {"stepType": "WAIT_FOR_EXTERNAL_EVENT"}}}') $$) AS no_key;
SELECT pg_temp.try($$ SELECT allma_validate_flow('{"id": "w", "startStepInstanceId": "w",
  "steps": {"w": {"stepType": "WAIT_FOR_EXTERNAL_EVENT", "correlationKeyTemplate": "k-{{#if}}"}}}') $$) AS bad_template;
SELECT pg_temp.try($$ SELECT allma_validate_flow('{"id": "w", "startStepInstanceId": "w",
  "steps": {"w": {"stepType": "WAIT_FOR_EXTERNAL_EVENT", "correlationKeyTemplate": "k",
                  "maxWaitTimeSeconds": 99999999}}}') $$) AS too_long_wait;

-- who may resume: the starter and allma_admin; others cannot tell the key exists
CREATE ROLE regress_allma_w_alice IN ROLE allma_user;
CREATE ROLE regress_allma_w_bob IN ROLE allma_user;
CREATE ROLE regress_allma_w_admin IN ROLE allma_admin;
SELECT allma_grant_flow('approval', 'regress_allma_w_alice', 'START');
SET ROLE regress_allma_w_alice;
SELECT allma_start_flow('approval', '{"orderId": 100}') AS a1 \gset
SELECT allma_start_flow('approval', '{"orderId": 101}') AS a2 \gset
RESET ROLE;
SELECT pg_temp.parked(:'a1') AND pg_temp.parked(:'a2') AS parked;
SET ROLE regress_allma_w_bob;
SELECT pg_temp.try($$ SELECT allma_resume_flow('order-100') $$) AS bob_resumes;
SELECT count(*) AS bob_sees_waits FROM allma.waits;
UPDATE allma.waits SET status = 'RESUMED';
SET ROLE regress_allma_w_alice;
SELECT count(*) AS alice_sees_waits FROM allma.waits;
SELECT allma_resume_flow('order-100') = :'a1' AS alice_resumes;
SET ROLE regress_allma_w_admin;
SELECT allma_resume_flow('order-101', '{"approved": true}') = :'a2' AS admin_resumes;
RESET ROLE;
SELECT allma_wait(:'a1'), allma_wait(:'a2');
SELECT has_function_privilege('public', 'allma_resume_flow(text, jsonb)', 'EXECUTE') AS public_may,
       has_table_privilege('public', 'allma.waits', 'SELECT') AS public_reads_waits;
DELETE FROM allma.step_executions WHERE execution_id IN (:'a1', :'a2');
DELETE FROM allma.executions WHERE execution_id IN (:'a1', :'a2');
DROP ROLE regress_allma_w_alice, regress_allma_w_bob, regress_allma_w_admin;
