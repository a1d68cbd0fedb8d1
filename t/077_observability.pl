# Observability through the worker: allma_worker_status() counts the
# requests a worker has in flight (API_CALL steps whose requests the mock
# server never answers) and execution_progress says they wait on an HTTP
# response; allma_flow_statistics adds up the token usage real
# LLM_INVOCATION steps recorded, per model.  Only ever talks to 127.0.0.1.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use lib 't';
use AllmaTest;

my $base = start_mock();
my $node = allma_node('observe', "allma.http_allowlist = '127.0.0.1'\nallma.timer_scale = 0.01\n"
	  . "allma.max_workers = 1\n");
sub q1 { return $node->safe_psql('postgres', $_[0]); }

# --- requests in flight ---------------------------------------------------
# the mock reads each request and never answers; the step's timeout is far
# beyond the test
q1(qq{SELECT allma_create_flow('{"id": "held", "startStepInstanceId": "call", "steps": {
  "call": {"stepType": "API_CALL", "apiUrlTemplate": {"template": "$base/echo/held?hang=1"},
           "apiHttpMethod": "POST", "customConfig": {"timeoutMs": 3600000}}}}')});
my @held = map { q1("SELECT allma_start_flow('held', '{}')") } 1 .. 3;

ok(poll_until_true($node, q{SELECT inflight_requests = 3 FROM allma_worker_status()}, 120),
	'the worker counts its three requests in flight');
is(q1(q{SELECT worker || ' ' || (pid > 0) || ' ' || database || ' ' || runnable || ' '
		|| waiting_timers || ' ' || waiting_events || ' ' || waiting_children || ' '
		|| waiting_rate_limits || ' ' || (oldest_runnable_age IS NULL)
	  FROM allma_worker_status()}),
	'0 true postgres 0 0 0 0 0 true', 'nothing else is queued');
is(q1(q{SELECT count(*) FROM allma.worker_status WHERE inflight_requests = 3}), '1',
	'allma.worker_status shows the same');
is(q1(q{SELECT string_agg(DISTINCT array_to_string(waiting_on, ',') || ' ' || array_to_string(current_steps, ','), '; ')
	  FROM allma.execution_progress WHERE flow_id = 'held'}),
	'http call', 'each execution waits on the response of its step "call"');
is(q1(q{SELECT count(*) FROM allma.live_path_waits
	 WHERE waiting_on = 'http' AND lease_until > now()}),
	'3', 'with a lease in the future');
# the requests reach the mock (the rows go INFLIGHT before they are sent)
my $seen = 0;
for (my $i = 0; $i < 600 && $seen < 3; $i++)
{
	my $log = q1(qq{SELECT allma_http_request('GET', '$base/__log?limit=10', '{}', NULL,
		'{"allow": "127.0.0.1"}')->>'body'});
	$seen = () = $log =~ m{/echo/held}g;
	select(undef, undef, undef, 0.1) if $seen < 3;
}
is($seen, 3, 'the mock got the three requests');
q1(q{DELETE FROM allma.executions WHERE flow_id = 'held'});

# --- token usage of LLM steps --------------------------------------------
q1(qq{
SET log_statement = 'none';
SELECT allma_set_secret('OPENAI_API_KEY', 'sk-observe-test');
SELECT allma_set_secret('ANTHROPIC_API_KEY', 'sk-observe-test-a');
SELECT allma_create_flow('{"id": "ask", "startStepInstanceId": "openai", "steps": {
  "openai": {"stepType": "LLM_INVOCATION", "llmProvider": "OPENAI", "modelId": "mock-json",
             "inputMappings": {"topic": "\$.topic"},
             "customConfig": {"baseUrl": "$base/v1", "apiKeySecret": "OPENAI_API_KEY", "jsonOutputMode": true,
                              "prompt": "Tell me about {{topic}}"},
             "defaultNextStepInstanceId": "anthropic"},
  "anthropic": {"stepType": "LLM_INVOCATION", "llmProvider": "ANTHROPIC", "modelId": "mock-echo",
                "inputMappings": {"topic": "\$.topic"},
                "customConfig": {"baseUrl": "$base/v1", "apiKeySecret": "ANTHROPIC_API_KEY",
                                 "prompt": "Tell me more about {{topic}}"}}}}');
});
for my $topic ('queues', 'latches')
{
	my $e = q1(qq{SELECT allma_start_flow('ask', '{"topic": "$topic"}')});
	is(q1("SELECT allma_wait('$e', '60 s')"), 'COMPLETED', "LLM flow on $topic completes")
	  or diag(q1("SELECT error FROM allma.executions WHERE execution_id = '$e'"));
}
# what the steps recorded, summed by hand
my $recorded = q1(q{
	SELECT count(*) || ' ' || sum((details->'tokenUsage'->>'inputTokens')::int) || ' '
		|| sum((details->'tokenUsage'->>'outputTokens')::int)
	  FROM allma.step_executions WHERE step_type = 'LLM_INVOCATION'});
like($recorded, qr/^4 [1-9]\d* [1-9]\d*$/, 'four LLM attempts recorded their token usage');
is(q1(q{SELECT llm_calls || ' ' || input_tokens || ' ' || output_tokens
	  FROM allma_flow_statistics(now() - interval '1 hour')
	 WHERE flow_id = 'ask' AND step_type = 'LLM_INVOCATION'}),
	$recorded, 'allma_flow_statistics adds them up');
is(q1(q{SELECT string_agg(m.key || ':' || (m.value->>'calls'), ' ' ORDER BY m.key)
	  FROM allma.flow_statistics s, jsonb_each(s.by_model) m
	 WHERE s.flow_id = 'ask'}),
	'mock-echo:2 mock-json:2', 'per model');
is(q1(q{SELECT (SELECT sum((m.value->>'inputTokens')::numeric) FROM jsonb_each(s.by_model) m) = s.input_tokens
		   AND (SELECT sum((m.value->>'outputTokens')::numeric) FROM jsonb_each(s.by_model) m) = s.output_tokens
	  FROM allma.flow_statistics s WHERE s.flow_id = 'ask' AND s.step_type = 'LLM_INVOCATION'}),
	't', 'the models add up to the total');

$node->stop;
done_testing();
