-- Runtime fields flows read (Allma's FlowRuntimeState names), true step
-- timing (started_at, ended_at, duration_ms) and executions.step_count.
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS allma;
RESET client_min_messages;

CREATE FUNCTION public.allma_test_nap(input jsonb) RETURNS jsonb LANGUAGE plpgsql AS $$
BEGIN
	PERFORM pg_sleep((input->>'s')::float8);
	RETURN jsonb_build_object('slept', input->'s');
END $$;
SELECT allma_bind_module('test/nap', 'public.allma_test_nap(jsonb)');

-- every runtime field, read by an input mapping and by a template
SELECT allma_create_flow($$ {"id": "rt", "startStepInstanceId": "first",
  "steps": {
    "first": {"stepType": "NO_OP", "defaultNextStepInstanceId": "nap"},
    "nap": {"stepType": "CUSTOM_LOGIC", "moduleIdentifier": "test/nap",
            "literals": {"s": 0.05}, "defaultNextStepInstanceId": "read"},
    "read": {"stepType": "NO_OP",
      "inputMappings": {"mapped.stepStart": "$._internal.currentStepStartTime",
                        "mapped.count": "$.completedStepCount",
                        "mapped.id": "$.flowExecutionId",
                        "mapped.root": "$.rootFlowExecutionId",
                        "mapped.kind": "$.executionKind"},
      "literals": {"t.stepStart": "{{_internal.currentStepStartTime}}",
                   "t.start": "{{startTime}}",
                   "t.flow": "{{flowDefinitionId}} v{{flowDefinitionVersion}}",
                   "t.step": "{{currentStepInstanceId}}",
                   "t.count": "{{completedStepCount}}",
                   "t.depth": "{{depth}}",
                   "t.logs": "{{enableExecutionLogs}}",
                   "t.status": "{{status}}",
                   "t.parent": "[{{parentFlowExecutionId}}]"},
      "outputMappings": {"$.rt": "$"}}}} $$);
SELECT allma_start_flow('rt', '{}') AS e \gset
SELECT allma_wait(:'e');
SELECT (x.output->'rt'->'t') - 'stepStart'::text - 'start'::text AS template_fields,
       (x.output->'rt'->'mapped') - 'stepStart'::text - 'id'::text - 'root'::text AS mapped_fields,
       x.output->'rt'->'mapped'->>'id' = :'e' AS id_ok,
       x.output->'rt'->'mapped'->>'root' = :'e' AS root_is_own_id,
       -- Allma's format: ISO 8601, UTC, milliseconds
       x.output->'rt'->'t'->>'stepStart' ~ '^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$' AS iso_format,
       x.output->'rt'->'t'->>'stepStart' = x.output->'rt'->'mapped'->>'stepStart' AS same_in_both,
       -- the step's own start, not the execution's
       (x.output->'rt'->'t'->>'stepStart')::timestamptz
         = date_trunc('milliseconds', s.started_at) AS is_step_started_at,
       (x.output->'rt'->'t'->>'start')::timestamptz
         = date_trunc('milliseconds', x.started_at) AS start_is_execution_start
  FROM allma.executions x
  JOIN allma.step_executions s ON s.execution_id = x.execution_id AND s.step_instance_id = 'read'
 WHERE x.execution_id = :'e';

-- timing: duration_ms is ended_at - started_at; the bound function's nap shows
SELECT step_instance_id, abs(duration_ms - extract(epoch FROM ended_at - started_at)::float8 * 1000) < 0.001 AS consistent,
       duration_ms >= 50 AS napped
  FROM allma.step_executions WHERE execution_id = :'e' ORDER BY seq;
-- step_count counts recorded attempts
SELECT step_count, (SELECT count(*) FROM allma.step_executions WHERE execution_id = :'e') AS rows
  FROM allma.executions WHERE execution_id = :'e';

-- retried attempts count too; completedStepCount grows with them
SELECT allma_create_flow($$ {"id": "rt-retry", "startStepInstanceId": "flaky",
  "steps": {
    "flaky": {"stepType": "CUSTOM_LOGIC", "moduleIdentifier": "test/nap",
              "literals": {"s": "not a number"},
              "onError": {"retries": {"count": 2, "intervalSeconds": 0.01},
                          "fallbackStepInstanceId": "after"}},
    "after": {"stepType": "NO_OP", "literals": {"count": "{{completedStepCount}}"},
              "outputMappings": {"$.count": "$.count"}}}} $$);
SELECT allma_start_flow('rt-retry', '{}') AS e \gset
SELECT allma_wait(:'e');
SELECT x.status, x.step_count, x.output->>'count' AS count_seen_by_after,
       array_agg(s.status ORDER BY s.seq) AS attempts
  FROM allma.executions x JOIN allma.step_executions s USING (execution_id)
 WHERE x.execution_id = :'e' GROUP BY x.status, x.step_count, x.output;

-- a fork's step lasts from its start to its join; branches see branchId
-- and executionKind PARALLEL_BRANCH; branch steps count
SELECT allma_create_flow($$ {"id": "rt-fork", "startStepInstanceId": "fork",
  "steps": {
    "fork": {"stepType": "PARALLEL_FORK_MANAGER", "itemsPath": "$.items",
             "parallelBranches": [{"branchId": "napper", "stepInstanceId": "nap"}],
             "defaultNextStepInstanceId": "done"},
    "nap": {"stepType": "CUSTOM_LOGIC", "moduleIdentifier": "test/nap",
            "literals": {"s": 0.2}, "defaultNextStepInstanceId": "who"},
    "who": {"stepType": "NO_OP",
            "literals": {"who": "{{branchId}}/{{executionKind}}/{{_internal.currentStepStartTime}}"},
            "outputMappings": {"$.output": "$.who"}},
    "done": {"stepType": "NO_OP"}}} $$);
SELECT allma_start_flow('rt-fork', '{"items": [1, 2]}') AS e \gset
SELECT allma_wait(:'e');
SELECT jsonb_array_length(jsonb_path_query_array(output,
         '$.steps_output.fork.aggregatedData[*] ? (@ like_regex "^napper/PARALLEL_BRANCH/\\d{4}-\\d\\d-\\d\\dT")')) AS branches_seeing_fields
  FROM allma.executions WHERE execution_id = :'e';
SELECT step_instance_id, count(*), bool_and(duration_ms >= 200) AS at_least_the_nap
  FROM allma.step_executions WHERE execution_id = :'e' AND step_instance_id IN ('fork', 'nap')
 GROUP BY 1 ORDER BY 1;
-- the fork began before its branches and ended after them
SELECT f.started_at <= min(b.started_at) AND f.ended_at >= max(b.ended_at) AS fork_spans_branches
  FROM allma.step_executions f
  JOIN allma.step_executions b ON b.execution_id = f.execution_id AND b.branch_id IS NOT NULL
 WHERE f.execution_id = :'e' AND f.step_instance_id = 'fork'
 GROUP BY f.started_at, f.ended_at;
SELECT step_count, (SELECT count(*) FROM allma.step_executions WHERE execution_id = :'e') AS rows
  FROM allma.executions WHERE execution_id = :'e';
-- nothing of the fork's wait is left in the path table
SELECT count(*) FROM allma.execution_paths WHERE execution_id = :'e';
