-- PARALLEL_FORK_MANAGER: branches as rows, conditions, strategies,
-- maxConcurrency, failures, tolerated failures, nested forks, limits.
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS allma;
RESET client_min_messages;

CREATE FUNCTION pg_temp.fork_flow(id text, fork jsonb, extra_steps jsonb DEFAULT '{}') RETURNS int
LANGUAGE sql AS $$
  SELECT allma_create_flow(jsonb_build_object('id', id, 'startStepInstanceId', 'fork',
    'steps', jsonb_build_object(
      'fork', jsonb_build_object('stepType', 'PARALLEL_FORK_MANAGER', 'itemsPath', '$.items',
                                 'defaultNextStepInstanceId', 'after') || fork,
      'after', jsonb_build_object('stepType', 'NO_OP'),
      'square', jsonb_build_object('stepType', 'CUSTOM_LOGIC', 'moduleIdentifier', 'test/square',
                                   'inputMappings', jsonb_build_object('n', '$.currentItem'),
                                   'outputMappings', jsonb_build_object('$.output', '$.sq')),
      'label', jsonb_build_object('stepType', 'NO_OP',
                                  'literals', jsonb_build_object('label', 'item {{currentItem}} of {{owner}}')))
      || extra_steps)) $$;
CREATE FUNCTION pg_temp.run(flow text, input jsonb) RETURNS uuid
LANGUAGE plpgsql AS $$ BEGIN RETURN allma_start_flow(flow, input); END $$;
CREATE FUNCTION pg_temp.result(e uuid) RETURNS jsonb LANGUAGE sql AS $$
  SELECT output->'steps_output'->'fork' FROM allma.executions WHERE execution_id = e $$;

CREATE FUNCTION public.allma_test_square(input jsonb) RETURNS jsonb LANGUAGE plpgsql AS $$
BEGIN
	IF (input->>'n')::int < 0 THEN
		RAISE EXCEPTION 'negative input %', input->>'n';
	END IF;
	RETURN jsonb_build_object('sq', (input->>'n')::int * (input->>'n')::int);
END $$;
SELECT allma_bind_module('test/square', 'public.allma_test_square(jsonb)');

-- COLLECT_ARRAY: results in item order; every matching branch runs per item;
-- branches see the parent context plus currentItem; branch inputMappings/literals
SELECT pg_temp.fork_flow('collect', $$ {"parallelBranches": [
    {"branchId": "sq", "stepInstanceId": "square"},
    {"branchId": "lbl", "stepInstanceId": "label", "condition": "$.currentItem >= 3"}]} $$);
SELECT pg_temp.run('collect', '{"items": [1, 2, 3, 4], "owner": "ada"}') AS e \gset
SELECT allma_wait(:'e');
SELECT pg_temp.result(:'e');
SELECT branch_id, count(*) FROM allma.step_executions
 WHERE execution_id = :'e' AND branch_id IS NOT NULL GROUP BY 1 ORDER BY 1;
SELECT step_instance_id, seq FROM allma.step_executions
 WHERE execution_id = :'e' AND path_id = 0 ORDER BY seq;
-- nothing is left behind once the fork has joined
SELECT count(*) AS paths, (SELECT count(*) FROM allma.forks WHERE execution_id = :'e') AS forks
  FROM allma.execution_paths WHERE execution_id = :'e';

-- dataPath picks a part of each branch result
SELECT pg_temp.fork_flow('datapath', $$ {"parallelBranches": [{"branchId": "l", "stepInstanceId": "label"}],
  "aggregationConfig": {"dataPath": "$.label"}} $$);
SELECT pg_temp.run('datapath', '{"items": ["x", "y"], "owner": "bo"}') AS e \gset
SELECT allma_wait(:'e'), pg_temp.result(:'e');

-- MERGE_OBJECTS, SUM, NONE
SELECT pg_temp.fork_flow('merge', $$ {"parallelBranches": [{"branchId": "b", "stepInstanceId": "obj"}],
  "aggregationConfig": {"strategy": "MERGE_OBJECTS"}} $$,
  $$ {"obj": {"stepType": "NO_OP", "literals": {"k": "$.currentItem.k", "v": "$.currentItem.v"},
              "outputMappings": {"$.output": "$.v"}}} $$);
