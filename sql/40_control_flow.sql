-- Data flow and control flow through real executions: mappings, literals,
-- templates, transitions, loops and their guard, delays, END_FLOW.
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS allma;
RESET client_min_messages;

-- a helper that runs a flow to completion and returns its execution id
CREATE FUNCTION pg_temp.run(flow text, input jsonb DEFAULT '{}') RETURNS uuid
LANGUAGE plpgsql AS $$ BEGIN RETURN allma_start_flow(flow, input); END $$;
CREATE FUNCTION pg_temp.path(e uuid) RETURNS text LANGUAGE sql AS $$
  SELECT string_agg(step_instance_id || ':' || status, ' > ' ORDER BY seq)
    FROM allma.step_executions WHERE execution_id = e $$;

-- inputMappings (dot paths, runtime-state fallback), literals (templates and
-- typed $.paths), outputMappings (whole output, nested targets, arrays,
-- smart fallback to the input)
SELECT allma_create_flow($$
{"id": "mapping", "startStepInstanceId": "shape",
 "flowVariables": {"greeting": "Hello"},
 "steps": {
  "shape": {"stepType": "DATA_TRANSFORMATION", "moduleIdentifier": "system/compose-object-from-input",
    "inputMappings": {"customer.name": "$.user.name", "customer.tags[1]": "$.user.tag",
                      "exec": "$.flowExecutionId", "flow": "$.flowDefinitionId",
                      "missing": "$.no.such.value"},
    "literals": {"message": "{{flow_variables.greeting}}, {{user.name}}!",
                 "count": "$.user.count", "static": 7},
    "outputMappings": {"$.result.msg": "$.message", "$.result.all": "$",
                       "$.list[2]": "$.count", "$.fromInput": "$.customer.name"},
    "defaultNextStepInstanceId": "silent"},
  "silent": {"stepType": "NO_OP", "outputMappings": {}, "defaultNextStepInstanceId": "default_sink"},
  "default_sink": {"stepType": "NO_OP", "inputMappings": {"v": "$.result.msg"}}
 }}$$);
SELECT pg_temp.run('mapping', '{"user": {"name": "Ada", "tag": "vip", "count": 3}}') AS e \gset
SELECT allma_wait(:'e');
SELECT output->'result'->'msg' AS msg,
       output->'result'->'all'->'customer' AS customer,
       output->'result'->'all'->>'exec' = :'e' AS exec_id_from_runtime,
       output->'result'->'all'->>'flow' AS flow,
       output->'result'->'all' ? 'missing' AS has_missing,
       output->'result'->'all'->'count' AS typed_count,
       output->'result'->'all'->'static' AS static,
       output->'list' AS list,
       output->'fromInput' AS smart_fallback,
       output->'steps_output' ? 'silent' AS silent_wrote,
       output->'steps_output'->'default_sink' AS default_sink
  FROM allma.executions WHERE execution_id = :'e';

-- transitions: the first true condition wins, else the default, else the end
SELECT allma_create_flow($$
{"id": "routing", "startStepInstanceId": "route",
 "steps": {
  "route": {"stepType": "NO_OP",
    "transitions": [
      {"condition": "$.amount > 1000 && $.country == 'FR'", "nextStepInstanceId": "big_fr"},
      {"condition": "$.amount > 1000", "nextStepInstanceId": "big"},
      {"condition": "$.file endsWith '.pdf'", "nextStepInstanceId": "pdf"}],
    "defaultNextStepInstanceId": "small"},
  "big_fr": {"stepType": "NO_OP"},
  "big": {"stepType": "NO_OP"},
  "pdf": {"stepType": "END_FLOW"},
  "small": {"stepType": "NO_OP", "transitions": [{"condition": "$.never", "nextStepInstanceId": "big"}]}
 }}$$);
SELECT pg_temp.run('routing', '{"amount": 5000, "country": "FR"}') AS r1 \gset
SELECT pg_temp.run('routing', '{"amount": 5000, "country": "DE"}') AS r2 \gset
SELECT pg_temp.run('routing', '{"amount": 5, "file": "x.pdf"}') AS r3 \gset
SELECT pg_temp.run('routing', '{"amount": 5}') AS r4 \gset
SELECT allma_wait(:'r1'), allma_wait(:'r2'), allma_wait(:'r3'), allma_wait(:'r4');
SELECT pg_temp.path(:'r1') AS r1, pg_temp.path(:'r2') AS r2, pg_temp.path(:'r3') AS r3,
       pg_temp.path(:'r4') AS r4;

-- a loop with a counter, and the loop guard
CREATE FUNCTION public.allma_test_inc(input jsonb) RETURNS jsonb LANGUAGE sql
  AS $$ SELECT jsonb_build_object('n', coalesce((input->>'n')::int, 0) + 1) $$;
SELECT allma_bind_module('test/inc', 'public.allma_test_inc(jsonb)');
SELECT allma_create_flow($$
{"id": "loop", "startStepInstanceId": "inc",
 "steps": {
  "inc": {"stepType": "CUSTOM_LOGIC", "moduleIdentifier": "test/inc",
    "inputMappings": {"n": "$.n"}, "outputMappings": {"$.n": "$.n"},
    "transitions": [{"condition": "$.n < $.limit", "nextStepInstanceId": "inc", "maxTransitions": 0}],
    "defaultNextStepInstanceId": "done"},
  "done": {"stepType": "END_FLOW"}
 }}$$);
