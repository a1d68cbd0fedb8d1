# ratelimit: rate limits (allma.rate_limits, issue #15) against the mock's
# OpenAI endpoint (mock-json, no latency), two workers.
#   (a) N LLM steps, no limit: the same-run baseline
#   (b) N LLM steps under 6,000 requests/min: the most requests the mock
#       saw in one wall-clock second (after the first), and the run time
#       against the limit's ideal time (N / 100 s)
#   (c) M LLM steps under a tokens/min limit: the most tokens the mock
#       counted in one second (after the first) and the tokens per second
#       over the run, against the limit
#   (d) fairness: 2 tenants x F steps + 1 tenant x 10 under 6,000
#       requests/min, rateLimitKey "bench:{{tenant}}" under one row
#       "bench": when the small tenant's 10 steps had all finished
# N, M, F: RL_STEPS (5000), RL_TOKEN_STEPS (1500), RL_FAIR_STEPS (2000).
# RL_CASES: the cases to run (default "a b c d"; the baseline (a) is cheap).
# One run each (they take minutes); RUNS is not used.
rl_sql() { "${PSQL[@]}" -c "$1"; }

# rl_flow ID KEYFIELD: a one-step LLM flow; KEYFIELD is "" or a rateLimitKey member
rl_flow() {
  rl_sql "SELECT allma_create_flow(jsonb_build_object('id', '$1', 'startStepInstanceId', 'ask',
    'steps', jsonb_build_object('ask', jsonb_build_object(
      'stepType', 'LLM_INVOCATION', 'llmProvider', 'OPENAI', 'modelId', 'mock-json',
      'promptTemplateId', 'rl-prompt', 'inputMappings', jsonb_build_object('n', '\$.n')
      $2,
      'inferenceParameters', jsonb_build_object('maxOutputTokens', 50),
      'customConfig', jsonb_build_object('baseUrl', '$MOCK_URL/v1', 'apiKeySecret', 'OPENAI_API_KEY',
        'jsonOutputMode', true)))))" >/dev/null
}

# rl_limit KEY RPM TPM: set the only limit and wait until the workers hold it
rl_limit() {
  rl_sql "DELETE FROM allma.rate_limits" >/dev/null
  [ -n "$1" ] && rl_sql "SELECT allma_set_rate_limit('$1', $2, $3)" >/dev/null
  local want=0; [ -n "$1" ] && want=1
  for _ in $(seq 1 100); do
    [ "$(rl_sql "SELECT count(*) FROM allma_rate_limit_status()")" = "$want" ] && break
    sleep 0.1
  done
  sleep 1.2   # a limit read anew starts as if a request had just gone: let it settle
}

# rl_start FLOW N TENANT: start N executions (input {n, tenant})
rl_start() {
  rl_sql "SELECT count(allma_start_flow('$1', jsonb_build_object('n', g, 'tenant', '$3'))) FROM generate_series(1, $2) g" >/dev/null
}

# rl_wait: until no execution runs; prints the seconds from T0 (epoch) to the last ended_at
rl_wait() {
  while [ "$(rl_sql "SELECT count(*) FROM allma.executions WHERE status = 'RUNNING'")" != 0 ]; do sleep 0.2; done
  local failed; failed=$(rl_sql "SELECT count(*) FROM allma.executions WHERE status <> 'COMPLETED'")
  [ "$failed" = 0 ] || echo "   !! $failed executions did not complete" >&2
  rl_sql "SELECT round((extract(epoch FROM max(ended_at)) - $1)::numeric, 2) FROM allma.executions"
}

# rl_windows SINCE: "max_requests max_tokens total_requests total_tokens seconds" over the
# mock's 1 s windows from SINCE on, the first (partial) window left out of the maxima
rl_windows() {
  curl -s "$MOCK_URL/__windows?since=$1" | python3 -c '
import json, sys
w = json.load(sys.stdin)["windows"]
w = [x for x in w if x["requests"] > 0]
rest = w[1:] if len(w) > 1 else w
tok = {x["start"]: x["tokens"] for x in w}
# the most tokens in any 60 s sliding window (1 s steps)
win60 = max(sum(tok.get(s, 0) for s in range(t, t + 60)) for t in range(min(tok), max(tok) + 1)) if tok else 0
print(max(x["requests"] for x in rest), max(x["tokens"] for x in rest),
      sum(x["requests"] for x in w), sum(x["tokens"] for x in w), len(w), win60)'
}