SELECT pg_temp.run('merge', '{"items": [{"k": "a", "v": {"a": 1}}, {"k": "b", "v": {"b": 2}}, {"k": "a2", "v": {"a": 3}}]}') AS e \gset
SELECT allma_wait(:'e'), pg_temp.result(:'e');
SELECT pg_temp.fork_flow('sum', $$ {"parallelBranches": [{"branchId": "sq", "stepInstanceId": "square"}],
  "aggregationConfig": {"strategy": "SUM"}} $$);
SELECT pg_temp.run('sum', '{"items": [1, 2, 3]}') AS e \gset
SELECT allma_wait(:'e'), pg_temp.result(:'e');
SELECT pg_temp.fork_flow('none', $$ {"parallelBranches": [{"branchId": "sq", "stepInstanceId": "square"}],
  "aggregationConfig": {"strategy": "NONE"}} $$);
SELECT pg_temp.run('none', '{"items": [1, 2, 3]}') AS e \gset
SELECT allma_wait(:'e'), pg_temp.result(:'e');

-- empty item list, no matching branch, and a non-array item
SELECT pg_temp.run('collect', '{"items": []}') AS e1 \gset
SELECT pg_temp.run('collect', '{}') AS e2 \gset
SELECT pg_temp.run('sum', '{"items": 5}') AS e3 \gset
SELECT allma_wait(:'e1'), allma_wait(:'e2'), allma_wait(:'e3');
SELECT pg_temp.result(:'e1') AS empty, pg_temp.result(:'e2') AS absent, pg_temp.result(:'e3') AS single;
SELECT pg_temp.fork_flow('nomatch', $$ {"parallelBranches": [{"branchId": "b", "stepInstanceId": "label", "condition": "$.currentItem > 100"}],
  "aggregationConfig": {"strategy": "MERGE_OBJECTS"}} $$);
SELECT pg_temp.run('nomatch', '{"items": [1, 2]}') AS e \gset
SELECT allma_wait(:'e'), pg_temp.result(:'e');

-- a failing branch fails the fork (failOnBranchError defaults to true) ...
SELECT pg_temp.run('collect', '{"items": [1, -2, 3]}') AS e \gset
SELECT allma_wait(:'e');
SELECT error->>'errorName' AS name, error->>'errorMessage' AS message,
       error->'errorDetails'->'branchCount' AS branches, error->'errorDetails'->'failedBranchCount' AS failed,
       error->'errorDetails'->'branchErrors'->0->>'branchId' AS first_branch,
       error->'errorDetails'->'branchErrors'->0->'error'->>'errorMessage' AS first_error
  FROM allma.executions WHERE execution_id = :'e';
-- ... which a catch rule on the fork step can handle
SELECT pg_temp.fork_flow('caught', $$ {"parallelBranches": [{"branchId": "sq", "stepInstanceId": "square"}],
  "onError": {"catch": [{"errorEquals": ["ParallelBranchExecutionError"], "nextStepInstanceId": "after"}]}} $$);
SELECT pg_temp.run('caught', '{"items": [-1, 2]}') AS e \gset
SELECT allma_wait(:'e');
SELECT output->'errorInfo'->>'errorName' AS caught FROM allma.executions WHERE execution_id = :'e';
-- failOnBranchError false: errors in place (COLLECT_ARRAY) or under _branchErrors (MERGE_OBJECTS)
SELECT pg_temp.fork_flow('lenient', $$ {"parallelBranches": [{"branchId": "sq", "stepInstanceId": "square"}],
  "aggregationConfig": {"failOnBranchError": false}} $$);
SELECT pg_temp.run('lenient', '{"items": [1, -2, 3]}') AS e \gset
SELECT allma_wait(:'e');
SELECT jsonb_path_query_array(pg_temp.result(:'e'), '$.aggregatedData[*] ? (@.type() == "number")') AS numbers,
       pg_temp.result(:'e')->'aggregatedData'->1->>'branchId' AS failed_branch,
       pg_temp.result(:'e')->'aggregatedData'->1->'error'->>'errorName' AS failed_name;
