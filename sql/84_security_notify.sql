-- NOTIFY allma_execution_events: any role can send one, and every listener
-- gets every one, whatever row-level security says.  So the payload is
-- only the execution id (t/080_security_steps.pl reads it), and nothing in
-- allma trusts a notification: allma_wait re-reads the execution through
-- row-level security.  A forged "COMPLETED" changes nothing.

CREATE ROLE regress_allma_notify_alice;
CREATE ROLE regress_allma_notify_mallory;
GRANT allma_user TO regress_allma_notify_alice, regress_allma_notify_mallory;

-- alice's execution waits on a long delay
SET ROLE regress_allma_notify_alice;
SELECT allma_create_flow('{"id": "notify_wait", "startStepInstanceId": "w", "steps": {
	"w": {"stepType": "NO_OP", "delay": {"milliseconds": 86400000, "position": "before"}}}}');
SELECT allma_start_flow('notify_wait', '{}', '{"executionId": "00000000-0000-4000-8000-0000000a11ce"}');
RESET ROLE;

-- mallory forges the terminal notifications of 1.0 and of 1.1
SET ROLE regress_allma_notify_mallory;
SELECT pg_notify('allma_execution_events',
	'{"executionId": "00000000-0000-4000-8000-0000000a11ce", "flowId": "notify_wait", "status": "COMPLETED"}');
SELECT pg_notify('allma_execution_events', '00000000-0000-4000-8000-0000000a11ce');
NOTIFY allma_execution_events, '00000000-0000-4000-8000-0000000a11ce';
-- and learns nothing about the execution from its id
SELECT count(*) FROM allma.executions WHERE execution_id = '00000000-0000-4000-8000-0000000a11ce';
SELECT allma_wait('00000000-0000-4000-8000-0000000a11ce', '0');
RESET ROLE;

-- the execution still runs, and waiting for it says so
SET ROLE regress_allma_notify_alice;
SELECT allma_wait('00000000-0000-4000-8000-0000000a11ce', '10 ms');
SELECT status, ended_at IS NULL AS not_ended FROM allma.executions
 WHERE execution_id = '00000000-0000-4000-8000-0000000a11ce';
RESET ROLE;

-- clean up
DELETE FROM allma.executions WHERE flow_id = 'notify_wait';
DELETE FROM allma.flows WHERE flow_id = 'notify_wait';
DROP ROLE regress_allma_notify_alice, regress_allma_notify_mallory;
