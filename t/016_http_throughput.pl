# HTTP at the client's limit (issue 16), functionally: with the default
# limits (allma.http_max_in_flight = allma.http_max_per_host = 2500 per
# worker) a burst of 3,000 API_CALL and LLM_INVOCATION steps against the
# mock all complete, each with its own response and its own Idempotency-Key,
# while the workers record responses in the passes that claim new paths
# (one commit for both).  A worker whose open-files limit leaves room for
# fewer sockets keeps fewer requests in flight and says so in the log, and
# its steps still complete.  No timing is asserted beyond generous bounds.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use lib 't';
use AllmaTest;

my $base = start_mock();
my $node = allma_node('throughput', "allma.http_allowlist = '127.0.0.1'\n");
sub q1 { return $node->safe_psql('postgres', $_[0]); }

is(q1("SELECT current_setting('allma.http_max_in_flight') || ' ' || current_setting('allma.http_max_per_host')"),
	'2500 2500', 'defaults: 2,500 requests in flight per worker, all of them may go to one host');

q1(qq{SELECT allma_create_flow('{"id": "api", "startStepInstanceId": "get", "steps": {
  "get": {"stepType": "API_CALL", "apiHttpMethod": "GET",
          "apiUrlTemplate": {"template": "$base/echo/burst?latency_ms=200&i={{i}}"},
          "outputMappings": {"\$.i": "\$.data.query.i", "\$.h": "\$.data.headers"}}}}')});
q1("SELECT allma_set_secret('OPENAI_API_KEY', 'test-key')");
q1(qq{SELECT allma_create_flow('{"id": "llm", "startStepInstanceId": "ask", "steps": {
  "ask": {"stepType": "LLM_INVOCATION", "llmProvider": "OPENAI", "modelId": "mock-slow-200",
          "directPrompt": "Answer about {{i}}", "inputMappings": {"i": "\$.i"},
          "customConfig": {"baseUrl": "$base/v1", "apiKeySecret": "OPENAI_API_KEY", "jsonOutputMode": true},
          "outputMappings": {"\$.answer": "\$.echo"}}}}')});

# one transaction: the workers see 3,000 runnable steps at once
q1("CREATE TABLE runs AS
	SELECT 'api' AS kind, g AS i, allma_start_flow('api', jsonb_build_object('i', g)) AS e FROM generate_series(1, 2000) g
	UNION ALL
	SELECT 'llm', g, allma_start_flow('llm', jsonb_build_object('i', g)) FROM generate_series(1, 1000) g");
ok(poll_until_true($node, "SELECT count(*) = 0 FROM allma.executions WHERE status = 'RUNNING'", 600),
	'3,000 HTTP steps finish within 10 minutes');
is(q1("SELECT count(*) FILTER (WHERE x.status = 'COMPLETED') || ' of ' || count(*)
	FROM runs r JOIN allma.executions x ON x.execution_id = r.e"), '3000 of 3000', 'all completed');
is(q1("SELECT count(*) FROM runs r JOIN allma.executions x ON x.execution_id = r.e
	WHERE r.kind = 'api' AND x.output->>'i' = r.i::text"), '2000',
	'each API_CALL got the response to its own request');
is(q1("SELECT count(*) FROM runs r JOIN allma.executions x ON x.execution_id = r.e
	WHERE r.kind = 'llm' AND x.output->>'answer' = 'Answer about ' || r.i"), '1000',
	'each LLM_INVOCATION got the answer to its own prompt');
is(q1("SELECT count(DISTINCT x.output->'h'->>'idempotency-key') || ' ' || count(x.output->'h'->>'idempotency-key')
	FROM runs r JOIN allma.executions x ON x.execution_id = r.e WHERE r.kind = 'api'"), '2000 2000',
	'each API request carried an Idempotency-Key of its own');

# what the mock received: one request per step, each LLM request with its own key
my $api_log = mock_json($base, '/__log?path=/echo/burst');
is(scalar(@$api_log), 2000, 'the mock received 2,000 API requests (no step sent twice)');
my $llm_log = mock_json($base, '/__log?path=/v1/chat/completions');
my %keys = map { ($_->{idempotency_key} // '') => 1 } @$llm_log;
delete $keys{''};
is(scalar(@$llm_log) . ' ' . scalar(keys %keys), '1000 1000',
	'1,000 LLM requests, each with an Idempotency-Key of its own');
is(q1("SELECT count(*) FROM allma.step_executions s JOIN runs r ON r.e = s.execution_id"), '3000',
	'one history row per step');

# a worker whose open-files limit leaves room for fewer sockets: it keeps
# fewer in flight (1,500 - max_files_per_process 1,000 - 64 = 436) and its
# steps complete all the same
my $offset = -s $node->logfile;
$node->append_conf('postgresql.conf', "allma.max_workers = 1\n");
$node->restart;
wait_for_workers($node, 1);
my $pid = q1("SELECT pid FROM pg_stat_activity WHERE backend_type = 'allma worker'");
system('prlimit', "--pid=$pid", '--nofile=1500:1500') == 0 or die "prlimit failed";
q1("CREATE TABLE runs2 AS SELECT g AS i, allma_start_flow('api', jsonb_build_object('i', g)) AS e
	FROM generate_series(1, 600) g");
ok(poll_until_true($node, "SELECT count(*) = 0 FROM allma.executions WHERE status = 'RUNNING'", 600),
	'600 steps of a worker with few file descriptors finish');
is(q1("SELECT count(*) FROM runs2 r JOIN allma.executions x ON x.execution_id = r.e
	WHERE x.status = 'COMPLETED' AND x.output->>'i' = r.i::text"), '600', 'all completed with their own responses');
is(count_in_log($node, qr/allma worker keeps at most 436 HTTP requests in flight, not allma\.http_max_in_flight = 2500/, $offset),
	1, 'the worker says once that its open-files limit leaves room for 436 requests');

done_testing();
