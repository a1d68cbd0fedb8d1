-- allma benchmark objects: flows and procedures used by bench/run.sh
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS allma;

-- (b) a 20-step flow alternating NO_OP and a transformation that reads the
-- previous step's output through an input mapping
DO $$
DECLARE
	steps jsonb := '{}';
	i int;
	step jsonb;
BEGIN
	FOR i IN 1..20 LOOP
		IF i % 2 = 1 THEN
			step := jsonb_build_object('stepType', 'NO_OP');
		ELSE
			step := jsonb_build_object(
				'stepType', 'DATA_TRANSFORMATION',
				'moduleIdentifier', 'system/compose-object-from-input',
				'inputMappings', jsonb_build_object('n', '$.n', 'prev', format('$.steps_output.s%s', i - 1)),
				'outputMappings', jsonb_build_object(format('$.steps_output.s%s', i), '$.n'));
		END IF;
		IF i < 20 THEN
			step := step || jsonb_build_object('defaultNextStepInstanceId', format('s%s', i + 1));
		END IF;
		steps := steps || jsonb_build_object(format('s%s', i), step);
	END LOOP;
	PERFORM allma_create_flow(jsonb_build_object('id', 'bench20', 'startStepInstanceId', 's1',
												 'steps', steps));
END $$;

-- (c) a 3-step flow
SELECT allma_create_flow('{"id": "lat3", "startStepInstanceId": "a", "steps": {
  "a": {"stepType": "NO_OP", "defaultNextStepInstanceId": "b"},
  "b": {"stepType": "DATA_TRANSFORMATION", "moduleIdentifier": "system/compose-object-from-input",
        "inputMappings": {"x": "$.x"}, "defaultNextStepInstanceId": "c"},
  "c": {"stepType": "END_FLOW"}}}');

CREATE TABLE IF NOT EXISTS bench_latency (run int, ms double precision);

CREATE OR REPLACE PROCEDURE bench_latency_run(run int, n int)
LANGUAGE plpgsql AS $$
DECLARE
	e uuid;
	t0 timestamptz;
BEGIN
	FOR i IN 1..n LOOP
		t0 := clock_timestamp();
		e := allma_start_flow('lat3', '{"x": 1}');
		COMMIT;
		IF allma_wait(e, '30 s') <> 'COMPLETED' THEN
			RAISE EXCEPTION 'latency run: execution % did not complete', e;
		END IF;
		INSERT INTO bench_latency VALUES (run, extract(epoch FROM clock_timestamp() - t0) * 1000);
		COMMIT;
	END LOOP;
END $$;

-- throughput: start n executions in one transaction, wait for all of them
CREATE OR REPLACE PROCEDURE bench_throughput_run(n int, INOUT seconds double precision)
LANGUAGE plpgsql AS $$
DECLARE
	t0 timestamptz;
	left_running bigint;
BEGIN
	DELETE FROM allma.step_executions;
	DELETE FROM allma.executions;
	COMMIT;
	t0 := clock_timestamp();
	PERFORM allma_start_flow('bench20', jsonb_build_object('n', g)) FROM generate_series(1, n) g;
	COMMIT;
	LOOP
		SELECT count(*) INTO left_running FROM allma.executions WHERE status = 'RUNNING';
		EXIT WHEN left_running = 0;
		PERFORM pg_sleep(0.01);
		COMMIT;
	END LOOP;
	seconds := extract(epoch FROM clock_timestamp() - t0);
	IF (SELECT count(*) FROM allma.executions WHERE status <> 'COMPLETED') > 0 THEN
		RAISE EXCEPTION 'throughput run: some executions failed';
	END IF;
END $$;

-- (d) fan-out: one execution forking n NO_OP branches, COLLECT_ARRAY
SELECT allma_create_flow('{"id": "fanout", "startStepInstanceId": "fork", "steps": {
  "fork": {"stepType": "PARALLEL_FORK_MANAGER", "itemsPath": "$.items",
           "parallelBranches": [{"branchId": "b", "stepInstanceId": "noop"}],
           "aggregationConfig": {"strategy": "COLLECT_ARRAY"}},
  "noop": {"stepType": "NO_OP"}}}');

