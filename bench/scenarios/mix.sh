# mix: a realistic flow, 1,000 concurrent executions.  The flow (mix20) has
# 20 steps on its main path -- SQL reads (DATA_LOAD system/sql-query) and
# writes (DATA_SAVE system/sql-execute: an UPDATE and an INSERT per
# execution), transition conditions, input and output mappings, templates
# (literals with {{ }}), a 10-branch PARALLEL_FORK_MANAGER whose branches
# each run one mapped transformation, and one LLM_INVOCATION (OpenAI-
# compatible mock, 100 ms) -- so 30 step executions per execution.  It runs
# as an ordinary role (mix_runner, a member of allma_user, owner of its
# tables), with the default settings.
#
# Reported: step executions per second (rows of allma.step_executions over
# the time from the starts' commit to the last execution's ended_at), write
# transactions per second (commits) beside it, and the ratio to the same
# run's pgbench -N baseline (a).

mix_setup() {
  "${PSQL[@]}" >/dev/null <<'SQL'
SET client_min_messages = warning;
DO $$ BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'mix_runner') THEN
    CREATE ROLE mix_runner IN ROLE allma_user;
  END IF;
END $$;
DROP TABLE IF EXISTS mix_accounts, mix_events;
CREATE TABLE mix_accounts (id int PRIMARY KEY, tier text NOT NULL, balance numeric NOT NULL);
INSERT INTO mix_accounts SELECT g, CASE WHEN g % 3 = 0 THEN 'gold' ELSE 'basic' END, 100 FROM generate_series(1, 10000) g;
CREATE TABLE mix_events (id bigserial PRIMARY KEY, account int NOT NULL, kind text NOT NULL, body jsonb);
CREATE INDEX mix_events_account ON mix_events (account);
ALTER TABLE mix_accounts OWNER TO mix_runner;
ALTER TABLE mix_events OWNER TO mix_runner;
SELECT allma_set_secret('MIX_LLM_KEY', 'bench-key');
SELECT allma_grant_secret('MIX_LLM_KEY', 'mix_runner');
SET ROLE mix_runner;
SELECT allma_create_prompt('mix-prompt', 'Classify account {{id}} ({{tier}}): {{summary}}');
SQL
  "${PSQL[@]}" -v base_url="$MOCK_URL/v1" >/dev/null <<'SQL'
