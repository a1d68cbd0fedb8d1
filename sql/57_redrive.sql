-- allma_redrive_execution: from the original input, from a step with the
-- recorded context or a given one; the version stays pinned; who may; errors.
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS allma;
RESET client_min_messages;

-- runs a statement; its error's SQLSTATE and message, ids masked
CREATE FUNCTION pg_temp.err(stmt text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
	EXECUTE stmt;
	RETURN 'no error';
EXCEPTION WHEN OTHERS THEN
	RETURN SQLSTATE || ': ' || regexp_replace(SQLERRM, '[0-9a-f]{8}-[0-9a-f-]{27}', '<id>', 'g');
END $$;

-- a flow that fails at "check" unless $.fixed; "prepare" counts its runs
CREATE TABLE public.redrive_runs (step text, n int);
GRANT INSERT ON public.redrive_runs TO PUBLIC;
SELECT allma_create_flow($$ {"id": "rd", "startStepInstanceId": "prepare",
  "steps": {
    "prepare": {"stepType": "DATA_SAVE", "moduleIdentifier": "system/sql-execute",
                "customConfig": {"sql": "INSERT INTO public.redrive_runs VALUES ('prepare', $1)",
                                 "parameters": ["$.n"]},
                "literals": {"prepared": "yes {{n}}"}, "outputMappings": {"$.prepared": "$.prepared"},
                "defaultNextStepInstanceId": "check"},
    "check": {"stepType": "NO_OP", "transitions": [{"condition": "$.fixed == true", "nextStepInstanceId": "done"}],
              "defaultNextStepInstanceId": "fail"},
    "fail": {"stepType": "DATA_LOAD", "moduleIdentifier": "system/sql-query",
             "customConfig": {"sql": "SELECT 1/0"}},
    "done": {"stepType": "NO_OP", "literals": {"version": "v1"}, "outputMappings": {"$.version": "$.version"}}}} $$);
SELECT allma_start_flow('rd', '{"n": 1}') AS e \gset
SELECT allma_wait(:'e');

-- a new version is published; redrives keep running the original's version 1
SELECT allma_create_flow($$ {"id": "rd", "startStepInstanceId": "done",
  "steps": {"done": {"stepType": "NO_OP", "literals": {"version": "v2"}, "outputMappings": {"$.version": "$.version"}}}} $$);

-- from the input: everything runs again
SELECT allma_redrive_execution(:'e') AS r \gset
SELECT allma_wait(:'r');
SELECT r.flow_version, r.redrive_of = :'e' AS links, r.trigger_source = 'RedriveOf:' || :'e' AS source_ok,
       r.input, r.root_execution_id = r.execution_id AS own_root,
       (SELECT array_agg(step_instance_id ORDER BY seq) FROM allma.step_executions WHERE execution_id = r.execution_id) AS steps
  FROM allma.executions r WHERE r.execution_id = :'r';
SELECT count(*) AS prepare_runs FROM public.redrive_runs;

-- the recorded context: what each main-path step started from
SELECT step_instance_id, context - 'flow_variables' AS context
  FROM allma.step_executions WHERE execution_id = :'e' ORDER BY seq;

-- from a step, with a context that fixes the problem: earlier steps do not run again
SELECT allma_redrive_execution(:'e', 'check', '{"n": 1, "prepared": "yes 1", "fixed": true}') AS r \gset
SELECT allma_wait(:'r');
SELECT status, flow_version, output->>'version' AS version, output->>'prepared' AS prepared,
       options, (SELECT array_agg(step_instance_id ORDER BY seq) FROM allma.step_executions s
                  WHERE s.execution_id = :'r') AS steps
  FROM allma.executions WHERE execution_id = :'r';
SELECT count(*) AS prepare_runs FROM public.redrive_runs;

-- from a step with the recorded context (the same failure again)
SELECT allma_redrive_execution(:'e', 'check') AS r \gset
SELECT allma_wait(:'r');
SELECT status, output->>'prepared' AS prepared, error->>'errorName' AS error,
       output->'flow_variables'->>'flowExecutionId' = :'r' AS own_flow_execution_id
  FROM allma.executions WHERE execution_id = :'r';
-- a redrive of a redrive links to the one it redrives
SELECT allma_redrive_execution(:'r') AS r2 \gset
SELECT redrive_of = :'r' AS links FROM allma.executions WHERE execution_id = :'r2';

-- errors
SELECT pg_temp.err($q$SELECT allma_redrive_execution('00000000-0000-0000-0000-000000000000')$q$);
SELECT pg_temp.err($q$SELECT allma_redrive_execution(NULL)$q$);
SELECT pg_temp.err(format($q$SELECT allma_redrive_execution(%L, 'nope')$q$, :'e'));
SELECT pg_temp.err(format($q$SELECT allma_redrive_execution(%L, 'done')$q$, :'e'));
SELECT pg_temp.err(format($q$SELECT allma_redrive_execution(%L, 'nope', '{}')$q$, :'e'));
SELECT pg_temp.err(format($q$SELECT allma_redrive_execution(%L, NULL, '{"x": 1}')$q$, :'e'));
SELECT pg_temp.err(format($q$SELECT allma_redrive_execution(%L, 'check', '[1]')$q$, :'e'));
-- logs off: nothing recorded, a context must be given
SELECT allma_start_flow('rd', '{"n": 2}', '{"version": 1, "enableExecutionLogs": false}') AS q \gset
SELECT allma_wait(:'q');
SELECT count(*) AS recorded FROM allma.step_executions WHERE execution_id = :'q' AND context IS NOT NULL;
SELECT pg_temp.err(format($q$SELECT allma_redrive_execution(%L, 'check')$q$, :'q'));
SELECT allma_redrive_execution(:'q', 'check', '{"fixed": true}') AS r \gset
SELECT allma_wait(:'r');
SELECT enable_execution_logs FROM allma.executions WHERE execution_id = :'r';
-- a step that ran only in branches
SELECT allma_create_flow($$ {"id": "rd-fork", "startStepInstanceId": "fork",
  "steps": {"fork": {"stepType": "PARALLEL_FORK_MANAGER", "itemsPath": "$.items",
                     "parallelBranches": [{"branchId": "b", "stepInstanceId": "inner"}]},
            "inner": {"stepType": "NO_OP"}}} $$);
SELECT allma_start_flow('rd-fork', '{"items": [1]}') AS f \gset
SELECT allma_wait(:'f');
SELECT pg_temp.err(format($q$SELECT allma_redrive_execution(%L, 'inner')$q$, :'f'));
SELECT allma_redrive_execution(:'f', 'fork') AS r \gset
SELECT allma_wait(:'r');

-- who may: the starter (and roles with its privileges) and allma_admin,
-- each as itself; others see no such execution
CREATE ROLE rd_owner IN ROLE allma_user;
CREATE ROLE rd_other IN ROLE allma_user;
CREATE ROLE rd_admin IN ROLE allma_admin;
SELECT allma_grant_flow('rd', 'rd_owner', 'START');
SET ROLE rd_owner;
SELECT allma_start_flow('rd', '{"n": 3}', '{"version": 1}') AS o \gset
RESET ROLE;
SELECT allma_wait(:'o');
SET ROLE rd_other;
SELECT pg_temp.err(format($q$SELECT allma_redrive_execution(%L)$q$, :'o'));
RESET ROLE;
SET ROLE rd_owner;
SELECT allma_redrive_execution(:'o', 'check', '{"fixed": true}') AS r \gset
RESET ROLE;
SELECT allma_wait(:'r');
SELECT status, started_by FROM allma.executions WHERE execution_id = :'r';
-- allma_admin redrives any execution, as itself
SET ROLE rd_admin;
SELECT allma_redrive_execution(:'o') AS r \gset
RESET ROLE;
SELECT started_by FROM allma.executions WHERE execution_id = :'r';
-- a starter whose START was revoked cannot redrive
SELECT allma_revoke_flow('rd', 'rd_owner', 'START');
SET ROLE rd_owner;
SELECT allma_redrive_execution(:'o');
RESET ROLE;
-- PUBLIC may not call it
CREATE ROLE rd_nobody;
SET ROLE rd_nobody;
SELECT allma_redrive_execution(:'o');
RESET ROLE;
