# Bad input with clear errors (issue 13 #7): the input size is checked by
# allma_start_flow; an LLM transport failure names the URL and libcurl's
# message and code; with fallbacks every model's error is kept; allma's own
# TransientStepError carries SQLSTATE LM201 (the README's mapping); an
# empty attachment fileId names the step and the field; a POLL failure
# condition shows the response (bounded) that met it.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use JSON::PP;
use lib 't';
use AllmaTest;

my ($base, $smtp_port) = start_mock(smtp => 1);
my $node = allma_node('badinput', "allma.http_allowlist = '127.0.0.1'\nallma.timer_scale = 0.01\n"
	  . "allma.max_input_size = 64kB\nallma.smtp_url = 'smtp://127.0.0.1:$smtp_port'\n");
sub q1 { return $node->safe_psql('postgres', $_[0]); }

sub run
{
	my ($flow, $input) = @_;
	my $e = q1("SELECT allma_start_flow('$flow', '" . ($input // '{}') . "')");
	q1("SELECT allma_wait('$e', '60 s')");
	return $e;
}
sub err { my ($e, $f) = @_; return q1("SELECT error$f FROM allma.executions WHERE execution_id = '$e'"); }

q1(q{SELECT allma_create_flow('{"id": "noop", "startStepInstanceId": "a", "steps": {"a": {"stepType": "NO_OP"}}}')});

# input size: refused at start, not by the first step
my ($rc, $out, $stderr) = $node->psql('postgres',
	"SELECT allma_start_flow('noop', jsonb_build_object('big', repeat('x', 70000)))");
like($stderr, qr/ERROR:  the flow input is too large: \d+ bytes, more than allma.max_input_size \(65536 bytes\)/,
	'a too large input is refused by allma_start_flow');
like($stderr, qr/HINT:  Pass a reference to the data/, 'with a hint');
is(q1("SELECT count(*) FROM allma.executions"), '0', 'no execution was started');
($rc, $out, $stderr) = $node->psql('postgres',
	"SELECT allma_start_flow('noop', jsonb_build_object('flow_variables', jsonb_build_object('v', repeat('x', 40000)), 'w', repeat('y', 30000)))");
like($stderr, qr/ERROR:  the flow input is too large/, 'the size counts every field');
is(q1("SELECT setting || ' ' || unit || ' ' || context FROM pg_settings WHERE name = 'allma.max_input_size'"),
	'65536 B sighup', 'allma.max_input_size is a reloadable setting');
my $ok = q1("SELECT allma_start_flow('noop', jsonb_build_object('ok', repeat('x', 60000)))");
is(q1("SELECT allma_wait('$ok', '60 s')"), 'COMPLETED', 'an input within the limit starts');
# LLM transport failure: URL and libcurl's message and code; TransientStepError is LM201
q1(qq{SET log_statement = 'none'; SELECT allma_set_secret('OPENAI_API_KEY', 'sk-bad-input')});
q1(q{SELECT allma_create_prompt('p', 'hello')});
q1(q{SELECT allma_create_flow('{"id": "llm-down", "startStepInstanceId": "ask", "steps": {
  "ask": {"stepType": "LLM_INVOCATION", "promptTemplateId": "p", "llmProvider": "OPENAI", "modelId": "m",
          "customConfig": {"apiKeySecret": "OPENAI_API_KEY", "baseUrl": "http://127.0.0.1:1/v1"}}}}')});
my $e = run('llm-down');
like(err($e, "->>'errorMessage'"),
	qr{^LLM request to http://127\.0\.0\.1:1/v1/chat/completions failed: .*[Cc]onnect.* \(curl code 7\)$},
	'an LLM transport failure names the URL and libcurl\'s message and code');
is(err($e, "->>'errorName'") . ' ' . err($e, "->'errorDetails'->>'sqlstate'") . ' ' . err($e, "->'errorDetails'->>'curlCode'"),
	'TransientStepError LM201 7', 'it is a TransientStepError with SQLSTATE LM201 and the curl code');

# fallbacks: every model's error is kept
q1(qq{SELECT allma_create_flow('{"id": "llm-all-fail", "startStepInstanceId": "ask", "steps": {
  "ask": {"stepType": "LLM_INVOCATION", "promptTemplateId": "p", "llmProvider": "OPENAI", "modelId": "mock-fail-400",
          "customConfig": {"apiKeySecret": "OPENAI_API_KEY", "baseUrl": "$base/v1"},
          "fallbacks": [{"llmProvider": "OPENAI", "modelId": "mock-invalid-json", "customConfig": {"apiKeySecret": "OPENAI_API_KEY", "baseUrl": "$base/v1", "jsonOutputMode": true}},
                        {"llmProvider": "OPENAI", "modelId": "m2", "customConfig": {"apiKeySecret": "OPENAI_API_KEY", "baseUrl": "http://127.0.0.1:1/v1"}}]}}}')});
$e = run('llm-all-fail');
is(q1("SELECT string_agg((x->>'fallbackIndex') || ':' || (x->>'modelId') || ':' || (x->>'errorName'), ' ' ORDER BY (x->>'fallbackIndex')::int)
         FROM allma.executions, jsonb_array_elements(error->'errorDetails'->'modelErrors') x WHERE execution_id = '$e'"),
	'0:mock-fail-400:PermanentStepError 1:mock-invalid-json:ContentBasedRetryableError 2:m2:TransientStepError',
	'with fallbacks, every model\'s error is in errorDetails.modelErrors');
like(err($e, "->>'errorMessage'"), qr{^LLM request to http://127\.0\.0\.1:1/}, 'the step\'s error is the last model\'s');

# an empty attachment fileId names the step and the field
q1(q{SELECT allma_create_flow('{"id": "mail-empty-file", "startStepInstanceId": "send", "steps": {
  "send": {"stepType": "EMAIL", "from": "a@example.test", "to": ["b@example.test"], "subject": "s", "body": "b",
           "attachments": [{"filename": "x.txt", "filePointer": {"fileId": ""}}]}}}')});
$e = run('mail-empty-file');
is(err($e, "->>'errorMessage'"), 'EMAIL step "send": attachment "x.txt": filePointer.fileId is empty',
	'an empty attachment fileId names the step and the field');
q1(q{SELECT allma_create_flow('{"id": "mail-bad-file", "startStepInstanceId": "send", "steps": {
  "send": {"stepType": "EMAIL", "from": "a@example.test", "to": ["b@example.test"], "subject": "s", "body": "b",
           "attachments": [{"filename": "x.txt", "filePointer": {"fileId": "nope"}}]}}}')});
$e = run('mail-bad-file');
is(err($e, "->>'errorMessage'"), 'EMAIL step "send": attachment "x.txt": filePointer.fileId "nope" is not a file id (a UUID)',
	'so does one that is not a UUID');

# POLL failure condition: the response that met it, bounded
q1(qq{SELECT allma_create_flow('{"id": "poll-fail", "startStepInstanceId": "poll", "steps": {
  "poll": {"stepType": "POLL_EXTERNAL_API",
           "apiCallDefinition": {"apiUrlTemplate": {"template": "$base/status/202"}, "apiHttpMethod": "GET"},
           "pollingConfig": {"intervalSeconds": 1, "maxAttempts": 3},
           "exitConditions": {"successCondition": "\$.never", "failureCondition": "\$.status == 202"}}}}')});
$e = run('poll-fail');
is(err($e, "->>'errorName'") . ' ' . err($e, "->'errorDetails'->>'failureCondition'") . ' '
	  . err($e, "->'errorDetails'->>'response'"),
	'PollingFailed $.status == 202 {"reason": "Accepted", "status": 202}',
	'a POLL failure shows the condition and the response that met it');
q1(qq{SELECT allma_create_flow('{"id": "poll-fail-big", "startStepInstanceId": "poll", "steps": {
  "poll": {"stepType": "POLL_EXTERNAL_API",
           "apiCallDefinition": {"apiUrlTemplate": {"template": "$base/echo?size=10000"}, "apiHttpMethod": "GET"},
           "pollingConfig": {"intervalSeconds": 1, "maxAttempts": 3},
           "exitConditions": {"successCondition": "\$.never", "failureCondition": "\$.pad"}}}}')});
$e = run('poll-fail-big');
is(q1("SELECT length(error->'errorDetails'->>'responseExcerpt') || ' ' || (error->'errorDetails'->>'responseBytes')
         || ' ' || (error->'errorDetails' ? 'response') FROM allma.executions WHERE execution_id = '$e'"),
	'2048 10001 false', 'a large response is shown as a bounded excerpt');

done_testing();
