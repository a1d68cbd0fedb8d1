-- Sub-flows: START_FLOW_EXECUTION (system/start-flow-execution) and
-- START_SUB_FLOW, async and sync, the execution tree, failures handled by
-- onError, the depth limit, privileges, definition errors, pinned versions.
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS allma;
RESET client_min_messages;

-- polls (generous bound) until a path of the execution has the status
CREATE FUNCTION pg_temp.await_path(e uuid, st text) RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
	FOR i IN 1..6000 LOOP
		IF EXISTS (SELECT FROM allma.execution_paths WHERE execution_id = e AND status = st) THEN
			RETURN true;
		END IF;
		PERFORM pg_sleep(0.01);
	END LOOP;
	RETURN false;
END $$;
-- the children of an execution
CREATE FUNCTION pg_temp.child(e uuid) RETURNS uuid LANGUAGE sql AS $$
  SELECT execution_id FROM allma.executions WHERE parent_execution_id = e $$;

-- a child flow: reads its initial context at the root, reports its runtime fields
SELECT allma_create_flow($$ {"id": "child", "startStepInstanceId": "work",
  "steps": {"work": {"stepType": "NO_OP",
    "literals": {"greeting": "hello {{name}}", "kind": "{{executionKind}}", "depth": "$.depth",
                 "parent": "{{parentFlowExecutionId}}", "root": "{{rootFlowExecutionId}}"},
    "outputMappings": {"$.result": "$"}}}} $$);

