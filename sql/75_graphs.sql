-- Pictures: allma_flow_graph (Mermaid and DOT text of flows: every node
-- shape and edge kind, escaping of hostile texts, version choice, errors),
-- allma_execution_graph (path taken, failures, retries, branch counts,
-- running steps, visibility) and allma_execution_timeline (SVG structure).
-- Durations vary from run to run: pictures are shown with them replaced
-- by "<t>".
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS allma;
RESET client_min_messages;

CREATE FUNCTION pg_temp.untimed(t text) RETURNS text LANGUAGE sql AS $$
  SELECT regexp_replace(t, '[0-9]+(\.[0-9]+)? (ms|s)\M|[0-9]+ (min|h) [0-9]+ (s|min)\M', '<t>', 'g') $$;
-- how often a pattern occurs in a text
CREATE FUNCTION pg_temp.count(t text, pattern text) RETURNS bigint LANGUAGE sql AS $$
  SELECT count(*) FROM regexp_matches(t, pattern, 'g') $$;
-- every line of a graph is one of the forms the writers make: nothing
-- from a definition gets out of a quoted label
CREATE FUNCTION pg_temp.mermaid_ok(t text) RETURNS boolean LANGUAGE sql AS $$
  SELECT bool_and(l ~ ('^(flowchart TD|    %%[^\n]*'
      || '|    [sme][0-9]+(\("[^"]*"\)|\(\["[^"]*"\]\)|\{\{"[^"]*"\}\}|\[/"[^"]*"/\]|\[\\"[^"]*"\\\]'
      || '|\[\["[^"]*"\]\]|>"[^"]*"\]|\(\("[^"]*"\)\)|\["[^"]*"\])'
      || '|    [sme][0-9]+ (-->|-\.->|==>)(\|"[^"|]*"\|)? [sme][0-9]+'
      || '|    classDef [a-z]+ [-a-z0-9:#,. ]+|    class [sme0-9,]+ [a-z]+|    linkStyle [0-9,]+ [-a-z0-9:#,]+)$'))
    FROM regexp_split_to_table(rtrim(t, E'\n'), E'\n') AS l $$;
