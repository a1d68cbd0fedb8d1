-- allma demo: an order-approval flow with a SQL lookup, a flaky scoring
-- function (retried by rule), a condition, a SQL update, a built-in
-- transformation and an LLM that writes a note to the customer.  Run by
-- scripts/demo.sh on a throwaway cluster, which passes the LLM's base URL,
-- model and API key (the mock server's, unless you give a real provider).
\set ON_ERROR_STOP on
\pset footer off
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS allma;
CREATE EXTENSION IF NOT EXISTS pg_cron;

CREATE TABLE demo_orders (id int PRIMARY KEY, customer text, amount numeric, status text DEFAULT 'new');
INSERT INTO demo_orders VALUES (1, 'ada', 120, 'new'), (2, 'grace', 9800, 'new');

-- a "Lambda" written in SQL: every other call fails with a TransientStepError
-- (SQLSTATE LM201); the step's retry rule takes care of it.  A sequence
-- counts calls because it is not rolled back with the failed attempt.
CREATE SEQUENCE demo_calls;
CREATE FUNCTION demo_risk_score(input jsonb) RETURNS jsonb LANGUAGE plpgsql AS $$
BEGIN
	IF nextval('demo_calls') % 2 = 1 THEN
		RAISE EXCEPTION 'scoring service busy' USING ERRCODE = 'LM201';
	END IF;
	RETURN jsonb_build_object('score', least(100, (input->>'amount')::numeric / 100));
END $$;
GRANT USAGE ON SEQUENCE demo_calls TO PUBLIC;
SELECT allma_bind_module('demo/risk-score', 'demo_risk_score(jsonb)'::regprocedure);
-- the LLM's API key lives in allma's secrets, never in the flow
SELECT allma_set_secret('DEMO_LLM_KEY', :'llm_api_key');
SELECT allma_create_prompt('order-note',
  'Write one friendly sentence to {{customer}} about their order of {{amount}} EUR: it is {{decision}}.');
RESET client_min_messages;

SELECT allma_create_flow(jsonb_set(jsonb_set($json$
{
  "id": "order-approval",
  "description": "Score an order and approve it or send it to review",
  "startStepInstanceId": "load_order",
  "steps": {
    "load_order": {
      "stepType": "DATA_LOAD", "moduleIdentifier": "system/sql-query",
      "customConfig": {"sql": "SELECT id, customer, amount FROM demo_orders WHERE id = $1",
                       "parameters": ["$.orderId"]},
      "outputMappings": {"$.order": "$.rows[0]"},
      "defaultNextStepInstanceId": "score"
    },
    "score": {
      "stepType": "CUSTOM_LOGIC", "moduleIdentifier": "demo/risk-score",
      "inputMappings": {"orderId": "$.order.id", "amount": "$.order.amount"},
      "outputMappings": {"$.risk": "$"},
      "onError": {"retries": {"count": 3, "intervalSeconds": 0.2, "backoffRate": 2.0}},
      "defaultNextStepInstanceId": "route"
    },
    "route": {
      "stepType": "NO_OP",
      "transitions": [{"condition": "$.risk.score > 50", "nextStepInstanceId": "review"}],
      "defaultNextStepInstanceId": "approve"
    },
    "approve": {
      "stepType": "DATA_SAVE", "moduleIdentifier": "system/sql-query",
      "customConfig": {"sql": "UPDATE demo_orders SET status = 'approved' WHERE id = $1 RETURNING status",
                       "parameters": ["$.order.id"]},
      "outputMappings": {"$.decision": "$.rows[0].status"},
      "defaultNextStepInstanceId": "due_date"
    },
    "review": {
      "stepType": "DATA_SAVE", "moduleIdentifier": "system/sql-query",
      "customConfig": {"sql": "UPDATE demo_orders SET status = 'in review' WHERE id = $1 RETURNING status",
                       "parameters": ["$.order.id"]},
      "outputMappings": {"$.decision": "$.rows[0].status"},
      "defaultNextStepInstanceId": "due_date"
    },
    "due_date": {
      "stepType": "DATA_TRANSFORMATION", "moduleIdentifier": "system/date-time-calculator",
      "customConfig": {"baseTime": "2026-11-25T12:00:00Z", "offsetSeconds": 172800},
      "outputMappings": {"$.dueDate": "$.result"},
      "defaultNextStepInstanceId": "note"
    },
    "note": {
      "stepType": "LLM_INVOCATION", "llmProvider": "OPENAI", "modelId": "set below",
      "promptTemplateId": "order-note",
      "inputMappings": {"customer": "$.order.customer", "amount": "$.order.amount",
                        "decision": "$.decision"},
      "inferenceParameters": {"temperature": 0.2, "maxOutputTokens": 60},
      "customConfig": {"baseUrl": "set below", "apiKeySecret": "DEMO_LLM_KEY"},
      "outputMappings": {"$.note": "$.llm_response"},
      "onError": {"retries": {"count": 2, "intervalSeconds": 1}},
      "defaultNextStepInstanceId": "done"
    },
    "done": {"stepType": "END_FLOW"}
  }
}
$json$::jsonb,
  '{steps,note,modelId}', to_jsonb(:'llm_model'::text)),
  '{steps,note,customConfig,baseUrl}', to_jsonb(:'llm_base_url'::text))) AS version;

-- The application's role starts the flow: steps run as the role that starts
-- an execution (a superuser may not run SQL steps unless
-- allma.allow_superuser_sql_steps is on), so it gets exactly what the flow
-- needs: START on the flow, its tables, USAGE on the binding and the prompt,
-- and a grant on the secret.  See docs/security.md.
SET client_min_messages = warning;
DROP ROLE IF EXISTS demo_app;
CREATE ROLE demo_app IN ROLE allma_user;
GRANT SELECT, UPDATE ON demo_orders TO demo_app;
DO $$
BEGIN
	PERFORM allma_grant_flow('order-approval', 'demo_app', 'START');
	PERFORM allma_grant_module_binding('demo/risk-score', 'demo_app');
	PERFORM allma_grant_prompt('order-note', 'demo_app');
	PERFORM allma_grant_secret('DEMO_LLM_KEY', 'demo_app');
END $$;
RESET client_min_messages;

SET ROLE demo_app;
SELECT allma_start_flow('order-approval', '{"orderId": 1}') AS e1 \gset
SELECT allma_start_flow('order-approval', '{"orderId": 2}') AS e2 \gset
SELECT allma_wait(:'e1') AS order_1, allma_wait(:'e2') AS order_2;
RESET ROLE;

\echo
\echo Execution history (allma.step_executions):
SELECT x.input->>'orderId' AS order, s.seq, s.step_instance_id AS step, s.step_type,
       s.attempt, s.status, s.next_step_instance_id AS next,
       coalesce(s.error->>'errorName', '') AS error,
       round(extract(epoch FROM s.ended_at - s.started_at) * 1000, 2) AS ms
  FROM allma.step_executions s JOIN allma.executions x USING (execution_id)
 WHERE x.execution_id IN (:'e1', :'e2')
 ORDER BY 1, s.seq;

\echo Executions (allma.executions):
SELECT input->>'orderId' AS order, status, output->'risk' AS risk, output->>'dueDate' AS due_date,
       round(extract(epoch FROM ended_at - started_at) * 1000) AS total_ms
  FROM allma.executions WHERE execution_id IN (:'e1', :'e2') ORDER BY 1;

\echo Notes written by the LLM step (the mock model echoes its prompt, a real model writes the sentence):
SELECT input->>'orderId' AS order, output->>'note' AS note
  FROM allma.executions WHERE execution_id IN (:'e1', :'e2') ORDER BY 1;

\echo Orders afterwards:
SELECT * FROM demo_orders ORDER BY id;