-- async (START_FLOW_EXECUTION's default), as Allma's bundles write it:
-- flowDefinitionId in literals, initialContextData by inputMappings
SELECT allma_create_flow($$ {"id": "parent-async", "startStepInstanceId": "start",
  "flowVariables": {"ChildFlowId": "child"},
  "steps": {"start": {"stepType": "START_FLOW_EXECUTION",
                      "moduleIdentifier": "system/start-flow-execution",
                      "literals": {"flowDefinitionId": "{{flow_variables.ChildFlowId}}"},
                      "inputMappings": {"initialContextData": "$.payload"},
                      "outputMappings": {"$.started": "$"}}}} $$);
SELECT allma_start_flow('parent-async', '{"payload": {"name": "Ada"}}') AS p \gset
SELECT allma_wait(:'p');
SELECT pg_temp.child(:'p') AS c \gset
SELECT allma_wait(:'c');
SELECT (output->'started'->>'startedFlowExecutionId')::uuid = :'c' AS returns_child_id,
       output->'started'->>'flowDefinitionId' AS flow
  FROM allma.executions WHERE execution_id = :'p';
SELECT flow_id, status, depth, parent_execution_id = :'p' AS parent_ok,
       root_execution_id = :'p' AS root_ok, parent_path_id, parent_step_instance_id,
       trigger_source = 'ParentFlow:' || :'p' || ':start' AS trigger_source_ok, options, input,
       output->'result'->>'greeting' AS greeting, output->'result'->>'kind' AS kind,
       output->'result'->'depth' AS depth_field,
       output->'result'->>'parent' = :'p' AS parent_field_ok,
       output->'result'->>'root' = :'p' AS root_field_ok
  FROM allma.executions WHERE execution_id = :'c';
-- a top-level execution is its own root, at depth 0
SELECT root_execution_id = execution_id AS own_root, depth, parent_execution_id
  FROM allma.executions WHERE execution_id = :'p';

-- sync (customConfig.sync): the parent waits, then maps the child's final context
SELECT allma_create_flow($$ {"id": "parent-sync", "startStepInstanceId": "call",
  "steps": {
    "call": {"stepType": "START_FLOW_EXECUTION", "moduleIdentifier": "system/start-flow-execution",
             "flowDefinitionId": "child", "customConfig": {"sync": true},
             "inputMappings": {"initialContextData.name": "$.who"},
             "outputMappings": {"$.answer": "$.result.greeting", "$.childKind": "$.result.kind"},
             "defaultNextStepInstanceId": "after"},
    "after": {"stepType": "NO_OP"}}} $$);
SELECT allma_start_flow('parent-sync', '{"who": "Grace"}') AS p \gset
SELECT allma_wait(:'p');
SELECT pg_temp.child(:'p') AS c \gset
SELECT status, output->>'answer' AS answer, output->>'childKind' AS child_kind
  FROM allma.executions WHERE execution_id = :'p';
SELECT status, parent_path_id, options->>'executionMode' AS mode
  FROM allma.executions WHERE execution_id = :'c';
-- the parent's step spans its child; nothing is left waiting
SELECT s.started_at <= c.started_at AND s.ended_at >= c.ended_at AS step_spans_child,
       s.status, s.attempt, (s.details->>'childExecutionId')::uuid = c.execution_id AS details_name_child,
       s.details->>'childFlowId' AS child_flow
  FROM allma.step_executions s, allma.executions c
 WHERE s.execution_id = :'p' AND s.step_instance_id = 'call' AND c.execution_id = :'c';
SELECT count(*) AS paths_left FROM allma.execution_paths WHERE execution_id IN (:'p', :'c');

-- START_SUB_FLOW: SYNC by default, inputMappingsToSubFlow, a pinned version
SELECT allma_create_flow($$ {"id": "child", "startStepInstanceId": "work",
  "steps": {"work": {"stepType": "NO_OP", "literals": {"greeting": "v2 {{name}}"},
    "outputMappings": {"$.result": "$"}}}} $$, false);
SELECT allma_create_flow($$ {"id": "parent-sub", "startStepInstanceId": "sub",
  "steps": {
    "sub": {"stepType": "START_SUB_FLOW", "subFlowDefinitionId": "child", "subFlowVersion": 2,
            "inputMappingsToSubFlow": {"name": "$.person.first"},
            "outputMappings": {"$.answer": "$.result.greeting"}}}} $$);
SELECT allma_start_flow('parent-sub', '{"person": {"first": "Edsger"}}') AS p \gset
SELECT allma_wait(:'p');
SELECT output->>'answer' AS answer FROM allma.executions WHERE execution_id = :'p';
SELECT flow_version, input FROM allma.executions WHERE execution_id = pg_temp.child(:'p');

-- a grandchild keeps the root's id; depth grows
SELECT allma_create_flow($$ {"id": "middle", "startStepInstanceId": "sub",
  "steps": {"sub": {"stepType": "START_SUB_FLOW", "subFlowDefinitionId": "child",
                    "inputMappingsToSubFlow": {"name": "$.name"}}}} $$);
SELECT allma_create_flow($$ {"id": "top", "startStepInstanceId": "sub",
  "steps": {"sub": {"stepType": "START_SUB_FLOW", "subFlowDefinitionId": "middle",
                    "inputMappingsToSubFlow": {"name": "$.name"},
                    "outputMappings": {"$.deep": "$.steps_output.sub.result.greeting"}}}} $$);
SELECT allma_start_flow('top', '{"name": "Barbara"}') AS p \gset
SELECT allma_wait(:'p');
SELECT output->>'deep' AS deep FROM allma.executions WHERE execution_id = :'p';
SELECT flow_id, depth, root_execution_id = :'p' AS root_ok
  FROM allma.executions WHERE root_execution_id = :'p' ORDER BY depth;

-- a failing child is an error of the parent's step: catch, fallback, none
SELECT allma_create_flow($$ {"id": "bad-child", "startStepInstanceId": "boom",
  "steps": {"boom": {"stepType": "DATA_LOAD", "moduleIdentifier": "system/sql-query",
                     "customConfig": {"sql": "SELECT 1/0"}}}} $$);
SELECT allma_create_flow($$ {"id": "parent-catch", "startStepInstanceId": "call",
  "steps": {
    "call": {"stepType": "START_SUB_FLOW", "subFlowDefinitionId": "bad-child",
             "onError": {"catch": [{"errorEquals": ["SubFlowExecutionError"],
                                    "nextStepInstanceId": "handled", "resultPath": "$.err"}]}},
    "handled": {"stepType": "NO_OP"}}} $$);
SELECT allma_start_flow('parent-catch', '{}') AS p \gset
SELECT allma_wait(:'p');
SELECT status, output->'err'->>'errorName' AS name,
       output->'err'->>'errorMessage' ~ '^sub-flow "bad-child" \(execution [0-9a-f-]+\) of step "call" ended FAILED: ' AS message_ok,
       output->'err'->'errorDetails'->>'childStatus' AS child_status,
       output->'err'->'errorDetails'->'childError'->>'errorName' AS child_error,
       (output->'err'->'errorDetails'->>'childExecutionId')::uuid = pg_temp.child(:'p') AS names_child
  FROM allma.executions WHERE execution_id = :'p';
-- the fallback is honoured (Allma skips it here)
SELECT allma_create_flow($$ {"id": "parent-fallback", "startStepInstanceId": "call",
  "steps": {
    "call": {"stepType": "START_FLOW_EXECUTION", "flowDefinitionId": "bad-child",
             "customConfig": {"sync": true}, "onError": {"fallbackStepInstanceId": "plan-b"}},
    "plan-b": {"stepType": "NO_OP"}}} $$);
SELECT allma_start_flow('parent-fallback', '{}') AS p \gset
SELECT allma_wait(:'p');
SELECT step_instance_id, status, error->>'errorName' AS error, details
  FROM allma.step_executions WHERE execution_id = :'p' ORDER BY seq;
-- no handler: the parent fails with the child's failure
SELECT allma_create_flow($$ {"id": "parent-fails", "startStepInstanceId": "call",
  "steps": {"call": {"stepType": "START_SUB_FLOW", "subFlowDefinitionId": "bad-child"}}} $$);
SELECT allma_start_flow('parent-fails', '{}') AS p \gset
SELECT allma_wait(:'p');
SELECT status, error->>'errorName' AS name FROM allma.executions WHERE execution_id = :'p';
-- an async child's failure is invisible to its parent
SELECT allma_create_flow($$ {"id": "parent-async-bad", "startStepInstanceId": "call",
  "steps": {"call": {"stepType": "START_FLOW_EXECUTION", "flowDefinitionId": "bad-child"}}} $$);
SELECT allma_start_flow('parent-async-bad', '{}') AS p \gset
SELECT allma_wait(:'p'), allma_wait(pg_temp.child(:'p'));

-- a flow that cannot be started: UnknownSubflowError, naming the step
SELECT allma_create_flow($$ {"id": "parent-unknown", "startStepInstanceId": "call",
  "steps": {"call": {"stepType": "START_FLOW_EXECUTION", "flowDefinitionId": "{{target}}",
                     "flowVersion": "{{v}}"}}} $$);
SELECT allma_start_flow('parent-unknown', '{"target": "no-such-flow"}') AS p \gset
SELECT allma_wait(:'p');
SELECT error->>'errorName' AS name, error->>'errorMessage' AS message
  FROM allma.executions WHERE execution_id = :'p';
SELECT allma_start_flow('parent-unknown', '{"target": "child", "v": 7}') AS p \gset
SELECT allma_wait(:'p');
SELECT error->>'errorName' AS name, error->>'errorMessage' AS message
  FROM allma.executions WHERE execution_id = :'p';
SELECT allma_start_flow('parent-unknown', '{"target": "child", "v": "seven"}') AS p \gset
SELECT allma_wait(:'p');
SELECT error->>'errorName' AS name, error->>'errorMessage' AS message
  FROM allma.executions WHERE execution_id = :'p';
SELECT allma_start_flow('parent-unknown', '{"target": ""}') AS p \gset
SELECT allma_wait(:'p');
SELECT error->>'errorName' AS name, error->>'errorMessage' AS message
  FROM allma.executions WHERE execution_id = :'p';

-- runaway recursion stops at allma.max_subflow_depth, naming the step
SHOW allma.max_subflow_depth;
SELECT allma_create_flow($$ {"id": "recurse", "startStepInstanceId": "again",
  "steps": {"again": {"stepType": "START_SUB_FLOW", "subFlowDefinitionId": "recurse"}}} $$);
SELECT allma_start_flow('recurse', '{}') AS p \gset
SELECT allma_wait(:'p');
SELECT count(*) AS executions, max(depth) AS deepest, bool_and(status = 'FAILED') AS all_failed
  FROM allma.executions WHERE root_execution_id = :'p';
SELECT error->>'errorName' AS name, error->>'errorMessage' AS message
  FROM allma.executions WHERE root_execution_id = :'p' AND depth = 10;

-- the child is started as the parent's starter, who needs START on its flow
CREATE ROLE sub_alice IN ROLE allma_user;
SET ROLE sub_alice;
SELECT allma_create_flow($$ {"id": "alice-parent", "startStepInstanceId": "call",
  "steps": {"call": {"stepType": "START_SUB_FLOW", "subFlowDefinitionId": "child"}}} $$);
SELECT allma_start_flow('alice-parent', '{}') AS p \gset
RESET ROLE;
SELECT allma_wait(:'p');
SELECT error->>'errorName' AS name, error->>'errorMessage' AS message
  FROM allma.executions WHERE execution_id = :'p';
SELECT allma_grant_flow('child', 'sub_alice', 'START');
SET ROLE sub_alice;
SELECT allma_start_flow('alice-parent', '{}') AS p \gset
RESET ROLE;
SELECT allma_wait(:'p');
SELECT c.status, c.started_by, c.output->'result'->>'greeting' AS greeting
  FROM allma.executions c WHERE c.parent_execution_id = :'p';
-- and sees its child through row-level security
SET ROLE sub_alice;
SELECT count(*) AS visible_children FROM allma.executions WHERE parent_execution_id = :'p';
RESET ROLE;

-- definition errors name the step and the field
SELECT allma_validate_flow($$ {"id": "x", "startStepInstanceId": "s", "steps": {"s":
  {"stepType": "START_FLOW_EXECUTION", "flowDefinitionId": "c", "executionMode": "LATER"}}} $$);
SELECT allma_validate_flow($$ {"id": "x", "startStepInstanceId": "s", "steps": {"s":
  {"stepType": "START_FLOW_EXECUTION", "flowDefinitionId": "c", "customConfig": {"sync": 1}}}} $$);
SELECT allma_validate_flow($$ {"id": "x", "startStepInstanceId": "s", "steps": {"s":
  {"stepType": "START_FLOW_EXECUTION", "flowDefinitionId": "c", "flowVersion": -1}}} $$);
SELECT allma_validate_flow($$ {"id": "x", "startStepInstanceId": "s", "steps": {"s":
  {"stepType": "START_SUB_FLOW", "subFlowDefinitionId": "c", "subFlowExecutionMode": "sometimes"}}} $$);
SELECT allma_validate_flow($$ {"id": "x", "startStepInstanceId": "s", "steps": {"s":
  {"stepType": "START_SUB_FLOW"}}} $$);
SELECT allma_validate_flow($$ {"id": "x", "startStepInstanceId": "s", "steps": {"s":
  {"stepType": "START_SUB_FLOW", "subFlowDefinitionId": "c", "inputMappingsToSubFlow": {"a": 5}}}} $$);

-- versions are pinned at start: a sync parent waiting on its child across
-- a publish of new versions of both flows finishes with the old ones
CREATE FUNCTION public.allma_test_hold(input jsonb) RETURNS jsonb LANGUAGE plpgsql AS $$
BEGIN
	PERFORM pg_advisory_xact_lock_shared(5601);
	RETURN jsonb_build_object('held', true);
END $$;
SELECT allma_bind_module('test/hold', 'public.allma_test_hold(jsonb)');
SELECT allma_create_flow($$ {"id": "slow-child", "startStepInstanceId": "hold",
  "steps": {"hold": {"stepType": "CUSTOM_LOGIC", "moduleIdentifier": "test/hold",
                     "defaultNextStepInstanceId": "mark"},
            "mark": {"stepType": "NO_OP", "literals": {"v": "child v1"}, "outputMappings": {"$.mark": "$.v"}}}} $$);
SELECT allma_create_flow($$ {"id": "pinned", "startStepInstanceId": "call",
  "steps": {"call": {"stepType": "START_SUB_FLOW", "subFlowDefinitionId": "slow-child",
                     "outputMappings": {"$.childMark": "$.mark"}, "defaultNextStepInstanceId": "end"},
            "end": {"stepType": "NO_OP", "literals": {"v": "parent v1"}, "outputMappings": {"$.mark": "$.v"}}}} $$);
SELECT pg_advisory_lock(5601);
SELECT allma_start_flow('pinned', '{}') AS p \gset
SELECT pg_temp.await_path(:'p', 'WAITING');
SELECT allma_create_flow($$ {"id": "pinned", "startStepInstanceId": "call",
  "steps": {"call": {"stepType": "NO_OP", "defaultNextStepInstanceId": "end"},
            "end": {"stepType": "NO_OP", "literals": {"v": "parent v2"}, "outputMappings": {"$.mark": "$.v"}}}} $$);
SELECT allma_create_flow($$ {"id": "slow-child", "startStepInstanceId": "mark",
  "steps": {"mark": {"stepType": "NO_OP", "literals": {"v": "child v2"}, "outputMappings": {"$.mark": "$.v"}}}} $$);
SELECT published_version FROM allma.flows WHERE flow_id IN ('pinned', 'slow-child') ORDER BY flow_id;
SELECT pg_advisory_unlock(5601);
SELECT allma_wait(:'p');
SELECT flow_version, output->>'mark' AS mark, output->>'childMark' AS child_mark
  FROM allma.executions WHERE execution_id = :'p';
SELECT flow_version FROM allma.executions WHERE execution_id = pg_temp.child(:'p');

-- branches of a fork may wait for sync children: each child wakes its branch
SELECT allma_create_flow($$ {"id": "fork-subs", "startStepInstanceId": "fork",
  "steps": {
    "fork": {"stepType": "PARALLEL_FORK_MANAGER", "itemsPath": "$.names",
             "parallelBranches": [{"branchId": "b", "stepInstanceId": "sub"}]},
    "sub": {"stepType": "START_SUB_FLOW", "subFlowDefinitionId": "child", "subFlowVersion": 1,
            "inputMappingsToSubFlow": {"name": "$.currentItem"},
            "outputMappings": {"$.output": "$.result.greeting"}}}} $$);
SELECT allma_start_flow('fork-subs', '{"names": ["a", "b", "c"]}') AS p \gset
SELECT allma_wait(:'p');
SELECT output->'steps_output'->'fork'->'aggregatedData' AS greetings
  FROM allma.executions WHERE execution_id = :'p';
SELECT count(*) AS children, count(DISTINCT parent_path_id) AS distinct_waiting_paths,
       bool_and(parent_path_id > 0) AS branch_paths
  FROM allma.executions WHERE parent_execution_id = :'p';
-- with maxConcurrency, a branch waiting for its child is not taken for a
-- queued branch when another branch finishes: it starts exactly one child
CREATE FUNCTION pg_temp.await_completed(e uuid, n int) RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
	FOR i IN 1..6000 LOOP
		IF EXISTS (SELECT FROM allma.fork_progress WHERE execution_id = e AND completed >= n) THEN
			RETURN true;
		END IF;
		PERFORM pg_sleep(0.01);
	END LOOP;
	RETURN false;
END $$;
-- (the child's step is a timer far in the future, so that no worker is
-- busy with it; the test ends the child as a worker would)
SELECT allma_create_flow($$ {"id": "late-child", "startStepInstanceId": "late",
  "steps": {"late": {"stepType": "NO_OP", "delay": {"milliseconds": 86400000, "position": "before"}}}} $$);
SELECT allma_create_flow($$ {"id": "fork-subs-2", "startStepInstanceId": "fork",
  "steps": {
    "fork": {"stepType": "PARALLEL_FORK_MANAGER", "itemsPath": "$.items",
             "parallelBranches": [{"branchId": "sub", "stepInstanceId": "sub", "condition": "$.currentItem == 1"},
                                  {"branchId": "quick", "stepInstanceId": "quick", "condition": "$.currentItem > 1"}],
             "aggregationConfig": {"maxConcurrency": 2}},
    "sub": {"stepType": "START_SUB_FLOW", "subFlowDefinitionId": "late-child",
            "outputMappings": {"$.output": "$.mark"}},
    "quick": {"stepType": "NO_OP", "literals": {"q": "quick"}, "outputMappings": {"$.output": "$.q"}}}} $$);
SELECT allma_start_flow('fork-subs-2', '{"items": [1, 2, 3, 4, 5, 6]}') AS p \gset
SELECT pg_temp.await_completed(:'p', 5) AS quick_branches_done;
SELECT running, queued, completed FROM allma.fork_progress WHERE execution_id = :'p';
UPDATE allma.executions SET status = 'COMPLETED', output = '{"mark": "late"}', ended_at = clock_timestamp()
 WHERE parent_execution_id = :'p';
SELECT allma_wait(:'p');
SELECT output->'steps_output'->'fork'->'aggregatedData' AS marks,
       (SELECT count(*) FROM allma.executions WHERE parent_execution_id = :'p') AS children
  FROM allma.executions WHERE execution_id = :'p';

-- versions are immutable, for superusers too
UPDATE allma.flow_versions SET definition = definition || '{"description": "x"}'
 WHERE flow_id = 'child' AND version = 1;
UPDATE allma.flow_versions SET version = 99 WHERE flow_id = 'child' AND version = 1;
SELECT count(*) FROM allma.flow_versions WHERE flow_id = 'child' AND definition ? 'description';
