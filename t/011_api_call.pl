# API_CALL steps through the worker: the request is sent after the step's
# pass committed, the response completes the step in a new short
# transaction.  Success, retries of 5xx and 429 (honouring Retry-After),
# permanent 4xx, timeouts, the destination allow-list, the response cap, no
# transaction held while requests are stalled, and a crash while requests
# are in flight (they are sent again with the same Idempotency-Key).
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use JSON::PP;
use lib 't';
use AllmaTest;

my $base = start_mock();
my $node = allma_node('api', "allma.http_allowlist = '127.0.0.1'\nallma.timer_scale = 0.01\n"
	  . "allma.http_max_response_size = 100kB\n");

sub flow
{
	my ($id, $url, $extra) = @_;
	$extra //= '';
	$node->safe_psql('postgres', qq{
SELECT allma_create_flow('{"id": "$id", "startStepInstanceId": "call", "steps": {
  "call": {"stepType": "API_CALL", "apiUrlTemplate": {"template": "$url"}, "apiHttpMethod": "POST",
           "inputMappings": {"n": "\$.n"} $extra, "defaultNextStepInstanceId": "after"},
  "after": {"stepType": "NO_OP"}}}')});
}

sub run
{
	my ($flow, $input) = @_;
	$input //= '{"n": 1}';
	my $e = $node->safe_psql('postgres', "SELECT allma_start_flow('$flow', '$input')");
	$node->safe_psql('postgres', "SELECT allma_wait('$e', '60 s')");
	return $e;
}

sub q1 { my ($sql) = @_; return $node->safe_psql('postgres', $sql); }

# success: JSON body parsed, Idempotency-Key execution/step/attempt
flow('ok', "$base/echo?tag={{n}}");
my $e = run('ok', '{"n": 7}');
is(q1("SELECT status FROM allma.executions WHERE execution_id = '$e'"), 'COMPLETED', 'API_CALL completes');
is(q1("SELECT output->'steps_output'->'call'->'data'->'json'->>'n' FROM allma.executions WHERE execution_id = '$e'"),
	'7', 'the step input is the JSON body and the response body is parsed');
is(q1("SELECT output->'steps_output'->'call'->'data'->'headers'->>'idempotency-key' FROM allma.executions WHERE execution_id = '$e'"),
	"$e/call/1", 'Idempotency-Key is execution/step/attempt');
is(q1("SELECT output->'steps_output'->'call'->>'status' FROM allma.executions WHERE execution_id = '$e'"),
	'200', 'the output carries the status');

# 500 twice, then success: TransientStepError retried by the default policy
flow('flaky', "$base/echo?fail_times=2&status=500&key={{flow_variables.flowExecutionId}}");
$e = run('flaky');
is(q1("SELECT string_agg(status || ':' || coalesce(error->>'errorName', ''), ',' ORDER BY seq) FROM allma.step_executions WHERE execution_id = '$e'"),
	'RETRYING:TransientStepError,RETRYING:TransientStepError,COMPLETED:,COMPLETED:',
	'5xx is a TransientStepError, retried until it succeeds');

# 429 with Retry-After: 3 s (30 ms scaled) is more than the policy's 10 ms
flow('limited', "$base/echo?fail_times=1&status=429&retry_after=3&key={{flow_variables.flowExecutionId}}");
$e = run('limited');
is(q1("SELECT (details->>'retryInMs')::int >= 30 FROM allma.step_executions WHERE execution_id = '$e' AND status = 'RETRYING'"),
	't', 'Retry-After lengthens the retry delay');
is(q1("SELECT status FROM allma.executions WHERE execution_id = '$e'"), 'COMPLETED', 'and the retry succeeds');

# 404: permanent, no retry
flow('missing', "$base/status/404");
$e = run('missing');
is(q1("SELECT error->>'errorName' || ' ' || (error->'errorDetails'->>'status') FROM allma.executions WHERE execution_id = '$e'"),
	'PermanentStepError 404', '4xx is a PermanentStepError');
is(q1("SELECT count(*) FROM allma.step_executions WHERE execution_id = '$e'"), '1', 'not retried');

# a header rendered from the context with a line break: the step fails in
# its own transaction (the worker never gets a request it cannot send)
flow('badheader', "$base/echo", ', "apiStaticHeaders": {"X-Note": "{{note}}"}');
$e = run('badheader', '{"n": 1, "note": "two\\nlines"}');
like(q1("SELECT status || ' ' || (error->>'errorName') || ': ' || (error->>'errorMessage') FROM allma.executions WHERE execution_id = '$e'"),
	qr/^FAILED PermanentStepError: step "call" cannot send its request: invalid value of HTTP header "X-Note"/,
	'a header value with a line break fails the step at once');
is(q1("SELECT count(*) FROM allma.execution_paths WHERE execution_id = '$e' AND status = 'INFLIGHT'"), '0',
	'and leaves nothing in flight');

# timeout: a transient error, retried, then the step fails
flow('slow', "$base/echo?latency_ms=3000", ', "customConfig": {"timeoutMs": 200}, "onError": {"retries": {"count": 1, "intervalSeconds": 1}}');
$e = run('slow');
is(q1("SELECT string_agg(status || ':' || (error->'errorDetails'->>'timedOut'), ',' ORDER BY seq) FROM allma.step_executions WHERE execution_id = '$e'"),
	'RETRYING:true,FAILED:true', 'a timeout is a TransientStepError with timedOut');

# response larger than allma.http_max_response_size
flow('huge', "$base/echo?size=500000");
$e = run('huge');
like(q1("SELECT error->>'errorMessage' FROM allma.executions WHERE execution_id = '$e'"),
	qr/response too large/, 'an oversize response fails the step cleanly');

# POLL_EXTERNAL_API: polls are durable timers until a condition holds
sub poll_flow
{
	my ($id, $url, $exits, $max) = @_;
	$node->safe_psql('postgres', qq{
SELECT allma_create_flow('{"id": "$id", "startStepInstanceId": "poll", "steps": {
  "poll": {"stepType": "POLL_EXTERNAL_API",
           "apiCallDefinition": {"apiUrlTemplate": {"template": "$url"}, "apiHttpMethod": "GET"},
           "pollingConfig": {"intervalSeconds": 1, "maxAttempts": $max},
           "exitConditions": $exits, "defaultNextStepInstanceId": "after"},
  "after": {"stepType": "NO_OP"}}}')});
}
poll_flow('poll-ok', "$base/echo?fail_times=2&status=202&key={{flow_variables.flowExecutionId}}",
	q{{"successCondition": "$.method == ''GET''"}}, 5);
$e = run('poll-ok');
is(q1("SELECT string_agg(step_instance_id || ':' || status, ',' ORDER BY seq) FROM allma.step_executions WHERE execution_id = '$e'"),
	'poll:POLLING,poll:POLLING,poll:COMPLETED,after:COMPLETED', 'polls until the success condition holds');
is(q1("SELECT output->'steps_output'->'poll'->>'method' FROM allma.executions WHERE execution_id = '$e'"),
	'GET', 'the output is the response data');
cmp_ok(q1("SELECT extract(epoch FROM max(started_at) - min(ended_at)) * 1000 FROM allma.step_executions WHERE execution_id = '$e' AND step_instance_id = 'poll'"),
	'>=', 20, 'polls wait for the interval (10 ms each, scaled)');
poll_flow('poll-max', "$base/status/202", q{{"successCondition": "$.never"}}, 3);
$e = run('poll-max');
is(q1("SELECT string_agg(status, ',' ORDER BY seq) || ' ' || max(error->>'errorName') FROM allma.step_executions WHERE execution_id = '$e'"),
	'POLLING,POLLING,FAILED PollingMaxAttemptsExceeded', 'maxAttempts is enforced');
poll_flow('poll-fail', "$base/status/202", q{{"successCondition": "$.never", "failureCondition": "$.status == 202"}}, 5);
$e = run('poll-fail');
is(q1("SELECT error->>'errorName' FROM allma.executions WHERE execution_id = '$e'"),
	'PollingFailed', 'the failure condition fails the step');

# parallel branches that make HTTP calls: each branch's request goes out
# from the worker that runs it, and the fork joins their responses in order
$node->safe_psql('postgres', qq{
SELECT allma_create_flow('{"id": "fan-http", "startStepInstanceId": "fork", "steps": {
  "fork": {"stepType": "PARALLEL_FORK_MANAGER", "itemsPath": "\$.items",
           "parallelBranches": [{"branchId": "get", "stepInstanceId": "call"}],
           "aggregationConfig": {"dataPath": "\$.data.query.item", "maxConcurrency": 10}},
  "call": {"stepType": "API_CALL", "apiHttpMethod": "GET",
           "apiUrlTemplate": {"template": "$base/echo?latency_ms=50&item={{currentItem}}"}}}}')});
$e = run('fan-http', '{"items": [' . join(',', 1 .. 30) . ']}');
is(q1("SELECT status FROM allma.executions WHERE execution_id = '$e'"), 'COMPLETED', 'a fork of HTTP branches completes');
is(q1("SELECT output->'steps_output'->'fork'->'aggregatedData' = (SELECT jsonb_agg(g::text) FROM generate_series(1, 30) g) FROM allma.executions WHERE execution_id = '$e'"),
	't', 'every branch\'s response is aggregated, in item order');

# no transaction is held while 100 requests are stalled: sampled over and
# over until the requests are answered (10 s), no worker has had a
# transaction open for more than 4 s (the workers' short passes between,
# claiming or recording, take milliseconds, even on a loaded machine far
# less than that; a worker waiting for the network inside a transaction
# would show one for the whole 10 s)
flow('stalled', "$base/echo?latency_ms=10000");
q1("SELECT allma_start_flow('stalled') FROM generate_series(1, 100)");
poll_until_true($node, "SELECT count(*) = 100 FROM allma.execution_paths p JOIN allma.executions e USING (execution_id) WHERE e.flow_id = 'stalled' AND p.status = 'INFLIGHT'")
  or die 'requests did not go in flight';
my ($samples, $holding) = (0, 0);
for (;;)
{
	my ($inflight, $held) = split /\|/, q1(q{
		SELECT (SELECT count(*) FROM allma.execution_paths p JOIN allma.executions e USING (execution_id)
		         WHERE e.flow_id = 'stalled' AND p.status = 'INFLIGHT')
		       || '|' ||
		       (SELECT count(*) FROM pg_stat_activity
		         WHERE backend_type = 'allma worker' AND xact_start < statement_timestamp() - interval '4 s')});
	last if $inflight == 0;
	$samples++;
	$holding += $held;
	select(undef, undef, undef, 0.1);
}
cmp_ok($samples, '>=', 3, "pg_stat_activity was sampled while the requests were stalled ($samples times)");
is($holding, 0, 'no allma worker held a transaction while requests were in flight');
poll_until_true($node, "SELECT count(*) = 100 FROM allma.executions WHERE flow_id = 'stalled' AND status = 'COMPLETED'")
  or die 'stalled requests did not complete';
pass('all 100 stalled requests completed');

# loopback refused when the allow-list does not name it (the workers apply
# the reload when they next wake up: wait until they have)
$node->append_conf('postgresql.conf', "allma.http_allowlist = ''\n");
$node->reload;
wait_for_setting($node, 'allma.http_allowlist', '');
flow('refused', "$base/echo");
$e = run('refused');
like(q1("SELECT error->>'errorMessage' FROM allma.executions WHERE execution_id = '$e'"),
	qr/refused/, 'loopback is refused by default');
$node->append_conf('postgresql.conf', "allma.http_allowlist = '127.0.0.1'\n");
$node->reload;
wait_for_setting($node, 'allma.http_allowlist', '127.0.0.1');

# modules and Lambda ARNs bound to an HTTP endpoint (allma_bind_module_http)
q1("SELECT allma_set_secret('REMOTE_TOKEN', 'remote-token-4711')");
q1(qq{SELECT allma_bind_module_http('acme/remote-%', '$base/echo', '{"Authorization": "Bearer {{secrets.REMOTE_TOKEN}}"}')});
q1(qq{SELECT allma_bind_module_http('arn:aws:lambda:%:function:resize', '$base/echo')});
q1(qq{SELECT allma_bind_module_http('acme/broken', '$base/status/503')});
q1(q{SELECT allma_create_flow('{"id": "remote", "startStepInstanceId": "logic", "steps": {
  "logic": {"stepType": "CUSTOM_LOGIC", "moduleIdentifier": "acme/remote-score", "inputMappings": {"n": "$.n"},
            "outputMappings": {"$.echoed": "$.json"}, "defaultNextStepInstanceId": "lambda"},
  "lambda": {"stepType": "CUSTOM_LAMBDA_INVOKE",
             "lambdaFunctionArnTemplate": "arn:aws:lambda:eu-west-1:123:function:resize", "inputMappings": {"n": "$.n"},
             "outputMappings": {"$.lambda": "$.json"}}}}')});
$e = run('remote', '{"n": 5}');
is(q1("SELECT status FROM allma.executions WHERE execution_id = '$e'"), 'COMPLETED', 'steps bound to HTTP endpoints complete');
is(q1("SELECT output->'echoed'->>'n' FROM allma.executions WHERE execution_id = '$e'"), '5',
	'the module input is POSTed as JSON and the JSON reply is the output');
is(q1("SELECT output->'lambda'->>'moduleIdentifier' || ' ' || (output->'lambda'->'stepInput'->>'n') FROM allma.executions WHERE execution_id = '$e'"),
	'arn:aws:lambda:eu-west-1:123:function:resize 5', 'a Lambda ARN gets the Lambda payload');
my $remote = `python3 -c "import json,urllib.request; print(json.dumps(json.load(urllib.request.urlopen('$base/__log?key=$e/logic/1'))))"`;
like($remote, qr/Bearer remote-token-4711/, 'with the binding\'s headers, secrets resolved');
is(q1("SELECT count(*) FROM allma.execution_paths WHERE execution_id = '$e' AND request::text LIKE '%remote-token-4711%'")
	 + q1("SELECT count(*) FROM allma.step_executions WHERE execution_id = '$e' AND concat(input, output, details)::text LIKE '%remote-token-4711%'"),
	0, 'and the secret stored nowhere');
q1(q{SELECT allma_create_flow('{"id": "remote-broken", "startStepInstanceId": "logic", "steps": {
  "logic": {"stepType": "CUSTOM_LOGIC", "moduleIdentifier": "acme/broken",
            "onError": {"retries": {"count": 1, "intervalSeconds": 1}}}}}')});
$e = run('remote-broken');
is(q1("SELECT string_agg(status || ':' || coalesce(error->>'errorName', ''), ',' ORDER BY seq) FROM allma.step_executions WHERE execution_id = '$e'"),
	'RETRYING:TransientStepError,FAILED:TransientStepError', 'a 503 from a bound endpoint is transient and retried');

# a pass that fails while recording responses keeps them for the next pass:
# the step completes without its request being sent again.  (A trigger
# fails the first attempt to record the response of the "poison-once" URL,
# and every attempt for "poison-always".)
q1(q{CREATE SEQUENCE fail_once;
CREATE FUNCTION fail_recording() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	IF OLD.status = 'INFLIGHT' AND OLD.request->>'url' LIKE '%poison-always%' THEN
		RAISE EXCEPTION 'injected failure while recording a response';
	END IF;
	IF OLD.status = 'INFLIGHT' AND OLD.request->>'url' LIKE '%poison-once%' AND nextval('fail_once') = 1 THEN
		RAISE EXCEPTION 'injected failure while recording a response';
	END IF;
	RETURN coalesce(NEW, OLD);
END $$;
CREATE TRIGGER fail_recording BEFORE UPDATE OR DELETE ON allma.execution_paths
	FOR EACH ROW EXECUTE FUNCTION fail_recording();});
flow('poison-once', "$base/echo?tag=poison-once");
$e = run('poison-once');
is(q1("SELECT status FROM allma.executions WHERE execution_id = '$e'"), 'COMPLETED',
	'a response whose recording failed once is recorded by the next pass');
my $hits = JSON::PP->new->decode(`python3 -c "import json,urllib.request; print(json.dumps(json.load(urllib.request.urlopen('$base/__log?key=$e/call/1'))))"`);
is(scalar(@$hits), 1, 'without sending the request again');
like(slurp_file($node->logfile), qr/allma will record 1 responses again/, 'the retry is logged');
flow('poison-always', "$base/echo?tag=poison-always");
my $poisoned = q1("SELECT allma_start_flow('poison-always', '{\"n\": 1}')");
my $given_up = 0;
for (my $i = 0; $i < 600 && !$given_up; $i++)
{
	$given_up = grep { !/statement: / && /allma gives up recording a response after \d+ failed attempts: its path could not be quarantined either/ }
	  split /\n/, slurp_file($node->logfile);
	select(undef, undef, undef, 0.1) unless $given_up;
}
ok($given_up, 'a response that can be neither recorded nor quarantined is given up on');
is(q1("SELECT status FROM allma.execution_paths WHERE execution_id = '$poisoned'"), 'INFLIGHT',
	'its step waits for its lease to expire');
q1("DROP TRIGGER fail_recording ON allma.execution_paths");

# a crash while a request is in flight: it is sent again with the same key.
# The mock leaves the first request to /echo/crashy unanswered (hang_times),
# and the server is crashed only once the mock has logged it: the request was
# certainly sent, and certainly not answered, before the crash.
flow('crashy', "$base/echo/crashy?hang_times=1");
my $c = q1("SELECT allma_start_flow('crashy', '{}', '{\"executionId\": \"00000000-0000-4000-8000-00000000c0de\"}')");
poll_effect(sub { scalar(@{ mock_json($base, '/__log?path=/echo/crashy') }) >= 1 })
  or die 'the request did not reach the mock';
is(q1("SELECT status FROM allma.execution_paths WHERE execution_id = '$c'"), 'INFLIGHT',
	'the request is in flight when the server crashes');
$node->stop('immediate');
$node->start;
poll_until_true($node, "SELECT status = 'COMPLETED' FROM allma.executions WHERE execution_id = '$c'", 120)
  or die 'in-flight request was not resumed';
my $entries = mock_json($base, '/__log?path=/echo/crashy');
cmp_ok(scalar(@$entries), '>=', 2, 'the in-flight request was sent again after the crash');
is_deeply([ map { $_->{headers}{'idempotency-key'} // '(none)' } @$entries ],
	[ ("$c/call/1") x scalar(@$entries) ], 'with the same Idempotency-Key, execution/step/attempt');
is(q1("SELECT count(*) FROM allma.step_executions WHERE execution_id = '$c' AND step_instance_id = 'call'"),
	'1', 'and the step is recorded once');
is(q1("SELECT output->'steps_output'->'call'->'data'->>'path' FROM allma.executions WHERE execution_id = '$c'"),
	'/echo/crashy', 'with the answer to the request sent again');

$node->stop;
done_testing();