scenario_ratelimit() {
  local n=${RL_STEPS:-5000} m=${RL_TOKEN_STEPS:-1500} f=${RL_FAIR_STEPS:-2000}
  local t0 secs win ideal cases=" ${RL_CASES:-a b c d} "
  bench_restart
  rl_sql "SELECT allma_set_secret('OPENAI_API_KEY', 'bench-key')" >/dev/null
  rl_sql "SELECT allma_create_prompt('rl-prompt', 'Answer about {{n}}')" >/dev/null
  rl_flow rl-default ""
  rl_flow rl-tenant ", 'rateLimitKey', 'bench:{{tenant}}'"

  # (a) baseline: no limit
  if [[ $cases == *" a "* ]]; then
  clear_history; rl_limit "" 0 0
  t0=$(date +%s.%N); rl_start rl-default "$n" x; secs=$(rl_wait "$t0")
  win=$(rl_windows "${t0%.*}")
  report rl-a "(a) $n x LLM_INVOCATION (mock, no latency), no rate limit: the same-run baseline" \
    "${secs} s, $(awk -v n="$n" -v s="$secs" 'BEGIN {printf "%.0f", n / s}') steps/s; mock max $(echo "$win" | cut -d' ' -f1) requests in one second" ""

  fi

  # (b) 6,000 requests/min
  if [[ $cases == *" b "* ]]; then
  clear_history; rl_limit "OPENAI:mock-json:OPENAI_API_KEY" 6000 NULL
  t0=$(date +%s.%N); rl_start rl-default "$n" x; secs=$(rl_wait "$t0")
  win=$(rl_windows "${t0%.*}"); ideal=$(awk -v n="$n" 'BEGIN {print n / 100}')
  report rl-b "(b) $n x LLM_INVOCATION under 6,000 requests/min (key PROVIDER:model:SECRET)" \
    "${secs} s (ideal ${ideal} s: $(awk -v s="$secs" -v i="$ideal" 'BEGIN {printf "%+.1f", 100 * (s - i) / i}') %); mock max $(echo "$win" | cut -d' ' -f1) requests in one second after the first; $(echo "$win" | cut -d' ' -f3) requests" \
    "<= 100 requests in every second after the first; within 5 % of the ideal time"

  fi

  # (c) 120,000 tokens/min (2,000 tokens/s)
  if [[ $cases == *" c "* ]]; then
  clear_history; rl_limit "OPENAI:mock-json:OPENAI_API_KEY" NULL 120000
  t0=$(date +%s.%N); rl_start rl-default "$m" x; secs=$(rl_wait "$t0")
  win=$(rl_windows "${t0%.*}")
  report rl-c "(c) $m x LLM_INVOCATION under 120,000 tokens/min (2,000/s; estimate: prompt bytes/4 + maxOutputTokens 50, settled against usage)" \
    "${secs} s; mock max $(echo "$win" | cut -d' ' -f2) tokens in one second after the first; $(echo "$win" | cut -d' ' -f4) tokens in all: $(awk -v t="$(echo "$win" | cut -d' ' -f4)" -v s="$secs" 'BEGIN {printf "%.0f", t / s}') tokens/s over the run ($(awk -v t="$(echo "$win" | cut -d' ' -f4)" -v s="$secs" 'BEGIN {printf "%.1f", 100 * t / s / 2000}') % of the limit); most in any 60 s: $(echo "$win" | cut -d' ' -f6)" \
    "<= 120,000 tokens in every 60 s; throughput within 5 % of the limit"
  fi

  # (d) fairness: tenants a and b with F steps each, c with 10, started after them
  if [[ $cases == *" d "* ]]; then
  clear_history; rl_limit "bench" 6000 NULL
  t0=$(date +%s.%N); rl_start rl-tenant "$f" a; rl_start rl-tenant "$f" b; rl_start rl-tenant 10 c
  secs=$(rl_wait "$t0")
  local small
  small=$(rl_sql "SELECT round((extract(epoch FROM max(ended_at)) - $t0)::numeric, 2) FROM allma.executions e WHERE e.input->>'tenant' = 'c'")
  report rl-d "(d) fairness: 2 tenants x $f + 1 tenant x 10 LLM steps under one 6,000 requests/min row, rateLimitKey bench:{{tenant}}" \
    "small tenant's 10 steps all done ${small} s after the start; all $((2 * f + 10)) done after ${secs} s" \
    "the small tenant's steps finish within the first seconds"
  fi
  rl_sql "DELETE FROM allma.rate_limits" >/dev/null
}
