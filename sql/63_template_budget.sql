-- Template bombs: allma.template_max_iterations and allma.template_max_output
-- bound one rendering, from allma_render_template and from a step; the
-- error (SQLSTATE 54000) is catchable in SQL and by a flow's catch rule.
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS allma;
RESET client_min_messages;
\set VERBOSITY default

CREATE FUNCTION pg_temp.trender(jsonb, jsonb) RETURNS jsonb
	AS '$libdir/allma', 'allma_test_render_value' LANGUAGE C STRICT;

SHOW allma.template_max_iterations;
SHOW allma.template_max_output;

-- 1,000 items, four deep: 10^12 iterations without a budget.  It fails
-- after allma.template_max_iterations (1,000,000 by default).
CREATE TEMP TABLE bomb AS
SELECT jsonb_build_object('xs', jsonb_agg(i)) AS ctx FROM generate_series(1, 1000) i;
SELECT allma_render_template(
	'{{#each xs}}{{#each ../xs}}{{#each ../../xs}}{{#each ../../../xs}}x{{/each}}{{/each}}{{/each}}{{/each}}',
	ctx) FROM bomb;

-- the same bomb with block parameters and @root, no output at all
SELECT allma_render_template(
	'{{#each @root.xs as |a|}}{{#each @root.xs as |b|}}{{#each @root.xs as |c|}}{{#each @root.xs as |d|}}{{/each}}{{/each}}{{/each}}{{/each}}',
	ctx) FROM bomb;

-- bounded memory: what an iteration allocates is freed after it, so 20
-- million iterations (27 million asked for) grow this backend's peak memory
-- by far less than the ~1.3 GB they took when iterations kept their values
CREATE FUNCTION pg_temp.peak_kb() RETURNS bigint LANGUAGE sql AS $$
  SELECT substring(pg_read_file('/proc/' || pg_backend_pid() || '/status')
                   FROM 'VmHWM:\s+(\d+) kB')::bigint $$;
SELECT pg_temp.peak_kb() AS peak_before \gset
SET allma.template_max_iterations = 20000000;
SELECT allma_render_template(
	'{{#each @root.xs}}{{#each @root.xs}}{{#each @root.xs}}{{/each}}{{/each}}{{/each}}',
	jsonb_build_object('xs', (SELECT jsonb_agg(i) FROM generate_series(1, 300) i)));
RESET allma.template_max_iterations;
SELECT pg_temp.peak_kb() - :peak_before < 64 * 1024 AS peak_grew_under_64mb;

-- catchable: program_limit_exceeded
DO $$
BEGIN
	PERFORM allma_render_template('{{#each xs}}{{#each ../xs}}{{#each ../../xs}}.{{/each}}{{/each}}{{/each}}', ctx)
	   FROM bomb;
	RAISE NOTICE 'not reached';
EXCEPTION WHEN program_limit_exceeded THEN
	RAISE NOTICE 'caught: %', SQLERRM;
END $$;

-- the budget is exact: 3 outer + 9 inner iterations
SET allma.template_max_iterations = 12;
SELECT allma_render_template('{{#each a}}{{#each ../a}}{{this}}{{/each}};{{/each}}', '{"a": [1, 2, 3]}');
SET allma.template_max_iterations = 11;
SELECT allma_render_template('{{#each a}}{{#each ../a}}{{this}}{{/each}};{{/each}}', '{"a": [1, 2, 3]}');
-- an iterated section ({{#array}}) counts too
SELECT allma_render_template('{{#a}}{{#../a}}{{this}}{{/../a}}{{/a}}', '{"a": [1, 2, 3]}');
-- allma_template_render_value shares one budget across the strings it renders
SET allma.template_max_iterations = 5;
SELECT pg_temp.trender('["{{#each a}}{{this}}{{/each}}"]', '{"a": [1, 2, 3]}');
SELECT pg_temp.trender('["{{#each a}}{{this}}{{/each}}", "{{#each a}}{{this}}{{/each}}"]', '{"a": [1, 2, 3]}');
RESET allma.template_max_iterations;

-- output: text and values count; the limit is exact
SET allma.template_max_output = 1024;
SELECT length(allma_render_template('{{#each xs}}' || repeat('y', 1024) || '{{/each}}', '{"xs": [1]}'));
SELECT length(allma_render_template('{{#each xs}}' || repeat('y', 1025) || '{{/each}}', '{"xs": [1]}'));
SELECT length(allma_render_template('{{#each xs}}{{../s}}{{/each}}', jsonb_build_object('xs', '[1, 2]'::jsonb, 's', repeat('z', 600))));
SELECT length(allma_render_template('{{json s}}', jsonb_build_object('s', repeat('z', 2000))));
SELECT pg_temp.trender(jsonb_build_array(repeat('q', 600) || '{{a}}', repeat('q', 600) || '{{a}}'), '{"a": 1}');
RESET allma.template_max_output;

-- only a superuser may raise the budget
CREATE ROLE allma_test_budget_user;
SET ROLE allma_test_budget_user;
SET allma.template_max_iterations = 100000000;
RESET ROLE;
DROP ROLE allma_test_budget_user;

-- from a step: the literal is rendered in the step, the error is a
-- PermanentStepError that a catch rule handles
SELECT allma_create_flow($$
{"id": "template_bomb", "startStepInstanceId": "boom",
 "steps": {
  "boom": {"stepType": "NO_OP",
    "literals": {"x": "{{#each xs}}{{#each ../xs}}{{#each ../../xs}}{{#each ../../../xs}}x{{/each}}{{/each}}{{/each}}{{/each}}"},
    "onError": {"catch": [{"errorEquals": ["PermanentStepError"], "nextStepInstanceId": "caught",
                           "resultPath": "$.bombError"}]}},
  "caught": {"stepType": "NO_OP"}
 }}$$);
SELECT allma_start_flow('template_bomb', ctx) AS e FROM bomb \gset
SELECT allma_wait(:'e');
SELECT status,
       output->'bombError'->>'errorName' AS error_name,
       output->'bombError'->>'errorMessage' AS error_message,
       output->'bombError'->'errorDetails'->>'sqlstate' AS sqlstate
  FROM allma.executions WHERE execution_id = :'e';
-- and without a catch rule the execution fails with that error
SELECT allma_create_flow($$
{"id": "template_bomb_uncaught", "startStepInstanceId": "boom",
 "steps": {
  "boom": {"stepType": "NO_OP",
    "literals": {"x": "{{#each xs}}{{#each ../xs}}{{#each ../../xs}}{{#each ../../../xs}}x{{/each}}{{/each}}{{/each}}{{/each}}"}}
 }}$$);
SELECT allma_start_flow('template_bomb_uncaught', ctx) AS e FROM bomb \gset
SELECT allma_wait(:'e');
SELECT status, error->>'errorName' AS error_name, error->>'errorMessage' AS error_message
  FROM allma.executions WHERE execution_id = :'e';