-- tolerated failures: a percentage or a count
SELECT pg_temp.fork_flow('tolerant', $$ {"parallelBranches": [{"branchId": "sq", "stepInstanceId": "square"}],
  "aggregationConfig": {"strategy": "SUM", "toleratedFailurePercentage": 34}} $$);
SELECT pg_temp.run('tolerant', '{"items": [1, -2, 3]}') AS ok1 \gset
SELECT pg_temp.run('tolerant', '{"items": [1, -2, -3]}') AS bad1 \gset
SELECT pg_temp.fork_flow('tolerant-count', $$ {"parallelBranches": [{"branchId": "sq", "stepInstanceId": "square"}],
  "aggregationConfig": {"strategy": "SUM", "toleratedFailureCount": 1}} $$);
SELECT pg_temp.run('tolerant-count', '{"items": [1, -2, 3]}') AS ok2 \gset
SELECT pg_temp.run('tolerant-count', '{"items": [-1, -2, 3]}') AS bad2 \gset
SELECT allma_wait(:'ok1') AS pct_ok, allma_wait(:'bad1') AS pct_bad,
       allma_wait(:'ok2') AS count_ok, allma_wait(:'bad2') AS count_bad;
SELECT pg_temp.result(:'ok1') AS pct_sum, pg_temp.result(:'ok2') AS count_sum;

-- maxConcurrency: never more than that many branches of the fork at once.
-- Each branch is two steps with a 20 ms timer between them (2000 ms scaled
-- by allma.timer_scale); a branch lives from its first step's start to its
-- last step's end, and at no branch start are more than 2 alive.
SELECT pg_temp.fork_flow('throttled', $$ {"parallelBranches": [{"branchId": "w", "stepInstanceId": "first"}],
  "aggregationConfig": {"maxConcurrency": 2, "strategy": "NONE"}} $$,
  $$ {"first": {"stepType": "NO_OP", "defaultNextStepInstanceId": "second"},
      "second": {"stepType": "NO_OP", "delay": {"milliseconds": 2000, "position": "before"}}} $$);
SELECT pg_temp.run('throttled', '{"items": [1, 2, 3, 4, 5, 6]}') AS e \gset
SELECT allma_wait(:'e'), pg_temp.result(:'e');
WITH life AS (
  SELECT path_id, min(started_at) AS born, max(ended_at) AS died
    FROM allma.step_executions WHERE execution_id = :'e' AND branch_id IS NOT NULL
   GROUP BY path_id)
SELECT count(*) AS branches,
       (SELECT max((SELECT count(*) FROM life o WHERE o.born <= l.born AND l.born < o.died))
          FROM life l) AS peak_alive,
       bool_and(died - born >= interval '20 ms') AS each_waited
  FROM life;

-- progress is visible while a fork runs: the test holds an advisory lock
-- that the branch step waits for, so the first branch is certainly running
-- (and the others queued) when progress is read; then it lets them go.
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
SELECT pg_temp.fork_flow('slow-fork', $$ {"parallelBranches": [{"branchId": "w", "stepInstanceId": "wait"}],
  "aggregationConfig": {"maxConcurrency": 1}} $$,
  $$ {"wait": {"stepType": "DATA_LOAD", "moduleIdentifier": "system/sql-query",
              "customConfig": {"sql": "SELECT true AS passed FROM pg_advisory_xact_lock_shared(4242)"}}} $$);
SELECT pg_advisory_lock(4242);
SELECT pg_temp.run('slow-fork', '{"items": [1, 2, 3]}') AS e \gset
SELECT pg_temp.wait_until($$ SELECT EXISTS (SELECT FROM pg_locks WHERE locktype = 'advisory'
                                               AND objid = 4242 AND NOT granted) $$) AS branch_waits;
SELECT step_instance_id, total, running, queued, completed, failed
  FROM allma.fork_progress WHERE execution_id = :'e';
SELECT pg_advisory_unlock(4242);
SELECT allma_wait(:'e'), pg_temp.result(:'e');
SELECT count(*) AS progress_rows_left FROM allma.fork_progress WHERE execution_id = :'e';