-- the SQLSTATE and message of the error a statement raises
CREATE FUNCTION pg_temp.try(sql text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
	EXECUTE sql;
	RETURN 'no error';
EXCEPTION WHEN OTHERS THEN
	RETURN SQLSTATE || ': ' || SQLERRM;
END $$;
CREATE FUNCTION pg_temp.dot_ok(t text) RETURNS boolean LANGUAGE sql AS $$
  SELECT bool_and(l ~ ('^(digraph allma \{|\}'
      || '|    (graph|node|edge) \[.*\];'
      || '|    [sme][0-9]+ \[label="([^"\\]|\\.)*"(, [a-z]+=("[^"\\]*"|[a-z,.0-9]+))*\];'
      || '|    [sme][0-9]+ -> [sme][0-9]+( \[(label="([^"\\]|\\.)*"(, )?)?([a-z]+=("[^"\\]*"|[a-z.0-9]+)(, )?)*\])?;)$'))
    FROM regexp_split_to_table(rtrim(t, E'\n'), E'\n') AS l $$;

------------------------------------------------------------------------------
-- 1. A flow with every shape and edge kind
------------------------------------------------------------------------------
SELECT allma_create_flow($$
{"id": "pic-shapes", "startStepInstanceId": "mail_in",
 "steps": {
  "mail_in": {"stepType": "EMAIL_START_POINT", "emailAddress": "orders@example.com",
              "defaultNextStepInstanceId": "route"},
  "route": {"stepType": "NO_OP",
            "transitions": [
              {"condition": "$.kind == \"bulk\" && $.items[0].qty > 10", "nextStepInstanceId": "fan"},
              {"condition": "$.total < 5 || $.tags[?(@ == 'vip')]", "nextStepInstanceId": "approve"}],
            "defaultNextStepInstanceId": "call_api"},
  "call_api": {"stepType": "CUSTOM_LOGIC", "moduleIdentifier": "acme/price-check",
               "onError": {"fallbackStepInstanceId": "finish",
                           "catch": [{"errorEquals": ["RateLimited", "Timeout"], "nextStepInstanceId": "approve"},
                                     {"errorEquals": ["States.ALL"], "nextStepInstanceId": "finish"}]},
               "transitions": [{"condition": "$.steps_output.call_api.ok", "nextStepInstanceId": "child"}]},
  "fan": {"stepType": "PARALLEL_FORK_MANAGER", "itemsPath": "$.items",
          "parallelBranches": [{"branchId": "each", "stepInstanceId": "line"},
                               {"branchId": "big", "stepInstanceId": "line", "condition": "$.currentItem.qty >= 100"}],
          "defaultNextStepInstanceId": "finish"},
  "line": {"stepType": "NO_OP"},
  "approve": {"stepType": "WAIT_FOR_EXTERNAL_EVENT", "correlationKeyTemplate": "approve:{{orderId}}",
              "defaultNextStepInstanceId": "child"},
  "child": {"stepType": "START_FLOW_EXECUTION", "moduleIdentifier": "system/start-flow-execution",
            "literals": {"flowDefinitionId": "pic-child"}, "customConfig": {"sync": true},
            "defaultNextStepInstanceId": "notify"},
  "notify": {"stepType": "START_SUB_FLOW", "subFlowDefinitionId": "pic-notify",
             "subFlowExecutionMode": "ASYNC", "defaultNextStepInstanceId": "finish"},
  "finish": {"stepType": "END_FLOW"},
  "orphan": {"stepType": "NO_OP", "defaultNextStepInstanceId": "finish"}
 }} $$);
SELECT allma_flow_graph('pic-shapes');
SELECT allma_flow_graph('pic-shapes', format => 'dot');
SELECT pg_temp.mermaid_ok(allma_flow_graph('pic-shapes')) AS mermaid_ok,
       pg_temp.dot_ok(allma_flow_graph('pic-shapes', format => 'dot')) AS dot_ok;
-- the format name is case-insensitive
SELECT allma_flow_graph('pic-shapes', format => 'DOT') = allma_flow_graph('pic-shapes', format => 'dot') AS dot_upper,
       allma_flow_graph('pic-shapes', NULL, 'Mermaid') = allma_flow_graph('pic-shapes') AS mermaid_mixed;

------------------------------------------------------------------------------
-- 2. Which version: the published one, else the latest; or the one asked for
------------------------------------------------------------------------------
SELECT allma_create_flow('{"id": "pic-versions", "startStepInstanceId": "one", "steps": {"one": {"stepType": "NO_OP"}}}');
SELECT allma_create_flow('{"id": "pic-versions", "startStepInstanceId": "two", "steps": {"two": {"stepType": "NO_OP"}}}', false);
SELECT allma_create_flow('{"id": "pic-unpublished", "startStepInstanceId": "a", "steps": {"a": {"stepType": "NO_OP"}}}', false);
SELECT allma_create_flow('{"id": "pic-unpublished", "startStepInstanceId": "b", "steps": {"b": {"stepType": "NO_OP"}}}', false);
SELECT split_part(allma_flow_graph('pic-versions'), E'\n', 2) AS published,
       split_part(allma_flow_graph('pic-versions', 2), E'\n', 2) AS asked,
       split_part(allma_flow_graph('pic-unpublished'), E'\n', 2) AS latest,
       split_part(allma_flow_graph('pic-unpublished', format => 'dot'), E'\n', 2) AS latest_dot;
SELECT allma_flow_graph('pic-versions', 1);

------------------------------------------------------------------------------
-- 3. Errors
------------------------------------------------------------------------------
SELECT pg_temp.try($$SELECT allma_flow_graph('pic-nope')$$) AS unknown_flow,
       pg_temp.try($$SELECT allma_flow_graph('pic-versions', 3)$$) AS unknown_version,
       pg_temp.try($$SELECT allma_flow_graph('pic-versions', 0)$$) AS version_zero;
SELECT pg_temp.try($$SELECT allma_flow_graph('pic-versions', format => 'svg')$$) AS unknown_format,
       pg_temp.try($$SELECT allma_flow_graph('pic-versions', format => NULL)$$) AS null_format,
       pg_temp.try($$SELECT allma_execution_graph('00000000-0000-4000-8000-000000007575', 'png')$$) AS exec_format;
SELECT pg_temp.try($$SELECT allma_execution_graph('00000000-0000-4000-8000-000000007575')$$) AS unknown_execution,
       pg_temp.try($$SELECT allma_execution_timeline('00000000-0000-4000-8000-000000007575')$$) AS unknown_timeline;
SELECT allma_flow_graph('pic-versions', format => 'graphviz; rm -rf');
SELECT allma_flow_graph(NULL) IS NULL AS null_flow, allma_execution_graph(NULL) IS NULL AS null_execution,
       allma_execution_timeline(NULL) IS NULL AS null_timeline;

------------------------------------------------------------------------------
-- 4. Hostile texts.  The validator keeps step ids to letters, digits, "_"
--    and "-", but conditions, branch ids and error names may hold anything,
--    and a stored definition may predate a rule: this one is stored directly.
------------------------------------------------------------------------------
BEGIN;
INSERT INTO allma.flows (flow_id, latest_version, owner) VALUES ('pic-hostile', 1, current_user::regrole);
INSERT INTO allma.flow_versions (flow_id, version, definition) VALUES ('pic-hostile', 1,
  jsonb_build_object('id', 'pic-hostile', 'startStepInstanceId', E'a"]; B-->C\n  click s1 "javascript:alert(1)"',
    'steps', jsonb_build_object(
      E'a"]; B-->C\n  click s1 "javascript:alert(1)"', jsonb_build_object('stepType', 'NO_OP',
        'transitions', jsonb_build_array(jsonb_build_object(
          'condition', E'$.a == "x|y" && $.b < 3 || $.c[''#quot;''] != `md` \\N \\" -->|z| </text><script>\u2028%%{init}%%',
          'nextStepInstanceId', '`b` & <i>#35;'))),
      '`b` & <i>#35;', jsonb_build_object('stepType', 'PARALLEL_FORK_MANAGER', 'itemsPath', '$.a"b',
        'parallelBranches', jsonb_build_array(jsonb_build_object('branchId', E'br"|<&>\\\u2028x', 'stepInstanceId', 'c\',
          'condition', E'$.x == "}}"\t\\')),
        'onError', jsonb_build_object('catch', jsonb_build_array(jsonb_build_object(
          'errorEquals', jsonb_build_array('E"]|x', '&lt;'), 'nextStepInstanceId', 'c\')))),
      'c\', jsonb_build_object('stepType', E'END_FLOW"\\', 'defaultNextStepInstanceId', 'gone"'))));
COMMIT;
SELECT allma_flow_graph('pic-hostile');
SELECT allma_flow_graph('pic-hostile', format => 'dot');
SELECT pg_temp.mermaid_ok(allma_flow_graph('pic-hostile')) AS mermaid_ok,
       pg_temp.dot_ok(allma_flow_graph('pic-hostile', format => 'dot')) AS dot_ok;

------------------------------------------------------------------------------
-- 5. Execution graphs
------------------------------------------------------------------------------
-- a module that fails on demand: {"fail": "<errorName>"} fails with that
-- name; {"flaky": true} fails (TransientStepError) the first time only (a
-- sequence counts the calls: it is not rolled back with the failed attempt)
CREATE SEQUENCE public.pic_flaky_calls;
GRANT ALL ON public.pic_flaky_calls TO PUBLIC;
CREATE FUNCTION public.pic_module(input jsonb) RETURNS jsonb LANGUAGE plpgsql AS $$
BEGIN
	IF input ? 'fail' THEN
		RAISE EXCEPTION 'failing on purpose' USING ERRCODE = 'P0001',
			DETAIL = jsonb_build_object('errorName', input->>'fail')::text;
	END IF;
	IF input ? 'flaky' AND nextval('public.pic_flaky_calls') = 1 THEN
		RAISE EXCEPTION 'first call fails' USING ERRCODE = 'LM201';
	END IF;
	RETURN jsonb_build_object('ok', true);
END $$;
SELECT allma_bind_module('pic/module', 'public.pic_module(jsonb)');

-- every edge kind taken: a catch, fork branches (one failing), a retry, a
-- fallback; the failure of the branch is tolerated
SELECT allma_create_flow($$
{"id": "pic-run", "startStepInstanceId": "prepare",
 "steps": {
  "prepare": {"stepType": "NO_OP", "defaultNextStepInstanceId": "risky"},
  "risky": {"stepType": "CUSTOM_LOGIC", "moduleIdentifier": "pic/module", "literals": {"fail": "Oops"},
            "onError": {"catch": [{"errorEquals": ["Oops"], "nextStepInstanceId": "handler"}]},
            "defaultNextStepInstanceId": "never"},
  "handler": {"stepType": "NO_OP", "defaultNextStepInstanceId": "fan"},
  "fan": {"stepType": "PARALLEL_FORK_MANAGER", "itemsPath": "$.items",
          "parallelBranches": [{"branchId": "work", "stepInstanceId": "work"}],
          "aggregationConfig": {"failOnBranchError": false},
          "defaultNextStepInstanceId": "flaky"},
  "work": {"stepType": "CUSTOM_LOGIC", "moduleIdentifier": "pic/module",
           "inputMappings": {"fail": "$.currentItem.fail"}},
  "flaky": {"stepType": "CUSTOM_LOGIC", "moduleIdentifier": "pic/module", "literals": {"flaky": true},
            "onError": {"retries": {"count": 2, "intervalSeconds": 1}},
            "transitions": [{"condition": "$.never == true", "nextStepInstanceId": "never"}],
            "defaultNextStepInstanceId": "doomed"},
  "doomed": {"stepType": "CUSTOM_LOGIC", "moduleIdentifier": "pic/module", "literals": {"fail": "Doom"},
             "onError": {"fallbackStepInstanceId": "finish"}, "defaultNextStepInstanceId": "never"},
  "never": {"stepType": "NO_OP"},
  "finish": {"stepType": "END_FLOW"}
 }} $$);
SELECT allma_start_flow('pic-run', '{"items": [{"n": 1}, {"fail": "BadItem"}, {"n": 3}]}',
                        '{"executionId": "00000000-0000-4000-8000-000000000751"}') AS e \gset
SELECT allma_wait(:'e');
SELECT pg_temp.untimed(allma_execution_graph(:'e'));
SELECT pg_temp.untimed(allma_execution_graph(:'e', 'dot'));
SELECT pg_temp.mermaid_ok(allma_execution_graph(:'e')) AS mermaid_ok,
       pg_temp.dot_ok(allma_execution_graph(:'e', 'dot')) AS dot_ok;

-- a failed execution: the failing step is marked with its error name; the
-- steps after it are not run
SELECT allma_create_flow($$
{"id": "pic-fail", "startStepInstanceId": "go",
 "steps": {
  "go": {"stepType": "NO_OP", "defaultNextStepInstanceId": "boom"},
  "boom": {"stepType": "CUSTOM_LOGIC", "moduleIdentifier": "pic/module", "literals": {"fail": "<Kaput & \"gone\">"},
           "defaultNextStepInstanceId": "after"},
  "after": {"stepType": "NO_OP"}
 }} $$);
SELECT allma_start_flow('pic-fail', '{}', '{"executionId": "00000000-0000-4000-8000-000000000752"}') AS f \gset
SELECT allma_wait(:'f');
SELECT pg_temp.untimed(allma_execution_graph(:'f'));
SELECT pg_temp.mermaid_ok(allma_execution_graph(:'f')) AS mermaid_ok;

-- an execution started at another step: the start edge leads there
SELECT allma_start_flow('pic-fail', '{}', '{"startStepInstanceId": "after", "executionId": "00000000-0000-4000-8000-000000000755"}') AS s \gset
SELECT allma_wait(:'s');
SELECT pg_temp.untimed(allma_execution_graph(:'s'));

------------------------------------------------------------------------------
-- 6. A running execution: its current step is marked running
------------------------------------------------------------------------------
CREATE FUNCTION public.pic_hold(input jsonb) RETURNS jsonb LANGUAGE sql AS $$
  SELECT jsonb_build_object('held', pg_advisory_xact_lock(7575) IS NULL) $$;
SELECT allma_bind_module('pic/hold', 'public.pic_hold(jsonb)');
SELECT allma_create_flow($$
{"id": "pic-hold", "startStepInstanceId": "first",
 "steps": {
  "first": {"stepType": "NO_OP", "defaultNextStepInstanceId": "hold"},
  "hold": {"stepType": "CUSTOM_LOGIC", "moduleIdentifier": "pic/hold",
           "delay": {"milliseconds": 100, "position": "before"}, "defaultNextStepInstanceId": "last"},
  "last": {"stepType": "NO_OP"}
 }} $$);
SELECT pg_advisory_lock(7575);
SELECT allma_start_flow('pic-hold', '{}', '{"executionId": "00000000-0000-4000-8000-000000000753"}') AS h \gset
-- until a worker waits for the lock inside "hold"
DO $$
BEGIN
	FOR i IN 1..6000 LOOP
		EXIT WHEN EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND objid = 7575 AND NOT granted);
		PERFORM pg_sleep(0.01);
	END LOOP;
END $$;
SELECT pg_temp.untimed(allma_execution_graph(:'h'));
SELECT allma_execution_timeline(:'h') AS hold_svg \gset
SELECT xml_is_well_formed_document(:'hold_svg') AS well_formed,
       pg_temp.count(:'hold_svg', '<rect class="bar completed"') AS completed_bars,
       pg_temp.count(:'hold_svg', '<rect class="bar running"') AS running_bars,
       pg_temp.count(:'hold_svg', '<line class="now"') AS now_line,
       :'hold_svg' ~ '<title>hold \(CUSTOM_LOGIC\), attempt 1: running now, [^<]* so far</title>' AS running_tooltip;
SELECT pg_advisory_unlock(7575);
SELECT allma_wait(:'h');
SELECT pg_temp.untimed(allma_execution_graph(:'h'));

------------------------------------------------------------------------------
-- 7. Visibility: only the executions the role may see (row-level security),
--    and an execution it may not see is reported as unknown
------------------------------------------------------------------------------
CREATE ROLE regress_pic_alice;
CREATE ROLE regress_pic_bob;
GRANT allma_user TO regress_pic_alice, regress_pic_bob;
SELECT allma_grant_flow('pic-fail', 'regress_pic_alice', 'START');
SET ROLE regress_pic_alice;
SELECT allma_start_flow('pic-fail', '{}', '{"executionId": "00000000-0000-4000-8000-000000000754"}') AS a \gset
RESET ROLE;
SELECT allma_wait(:'a');
SET ROLE regress_pic_alice;
SELECT length(allma_execution_graph(:'a')) > 0 AS alice_graph,
       length(allma_execution_timeline(:'a')) > 0 AS alice_timeline;
SET ROLE regress_pic_bob;
SELECT pg_temp.try(format('SELECT allma_execution_graph(%L)', :'a')) AS bob_graph,
       pg_temp.try(format('SELECT allma_execution_graph(%L, %L)', :'a', 'dot')) AS bob_dot;
SELECT pg_temp.try(format('SELECT allma_execution_timeline(%L)', :'a')) AS bob_timeline;
SELECT pg_temp.try($$SELECT allma_execution_graph('00000000-0000-4000-8000-00000000ffff')$$) AS bob_unknown;
-- flow graphs read the definitions as the caller too: bob may not see
-- pic-fail (neither owner nor grantee), alice may (START)
SELECT pg_temp.try($$SELECT allma_flow_graph('pic-fail')$$) AS bob_flow_graph;
SET ROLE regress_pic_alice;
SELECT split_part(allma_flow_graph('pic-fail'), E'\n', 2) AS alice_flow_graph;
RESET ROLE;

------------------------------------------------------------------------------
-- 8. Timelines
------------------------------------------------------------------------------
SELECT allma_execution_timeline(:'e') AS run_svg \gset
SELECT xml_is_well_formed_document(:'run_svg') AS well_formed,
       :'run_svg' ~ '^<svg xmlns="http://www.w3.org/2000/svg" width="1200" height="[0-9]+" viewBox="0 0 1200 [0-9]+"' AS svg_root,
       pg_temp.count(:'run_svg', '<rect class="bar ') AS bars,
       (SELECT count(*) FROM allma.step_executions WHERE execution_id = :'e') AS attempts,
       pg_temp.count(:'run_svg', '<rect class="bar completed"') AS completed,
       pg_temp.count(:'run_svg', '<rect class="bar failed"') AS failed,
       pg_temp.count(:'run_svg', '<rect class="bar retrying"') AS retrying,
       pg_temp.count(:'run_svg', '<line class="gap retry"') AS retry_delays,
       pg_temp.count(:'run_svg', '<g class="row attempt">') AS main_rows,
       pg_temp.count(:'run_svg', '<g class="row fork">') AS fork_rows,
       pg_temp.count(:'run_svg', '<g class="row branch">') AS branch_rows;
-- the fork's summary, the failed branch's tooltip, the retry's planned delay
SELECT (regexp_match(:'run_svg', '<text class="label fork"[^>]*>([^<]*)</text>'))[1] AS fork_label,
       (regexp_match(:'run_svg', '<title>(fork fan: [^,]*\([^)]*\))'))[1] AS fork_tooltip,
       (regexp_match(:'run_svg', '<title>(branch work #2: work \(CUSTOM_LOGIC\), attempt 1: FAILED), [^<]*(, error BadItem)</title>')) AS failed_branch,
       (regexp_match(:'run_svg', '<title>retry delay [^<]*(\(planned [0-9]+ ms\)) before flaky</title>'))[1] AS retry_delay,
       (regexp_match(:'run_svg', '<text class="label"[^>]*>(flaky \(attempt 2\))</text>'))[1] AS second_attempt;
-- the legend names every colour
SELECT array_agg(m[1] ORDER BY ord) AS legend
  FROM regexp_matches(:'run_svg', '<rect class="key ([a-z]+)"', 'g') WITH ORDINALITY AS r(m, ord);

-- error names from the history are escaped
SELECT allma_execution_timeline(:'f') AS fail_svg \gset
SELECT xml_is_well_formed_document(:'fail_svg') AS well_formed,
       (regexp_match(:'fail_svg', 'attempt 1: FAILED, [^<]*(, error &lt;Kaput &amp; &quot;gone&quot;&gt;)</title>'))[1] AS escaped_error,
       (regexp_match(:'fail_svg', '<text class="sub"[^>]*>([^<,]*, [A-Z]+ \([^)]*\))'))[1] AS subtitle;

-- a wide fork: at most 10 branch rows, the rest summed up in one row
SELECT allma_create_flow($$
{"id": "pic-wide", "startStepInstanceId": "fan",
 "steps": {
  "fan": {"stepType": "PARALLEL_FORK_MANAGER", "itemsPath": "$.items",
          "parallelBranches": [{"branchId": "leaf", "stepInstanceId": "leaf"}],
          "aggregationConfig": {"failOnBranchError": false}},
  "leaf": {"stepType": "CUSTOM_LOGIC", "moduleIdentifier": "pic/module", "inputMappings": {"fail": "$.currentItem.fail"}}
 }} $$);
SELECT allma_start_flow('pic-wide',
  jsonb_build_object('items', (SELECT jsonb_agg(CASE WHEN i IN (7, 19) THEN jsonb_build_object('fail', 'Leaf' || i)
                                                    ELSE jsonb_build_object('n', i) END)
                                 FROM generate_series(1, 25) i)),
  '{"executionId": "00000000-0000-4000-8000-000000000756"}') AS w \gset
SELECT allma_wait(:'w');
SELECT allma_execution_timeline(:'w') AS wide_svg \gset
SELECT xml_is_well_formed_document(:'wide_svg') AS well_formed,
       pg_temp.count(:'wide_svg', '<g class="row branch">') AS branch_rows,
       pg_temp.count(:'wide_svg', '<g class="row more">') AS more_rows,
       pg_temp.count(:'wide_svg', '<g class="row branch">\n<text[^>]*>[^<]*</text>\n<rect class="bar failed"') AS failed_shown,
       (regexp_match(:'wide_svg', '<text class="label more"[^>]*>([^<]*)</text>'))[1] AS more_label,
       (regexp_match(:'wide_svg', '<text class="label fork"[^>]*>([^<]*)</text>'))[1] AS fork_label;
SELECT pg_temp.untimed(allma_execution_graph(:'w'));