-- bench_wait: allma_wait for a long run in statements of at most a second,
-- committed in between.  One statement waiting for the whole run holds its
-- snapshot, and with it the xmin horizon, from start to end: no row version
-- the run leaves behind can be removed or its index entries killed, and a
-- million-branch fork then walks every finished branch's dead versions
-- (the claim, the next-due search).  A client polling from outside holds
-- nothing; neither does this.
CREATE OR REPLACE PROCEDURE bench_wait(e uuid, lim interval, INOUT st text)
LANGUAGE plpgsql AS $$
DECLARE
	t0 timestamptz := clock_timestamp();
BEGIN
	LOOP
		st := allma_wait(e, '1 s');
		COMMIT;
		EXIT WHEN st NOT IN ('RUNNING', 'QUEUED') OR clock_timestamp() - t0 > lim;
	END LOOP;
END $$;

CREATE OR REPLACE PROCEDURE bench_fork_run(n int, INOUT seconds double precision)
LANGUAGE plpgsql AS $$
DECLARE
	e uuid;
	st text;
BEGIN
	e := allma_start_flow('fanout', jsonb_build_object('items', (SELECT jsonb_agg(g) FROM generate_series(1, n) g)));
	COMMIT;
	CALL bench_wait(e, '30 min', st);
	IF st <> 'COMPLETED' THEN
		RAISE EXCEPTION 'fan-out run: execution % did not complete', e;
	END IF;
	SELECT extract(epoch FROM ended_at - started_at) INTO seconds FROM allma.executions WHERE execution_id = e;
	-- a wide aggregate is out of line: its pointer says how many results
	IF (SELECT coalesce((output->'steps_output'->'fork'->'aggregatedData'->>'length')::int,
	                    jsonb_array_length(output->'steps_output'->'fork'->'aggregatedData'))
	      FROM allma.executions WHERE execution_id = e) <> n THEN
		RAISE EXCEPTION 'fan-out run: wrong number of results';
	END IF;
	DELETE FROM allma.step_executions WHERE execution_id = e;
	DELETE FROM allma.executions WHERE execution_id = e;
END $$;

-- (d') fan-out of one SQL step per branch (scale): like bench_fork_run, of flow f
SELECT allma_create_flow('{"id": "fanout_sql", "startStepInstanceId": "fork", "steps": {
  "fork": {"stepType": "PARALLEL_FORK_MANAGER", "itemsPath": "$.items",
           "parallelBranches": [{"branchId": "b", "stepInstanceId": "q"}],
           "aggregationConfig": {"strategy": "COLLECT_ARRAY"}},
  "q": {"stepType": "DATA_LOAD", "moduleIdentifier": "system/sql-query",
        "customConfig": {"sql": "SELECT $1::int * 2 AS v", "parameters": ["$.currentItem"]}}}}');

CREATE OR REPLACE PROCEDURE bench_fork_flow_run(f text, n int, INOUT seconds double precision)
LANGUAGE plpgsql AS $$
DECLARE
	e uuid;
	st text;
BEGIN
	e := allma_start_flow(f, jsonb_build_object('items', (SELECT jsonb_agg(g) FROM generate_series(1, n) g)));
	COMMIT;
	CALL bench_wait(e, '60 min', st);
	IF st <> 'COMPLETED' THEN
		RAISE EXCEPTION 'fan-out run: execution % did not complete', e;
	END IF;
	SELECT extract(epoch FROM ended_at - started_at) INTO seconds FROM allma.executions WHERE execution_id = e;
	IF (SELECT coalesce((output->'steps_output'->'fork'->'aggregatedData'->>'length')::int,
	                    jsonb_array_length(output->'steps_output'->'fork'->'aggregatedData'))
	      FROM allma.executions WHERE execution_id = e) <> n THEN
		RAISE EXCEPTION 'fan-out run: wrong number of results';
	END IF;
	DELETE FROM allma.step_executions WHERE execution_id = e;
	DELETE FROM allma.executions WHERE execution_id = e;
END $$;

-- (e) HTTP: n concurrent executions, each one API_CALL to the mock server
CREATE OR REPLACE PROCEDURE bench_api_run(n int, base_url text, INOUT seconds double precision)
LANGUAGE plpgsql AS $$
DECLARE
	t0 timestamptz;
	left_running bigint;