SET client_min_messages = warning;
SET ROLE mix_runner;
SELECT allma_create_flow(replace($json$ {"id": "mix20", "startStepInstanceId": "load", "steps": {
  "load": {"stepType": "DATA_LOAD", "moduleIdentifier": "system/sql-query",
           "customConfig": {"sql": "SELECT id, tier, balance FROM mix_accounts WHERE id = $1", "parameters": ["$.id"]},
           "outputMappings": {"$.account": "$.rows[0]"}, "defaultNextStepInstanceId": "route"},
  "route": {"stepType": "NO_OP",
            "transitions": [{"condition": "$.account.tier == 'gold'", "nextStepInstanceId": "gold"}],
            "defaultNextStepInstanceId": "basic"},
  "gold": {"stepType": "DATA_TRANSFORMATION", "moduleIdentifier": "system/compose-object-from-input",
           "inputMappings": {"id": "$.id", "balance": "$.account.balance"},
           "literals": {"greeting": "Dear gold member {{id}}", "bonus": 5},
           "outputMappings": {"$.offer": "$"}, "defaultNextStepInstanceId": "debit"},
  "basic": {"stepType": "DATA_TRANSFORMATION", "moduleIdentifier": "system/compose-object-from-input",
            "inputMappings": {"id": "$.id", "balance": "$.account.balance"},
            "literals": {"greeting": "Hello {{id}}", "bonus": 1},
            "outputMappings": {"$.offer": "$"}, "defaultNextStepInstanceId": "debit"},
  "debit": {"stepType": "DATA_SAVE", "moduleIdentifier": "system/sql-execute",
            "customConfig": {"sql": "UPDATE mix_accounts SET balance = balance + $2 WHERE id = $1",
                             "parameters": ["$.id", "$.offer.bonus"]},
            "defaultNextStepInstanceId": "log1"},
  "log1": {"stepType": "DATA_SAVE", "moduleIdentifier": "system/sql-execute",
           "customConfig": {"sql": "INSERT INTO mix_events (account, kind, body) VALUES ($1, 'offer', $2)",
                            "parameters": ["$.id", "$.offer"]},
           "defaultNextStepInstanceId": "items"},
  "items": {"stepType": "DATA_TRANSFORMATION", "moduleIdentifier": "system/generate-array",
            "literals": {"count": 10}, "outputMappings": {"$.items": "$.array"}, "defaultNextStepInstanceId": "fan"},
  "fan": {"stepType": "PARALLEL_FORK_MANAGER", "itemsPath": "$.items",
          "parallelBranches": [{"branchId": "score", "stepInstanceId": "score"}],
          "aggregationConfig": {"strategy": "COLLECT_ARRAY"},
          "outputMappings": {"$.scores": "$.aggregatedData"}, "defaultNextStepInstanceId": "summary"},
  "score": {"stepType": "DATA_TRANSFORMATION", "moduleIdentifier": "system/compose-object-from-input",
            "inputMappings": {"item": "$.currentItem", "id": "$.id"},
            "literals": {"label": "item {{item}} of {{id}}"}},
  "summary": {"stepType": "DATA_TRANSFORMATION", "moduleIdentifier": "system/compose-object-from-input",
              "inputMappings": {"id": "$.id", "n": "$.id"},
              "literals": {"text": "{{id}} has {{n}} points"},
              "outputMappings": {"$.summary": "$.text"}, "defaultNextStepInstanceId": "ask"},
  "ask": {"stepType": "LLM_INVOCATION", "llmProvider": "OPENAI", "modelId": "mock-slow-100",
          "promptTemplateId": "mix-prompt",
          "inputMappings": {"id": "$.id", "tier": "$.account.tier", "summary": "$.summary"},
          "customConfig": {"baseUrl": "BASE_URL", "apiKeySecret": "MIX_LLM_KEY", "jsonOutputMode": true},
          "outputMappings": {"$.verdict": "$"}, "defaultNextStepInstanceId": "decide"},
  "decide": {"stepType": "NO_OP",
             "transitions": [{"condition": "$.verdict.answer > 40 && $.account.balance >= 100", "nextStepInstanceId": "approve"}],
             "defaultNextStepInstanceId": "reject"},
  "approve": {"stepType": "DATA_TRANSFORMATION", "moduleIdentifier": "system/compose-object-from-input",
              "inputMappings": {"id": "$.id", "answer": "$.verdict.answer"},
              "literals": {"decision": "approved for {{id}}"},
              "outputMappings": {"$.decision": "$.decision"}, "defaultNextStepInstanceId": "log2"},
  "reject": {"stepType": "DATA_TRANSFORMATION", "moduleIdentifier": "system/compose-object-from-input",
             "inputMappings": {"id": "$.id"}, "literals": {"decision": "rejected for {{id}}"},
             "outputMappings": {"$.decision": "$.decision"}, "defaultNextStepInstanceId": "log2"},
  "log2": {"stepType": "DATA_SAVE", "moduleIdentifier": "system/sql-execute",
           "customConfig": {"sql": "INSERT INTO mix_events (account, kind, body) VALUES ($1, 'decision', jsonb_build_object('d', $2::text))",
                            "parameters": ["$.id", "$.decision"]},
           "defaultNextStepInstanceId": "reread"},
  "reread": {"stepType": "DATA_LOAD", "moduleIdentifier": "system/sql-query",
             "customConfig": {"sql": "SELECT balance FROM mix_accounts WHERE id = $1", "parameters": ["$.id"]},
             "outputMappings": {"$.final": "$.rows[0]"}, "defaultNextStepInstanceId": "check"},
  "check": {"stepType": "NO_OP",
            "transitions": [{"condition": "$.final.balance > 100", "nextStepInstanceId": "note"}],
            "defaultNextStepInstanceId": "note"},
  "note": {"stepType": "DATA_TRANSFORMATION", "moduleIdentifier": "system/compose-object-from-input",
           "inputMappings": {"id": "$.id", "b": "$.final.balance"},
           "literals": {"line": "account {{id}} now at {{b}}"},
           "outputMappings": {"$.note": "$.line"}, "defaultNextStepInstanceId": "count"},
  "count": {"stepType": "DATA_LOAD", "moduleIdentifier": "system/sql-query",
            "customConfig": {"sql": "SELECT count(*) AS n FROM mix_events WHERE account = $1", "parameters": ["$.id"]},
            "outputMappings": {"$.events": "$.rows[0].n"}, "defaultNextStepInstanceId": "shape"},
  "shape": {"stepType": "DATA_TRANSFORMATION", "moduleIdentifier": "system/compose-object-from-input",
            "inputMappings": {"id": "$.id", "decision": "$.decision", "events": "$.events", "note": "$.note"},
            "outputMappings": {"$.result": "$"}, "defaultNextStepInstanceId": "tag"},
  "tag": {"stepType": "DATA_TRANSFORMATION", "moduleIdentifier": "system/compose-object-from-input",
          "inputMappings": {"id": "$.id", "tier": "$.account.tier"},
          "literals": {"label": "{{tier}}-{{id}}"},
          "outputMappings": {"$.label": "$.label"}, "defaultNextStepInstanceId": "pause"},
  "pause": {"stepType": "NO_OP", "defaultNextStepInstanceId": "done"},
  "done": {"stepType": "END_FLOW"}
}} $json$, 'BASE_URL', :'base_url')::jsonb);
SQL
  # start n executions as mix_runner in one transaction, wait for all (as the superuser)
  "${PSQL[@]}" >/dev/null <<'SQL'
