-- Large values out of line: step outputs, context values and fork
-- aggregates above allma.out_of_line_threshold are stored once in
-- allma.large_values and referenced by a pointer; paths, mappings,
-- templates, conditions and redrives walk through it; allma_value and
-- allma_hydrate show the full value; row security and the execution tree
-- scope who reads it; purge removes it.
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS allma;
RESET client_min_messages;

SHOW allma.out_of_line_threshold;
SHOW allma.max_fork_branches;

CREATE FUNCTION pg_temp.err(stmt text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
	EXECUTE stmt;
	RETURN 'no error';
EXCEPTION WHEN OTHERS THEN
	RETURN SQLSTATE || ': ' || regexp_replace(SQLERRM, '[0-9a-f]{8}-[0-9a-f-]{27}', '<id>', 'g');
END $$;

CREATE ROLE regress_allma_lv_alice;
CREATE ROLE regress_allma_lv_bob;
GRANT allma_user TO regress_allma_lv_alice, regress_allma_lv_bob;

-- a probe: one SQL step whose output is about 3 kB
SELECT allma_create_flow($$ {"id": "lv_probe", "startStepInstanceId": "q", "steps": {
  "q": {"stepType": "DATA_LOAD", "moduleIdentifier": "system/sql-query",
        "customConfig": {"sql": "SELECT g AS i, repeat('x', 20) AS pad FROM generate_series(1, 100) g"}}}} $$);
SELECT allma_grant_flow('lv_probe', 'allma_user', 'START');

-- the workers take a reloaded setting on their next wake-up: probe until
-- they store the probe's output out of line (threshold:
-- on) or inline (off); the probe's own executions are purged at the end
CREATE PROCEDURE pg_temp.await_threshold(want_ref boolean) LANGUAGE plpgsql AS $$
DECLARE
	e uuid;
	got boolean;
BEGIN
	FOR i IN 1..1000 LOOP
		e := allma_start_flow('lv_probe', '{}');
		COMMIT;
		PERFORM allma_wait(e);
		SELECT output->'steps_output'->'q' ? '$allma_ref' INTO got
		  FROM allma.executions WHERE execution_id = e;
		IF got = want_ref THEN
			RETURN;
		END IF;
		PERFORM pg_sleep(0.05);
	END LOOP;
	RAISE EXCEPTION 'the workers did not apply allma.out_of_line_threshold';
END $$;

ALTER SYSTEM SET allma.out_of_line_threshold = '2kB';
SELECT pg_reload_conf();
CALL pg_temp.await_threshold(true);

-- q's output (about 60 kB) goes out of line; its mappings read through the
-- pointer (an element, the row count), copy the pointer itself ($.q) and
-- copy the rows, which go out of line again as a context value; "use" reads elements, a filter, the
-- length, a template and a condition through pointers; the fork's items
-- come through a pointer and its 1,200 results land out of line; "after"
-- reads the aggregate's first and last elements and its length.
SELECT allma_create_flow($$ {"id": "lv", "startStepInstanceId": "q", "steps": {
  "q": {"stepType": "DATA_LOAD", "moduleIdentifier": "system/sql-query",
        "customConfig": {"sql": "SELECT g AS i, repeat('x', 40) AS pad FROM generate_series(1, $1::int) g",
                         "parameters": ["$.n"]},
        "outputMappings": {"$.third": "$.rows[2].i", "$.count": "$.rowCount", "$.rows": "$.rows", "$.q": "$"},
        "defaultNextStepInstanceId": "use"},
  "use": {"stepType": "NO_OP",
          "inputMappings": {"last": "$.rows[-1].i", "n": "$.q.rowCount",
                            "seven": "$.rows[?(@.i == 7)].i", "len": "$.rows.length",
                            "tenth": "$.q.rows[9].i"},
          "literals": {"greeting": "row {{rows.4.i}} of {{count}}"},
          "outputMappings": {"$.use": "$"},
          "transitions": [{"condition": "$.rows[0].i == 1", "nextStepInstanceId": "fan"}],
          "defaultNextStepInstanceId": "wrong"},
  "wrong": {"stepType": "NO_OP"},
  "fan": {"stepType": "PARALLEL_FORK_MANAGER", "itemsPath": "$.rows",
          "parallelBranches": [{"branchId": "b", "stepInstanceId": "br"}],
          "defaultNextStepInstanceId": "after"},
  "br": {"stepType": "NO_OP", "literals": {"v": "{{currentItem.i}}"}},
  "after": {"stepType": "NO_OP",
            "inputMappings": {"first": "$.steps_output.fan.aggregatedData[0].v",
                              "last": "$.steps_output.fan.aggregatedData[-1].v",
                              "len": "$.steps_output.fan.aggregatedData.length"},
            "outputMappings": {"$.after": "$"}}}} $$);
SELECT allma_grant_flow('lv', 'allma_user', 'START');

SET ROLE regress_allma_lv_alice;
SELECT allma_start_flow('lv', '{"n": 1200}') AS e \gset
SELECT allma_wait(:'e');
RESET ROLE;

-- the context holds pointers, the values are read through them
SELECT output->'q' ? '$allma_ref' AS q_out_of_line,
	   (output->'q'->>'bytes')::int > 2048 AS q_bytes,
	   output->'rows' ? '$allma_ref' AS rows_out_of_line,
	   output->'rows'->>'length' AS rows_length,
	   output->'steps_output'->'fan'->'aggregatedData' ? '$allma_ref' AS aggregate_out_of_line,
	   output->'third' AS third, output->'count' AS count,
	   output->'use' AS use, output->'after' AS after
  FROM allma.executions WHERE execution_id = :'e';