BEGIN
	PERFORM allma_create_flow(jsonb_build_object('id', 'api1', 'startStepInstanceId', 'call',
		'steps', jsonb_build_object('call', jsonb_build_object(
			'stepType', 'API_CALL', 'apiHttpMethod', 'GET',
			'apiUrlTemplate', jsonb_build_object('template', base_url || '/echo?latency_ms=500')))));
	DELETE FROM allma.step_executions;
	DELETE FROM allma.executions;
	COMMIT;
	t0 := clock_timestamp();
	PERFORM allma_start_flow('api1') FROM generate_series(1, n);
	COMMIT;
	-- measured from the commit of the starts: the steps' own throughput
	t0 := clock_timestamp();
	LOOP
		SELECT count(*) INTO left_running FROM allma.executions WHERE status = 'RUNNING';
		EXIT WHEN left_running = 0;
		PERFORM pg_sleep(0.02);
		COMMIT;
	END LOOP;
	-- to the last completion itself, not to the poll that noticed it
	seconds := extract(epoch FROM (SELECT max(ended_at) FROM allma.executions) - t0);
	IF (SELECT count(*) FROM allma.executions WHERE status <> 'COMPLETED') > 0 THEN
		RAISE EXCEPTION 'api run: % executions failed',
			(SELECT count(*) FROM allma.executions WHERE status <> 'COMPLETED');
	END IF;
END $$;

-- (f) LLM: n concurrent executions, each one LLM_INVOCATION (OpenAI-compatible mock, 500 ms)
CREATE OR REPLACE PROCEDURE bench_llm_run(n int, base_url text, INOUT seconds double precision)
LANGUAGE plpgsql AS $$
DECLARE
	left_running bigint;
	t0 timestamptz;
BEGIN
	PERFORM allma_set_secret('OPENAI_API_KEY', 'bench-key');
	PERFORM allma_create_prompt('bench-prompt', 'Answer about {{n}}');
	PERFORM allma_create_flow(jsonb_build_object('id', 'llm1', 'startStepInstanceId', 'ask',
		'steps', jsonb_build_object('ask', jsonb_build_object(
			'stepType', 'LLM_INVOCATION', 'llmProvider', 'OPENAI', 'modelId', 'mock-slow-500',
			'promptTemplateId', 'bench-prompt', 'inputMappings', jsonb_build_object('n', '$.n'),
			'customConfig', jsonb_build_object('baseUrl', base_url || '/v1', 'apiKeySecret', 'OPENAI_API_KEY',
				'jsonOutputMode', true)))));
	DELETE FROM allma.step_executions;
	DELETE FROM allma.executions;
	COMMIT;
	t0 := clock_timestamp();
	PERFORM allma_start_flow('llm1', jsonb_build_object('n', g)) FROM generate_series(1, n) g;
	COMMIT;
	-- measured from the commit of the starts: the steps' own throughput
	t0 := clock_timestamp();
	LOOP
		SELECT count(*) INTO left_running FROM allma.executions WHERE status = 'RUNNING';
		EXIT WHEN left_running = 0;
		PERFORM pg_sleep(0.02);
		COMMIT;
	END LOOP;
	-- to the last completion itself, not to the poll that noticed it
	seconds := extract(epoch FROM (SELECT max(ended_at) FROM allma.executions) - t0);
	IF (SELECT count(*) FROM allma.executions WHERE status <> 'COMPLETED') > 0 THEN
		RAISE EXCEPTION 'llm run: % executions failed',
			(SELECT count(*) FROM allma.executions WHERE status <> 'COMPLETED');
	END IF;
END $$;

-- workers.sh (w1): one-step executions doing 1 ms of work (a SQL step that
-- sleeps), started as the queue empties so that about `queue` runnable
-- paths are always waiting, for `seconds`.
SELECT allma_create_flow('{"id": "workers_sql", "startStepInstanceId": "a", "steps": {
  "a": {"stepType": "DATA_LOAD", "moduleIdentifier": "system/sql-query",
        "customConfig": {"sql": "SELECT pg_sleep(0.001)"}}}}');

CREATE OR REPLACE PROCEDURE bench_workers_feed(f text, queue int, seconds double precision)
LANGUAGE plpgsql AS $$
DECLARE
	stop timestamptz := clock_timestamp() + make_interval(secs => seconds);
	missing int;
BEGIN
	WHILE clock_timestamp() < stop LOOP
		SELECT queue - count(*) INTO missing FROM allma.execution_paths WHERE status = 'READY';
		IF missing > 0 THEN
			PERFORM allma_start_flow(f) FROM generate_series(1, missing);
		END IF;
		COMMIT;
		PERFORM pg_sleep(0.002);
	END LOOP;
END $$;