-- nested forks: a branch forks again
SELECT allma_create_flow($$ {"id": "nested", "startStepInstanceId": "outer", "steps": {
  "outer": {"stepType": "PARALLEL_FORK_MANAGER", "itemsPath": "$.groups",
            "parallelBranches": [{"branchId": "group", "stepInstanceId": "inner"}]},
  "inner": {"stepType": "PARALLEL_FORK_MANAGER", "itemsPath": "$.currentItem.members",
            "parallelBranches": [{"branchId": "member", "stepInstanceId": "sq"}],
            "aggregationConfig": {"strategy": "SUM"}, "outputMappings": {"$.output": "$.aggregatedData"}},
  "sq": {"stepType": "CUSTOM_LOGIC", "moduleIdentifier": "test/square",
         "inputMappings": {"n": "$.currentItem"}, "outputMappings": {"$.output": "$.sq"}}}} $$);
SELECT pg_temp.run('nested', '{"groups": [{"members": [1, 2]}, {"members": [3]}, {"members": []}]}') AS e \gset
SELECT allma_wait(:'e');
SELECT output->'steps_output'->'outer' FROM allma.executions WHERE execution_id = :'e';

-- two forks in a row on the same path (the second starts in the pass that joins the first)
SELECT allma_create_flow($$ {"id": "two-forks", "startStepInstanceId": "one", "steps": {
  "one": {"stepType": "PARALLEL_FORK_MANAGER", "itemsPath": "$.items",
          "parallelBranches": [{"branchId": "a", "stepInstanceId": "sq"}], "defaultNextStepInstanceId": "two"},
  "two": {"stepType": "PARALLEL_FORK_MANAGER", "itemsPath": "$.items",
          "parallelBranches": [{"branchId": "b", "stepInstanceId": "sq"}],
          "aggregationConfig": {"strategy": "SUM"}},
  "sq": {"stepType": "CUSTOM_LOGIC", "moduleIdentifier": "test/square",
         "inputMappings": {"n": "$.currentItem"}, "outputMappings": {"$.output": "$.sq"}}}} $$);
SELECT pg_temp.run('two-forks', '{"items": [2, 3]}') AS e \gset
SELECT allma_wait(:'e');
SELECT output->'steps_output'->'one' AS one, output->'steps_output'->'two' AS two
  FROM allma.executions WHERE execution_id = :'e';

-- allma.max_fork_branches caps the width with a catchable error
-- (100 branch templates x 10,001 items: one more than the default 1,000,000)
SELECT pg_temp.fork_flow('too-wide', jsonb_build_object('parallelBranches',
  (SELECT jsonb_agg(jsonb_build_object('branchId', 'a' || g, 'stepInstanceId', 'label')) FROM generate_series(1, 100) g)));
SELECT pg_temp.run('too-wide', jsonb_build_object('items', (SELECT jsonb_agg(g) FROM generate_series(1, 10001) g))) AS e \gset
SELECT allma_wait(:'e');
SELECT error->>'errorName' AS name, error->>'errorMessage' AS message
  FROM allma.executions WHERE execution_id = :'e';

-- an aggregate larger than allma.max_context_size (512kB in the test server)
-- fails the fork step cleanly
SELECT pg_temp.fork_flow('too-big', $$ {"parallelBranches": [{"branchId": "l", "stepInstanceId": "big"}]} $$,
  $$ {"big": {"stepType": "NO_OP", "literals": {"pad": "{{currentItem}} xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"}}} $$);
SELECT pg_temp.run('too-big', jsonb_build_object('items', (SELECT jsonb_agg(g) FROM generate_series(1, 12000) g))) AS e \gset
SELECT allma_wait(:'e');
SELECT error->>'errorName' AS name,
       error->>'errorMessage' LIKE 'execution context of % bytes exceeds allma.max_context_size%' AS too_large,
       (SELECT count(*) FROM allma.execution_paths WHERE execution_id = :'e') AS paths_left
  FROM allma.executions WHERE execution_id = :'e';

DROP FUNCTION public.allma_test_square(jsonb);
