-- Row-level security on allma.executions and allma.step_executions: an
-- execution and its history are visible to the role that started it (and
-- to members of that role), not to other roles; superusers see everything.
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS allma;
RESET client_min_messages;

CREATE ROLE regress_allma_alice;
CREATE ROLE regress_allma_bob;
CREATE ROLE regress_allma_alice_deputy IN ROLE regress_allma_alice;
GRANT allma_user TO regress_allma_alice, regress_allma_bob;

SELECT allma_create_flow('{"id": "rls-flow", "startStepInstanceId": "a", "steps": {
  "a": {"stepType": "NO_OP", "literals": {"owner": "{{who}}"}, "defaultNextStepInstanceId": "b"},
  "b": {"stepType": "NO_OP"}}}');
SELECT allma_grant_flow('rls-flow', 'regress_allma_alice', 'START'),
       allma_grant_flow('rls-flow', 'regress_allma_bob', 'START');

SET ROLE regress_allma_alice;
SELECT allma_start_flow('rls-flow', '{"who": "alice"}') AS alice1 \gset
SELECT allma_start_flow('rls-flow', '{"who": "alice"}') AS alice2 \gset
SET ROLE regress_allma_bob;
SELECT allma_start_flow('rls-flow', '{"who": "bob"}') AS bob1 \gset
RESET ROLE;
SELECT allma_wait(:'alice1'), allma_wait(:'alice2'), allma_wait(:'bob1');

CREATE TEMP VIEW rls_seen WITH (security_invoker = true) AS
SELECT current_user AS viewer,
       (SELECT string_agg(input->>'who', ',' ORDER BY input->>'who')
          FROM allma.executions WHERE execution_id IN (:'alice1', :'alice2', :'bob1')) AS executions,
       (SELECT string_agg(DISTINCT e.input->>'who', ',')
          FROM allma.step_executions s JOIN allma.executions e USING (execution_id)
         WHERE s.execution_id IN (:'alice1', :'alice2', :'bob1')) AS history_of,
       (SELECT count(*) FROM allma.step_executions
         WHERE execution_id IN (:'alice1', :'alice2', :'bob1')) AS history_rows,
       (SELECT count(*) FROM allma.step_executions WHERE execution_id = :'bob1') AS bobs_rows_by_id;
GRANT SELECT ON rls_seen TO PUBLIC;

-- each role sees only its own executions and their history
SET ROLE regress_allma_alice;
SELECT * FROM rls_seen;
SET ROLE regress_allma_bob;
SELECT * FROM rls_seen;
-- a member of alice's role sees alice's
SET ROLE regress_allma_alice_deputy;
SELECT * FROM rls_seen;
RESET ROLE;
-- the superuser sees all
SELECT * FROM rls_seen;

-- the history alone (without joining the executions): still filtered
SET ROLE regress_allma_bob;
SELECT count(*) AS alice_history_rows_seen_by_bob FROM allma.step_executions
 WHERE execution_id IN (:'alice1', :'alice2');
RESET ROLE;

DROP VIEW rls_seen;
DELETE FROM allma.step_executions WHERE execution_id IN (:'alice1', :'alice2', :'bob1');
DELETE FROM allma.executions WHERE execution_id IN (:'alice1', :'alice2', :'bob1');
DROP ROLE regress_allma_alice_deputy;
DROP ROLE regress_allma_alice;
DROP ROLE regress_allma_bob;
