# Idempotency keys per request (issue 13 #6): every poll of a
# POLL_EXTERNAL_API step, every fallback model of an LLM step and every
# phase of an MCP session handshake is a request of its own with its own
# Idempotency-Key (a server that honours keys would otherwise replay its
# first answer: polling would never advance); Retry-After is capped by
# allma.max_retry_after.  (A re-send of the same request keeps its key:
# t/011_api_call.pl, the crash while requests are in flight.)
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use JSON::PP;
use HTTP::Tiny;
use lib 't';
use AllmaTest;

my $base = start_mock();
my $node = allma_node('keys', "allma.http_allowlist = '127.0.0.1'\nallma.timer_scale = 0.01\n"
	  . "allma.max_retry_after = 100s\n");
sub q1 { return $node->safe_psql('postgres', $_[0]); }

sub run
{
	my ($flow, $input) = @_;
	my $e = q1("SELECT allma_start_flow('$flow', '" . ($input // '{}') . "')");
	q1("SELECT allma_wait('$e', '60 s')");
	return $e;
}

# the Idempotency-Keys of the requests the mock received for execution e, in order
sub keys_of
{
	my ($e) = @_;
	my $res = HTTP::Tiny->new->get("$base/__log");
	die "mock log: $res->{status}" unless $res->{success};
	return join(' ', map { my $k = $_->{idempotency_key}; $k =~ s/^\Q$e\E//; $k }
		  grep { ($_->{idempotency_key} // '') =~ /^\Q$e\E/ } @{ decode_json($res->{content}) });
}

# POLL_EXTERNAL_API: three polls, three keys
q1(qq{SELECT allma_create_flow('{"id": "poll", "startStepInstanceId": "poll", "steps": {
  "poll": {"stepType": "POLL_EXTERNAL_API",
           "apiCallDefinition": {"apiUrlTemplate": {"template": "$base/status/202"}, "apiHttpMethod": "GET"},
           "pollingConfig": {"intervalSeconds": 1, "maxAttempts": 3},
           "exitConditions": {"successCondition": "\$.never"}}}}')});
my $e = run('poll');
is(q1("SELECT error->>'errorName' FROM allma.executions WHERE execution_id = '$e'"),
	'PollingMaxAttemptsExceeded', 'the poll step made its polls');
is(keys_of($e), '/poll/1 /poll/1/poll-2 /poll/1/poll-3', 'each poll has its own Idempotency-Key');

# LLM fallbacks: each model its own key
q1(qq{SET log_statement = 'none'; SELECT allma_set_secret('OPENAI_API_KEY', 'sk-keys')});
q1(q{SELECT allma_create_prompt('p', 'hello')});
q1(qq{SELECT allma_create_flow('{"id": "llm", "startStepInstanceId": "ask", "steps": {
  "ask": {"stepType": "LLM_INVOCATION", "promptTemplateId": "p", "llmProvider": "OPENAI",
          "modelId": "mock-invalid-json", "customConfig": {"apiKeySecret": "OPENAI_API_KEY", "baseUrl": "$base/v1", "jsonOutputMode": true},
          "fallbacks": [{"llmProvider": "OPENAI", "modelId": "mock-fail-400"},
                        {"llmProvider": "OPENAI", "modelId": "mock-json"}]}}}')});
$e = run('llm');
is(q1("SELECT status FROM allma.executions WHERE execution_id = '$e'"), 'COMPLETED', 'the last fallback answers');
is(keys_of($e), '/ask/1 /ask/1/fallback-1 /ask/1/fallback-2', 'each model has its own Idempotency-Key');

# MCP session handshake: each phase, and the call in the new session, its own key
q1(qq{SELECT allma_create_mcp_connection('stateful', '$base/mcp-stateful')});
q1(qq{SELECT allma_create_flow('{"id": "mcp", "startStepInstanceId": "call", "steps": {
  "call": {"stepType": "MCP_CALL", "mcpConnectionId": "stateful", "toolName": "echo",
           "inputMappings": {"text": "\$.text"}}}}')});
$e = run('mcp', '{"text": "hi"}');
is(q1("SELECT output->'steps_output'->'call'->'result'->'structuredContent'->>'text' FROM allma.executions WHERE execution_id = '$e'"),
	'hi', 'the MCP call completes after opening a session');
is(keys_of($e), '/call/1 /call/1/initialize /call/1/initialized /call/1/after-initialize',
	'each handshake phase and the call after it has its own Idempotency-Key');
my $res = HTTP::Tiny->new->get("$base/__log");
my ($last) = grep { ($_->{idempotency_key} // '') eq "$e/call/1/after-initialize" } @{ decode_json($res->{content}) };
is(decode_json($last->{body})->{id}, "$e/call/1/after-initialize", 'the JSON-RPC id is that key');

# Retry-After: a server asking for a day is cut to allma.max_retry_after
# (100 s, 1 s scaled by timer_scale 0.01; uncapped it would be 14 minutes)
q1(qq{SELECT allma_create_flow('{"id": "later", "startStepInstanceId": "call", "steps": {
  "call": {"stepType": "API_CALL", "apiHttpMethod": "GET",
           "apiUrlTemplate": {"template": "$base/echo?fail_times=1&status=503&retry_after=86400&key={{flow_variables.flowExecutionId}}"}}}}')});
$e = run('later');
is(q1("SELECT status FROM allma.executions WHERE execution_id = '$e'"), 'COMPLETED',
	'the step is retried after the capped wait and completes');
is(q1("SELECT (details->>'retryInMs') || ' ' || (error->'errorDetails'->>'retryAfterMs') || ' '
         || (error->'errorDetails'->>'retryAfterRequestedMs')
         FROM allma.step_executions WHERE execution_id = '$e' AND status = 'RETRYING'"),
	'1000 100000 86400000', 'the wait was capped at allma.max_retry_after, the request is in the details');
is(q1("SELECT setting || unit || ' ' || context FROM pg_settings WHERE name = 'allma.max_retry_after'"),
	'100000ms sighup', 'allma.max_retry_after is a reloadable setting');

done_testing();
