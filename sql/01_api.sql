-- The SQL API: flows, versions, publishing, starting, waiting, history.
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS allma;
RESET client_min_messages;

-- create: versions are assigned by the server, publish is the default
SELECT allma_create_flow('{"id": "api-flow", "startStepInstanceId": "a",
  "steps": {"a": {"stepType": "NO_OP", "defaultNextStepInstanceId": "b"},
            "b": {"stepType": "END_FLOW"}}}');
SELECT allma_create_flow('{"id": "api-flow", "version": 42, "isPublished": true,
  "startStepInstanceId": "b",
  "steps": {"a": {"stepType": "NO_OP"}, "b": {"stepType": "NO_OP"}}}', false);
SELECT flow_id, latest_version, published_version FROM allma.flows WHERE flow_id = 'api-flow';
SELECT version, definition->'version' AS stored_version, definition ? 'isPublished' AS kept_flag
  FROM allma.flow_versions WHERE flow_id = 'api-flow' ORDER BY version;

-- start: the published version by default; a plain call works
SELECT allma_start_flow('api-flow', '{"customer": "c1"}') AS e1 \gset
SELECT allma_wait(:'e1');
SELECT flow_id, flow_version, status, input, output - 'flow_variables' AS output,
       output->'flow_variables' ? 'flowExecutionId' AS has_exec_id,
       output->'flow_variables'->>'flowExecutionId' = :'e1' AS exec_id_matches,
       error, ended_at >= started_at AS ended, started_by::text = current_user AS started_by_me
  FROM allma.executions WHERE execution_id = :'e1';
SELECT seq, step_instance_id, step_type, attempt, status, input, output, error,
       next_step_instance_id, ended_at >= started_at AS timed
  FROM allma.step_executions WHERE execution_id = :'e1' ORDER BY seq;

-- an explicit version, and publishing another one
SELECT allma_start_flow('api-flow', '{}', '{"version": 2}') AS e2 \gset
SELECT allma_wait(:'e2');
SELECT flow_version, (SELECT array_agg(step_instance_id ORDER BY seq)
                        FROM allma.step_executions s WHERE s.execution_id = x.execution_id)
  FROM allma.executions x WHERE execution_id = :'e2';
SELECT allma_publish_flow('api-flow', 2);
SELECT published_version FROM allma.flows WHERE flow_id = 'api-flow';
SELECT allma_publish_flow('api-flow', 1);

-- startStepInstanceId and the execution-log switch
SELECT allma_start_flow('api-flow', '{"k": 1}',
  '{"startStepInstanceId": "b", "enableExecutionLogs": false}') AS e3 \gset
SELECT allma_wait(:'e3');
SELECT enable_execution_logs FROM allma.executions WHERE execution_id = :'e3';
SELECT step_instance_id, status, input IS NULL AS no_input, output IS NULL AS no_output
  FROM allma.step_executions WHERE execution_id = :'e3';

-- a flow that turns logs off is overridden by the start option
SELECT allma_create_flow('{"id": "quiet", "enableExecutionLogs": false, "startStepInstanceId": "a",
  "steps": {"a": {"stepType": "NO_OP"}}}');
SELECT allma_start_flow('quiet') AS q1 \gset
SELECT allma_start_flow('quiet', '{}', '{"enableExecutionLogs": true}') AS q2 \gset
SELECT allma_wait(:'q1'), allma_wait(:'q2');
SELECT x.execution_id = :'q2' AS forced_on, s.input IS NOT NULL AS logged
  FROM allma.executions x JOIN allma.step_executions s USING (execution_id)
 WHERE x.flow_id = 'quiet' ORDER BY 1;

-- idempotent start with a caller-chosen id
SELECT allma_start_flow('api-flow', '{"n": 1}',
  '{"executionId": "00000000-0000-4000-8000-000000000001"}');
SELECT allma_start_flow('api-flow', '{"n": 2}',
  '{"executionId": "00000000-0000-4000-8000-000000000001"}');
SELECT allma_wait('00000000-0000-4000-8000-000000000001');
SELECT count(*), min(input->>'n') FROM allma.executions
 WHERE execution_id = '00000000-0000-4000-8000-000000000001';
SELECT count(*) FROM allma.step_executions
 WHERE execution_id = '00000000-0000-4000-8000-000000000001';

-- flow variables: the version's, then the input's, then flowExecutionId
SELECT allma_create_flow('{"id": "vars", "startStepInstanceId": "a",
  "flowVariables": {"region": "eu", "tier": "free"},
  "steps": {"a": {"stepType": "NO_OP"}}}');
SELECT allma_start_flow('vars', '{"flow_variables": {"tier": "pro"}}') AS v \gset
SELECT allma_wait(:'v');
SELECT (output->'flow_variables') - 'flowExecutionId' AS vars FROM allma.executions WHERE execution_id = :'v';

-- errors
\set VERBOSITY sqlstate
SELECT allma_start_flow('no-such-flow');
SELECT allma_create_flow('{"id": "unpublished", "startStepInstanceId": "a",
  "steps": {"a": {"stepType": "NO_OP"}}}', false);
SELECT allma_start_flow('unpublished');
SELECT allma_start_flow('unpublished', '{}', '{"version": 7}');
SELECT allma_start_flow('api-flow', '[1, 2]');
SELECT allma_start_flow('api-flow', '{}', '{"colour": "red"}');
SELECT allma_start_flow('api-flow', '{}', '{"version": -1}');
SELECT allma_start_flow('api-flow', '{}', '{"executionId": "not-a-uuid"}');
SELECT allma_start_flow('api-flow', '{}', '{"startStepInstanceId": "zzz"}');
SELECT allma_start_flow('vars', '{}', '{"executionId": "00000000-0000-4000-8000-000000000001"}');
SELECT allma_publish_flow('api-flow', 99);
SELECT allma_publish_flow('nope', 1);
SELECT allma_wait('00000000-0000-0000-0000-000000000000');
\set VERBOSITY default
SELECT allma_start_flow('no-such-flow');
SELECT allma_start_flow('unpublished');
SELECT allma_start_flow('api-flow', '{}', '{"colour": "red"}');

-- waiting inside the starting transaction, or under REPEATABLE READ, is refused
BEGIN;
SELECT allma_start_flow('api-flow') AS tx \gset
SELECT allma_wait(:'tx', '1 s');
ROLLBACK;
BEGIN ISOLATION LEVEL REPEATABLE READ;
SELECT allma_wait(:'e1');
ROLLBACK;

-- a rolled-back start leaves nothing behind
SELECT count(*) FROM allma.executions WHERE execution_id = :'tx';

-- timeout: a flow that waits returns RUNNING
SELECT allma_create_flow('{"id": "slow", "startStepInstanceId": "a",
  "steps": {"a": {"stepType": "NO_OP", "delay": {"milliseconds": 3600000, "position": "before"}}}}');
SELECT allma_start_flow('slow') AS s \gset
SELECT allma_wait(:'s', '50 ms');

-- the workers are running in this database
SELECT count(*) >= 1 AS workers, bool_and(database = current_database()) AS here
  FROM allma_worker_status();
