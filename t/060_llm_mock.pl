# LLM provider adapters (src/llm.c) against the mock server's OpenAI,
# Anthropic and Gemini endpoints: the request allma_llm_request_preview
# builds is sent with allma_http_request and the answer read with
# allma_llm_parse, as the worker will do.  Only ever talks to 127.0.0.1.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use JSON::PP;
use IPC::Run;
use lib 't';
use AllmaTest;

my $json = JSON::PP->new->canonical;

# --- the mock server (t/AllmaTest.pm) ----------------------------------------
my ($base) = start_mock();


my $node = allma_node('llm');

sub lit { my $s = shift; $s =~ s/'/''/g; return "'$s'"; }

my %base_path = (OPENAI => '/v1', ANTHROPIC => '/v1', GEMINI => '/v1beta');

# call(provider, model, extra): {parsed, request (as the mock logged it)}
sub call
{
	my ($provider, $model, $extra) = @_;
	my $call = {
		baseUrl => $base . $base_path{$provider},
		modelId => $model,
		apiKey => 'k-test-1234',
		prompt => 'Tell me about PostgreSQL',
		%{ $extra // {} } };
	my $sql = sprintf(q{
		WITH q AS (SELECT allma_llm_request_preview(%s, %s) AS q),
			 r AS (SELECT allma_http_request('POST', q->>'url', q->'headers',
											 (q->'body')::text, '{"allow": "127.0.0.1"}') AS r FROM q)
		SELECT allma_llm_parse(%s, (r->>'status')::int, r->>'body') FROM r},
		lit($provider), lit($json->encode($call)), lit($provider));
	my $parsed = $json->decode($node->safe_psql('postgres', $sql));
	my $log = $json->decode($node->safe_psql('postgres',
		"SELECT allma_http_request('GET', " . lit("$base/__log?limit=1")
		  . ", '{}', NULL, '{\"allow\": \"127.0.0.1\"}')->>'body'"));
	return ($parsed, $log->[0]);
}

$node->safe_psql('postgres', 'CREATE EXTENSION IF NOT EXISTS allma');

# --- OpenAI --------------------------------------------------------------
my ($r, $req) = call('OPENAI', 'mock-json', { systemPrompt => 'Be terse.', jsonOutputMode => JSON::PP::true,
	inferenceParameters => { temperature => 0.1, maxOutputTokens => 50 } });
is($req->{path}, '/v1/chat/completions', 'openai: path');
like($req->{headers}{authorization}, qr/^Bearer /, 'openai: bearer credential');
my $body = $json->decode($req->{body});
is($body->{messages}[0]{role}, 'system', 'openai: system message first');
is($body->{response_format}{type}, 'json_object', 'openai: json mode');
is($body->{max_tokens}, 50, 'openai: max_tokens');
is($r->{finishReason}, 'stop', 'openai: finish reason');
is($json->decode($r->{text})->{answer}, 42, 'openai: text is the model answer');
is($json->decode($r->{text})->{echo}, 'Tell me about PostgreSQL', 'openai: prompt was the user message');
ok($r->{usage}{inputTokens} > 0 && $r->{usage}{totalTokens} == $r->{usage}{inputTokens} + $r->{usage}{outputTokens},
	'openai: usage');

($r, $req) = call('OPENAI', 'mock-tools', { tools => [ { name => 'lookup', description => 'd',
	parameters => { type => 'object', properties => { x => { type => 'number' } } } } ] });
is_deeply([ map { [ $_->{name}, $_->{arguments} ] } @{ $r->{tool_calls} } ], [ [ 'lookup', { x => 1 } ] ],
	'openai: tool call with parsed arguments');

($r) = call('OPENAI', 'mock-fail-429');
is($r->{error}{errorName}, 'TransientStepError', 'openai: 429 is transient');
like($r->{error}{message}, qr/HTTP 429, rate_limit_exceeded/, 'openai: error code in the message');

# --- Anthropic -----------------------------------------------------------
($r, $req) = call('ANTHROPIC', 'mock-echo', { systemPrompt => 'sys' });
is($req->{path}, '/v1/messages', 'anthropic: path');
ok(defined $req->{headers}{'x-api-key'}, 'anthropic: x-api-key');
is($req->{headers}{'anthropic-version'}, '2023-06-01', 'anthropic: default version');
is($json->decode($req->{body})->{system}, 'sys', 'anthropic: system prompt');
is($r->{text}, 'Tell me about PostgreSQL', 'anthropic: echo');
is($r->{finishReason}, 'end_turn', 'anthropic: stop reason');

($r) = call('ANTHROPIC', 'mock-tools', { tools => [ { name => 'search' } ], toolChoice => 'required' });
is($r->{tool_calls}[0]{name}, 'search', 'anthropic: tool_use');
is_deeply($r->{tool_calls}[0]{arguments}, { x => 1 }, 'anthropic: tool input');

($r) = call('ANTHROPIC', 'mock-fail-529');
is($r->{error}{errorName}, 'TransientStepError', 'anthropic: 529 overloaded is transient');
($r) = call('ANTHROPIC', 'mock-fail-401');
is($r->{error}{errorName}, 'PermanentStepError', 'anthropic: 401 is permanent');

# --- Gemini --------------------------------------------------------------
($r, $req) = call('GEMINI', 'mock-echo', { systemPrompt => 'sys', jsonOutputMode => JSON::PP::true,
	inferenceParameters => { topK => 3 } });
is($req->{path}, '/v1beta/models/mock-echo:generateContent', 'gemini: path');
ok(defined $req->{headers}{'x-goog-api-key'}, 'gemini: x-goog-api-key');
$body = $json->decode($req->{body});
is($body->{generationConfig}{responseMimeType}, 'application/json', 'gemini: json mode');
is($body->{generationConfig}{topK}, 3, 'gemini: topK');
is($r->{text}, 'Tell me about PostgreSQL', 'gemini: echo');

($r) = call('GEMINI', 'mock-tools', { tools => [ { name => 'find' } ], toolChoice => 'auto' });
is($r->{tool_calls}[0]{name}, 'find', 'gemini: functionCall');

($r) = call('GEMINI', 'mock-fail-503');
is($r->{error}{errorName}, 'TransientStepError', 'gemini: 503 is transient');
like($r->{error}{message}, qr/UNAVAILABLE/, 'gemini: status in the message');

# JSON output mode on a reply that is not JSON
($r) = call('GEMINI', 'mock-invalid-json');
my $stderr = '';
$node->psql('postgres', 'SELECT allma_llm_extract_json(' . lit($r->{text}) . ')', stderr => \$stderr);
like($stderr, qr/contains no valid JSON/, 'json mode: invalid reply is a content error');

$node->stop;
done_testing();