CREATE OR REPLACE PROCEDURE mix_run(n int, INOUT seconds double precision, INOUT steps bigint)
LANGUAGE plpgsql AS $$
DECLARE
	t0 timestamptz;
	left_running bigint;
BEGIN
	DELETE FROM allma.step_executions;
	DELETE FROM allma.executions;
	COMMIT;
	-- started by mix_runner (the role ends with the transaction)
	SET LOCAL ROLE mix_runner;
	PERFORM allma_start_flow('mix20', jsonb_build_object('id', g)) FROM generate_series(1, n) g;
	COMMIT;
	t0 := clock_timestamp();
	LOOP
		SELECT count(*) INTO left_running FROM allma.executions WHERE status = 'RUNNING';
		EXIT WHEN left_running = 0;
		PERFORM pg_sleep(0.02);
		COMMIT;
	END LOOP;
	seconds := extract(epoch FROM (SELECT max(ended_at) FROM allma.executions) - t0);
	SELECT count(*) INTO steps FROM allma.step_executions;
	IF (SELECT count(*) FROM allma.executions WHERE status <> 'COMPLETED') > 0 THEN
		RAISE EXCEPTION 'mix run: % executions did not complete, first error: %',
			(SELECT count(*) FROM allma.executions WHERE status <> 'COMPLETED'),
			(SELECT error FROM allma.executions WHERE status <> 'COMPLETED' LIMIT 1);
	END IF;
END $$;
SQL
}

scenario_mix() {
  mix_setup
  local list=() xacts=() out secs steps x0 x1
  # warm-up (plans, connections), not counted
  "${PSQL[@]}" -c "CALL mix_run(100, NULL, NULL)" >/dev/null
  for r in $(seq 1 "$RUNS"); do
    "${PSQL[@]}" -c "VACUUM ANALYZE allma.executions, allma.execution_paths, allma.step_executions, mix_accounts, mix_events" >/dev/null
    x0=$(next_xid)
    out=$("${PSQL[@]}" -F ' ' -c "CALL mix_run(1000, NULL, NULL)")
    x1=$(next_xid)
    secs=${out% *}
    steps=${out#* }
    list+=("$(awk -v s="$secs" -v n="$steps" 'BEGIN {printf "%.0f", n / s}')")
    xacts+=("$(awk -v s="$secs" -v d=$((x1 - x0)) 'BEGIN {printf "%.0f", d / s}')")
    echo "   run $r: $steps steps in ${secs}s, ${list[-1]} steps/s, ${xacts[-1]} write transactions/s"
  done
  local sps xps
  sps=$(printf '%s\n' "${list[@]}" | median)
  xps=$(printf '%s\n' "${xacts[@]}" | median)
  report m "(m) realistic mix: 1,000 concurrent executions of a 20-step flow (SQL reads and writes, conditions, mappings, templates, 10-branch fork, one LLM call, mock 100 ms), 30 step executions each" \
    "$sps steps/s (runs: ${list[*]}); $xps write transactions/s" ""
  report m-ratio "(m)/(a), steps/s over pgbench -N tps" \
    "$(awk -v a="$sps" -v b="${BASELINE_TPS:-0}" 'BEGIN {if (b > 0) printf "%.2f", a / b; else print "n/a"}')" ">= 5"
}