SELECT count(*) AS steps, count(*) FILTER (WHERE step_instance_id = 'wrong') AS wrong
  FROM allma.step_executions WHERE execution_id = :'e';

-- the history references the value instead of copying it
SELECT h.output = x.output->'q' AS history_holds_the_pointer,
	   pg_column_size(h.output) < 200 AS history_row_small
  FROM allma.step_executions h, allma.executions x
 WHERE h.execution_id = :'e' AND h.step_instance_id = 'q' AND x.execution_id = :'e';

-- one row per value (the aggregate in one part: 1,200 < 10,000 elements)
SELECT count(*) AS values, count(*) FILTER (WHERE first_element IS NOT NULL) AS array_parts,
	   bool_and(execution_id = :'e') AS same_execution
  FROM allma.large_values WHERE root_execution_id = :'e';

-- the full values, as alice
SET ROLE regress_allma_lv_alice;
SELECT allma_value(output->'q')->'rowCount' AS row_count,
	   allma_value(output->'q')->'rows'->1199 AS last_row,
	   allma_hydrate(output)->'steps_output'->'fan'->'aggregatedData' =
	   (SELECT jsonb_agg(jsonb_build_object('v', g::text) ORDER BY g) FROM generate_series(1, 1200) g) AS aggregate_in_full,
	   allma_hydrate(output)->'rows' = allma_value(output->'q')->'rows' AS rows_in_full,
	   allma_hydrate('{"a": [1, {"b": 2}]}') AS no_pointer_unchanged
  FROM allma.executions WHERE execution_id = :'e';
SELECT pg_temp.err($$SELECT allma_value('{"x": 1}')$$);
SELECT pg_temp.err($$SELECT allma_value('{"$allma_ref": "00000000-0000-4000-8000-000000000001"}')$$);
RESET ROLE;

-- row security: bob sees none of alice's values, and cannot read them
SELECT output->'q' AS ref FROM allma.executions WHERE execution_id = :'e' \gset
SET ROLE regress_allma_lv_bob;
SELECT count(*) AS bob_sees FROM allma.large_values;
SELECT pg_temp.err(format('SELECT allma_value(%L)', :'ref'));
SELECT pg_temp.err(format('SELECT allma_hydrate(%L)', jsonb_build_object('x', :'ref'::jsonb))) AS bob_hydrate;
RESET ROLE;
SELECT pg_temp.err(format('SELECT allma_hydrate(%L)', jsonb_build_object('x', :'ref'::jsonb)));

-- a pointer copied (forged) into another execution's input reads nothing:
-- lookups are scoped to the execution tree
SELECT allma_create_flow($$ {"id": "lv_steal", "startStepInstanceId": "s", "steps": {
  "s": {"stepType": "NO_OP", "inputMappings": {"x": "$.stolen.rows[0]"}}}} $$);
SELECT allma_grant_flow('lv_steal', 'allma_user', 'START');
SET ROLE regress_allma_lv_bob;
SELECT allma_start_flow('lv_steal', jsonb_build_object('stolen', :'ref'::jsonb)) AS s \gset
SELECT allma_wait(:'s');
RESET ROLE;
SELECT status, error->>'errorName' AS error_name,
	   regexp_replace(error->>'errorMessage', '[0-9a-f]{8}-[0-9a-f-]{27}', '<id>', 'g') AS message
  FROM allma.executions WHERE execution_id = :'s';

-- redrive from "use": the recorded context's pointers belong to the
-- original, so it starts from their full values; the new execution stores
-- its own copies
SET ROLE regress_allma_lv_alice;
SELECT allma_redrive_execution(:'e', 'use') AS r \gset
SELECT allma_wait(:'r');
RESET ROLE;
SELECT r.output->'use' = e.output->'use' AS same_use, r.output->'after' = e.output->'after' AS same_after,
	   allma_hydrate(r.output) - 'flow_variables' = allma_hydrate(e.output) - 'flow_variables' AS same_in_full,
	   r.output->'rows' ? '$allma_ref' AS rows_out_of_line_again,
	   (SELECT root_execution_id FROM allma.large_values
		 WHERE value_id = (r.output->'rows'->>'$allma_ref')::uuid) = :'r' AS own_copy
  FROM allma.executions r, allma.executions e WHERE r.execution_id = :'r' AND e.execution_id = :'e';

-- purge: the values go with their executions
SET ROLE regress_allma_lv_alice;
SELECT allma_purge('0 seconds', 'lv') AS purged;
RESET ROLE;
SELECT count(*) AS left_of_alice FROM allma.large_values WHERE root_execution_id IN (:'e', :'r');

-- threshold 0: everything inline again
ALTER SYSTEM SET allma.out_of_line_threshold = 0;
SELECT pg_reload_conf();
CALL pg_temp.await_threshold(false);
ALTER SYSTEM RESET allma.out_of_line_threshold;
SELECT pg_reload_conf();

SELECT allma_purge('0 seconds', 'lv_probe') > 0 AS probes_purged, allma_purge('0 seconds', 'lv_steal') AS steal_purged;
SELECT count(*) AS left FROM allma.large_values;
DROP ROLE regress_allma_lv_alice, regress_allma_lv_bob;
