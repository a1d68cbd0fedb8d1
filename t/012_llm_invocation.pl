# LLM_INVOCATION steps through the worker against the mock's OpenAI,
# Anthropic and Gemini endpoints: prompt templates, JSON mode, fallbacks,
# tool calls, token usage in the history, and an API key (a secret) that
# never reaches allma's tables or the server log.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use lib 't';
use AllmaTest;

my $base = start_mock();
my $node = allma_node('llm', "allma.http_allowlist = '127.0.0.1'\nallma.timer_scale = 0.01\n");
my $canary = 'sk-canary-7f3e9a1b2c4d';

# (statement logging off while the secrets are set: the statement holds them)
$node->safe_psql('postgres', qq{
SET log_statement = 'none';
SELECT allma_set_secret('OPENAI_API_KEY', '$canary');
SELECT allma_set_secret('ANTHROPIC_API_KEY', '$canary-a');
SELECT allma_set_secret('GEMINI_API_KEY', '$canary-g');
SELECT allma_set_secret('SERVICE_TOKEN', '$canary-svc');
SELECT allma_create_prompt('summary', 'Summarize {{topic}} for {{audience}}');
});

sub llm_flow
{
	my ($id, $step) = @_;
	$node->safe_psql('postgres', qq{
SELECT allma_create_flow('{"id": "$id", "startStepInstanceId": "ask", "steps": {
  "ask": {"stepType": "LLM_INVOCATION", "promptTemplateId": "summary",
          "inputMappings": {"topic": "\$.topic"}, "literals": {"audience": "engineers"},
          $step, "defaultNextStepInstanceId": "done"},
  "done": {"stepType": "NO_OP"}}}')});
}

sub run
{
	my ($flow) = @_;
	my $e = $node->safe_psql('postgres', "SELECT allma_start_flow('$flow', '{\"topic\": \"queues\"}')");
	$node->safe_psql('postgres', "SELECT allma_wait('$e', '60 s')");
	return $e;
}
sub q1 { return $node->safe_psql('postgres', $_[0]); }

# OpenAI-compatible, JSON mode
llm_flow('openai', qq{"llmProvider": "OPENAI", "modelId": "mock-json",
  "customConfig": {"baseUrl": "$base/v1", "apiKeySecret": "OPENAI_API_KEY", "jsonOutputMode": true}});
my $e = run('openai');
is(q1("SELECT status FROM allma.executions WHERE execution_id = '$e'"), 'COMPLETED', 'OPENAI step completes');
is(q1("SELECT output->'steps_output'->'ask'->>'answer' FROM allma.executions WHERE execution_id = '$e'"),
	'42', 'JSON mode parses the reply into the output');
like(q1("SELECT output->'steps_output'->'ask'->>'echo' FROM allma.executions WHERE execution_id = '$e'"),
	qr/Summarize queues for engineers/, 'the prompt template was rendered with the step input');
cmp_ok(q1("SELECT (details->'tokenUsage'->>'totalTokens')::int FROM allma.step_executions WHERE execution_id = '$e' AND step_instance_id = 'ask'"),
	'>', 0, 'token usage is in the step history');

# directPrompt (declared by Allma, never read there) is the prompt when there
# is no promptTemplateId, and it is a template
$node->safe_psql('postgres', qq{
SELECT allma_create_flow('{"id": "direct", "startStepInstanceId": "ask", "steps": {
  "ask": {"stepType": "LLM_INVOCATION", "llmProvider": "OPENAI", "modelId": "mock-json",
          "directPrompt": "Direct question on {{topic}}",
          "customConfig": {"baseUrl": "$base/v1", "apiKeySecret": "OPENAI_API_KEY", "jsonOutputMode": true, "prompt": "not this one"}}}}')});
$e = run('direct');
like(q1("SELECT output->'steps_output'->'ask'->>'echo' FROM allma.executions WHERE execution_id = '$e'"),
	qr/Direct question on queues/, 'directPrompt is rendered and sent, before customConfig.prompt');

# invalid JSON from the primary model: the fallback model answers
llm_flow('fallback', qq{"llmProvider": "OPENAI", "modelId": "mock-invalid-json",
  "customConfig": {"baseUrl": "$base/v1", "apiKeySecret": "OPENAI_API_KEY", "jsonOutputMode": true},
  "fallbacks": [{"llmProvider": "OPENAI", "modelId": "mock-fail-500"}, {"llmProvider": "OPENAI", "modelId": "mock-json"}]});
$e = run('fallback');
is(q1("SELECT status || ' ' || (output->'steps_output'->'ask'->>'answer') FROM allma.executions WHERE execution_id = '$e'"),
	'COMPLETED 42', 'fallbacks are tried in order until one answers');
is(q1("SELECT details->>'fallbackIndex' || ' ' || (details->>'modelId') FROM allma.step_executions WHERE execution_id = '$e' AND step_instance_id = 'ask'"),
	'2 mock-json', 'the history says which model answered');

# every model fails: the last error is the step's, and retries apply
llm_flow('broken', qq{"llmProvider": "OPENAI", "modelId": "mock-invalid-json",
  "customConfig": {"baseUrl": "$base/v1", "apiKeySecret": "OPENAI_API_KEY", "jsonOutputMode": true},
  "onError": {"retryOnContentError": {"count": 1}}});
$e = run('broken');
is(q1("SELECT string_agg(status || ':' || (error->>'errorName'), ',' ORDER BY seq) FROM allma.step_executions WHERE execution_id = '$e'"),
	'RETRYING:ContentBasedRetryableError,FAILED:ContentBasedRetryableError',
	'invalid JSON is a ContentBasedRetryableError, retried per retryOnContentError');

# Anthropic and Gemini shapes
llm_flow('anthropic', qq{"llmProvider": "ANTHROPIC", "modelId": "mock-echo", "customConfig": {"baseUrl": "$base/v1"}});
$e = run('anthropic');
like(q1("SELECT output->'steps_output'->'ask'->>'llm_response' FROM allma.executions WHERE execution_id = '$e'"),
	qr/Summarize queues for engineers/, 'ANTHROPIC messages API');
llm_flow('gemini', qq{"llmProvider": "GEMINI", "modelId": "mock-echo", "customConfig": {"baseUrl": "$base/v1beta"}});
$e = run('gemini');
like(q1("SELECT output->'steps_output'->'ask'->>'llm_response' FROM allma.executions WHERE execution_id = '$e'"),
	qr/Summarize queues for engineers/, 'GEMINI generateContent');

# tools pass through and tool calls come back
llm_flow('tools', qq{"llmProvider": "OPENAI", "modelId": "mock-tools", "customConfig": {"baseUrl": "$base/v1", "apiKeySecret": "OPENAI_API_KEY"},
  "tools": [{"type": "function", "name": "lookup", "description": "look up", "parameters": {"type": "object"}}]});
$e = run('tools');
is(q1("SELECT output->'steps_output'->'ask'->'tool_calls'->0->>'name' FROM allma.executions WHERE execution_id = '$e'"),
	'lookup', 'tool calls are in the output');

# {{secrets.NAME}} in an API_CALL header, sent to a server that echoes the
# request's headers back: the echoed value is redacted in the output
$node->safe_psql('postgres', qq{
SELECT allma_create_flow('{"id": "with-token", "startStepInstanceId": "call", "steps": {
  "call": {"stepType": "API_CALL", "apiUrlTemplate": {"template": "$base/echo"}, "apiHttpMethod": "GET",
           "apiStaticHeaders": {"Authorization": "Bearer {{secrets.SERVICE_TOKEN}}"}}}}')});
$e = run('with-token');
is(q1("SELECT status FROM allma.executions WHERE execution_id = '$e'"), 'COMPLETED', 'API_CALL with a secret header');
is(q1("SELECT output->'steps_output'->'call'->'data'->'headers'->>'authorization' FROM allma.executions WHERE execution_id = '$e'"),
	'Bearer [redacted]', 'a secret echoed by the server is redacted in the output');

# an OpenAI-compatible server that needs no key (Ollama, llama.cpp, vLLM):
# a custom baseUrl and no apiKeySecret send no Authorization header (the
# mock's /noauth/ paths accept that); any model name answers JSON mode
llm_flow('keyless', qq{"llmProvider": "OPENAI", "modelId": "llama3.1:8b",
  "customConfig": {"baseUrl": "$base/noauth/v1/", "jsonOutputMode": true}});
$e = run('keyless');
is(q1("SELECT status || ' ' || (output->'steps_output'->'ask'->>'answer') FROM allma.executions WHERE execution_id = '$e'"),
	'COMPLETED 42', 'a key-less OpenAI-compatible server answers');
my $keyless = mock_json($base, '/__log?path=/noauth/v1/chat/completions');
is(scalar(@$keyless), 1, 'one request to it');
is_deeply([ grep { /^(authorization|api-key)$/ } keys %{ $keyless->[0]{headers} } ], [],
	'without an Authorization header');
is($keyless->[0]{auth}, undef, 'nor any other credential');
# the same server's URL with a secret named explicitly: the key is sent
llm_flow('keyed', qq{"llmProvider": "OPENAI", "modelId": "llama3.1:8b",
  "customConfig": {"baseUrl": "$base/noauth/v1", "apiKeySecret": "OPENAI_API_KEY", "jsonOutputMode": true}});
$e = run('keyed');
is(q1("SELECT status FROM allma.executions WHERE execution_id = '$e'"), 'COMPLETED', 'a named secret is used');
like(mock_json($base, '/__log?path=/noauth/v1/chat/completions&limit=1')->[0]{headers}{authorization} // '',
	qr/^Bearer /, 'and sent as the bearer token');
# a secret named explicitly that does not exist is still an error
llm_flow('missing-key', qq{"llmProvider": "OPENAI", "modelId": "llama3.1:8b",
  "customConfig": {"baseUrl": "$base/noauth/v1", "apiKeySecret": "NO_SUCH_KEY"}});
$e = run('missing-key');
like(q1("SELECT status || ' ' || (error->>'errorMessage') FROM allma.executions WHERE execution_id = '$e'"),
	qr/^FAILED .*NO_SUCH_KEY/, 'a missing named secret fails the step, naming it');
is(scalar(@{ mock_json($base, '/__log?path=/noauth/v1/chat/completions') }), 2, 'without sending anything');
# OpenAI's own URL is not "custom": the default secret is needed there
# (no request leaves: the default secret is looked up first)
$node->safe_psql('postgres', "SET log_statement = 'none'; SELECT allma_delete_secret('OPENAI_API_KEY')");
llm_flow('openai-default', qq{"llmProvider": "OPENAI", "modelId": "gpt-4o",
  "customConfig": {"baseUrl": "https://api.openai.com/v1/"}});
$e = run('openai-default');
like(q1("SELECT status || ' ' || (error->>'errorMessage') FROM allma.executions WHERE execution_id = '$e'"),
	qr/^FAILED .*OPENAI_API_KEY/, 'OpenAI\'s own baseUrl still needs OPENAI_API_KEY');
$node->safe_psql('postgres', "SET log_statement = 'none'; SELECT allma_set_secret('OPENAI_API_KEY', '$canary')");

# the API key reaches the provider ...
my $log = `python3 -c "import urllib.request; print(urllib.request.urlopen('$base/__log').read().decode())"`;
like($log, qr/\Q$canary\E/, 'the API key was sent to the provider');
like($log, qr/Bearer \Q$canary-svc\E/, 'the secret header was sent');
# ... and nowhere else
# (the query reads the canary from allma.secrets, so that it is not in the statement log)
is(q1("WITH k AS (SELECT '%' || value || '%' AS pat FROM allma.secrets WHERE name = 'OPENAI_API_KEY')
       SELECT count(*) FROM (
        SELECT 'exec' FROM allma.executions, k WHERE concat(input, output, error)::text LIKE k.pat
        UNION ALL SELECT 'step' FROM allma.step_executions, k WHERE concat(input, output, error, details)::text LIKE k.pat
        UNION ALL SELECT 'path' FROM allma.execution_paths, k WHERE concat(context, request)::text LIKE k.pat
        UNION ALL SELECT 'flow' FROM allma.flow_versions, k WHERE definition::text LIKE k.pat) x"),
	'0', 'the API key is in no allma table');
unlike(slurp_file($node->logfile), qr/\Q$canary\E/, 'the API key is not in the server log');

$node->stop;
done_testing();