SELECT pg_temp.run('loop', '{"limit": 12}') AS l \gset
SELECT allma_wait(:'l');
SELECT status, output->'n' AS n, (SELECT count(*) FROM allma.step_executions s
  WHERE s.execution_id = x.execution_id AND step_instance_id = 'inc') AS inc_steps
  FROM allma.executions x WHERE execution_id = :'l';

-- default maxTransitions is 5: the sixth traversal fails the step
SELECT allma_create_flow($$
{"id": "guarded", "startStepInstanceId": "inc",
 "steps": {
  "inc": {"stepType": "CUSTOM_LOGIC", "moduleIdentifier": "test/inc",
    "inputMappings": {"n": "$.n"}, "outputMappings": {"$.n": "$.n"},
    "transitions": [{"condition": "$.n < 100", "nextStepInstanceId": "inc"}]}
 }}$$);
SELECT pg_temp.run('guarded') AS g \gset
SELECT allma_wait(:'g');
SELECT status, error->>'errorName' AS name, error->>'errorMessage' AS message,
       error->'errorDetails'->>'failedStepInstanceId' AS step, output->'n' AS n
  FROM allma.executions WHERE execution_id = :'g';

-- the default edge has its own guard (defaultNextMaxTransitions)
SELECT allma_create_flow($$
{"id": "guarded-default", "startStepInstanceId": "a",
 "steps": {"a": {"stepType": "NO_OP", "defaultNextStepInstanceId": "a", "defaultNextMaxTransitions": 2}}}$$);
SELECT pg_temp.run('guarded-default') AS gd \gset
SELECT allma_wait(:'gd');
SELECT status, error->>'errorMessage' AS message, pg_temp.path(:'gd') AS path
  FROM allma.executions WHERE execution_id = :'gd';

-- delays are durable timers (allma.timer_scale = 0.01 in the test server:
-- 5000 ms become 50 ms)
SELECT allma_create_flow($$
{"id": "delays", "startStepInstanceId": "a",
 "steps": {
  "a": {"stepType": "NO_OP", "delay": {"milliseconds": 5000, "position": "after"},
        "defaultNextStepInstanceId": "b"},
  "b": {"stepType": "NO_OP", "delay": {"milliseconds": 5000, "position": "before"},
        "defaultNextStepInstanceId": "c"},
  "c": {"stepType": "NO_OP", "delay": {"delayFrom": 3000, "delayTo": 4000}}
 }}$$);
SELECT pg_temp.run('delays') AS d \gset
SELECT allma_wait(:'d');
SELECT b.started_at - a.ended_at >= interval '100 ms' AS after_plus_before_waited
  FROM allma.step_executions a, allma.step_executions b
 WHERE a.execution_id = :'d' AND b.execution_id = :'d'
   AND a.step_instance_id = 'a' AND b.step_instance_id = 'b';

-- END_FLOW ends the execution even with steps after it
SELECT allma_create_flow($$
{"id": "early-end", "startStepInstanceId": "a",
 "steps": {"a": {"stepType": "END_FLOW", "defaultNextStepInstanceId": "b"},
           "b": {"stepType": "NO_OP"}}}$$);
SELECT pg_temp.run('early-end') AS ee \gset
SELECT allma_wait(:'ee'), pg_temp.path(:'ee');

-- trigger markers are no-ops; a step type this version does not run fails cleanly
SELECT allma_create_flow($$
{"id": "unsupported", "startStepInstanceId": "mark",
 "steps": {"mark": {"stepType": "SCHEDULE_START_POINT", "defaultNextStepInstanceId": "call"},
           "call": {"stepType": "SQS_SEND", "queueUrl": "https://sqs.example.test/q"}}}$$);
SELECT pg_temp.run('unsupported') AS u \gset
SELECT allma_wait(:'u');
-- (the message names the running version, which is not part of the test)
SELECT pg_temp.path(:'u'), error->>'errorName' AS name,
       regexp_replace(error->>'errorMessage', 'allma [0-9.]+$', 'allma <version>') AS message
  FROM allma.executions WHERE execution_id = :'u';

-- a module without a built-in implementation or binding fails with a hint
SELECT allma_create_flow($$
{"id": "unbound", "startStepInstanceId": "load",
 "steps": {"load": {"stepType": "DATA_LOAD", "moduleIdentifier": "system/sqs-receive-messages"}}}$$);
SELECT pg_temp.run('unbound') AS ub \gset
SELECT allma_wait(:'ub');
SELECT error->>'errorName' AS name, error->>'errorMessage' AS message,
       error->'errorDetails'->>'hint' AS hint
  FROM allma.executions WHERE execution_id = :'ub';

-- allma.max_context_size: a step whose output makes the context too big fails
-- (an output above allma.out_of_line_threshold, 1MB, would go out of line)
SELECT allma_create_flow($$
{"id": "huge", "startStepInstanceId": "gen",
 "steps": {"gen": {"stepType": "DATA_TRANSFORMATION", "moduleIdentifier": "system/generate-array",
                   "customConfig": {"count": 60000}}}}$$);
SELECT pg_temp.run('huge') AS h \gset
SELECT allma_wait(:'h');
SELECT error->>'errorName' AS name, error->>'errorMessage' LIKE 'execution context of % bytes exceeds allma.max_context_size%' AS message
  FROM allma.executions WHERE execution_id = :'h';

DROP FUNCTION public.allma_test_inc(jsonb);
